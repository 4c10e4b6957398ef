"""SpacTor-T5 (Ye et al., 2024, arXiv 2401.13160): the model and objective.

One stage-1 step, as `compute_losses` runs it:

    span-corrupted encoder input x      (keras_spactor.data)
      -> mask_inputs          15% of the ordinary pieces -> <mask>
      -> generator_logits     small encoder G + tied head    -> L_MLM
      -> sample_replacements  x' ~ softmax(G / T) at the masks, no gradient
      -> T5 encoder (x') + RTD head: replaced or original?   -> L_RTD
      -> T5 decoder on the span targets                      -> L_SC
    L = L_SC + lambda_MLM * L_MLM + lambda_RTD * L_RTD

Stage 2 (from optimizer step tau on) is L_SC on x alone. The switch is
`TwoStageTrainer`'s; this file is the model and its objective.
"""

import math

import keras
from keras import ops

from keras_spactor.layers.position_bias import use_one_hot_position_bias
from keras_spactor.models import batch_checks
from keras_spactor.models import config_checks
from keras_spactor.models import generator_masking
from keras_spactor.models import loss_terms
from keras_spactor.models import preset_io
from keras_spactor.models import seed_stream
from keras_spactor.models import spactor_t5_preprocessor as preprocessing
from keras_spactor.models.auxiliary_layers import make_auxiliary_layers
from keras_spactor.models.term_metrics import TermMetrics
from keras_spactor.models.two_stage_trainer import TwoStageTrainer


@keras.saving.register_keras_serializable(package="keras_spactor")
class SpacTorT5(
    TermMetrics, TwoStageTrainer, preset_io.PresetAndConfigMixin, keras.Model
):
    """SpacTor-T5 pre-training model (Ye et al., 2024, arXiv 2401.13160).

    Wraps a real `keras_hub.models.T5Backbone` and adds what SpacTor needs
    while pre-training: a small generator that shares the backbone's input
    embedding and a replaced-token-detection (RTD) head on the encoder.

    Stage 1 (hybrid, optimizer steps `0 … tau-1`) is the flow drawn at
    the top of this file: the generator fills masked encoder inputs
    (`L_MLM`), the RTD head tells its samples from the originals (`L_RTD`,
    ELECTRA's rule: a sample equal to the original is "original"), the
    decoder learns the span-corruption targets (`L_SC`). From step `tau`
    on, plain span corruption on the un-masked inputs: the generator and
    RTD head do not run and stay bit-identical. The switch lands on
    exactly step `tau` (see `TwoStageTrainer`); set `tau` here or with
    `keras_spactor.callbacks.TauScheduler`.

    Batches are keras-hub's `(x, y, sample_weight)`: `x` holds
    `encoder_token_ids`, `encoder_padding_mask`, `decoder_token_ids`,
    `decoder_padding_mask`; `y` the span-corruption targets, as
    `SpacTorT5Preprocessor.model_batch` builds them. See
    `keras_spactor.data.pretraining_dataset`.

    Args:
        backbone: a `keras_hub.models.T5Backbone`.
        vocabulary_size: int. The TOKENIZER's vocabulary size; sentinels
            count down from `vocabulary_size - 1`. Defaults to the
            preprocessor's, else to the backbone's `vocabulary_size` (T5's
            own vocabulary has 32,100 pieces in a 32,128-row embedding:
            pass 32100 there, or the tokenizer).
        num_sentinels: int. Number of sentinel ids at the top of the
            vocabulary; never masked, never scored by RTD. Defaults to
            the preprocessor's, else T5's 100.
        mask_token_id: int. Id written at masked positions. Defaults to
            the tokenizer's `<mask>` piece if it has one, else to
            `vocabulary_size`, the first spare embedding row (T5: 32100).
        eos_token_id: int. Defaults to the preprocessor's, else T5's
            `</s>` (1).
        pad_token_id: int. Defaults to the preprocessor's, else T5's
            `<pad>` (0).
        generator_num_layers: int. Defaults to
            `max(1, backbone.num_layers // 4)`.
        generator_hidden_dim: int. Defaults to the backbone's width.
        generator_num_heads: int. Defaults to the backbone's.
        generator_intermediate_dim: int. Defaults to the backbone's.
        mlm_probability: float. Fraction of maskable positions masked.
        mask_replacement_rate: float. Fraction of the selected positions
            that the generator sees as `mask_token_id`; the others keep
            their original token (it still predicts, and samples at, all
            of them). 1.0 (default) masks all; ELECTRA uses 0.85.
        max_predictions: int. Static number of masked slots per example.
            Defaults to `ceil(mlm_probability * encoder_length)`.
        sampling_temperature: float. Temperature of the generator samples.
        mlm_loss_weight: float. `lambda_mlm` (default 1.0, ELECTRA's).
        rtd_loss_weight: float. `lambda_rtd` (default 50.0, ELECTRA's; the
            paper's exact value could not be confirmed from public copies).
        rtd_positions: `"eligible"` (default): the RTD loss averages over
            the positions that could have been replaced (ordinary pieces:
            not sentinel, EOS, padding or the mask id). `"all"`: over every
            non-padding position, as ELECTRA does (sentinels and EOS are
            never replaced, so they add easy "original" labels).
        tau: int or None. First stage-2 optimizer step; `0` is plain span
            corruption, `None` is hybrid throughout.
        seed: int. Seed of the masking and sampling randomness.
        tokenizer: optional `keras_hub.models.T5Tokenizer`: the
            preprocessor's (one with the default lengths if
            `preprocessor` is not given). `model.tokenizer` reads (and
            sets) `model.preprocessor.tokenizer`.
        preprocessor: optional
            `keras_spactor.models.SpacTorT5Preprocessor`, the owner of the
            ids and lengths the data is made with; it gives the defaults
            of the ids above, and explicit values that contradict it
            (another size or sentinel count, a mask id on a real token)
            are an error. Kept as `model.preprocessor`; saved with the
            model (`save`, `save_to_preset`) and restored with it. Build
            the data from it: `pretraining_dataset(source,
            model.preprocessor, batch_size)`.

    Example:
    ```python
    # A T5 v1.1 shape, randomly initialised (or wrap your own backbone:
    # `SpacTorT5(backbone, vocabulary_size=...)`).
    model = keras_spactor.SpacTorT5.from_preset("spactor_t5_tiny")
    model.compile(optimizer="adamw")
    model.fit(
        dataset, steps_per_epoch=100,
        callbacks=[keras_spactor.callbacks.TauScheduler(tau="50%")],
    )
    ```
    """

    def __init__(
        self,
        backbone,
        vocabulary_size=None,
        num_sentinels=None,
        mask_token_id=None,
        eos_token_id=None,
        pad_token_id=None,
        generator_num_layers=None,
        generator_hidden_dim=None,
        generator_num_heads=None,
        generator_intermediate_dim=None,
        mlm_probability=0.15,
        mask_replacement_rate=1.0,
        max_predictions=None,
        sampling_temperature=1.0,
        mlm_loss_weight=1.0,
        rtd_loss_weight=50.0,
        rtd_positions="eligible",
        tau=None,
        seed=None,
        tokenizer=None,
        preprocessor=None,
        **kwargs,
    ):
        super().__init__(tau=tau, **kwargs)
        self.backbone = backbone
        self.preprocessor = preprocessing.model_preprocessor(
            preprocessor, tokenizer
        )
        self._set_token_ids(
            vocabulary_size=vocabulary_size,
            num_sentinels=num_sentinels,
            mask_token_id=mask_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
        )
        self.mlm_probability = float(mlm_probability)
        self.mask_replacement_rate = float(mask_replacement_rate)
        self.max_predictions = max_predictions
        self.sampling_temperature = float(sampling_temperature)
        self.mlm_loss_weight = float(mlm_loss_weight)
        self.rtd_loss_weight = float(rtd_loss_weight)
        self.rtd_positions = rtd_positions
        self.seed = seed
        config_checks.check_config(self)
        self._add_stage_one_layers(
            num_layers=generator_num_layers,
            hidden_dim=generator_hidden_dim,
            num_heads=generator_num_heads,
            intermediate_dim=generator_intermediate_dim,
        )
        # T5's position biases as one-hot products: their gradients are
        # then matrix products, not scatters (slow atomic adds on GPUs).
        use_one_hot_position_bias(self)
        self.built = True
        self.make_term_trackers()

    def _set_token_ids(self, **ids):
        """Each id given, else the preprocessor's, else T5's; without
        either, the vocabulary size is the backbone's and the mask id the
        first spare embedding row (`vocabulary_size`)."""
        ids = preprocessing.resolve_ids(self.preprocessor, **ids)
        self.vocabulary_size = int(
            ids["vocabulary_size"] or self.backbone.vocabulary_size
        )
        self.num_sentinels = ids["num_sentinels"]
        mask_token_id = ids["mask_token_id"]
        if mask_token_id is None:
            mask_token_id = self.vocabulary_size
        self.mask_token_id = int(mask_token_id)
        self.eos_token_id = ids["eos_token_id"]
        self.pad_token_id = ids["pad_token_id"]

    def _add_stage_one_layers(
        self, num_layers, hidden_dim, num_heads, intermediate_dim
    ):
        """The generator (its shape defaulting to the backbone's, a
        quarter as deep), the MLM and RTD heads, built, and the seed
        state of the masks and samples."""
        backbone = self.backbone
        self.generator_num_layers = num_layers or max(
            1, backbone.num_layers // 4
        )
        self.generator_hidden_dim = hidden_dim or backbone.hidden_dim
        self.generator_num_heads = num_heads or backbone.num_heads
        self.generator_intermediate_dim = (
            intermediate_dim or backbone.intermediate_dim
        )
        self.generator, self.generator_head, self.rtd_head = (
            make_auxiliary_layers(
                backbone,
                num_layers=self.generator_num_layers,
                hidden_dim=self.generator_hidden_dim,
                num_heads=self.generator_num_heads,
                intermediate_dim=self.generator_intermediate_dim,
            )
        )
        # A weight, so that checkpoints resume the masks and samples.
        self.masking_seed_state = self.add_weight(
            **seed_stream.state_weight_arguments(self.seed)
        )
        self.generator.build((None, None, backbone.hidden_dim))
        self.generator_head.build((None, None, self.generator_hidden_dim))
        self.rtd_head.build((None, None, backbone.hidden_dim))

    def __setattr__(self, name, value):
        # To the property, untracked: the tokenizer is the preprocessor's.
        if name == "tokenizer":
            return object.__setattr__(self, name, value)
        return super().__setattr__(name, value)

    @property
    def tokenizer(self):
        """`preprocessor.tokenizer`, or `None` without a preprocessor."""
        if self.preprocessor is None:
            return None
        return self.preprocessor.tokenizer

    @tokenizer.setter
    def tokenizer(self, tokenizer):
        # Kept for code that attaches a tokenizer to a loaded model.
        self.preprocessor = preprocessing.replace_tokenizer(
            self.preprocessor, tokenizer
        )
        config_checks.check_config(self)

    @property
    def auxiliary_layers(self):
        """Layers that only stage 1 runs: generator and heads."""
        return [self.generator, self.generator_head, self.rtd_head]

    def call(self, inputs, training=False):
        """Span-corruption forward pass: decoder logits `[b, t, vocab]`."""
        outputs = self.backbone(inputs, training=training)
        return self.lm_logits(outputs["decoder_sequence_output"])

    def lm_logits(self, hidden_states):
        """The decoder LM head, exactly as `T5Seq2SeqLM` computes it."""
        if self.backbone.tie_embedding_weights:
            hidden_states = hidden_states * ops.cast(
                self.backbone.hidden_dim**-0.5, hidden_states.dtype
            )
        return self.backbone.token_embedding(hidden_states, reverse=True)

    # ------------------------------------------------------------------
    # The objective, step by step (backend neutral).

    def compute_losses(
        self, x, y, sample_weight=None, hybrid=True, training=True
    ):
        """The SpacTor loss of one batch.

        Args:
            x: dict of the four T5 inputs.
            y: int tensor of span-corruption targets.
            sample_weight: target weights; defaults to `y != pad`.
            hybrid: bool (Python). Stage 1 if True, plain SC if False.
            training: bool.

        Returns:
            `(loss, outputs)`. `outputs` holds float32 scalars `loss` and
            `sc_loss` (stage 1 also `mlm_loss` and `rtd_loss`), and for
            each of those terms (`sc`, `mlm`, `rtd`) the
            `loss_terms.Scored` its accuracy metric reads.
        """
        x = {k: ops.convert_to_tensor(v) for k, v in x.items()}
        token_ids = ops.cast(x["encoder_token_ids"], "int32")
        padding_mask = x["encoder_padding_mask"]
        y = ops.cast(y, "int32")
        if sample_weight is None:
            sample_weight = ops.not_equal(y, self.pad_token_id)
        outputs = {}
        encoder_ids = token_ids
        if hybrid:
            masked = self.mask_inputs(token_ids, padding_mask)
            mlm_logits = self.generator_logits(masked, padding_mask, training)
            encoder_ids = self.sample_replacements(
                token_ids, masked, mlm_logits
            )
            outputs["mlm_loss"], outputs["mlm"] = self.mlm_loss(
                token_ids, masked, mlm_logits
            )
        encoded = self.backbone(
            dict(x, encoder_token_ids=encoder_ids), training=training
        )
        outputs["sc_loss"], outputs["sc"] = self.sc_loss(
            encoded["decoder_sequence_output"], y, sample_weight
        )
        loss = outputs["sc_loss"]
        if hybrid:
            rtd_weights = masked.eligible
            if self.rtd_positions == "all":
                rtd_weights = padding_mask
            outputs["rtd_loss"], outputs["rtd"] = self.rtd_loss(
                encoded["encoder_sequence_output"],
                ops.not_equal(encoder_ids, token_ids),
                rtd_weights,
            )
            loss = (
                loss
                + self.mlm_loss_weight * outputs["mlm_loss"]
                + self.rtd_loss_weight * outputs["rtd_loss"]
            )
        outputs["loss"] = loss
        return loss, outputs

    def mask_inputs(self, token_ids, padding_mask):
        """Choose the positions to mask; write `mask_token_id` there.

        Returns:
            A `generator_masking.MaskedInputs`.
        """
        eligible = generator_masking.replaceable_positions(
            token_ids, padding_mask, self.ordinary_token_ids()
        )
        positions, weights = generator_masking.select_masked_positions(
            eligible,
            self.mlm_probability,
            self.num_predictions(token_ids.shape[1]),
            seed=self._next_seed(),
        )
        shown_as_mask = weights
        if self.mask_replacement_rate < 1.0:
            kept = keras.random.uniform(
                ops.shape(weights), seed=self._next_seed()
            )
            kept = kept < self.mask_replacement_rate
            shown_as_mask = weights * ops.cast(kept, weights.dtype)
        masked_ids, _ = generator_masking.replace_tokens(
            token_ids, positions, shown_as_mask, self.mask_token_id
        )
        return generator_masking.MaskedInputs(
            masked_ids, eligible, positions, weights
        )

    def generator_logits(self, masked, padding_mask, training=False):
        """The generator's float32 logits `[batch, slots, rows]` at the
        masked positions, `-1e9` on all but ordinary pieces (a sampled
        sentinel would break the span-corruption alignment)."""
        embeddings = self.backbone.token_embedding(masked.token_ids)
        hidden = self.generator(embeddings, padding_mask, training=training)
        # Picked by a one-hot product, not a gather: a gather's gradient is
        # a scatter, which GPUs run as slow atomic adds (36 ms of a 141 ms
        # T5-base stage-1 loss on an H200, in bf16).
        picks = ops.one_hot(
            masked.positions, ops.shape(hidden)[1], dtype=hidden.dtype
        )
        hidden = ops.einsum("bpl,blh->bph", picks, hidden)
        logits = self.generator_head(
            hidden, self.backbone.token_embedding.embeddings
        )
        ordinary = self.ordinary_token_ids()
        return ops.where(ordinary, ops.cast(logits, "float32"), -1e9)

    def sample_replacements(self, token_ids, masked, logits):
        """`token_ids` with a sample of `softmax(logits / temperature)` at
        each masked position. The sample carries no gradient (ELECTRA): the
        generator learns from `L_MLM` only."""
        logits = ops.stop_gradient(logits)
        if self.sampling_temperature != 1.0:  # no pass over the logits
            logits = logits / self.sampling_temperature
        samples = generator_masking.sample_by_inverse_cdf(
            logits, seed=self._next_seed()
        )
        replaced, _ = generator_masking.replace_tokens(
            token_ids, masked.positions, masked.weights, samples
        )
        return replaced

    def mlm_loss(self, token_ids, masked, logits):
        """`L_MLM`: the generator's cross-entropy at the masked slots."""
        originals = ops.take_along_axis(token_ids, masked.positions, axis=1)
        scored = loss_terms.Scored(logits, originals, masked.weights)
        return loss_terms.cross_entropy(scored), scored

    def sc_loss(self, decoder_outputs, targets, sample_weight):
        """`L_SC`: the decoder's cross-entropy on the span targets."""
        logits = ops.cast(self.lm_logits(decoder_outputs), "float32")
        scored = loss_terms.Scored(logits, targets, sample_weight)
        return loss_terms.cross_entropy(scored), scored

    def rtd_loss(self, encoder_outputs, is_replaced, weights):
        """`L_RTD`: the RTD head's binary cross-entropy (ELECTRA's label:
        a sample equal to the original counts as original)."""
        logits = ops.cast(self.rtd_head(encoder_outputs), "float32")
        labels = ops.cast(is_replaced, "float32")
        scored = loss_terms.Scored(logits, labels, weights)
        return loss_terms.binary_cross_entropy(scored), scored

    def ordinary_token_ids(self):
        """Bool `[embedding rows]`: the ids the generator may predict."""
        return generator_masking.ordinary_token_ids(
            self.backbone.vocabulary_size,
            self.vocabulary_size - self.num_sentinels,
            self.eos_token_id,
            self.pad_token_id,
            self.mask_token_id,
        )

    def num_predictions(self, length):
        """The static number of masked slots for inputs of `length`."""
        if self.max_predictions:
            return int(min(self.max_predictions, length))
        return max(1, min(length, math.ceil(self.mlm_probability * length)))

    def _next_seed(self):
        return seed_stream.next_seed(self.masking_seed_state)

    # ------------------------------------------------------------------
    # `TwoStageTrainer`'s contract.

    def stage_variables(self, hybrid):
        """Stage 1 trains everything, stage 2 only the T5 backbone."""
        if hybrid:
            return self.trainable_variables
        return self.backbone.trainable_variables

    def check_batch(self, x, y=None):
        """Clear errors for malformed batches, before anything compiles."""
        batch_checks.check_structure(x, y)

    def check_first_batch(self, x, y=None):
        """Structure and id ranges of the first batch `fit` would see."""
        batch_checks.check_first_batch(self, x, y)
