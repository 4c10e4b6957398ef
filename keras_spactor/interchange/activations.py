"""The feed-forward activations of T5, in Keras and in transformers.

transformers' T5 names its feed-forward by `feed_forward_proj`
(`"relu"`, `"gated-gelu"`, ...), and maps `"gated-gelu"` to `gelu_new`,
the tanh approximation T5 v1.1 and FLAN-T5 were trained with (as in t5x).
Keras' `"gelu"` (what keras-hub's `T5Backbone` takes) is the exact, erf
GELU. The two differ by up to ~5e-4 per unit, enough to move a T5's logits
past 1e-4, so each is mapped to its exact counterpart:

| Keras (`T5Backbone(activation=...)`) | transformers (`feed_forward_proj`) |
|---|---|
| `"relu"` | `"relu"` / `"gated-relu"` |
| `"gelu"` (exact) | `"gated-gelu_python"` (exact; `"gelu"` ungated) |
| `gelu_approximate` (below) | `"gated-gelu"` (`gelu_new`, tanh) |
| `"silu"` | `"gated-silu"` / `"silu"` |
"""

import keras


@keras.saving.register_keras_serializable(package="keras_spactor")
def gelu_approximate(x):
    """GELU's tanh approximation (transformers' `gelu_new`, t5x's GELU).

    `0.5 * x * (1 + tanh(sqrt(2 / pi) * (x + 0.044715 * x**3)))`.

    Example:
    ```python
    keras_hub.models.T5Backbone(..., activation=gelu_approximate)
    ```
    """
    return keras.activations.gelu(x, approximate=True)


GELU_APPROXIMATE = "keras_spactor>gelu_approximate"

# transformers' `dense_act_fn` -> the Keras activation computing the same.
_KERAS_FOR_TRANSFORMERS = {
    "relu": "relu",
    "gelu": "gelu",
    "gelu_python": "gelu",
    "gelu_new": gelu_approximate,
    "gelu_pytorch_tanh": gelu_approximate,
    "gelu_python_tanh": gelu_approximate,
    "silu": "silu",
    "swish": "silu",
}

# Keras activation name -> transformers' activation name.
_TRANSFORMERS_FOR_KERAS = {
    "relu": "relu",
    "gelu": "gelu_python",
    GELU_APPROXIMATE: "gelu_new",
    "gelu_approximate": "gelu_new",
    "silu": "silu",
}


def keras_activation(dense_act_fn):
    """The Keras activation for transformers' `dense_act_fn`: a name, or
    `gelu_approximate` (`keras.activations.get` takes no registered name).

    Raises:
        ValueError: for an activation with no exact Keras counterpart here.
    """
    if dense_act_fn not in _KERAS_FOR_TRANSFORMERS:
        raise ValueError(
            f"The checkpoint's feed-forward activation {dense_act_fn!r} is "
            f"not supported; supported: {sorted(_KERAS_FOR_TRANSFORMERS)}."
        )
    return _KERAS_FOR_TRANSFORMERS[dense_act_fn]


def keras_activation_name(activation):
    """The registered name of a Keras activation (string or function)."""
    if isinstance(activation, str):
        return activation
    name = keras.activations.serialize(activation)
    if isinstance(name, dict):
        # A registered function: `{"config": "package>name", ...}`.
        name = name.get("config")
    return name


def feed_forward_proj(activation, gated):
    """transformers' `feed_forward_proj` for a Keras activation.

    Args:
        activation: the `T5Backbone`'s activation (a name or a function).
        gated: bool. The backbone's `use_gated_activation`.

    Raises:
        ValueError: for an activation transformers' T5 cannot express.
    """
    name = keras_activation_name(activation)
    if name not in _TRANSFORMERS_FOR_KERAS:
        raise ValueError(
            f"The backbone's activation {name!r} has no transformers T5 "
            f"counterpart; supported: {sorted(_TRANSFORMERS_FOR_KERAS)}."
        )
    hf_name = _TRANSFORMERS_FOR_KERAS[name]
    if not gated:
        # `feed_forward_proj="gelu"` is the exact GELU when not gated.
        hf_name = "gelu" if hf_name == "gelu_python" else hf_name
        return hf_name
    if hf_name == "gelu_new":
        return "gated-gelu"  # transformers maps this name to gelu_new
    return f"gated-{hf_name}"


def dense_act_fn(feed_forward_proj_name):
    """`(dense_act_fn, gated)` as transformers' `T5Config` derives them."""
    parts = feed_forward_proj_name.split("-")
    gated = parts[0] == "gated"
    if len(parts) > 2 or (len(parts) == 2 and not gated):
        raise ValueError(
            f"feed_forward_proj={feed_forward_proj_name!r} is not of the "
            "form 'ACT' or 'gated-ACT'."
        )
    act = parts[-1]
    if feed_forward_proj_name == "gated-gelu":
        act = "gelu_new"
    return act, gated
