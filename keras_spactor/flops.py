"""Analytic training FLOPs of a SpacTorT5 step (matmuls and attention).

A forward pass costs 2 FLOPs per multiply-add; a training step is counted as
3x the forward (forward + backward), the usual approximation (Kaplan et al.,
2020). Element-wise work (norms, activations, the optimizer) is ignored.
"""


def _attention_layer(
    tokens, context, hidden_dim, inner_dim, context_tokens=None
):
    """FLOPs of one attention layer's forward pass.

    Args:
        tokens: int. Query tokens in the batch (Q and O projections).
        context: int. Keys attended to per query (the key sequence length).
        hidden_dim: int. Model width.
        inner_dim: int. `num_heads * key_value_dim`.
        context_tokens: int. Key/value tokens in the batch (K and V
            projections). Defaults to `tokens` (self-attention); for
            cross-attention, the encoder's tokens.
    """
    if context_tokens is None:
        context_tokens = tokens
    query_and_output = 2 * tokens * 2 * hidden_dim * inner_dim
    key_and_value = 2 * context_tokens * 2 * hidden_dim * inner_dim
    scores_and_mix = 2 * 2 * tokens * context * inner_dim
    return query_and_output + key_and_value + scores_and_mix


def _feed_forward(tokens, hidden_dim, intermediate_dim, gated):
    matrices = 3 if gated else 2
    return 2 * tokens * matrices * hidden_dim * intermediate_dim


def _inner_dim(num_heads, hidden_dim, key_value_dim):
    return num_heads * (key_value_dim or hidden_dim // num_heads)


def train_step_flops(model, batch_size, inputs_length, targets_length, hybrid):
    """FLOPs of one optimizer step of `model` (a `SpacTorT5`).

    Args:
        model: a `SpacTorT5`.
        batch_size: int.
        inputs_length: int. Encoder length.
        targets_length: int. Decoder length.
        hybrid: bool. Stage 1 (generator and RTD head run) or stage 2.

    Returns:
        An int: forward + backward FLOPs of the step.

    Example:
    ```python
    train_step_flops(model, 128, 512, 114, hybrid=True)
    ```
    """
    b = model.backbone
    gated = b.use_gated_activation
    inner = _inner_dim(b.num_heads, b.hidden_dim, b.key_value_dim)
    enc_tokens = batch_size * inputs_length
    dec_tokens = batch_size * targets_length
    encoder = b.num_layers * (
        _attention_layer(enc_tokens, inputs_length, b.hidden_dim, inner)
        + _feed_forward(enc_tokens, b.hidden_dim, b.intermediate_dim, gated)
    )
    decoder = b.num_layers * (
        _attention_layer(dec_tokens, targets_length, b.hidden_dim, inner)
        # Cross-attention: K and V project the encoder's output.
        + _attention_layer(
            dec_tokens,
            inputs_length,
            b.hidden_dim,
            inner,
            context_tokens=enc_tokens,
        )
        + _feed_forward(dec_tokens, b.hidden_dim, b.intermediate_dim, gated)
    )
    lm_head = 2 * dec_tokens * b.hidden_dim * b.vocabulary_size
    forward = encoder + decoder + lm_head
    if hybrid:
        g = model.generator
        g_inner = _inner_dim(g.num_heads, g.hidden_dim, g.key_value_dim)
        slots = batch_size * model.num_predictions(inputs_length)
        forward += g.num_layers * (
            _attention_layer(enc_tokens, inputs_length, g.hidden_dim, g_inner)
            + _feed_forward(enc_tokens, g.hidden_dim, g.intermediate_dim, gated)
        )
        if g.hidden_dim != b.hidden_dim:
            forward += 2 * enc_tokens * b.hidden_dim * g.hidden_dim
        forward += (
            2
            * slots
            * (g.hidden_dim * b.hidden_dim + b.hidden_dim * b.vocabulary_size)
        )
        forward += 2 * enc_tokens * (b.hidden_dim * b.hidden_dim + b.hidden_dim)
    return 3 * forward


def flops_of_first_steps(steps, tau, hybrid_step_flops, sc_step_flops):
    """Training FLOPs of a run's first `steps` steps: those before `tau`
    are hybrid steps, the rest span-corruption steps.

    Args:
        steps: int. How many steps have run.
        tau: int, or `None` for a run that stays hybrid.
        hybrid_step_flops: int. FLOPs of one stage-1 step.
        sc_step_flops: int. FLOPs of one stage-2 step.

    Example:
    ```python
    flops_of_first_steps(1000, 250, hybrid_step_flops, sc_step_flops)
    ```
    """
    hybrid = steps if tau is None else min(steps, tau)
    return hybrid * hybrid_step_flops + (steps - hybrid) * sc_step_flops
