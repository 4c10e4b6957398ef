import math

import keras
from keras import ops

from keras_spactor.data import vocabulary as data_vocabulary
from keras_spactor.layers.generator_masked_lm_head import GeneratorMaskedLMHead
from keras_spactor.layers.replaced_token_detection_head import (
    ReplacedTokenDetectionHead,
)
from keras_spactor.layers.spactor_generator import SpacTorGenerator
from keras_spactor.models import batch_checks
from keras_spactor.models import generator_masking
from keras_spactor.models import preset_io
from keras_spactor.models import train_steps

HYBRID_ONLY_METRICS = (
    "mlm_loss",
    "generator_accuracy",
    "rtd_loss",
    "rtd_accuracy",
)


class _DrawnSeed(keras.random.SeedGenerator):
    """A seed already drawn, for `keras.random` ops (they take no tensors)."""

    def __init__(self, value):
        self._value = value

    def next(self, ordered=True):
        return self._value


def _weighted_mean(values, weights):
    weights = ops.cast(weights, "float32")
    total = ops.sum(ops.cast(values, "float32") * weights)
    return total / ops.maximum(ops.sum(weights), 1.0)


@keras.saving.register_keras_serializable(package="keras_spactor")
class SpacTorT5(keras.Model):
    """SpacTor-T5 pre-training model (Ye et al., 2024, arXiv 2401.13160).

    Wraps a real `keras_hub.models.T5Backbone` and adds what SpacTor needs
    while pre-training: a small generator that shares the backbone's input
    embedding and a replaced-token-detection (RTD) head on the encoder.

    Stage 1 (hybrid, optimizer steps `0 … tau-1`): a fraction
    `mlm_probability` of the non-sentinel, non-EOS, non-pad encoder inputs
    is replaced by `mask_token_id`; the generator predicts them (`L_MLM`); a
    token is sampled from `softmax(logits / sampling_temperature)` at each
    masked position (no gradient flows through the sample); the T5 encoder
    reads the result and the RTD head says which tokens were replaced
    (`L_RTD`, ELECTRA's rule: a sample equal to the original is
    "original"); the decoder is trained on the span-corruption targets
    (`L_SC`). `L = L_SC + mlm_loss_weight * L_MLM + rtd_loss_weight * L_RTD`.

    Stage 2 (from step `tau` on): plain span corruption on the un-masked
    inputs. The generator and RTD head are not run and leave the optimizer's
    update entirely, so their weights stay bit-identical.

    The switch lands on exactly optimizer step `tau`, also with
    `steps_per_execution > 1` (an execution that spans `tau` decides the
    stage inside the compiled step), across several `fit` calls and after
    restoring a checkpoint (the step count is the optimizer's `iterations`).
    Use `keras_spactor.callbacks.TauScheduler` to set `tau`, or pass it here.

    Batches are keras-hub's `(x, y, sample_weight)`: `x` holds
    `encoder_token_ids`, `encoder_padding_mask`, `decoder_token_ids`,
    `decoder_padding_mask`; `y` the span-corruption targets. See
    `keras_spactor.data.pretraining_dataset`.

    Args:
        backbone: a `keras_hub.models.T5Backbone`.
        vocabulary_size: int. The TOKENIZER's vocabulary size; sentinels
            count down from `vocabulary_size - 1`. Defaults to
            `tokenizer.vocabulary_size()`, else to the backbone's
            `vocabulary_size` (T5's own vocabulary has 32,100 pieces in a
            32,128-row embedding: pass 32100 there, or the tokenizer).
        num_sentinels: int. Number of sentinel ids at the top of the
            vocabulary; never masked, never scored by RTD.
        mask_token_id: int. Id written at masked positions. Defaults to
            the tokenizer's `<mask>` piece if it has one, else to
            `vocabulary_size`, the first spare embedding row (T5: 32100).
        eos_token_id: int. T5's `</s>` (1).
        pad_token_id: int. T5's `<pad>` (0).
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
        tokenizer: optional `keras_hub.models.T5Tokenizer`. Gives the
            defaults of `vocabulary_size` and `mask_token_id`; explicit
            values that contradict it (another size, a mask id on a real
            token) are an error. Saved with `save_to_preset`.

    Example:
    ```python
    backbone = keras_hub.models.T5Backbone(
        vocabulary_size=2000, num_layers=2, num_heads=2, hidden_dim=64,
        intermediate_dim=128, dropout=0.0, tie_embedding_weights=False,
        activation="gelu",
    )
    # keras-hub starts token embeddings at mean 1.0; from_preset does this.
    keras_spactor.models.initialize_embeddings_like_t5x(
        backbone, vocabulary_size=1999
    )
    model = keras_spactor.SpacTorT5(backbone, vocabulary_size=1999)
    model.compile(optimizer="adamw")
    model.fit(
        dataset, steps_per_epoch=100,
        callbacks=[keras_spactor.callbacks.TauScheduler(tau=50)],
    )
    ```
    """

    def __init__(
        self,
        backbone,
        vocabulary_size=None,
        num_sentinels=100,
        mask_token_id=None,
        eos_token_id=1,
        pad_token_id=0,
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
        **kwargs,
    ):
        super().__init__(**kwargs)
        self.backbone = backbone
        if tokenizer is not None:
            if vocabulary_size is None:
                vocabulary_size = tokenizer.vocabulary_size()
            if mask_token_id is None:
                mask_token_id = data_vocabulary.mask_token_id(tokenizer)
        self.vocabulary_size = int(vocabulary_size or backbone.vocabulary_size)
        self.num_sentinels = int(num_sentinels)
        if mask_token_id is None:
            mask_token_id = self.vocabulary_size
        self.mask_token_id = int(mask_token_id)
        self.eos_token_id = int(eos_token_id)
        self.pad_token_id = int(pad_token_id)
        self.generator_num_layers = generator_num_layers or max(
            1, backbone.num_layers // 4
        )
        self.generator_hidden_dim = generator_hidden_dim or backbone.hidden_dim
        self.generator_num_heads = generator_num_heads or backbone.num_heads
        self.generator_intermediate_dim = (
            generator_intermediate_dim or backbone.intermediate_dim
        )
        self.mlm_probability = float(mlm_probability)
        self.mask_replacement_rate = float(mask_replacement_rate)
        self.max_predictions = max_predictions
        self.sampling_temperature = float(sampling_temperature)
        self.mlm_loss_weight = float(mlm_loss_weight)
        self.rtd_loss_weight = float(rtd_loss_weight)
        self.rtd_positions = rtd_positions
        self.seed = seed
        self.tokenizer = tokenizer
        self._validate_config()

        activation = keras.activations.serialize(backbone.activation)
        if isinstance(activation, dict):
            activation = activation.get("config", "gelu")
        # Same width and heads as the backbone: same head geometry too
        # (T5 v1.1 small has 6 heads of 64 in a 512-wide model, not 512 // 6).
        same_heads = (
            self.generator_hidden_dim == backbone.hidden_dim
            and self.generator_num_heads == backbone.num_heads
        )
        self.generator = SpacTorGenerator(
            num_layers=self.generator_num_layers,
            num_heads=self.generator_num_heads,
            hidden_dim=self.generator_hidden_dim,
            key_value_dim=backbone.key_value_dim if same_heads else None,
            intermediate_dim=self.generator_intermediate_dim,
            embedding_dim=backbone.hidden_dim,
            activation=activation,
            use_gated_activation=backbone.use_gated_activation,
            dropout=backbone.dropout,
            layer_norm_epsilon=backbone.layer_norm_epsilon,
            dtype=backbone.dtype_policy,
            name="generator",
        )
        self.generator_head = GeneratorMaskedLMHead(
            vocabulary_size=backbone.vocabulary_size,
            embedding_dim=backbone.hidden_dim,
            dtype=backbone.dtype_policy,
            name="generator_head",
        )
        self.rtd_head = ReplacedTokenDetectionHead(
            hidden_dim=backbone.hidden_dim,
            dtype=backbone.dtype_policy,
            name="rtd_head",
        )
        # The masking/sampling stream is a weight of the model (not a
        # `keras.random.SeedGenerator`, whose state Keras does not save), so
        # a checkpoint resumes it exactly.
        # Keras' own generator draws the default seed (from Python's
        # `random`, which `keras.utils.set_random_seed` seeds) and knows the
        # backend's seed dtype; its first state is copied into the weight.
        drawn = keras.random.SeedGenerator(seed).state
        self.masking_seed_state = self.add_weight(
            name="masking_seed_state",
            shape=(2,),
            dtype=drawn.dtype,
            initializer=keras.initializers.Constant(
                ops.convert_to_numpy(drawn.value)
            ),
            trainable=False,
            aggregation="none",
        )
        self.generator.build((None, None, backbone.hidden_dim))
        self.generator_head.build((None, None, self.generator_hidden_dim))
        self.rtd_head.build((None, None, backbone.hidden_dim))
        self.built = True

        self.loss_tracker = keras.metrics.Mean(name="loss")
        self.sc_loss_tracker = keras.metrics.Mean(name="sc_loss")
        self.sc_accuracy_tracker = keras.metrics.Mean(name="sc_accuracy")
        self.mlm_loss_tracker = keras.metrics.Mean(name="mlm_loss")
        self.generator_accuracy_tracker = keras.metrics.Mean(
            name="generator_accuracy"
        )
        self.rtd_loss_tracker = keras.metrics.Mean(name="rtd_loss")
        self.rtd_accuracy_tracker = keras.metrics.Mean(name="rtd_accuracy")

        self._tau = None
        self.tau = tau
        self._train_variants = {}
        self._host_step = None
        self._stage2_confirmed = False

    # ------------------------------------------------------------------
    # Configuration and validation.

    def _validate_config(self):
        rows = self.backbone.vocabulary_size
        if self.vocabulary_size > rows:
            raise ValueError(
                f"The tokenizer vocabulary ({self.vocabulary_size} pieces) is "
                f"larger than the model's embedding ({rows} rows)."
            )
        if not 0 < self.num_sentinels < self.vocabulary_size:
            raise ValueError(
                f"num_sentinels={self.num_sentinels} must be in "
                f"(0, {self.vocabulary_size})."
            )
        first_sentinel = self.vocabulary_size - self.num_sentinels
        mask = self.mask_token_id
        if not 0 <= mask < rows:
            raise ValueError(
                f"mask_token_id={mask} is outside the model's embedding "
                f"(0..{rows - 1}). With a vocabulary that fills the "
                "embedding, give the id of a dedicated '<mask>' piece."
            )
        if mask in (self.pad_token_id, self.eos_token_id):
            raise ValueError(
                f"mask_token_id={mask} collides with the pad or EOS token."
            )
        if first_sentinel <= mask < self.vocabulary_size:
            raise ValueError(
                f"mask_token_id={mask} collides with a sentinel (sentinels "
                f"are {first_sentinel}..{self.vocabulary_size - 1})."
            )
        if not 0.0 < self.mlm_probability < 1.0:
            raise ValueError(
                f"mlm_probability={self.mlm_probability} must be in (0, 1)."
            )
        if not 0.0 < self.mask_replacement_rate <= 1.0:
            raise ValueError(
                f"mask_replacement_rate={self.mask_replacement_rate} must be "
                "in (0, 1]."
            )
        if self.rtd_positions not in ("eligible", "all"):
            raise ValueError(
                f"rtd_positions={self.rtd_positions!r} must be 'eligible' "
                "or 'all'."
            )
        if self.sampling_temperature <= 0:
            raise ValueError("sampling_temperature must be positive.")
        if self.tokenizer is not None:
            self._validate_tokenizer(self.tokenizer)

    def _validate_tokenizer(self, tokenizer):
        size = tokenizer.vocabulary_size()
        if size != self.vocabulary_size:
            raise ValueError(
                f"Tokenizer/model vocabulary mismatch: the tokenizer has "
                f"{size} pieces but the model was configured for "
                f"vocabulary_size={self.vocabulary_size}. Leave "
                "vocabulary_size unset to take the tokenizer's."
            )
        if self.mask_token_id < size:
            piece = tokenizer.id_to_token(self.mask_token_id)
            if piece != "<mask>":
                raise ValueError(
                    f"mask_token_id={self.mask_token_id} is the real token "
                    f"{piece!r} of the tokenizer, not a '<mask>' piece."
                )

    @property
    def tau(self):
        """First stage-2 optimizer step (`None`: hybrid throughout)."""
        return self._tau

    @tau.setter
    def tau(self, value):
        if value is not None:
            if isinstance(value, bool) or int(value) != value:
                raise ValueError(f"tau must be an int step, got {value!r}.")
            if value < 0:
                raise ValueError(f"tau must be >= 0, got {value}.")
            value = int(value)
        self._tau = value
        # The in-graph switch bakes `tau` in: re-trace it, re-read the step.
        if hasattr(self, "_train_variants"):
            self._train_variants.pop("mixed", None)
            self._host_step = None
            self._stage2_confirmed = False

    @property
    def auxiliary_layers(self):
        """Layers that only stage 1 runs: generator and heads."""
        return [self.generator, self.generator_head, self.rtd_head]

    @property
    def metrics(self):
        return [
            self.loss_tracker,
            self.sc_loss_tracker,
            self.sc_accuracy_tracker,
            self.mlm_loss_tracker,
            self.generator_accuracy_tracker,
            self.rtd_loss_tracker,
            self.rtd_accuracy_tracker,
        ]

    # ------------------------------------------------------------------
    # Forward computation (backend neutral).

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

    def ordinary_token_ids(self):
        """Bool `[embedding rows]`: the ids the generator may predict."""
        return generator_masking.ordinary_token_ids(
            self.backbone.vocabulary_size,
            self.vocabulary_size - self.num_sentinels,
            self.eos_token_id,
            self.pad_token_id,
            self.mask_token_id,
        )

    def replaceable_mask(self, token_ids, padding_mask, ordinary=None):
        """Bool mask of positions that may be masked (`ordinary`: the
        table of `ordinary_token_ids`, if already built)."""
        if ordinary is None:
            ordinary = self.ordinary_token_ids()
        return generator_masking.replaceable_positions(
            token_ids, padding_mask, ordinary
        )

    def _num_predictions(self, length):
        if self.max_predictions:
            return int(min(self.max_predictions, length))
        return max(1, min(length, math.ceil(self.mlm_probability * length)))

    def _next_seed(self):
        """The seed of the next random draw (advances the stored stream).

        Under tf.distribute the replica id is folded in: mirrored replicas
        share the state, and would otherwise draw the same masks and samples.
        """
        seed = self.masking_seed_state.value * 1  # a copy, not the variable
        self.masking_seed_state.assign(
            seed + ops.convert_to_tensor([0, 1], dtype=seed.dtype)
        )
        if keras.backend.backend() == "tensorflow":
            import tensorflow as tf

            replica = tf.distribute.get_replica_context()
            if replica is not None and replica.num_replicas_in_sync > 1:
                offset = tf.cast(replica.replica_id_in_sync_group, seed.dtype)
                seed = seed + tf.stack([offset, tf.zeros_like(offset)])
        return _DrawnSeed(seed)

    def generator_forward(self, token_ids, padding_mask, training=False):
        """Mask, run the generator and sample replacements.

        Returns a dict with `replaced_token_ids`, `is_replaced` (ELECTRA's
        label: differs from the original), `eligible`, `positions`,
        `weights`, `original_token_ids` and `logits` (at the masked slots).
        """
        ordinary = self.ordinary_token_ids()
        eligible = self.replaceable_mask(token_ids, padding_mask, ordinary)
        positions, weights = generator_masking.select_masked_positions(
            eligible,
            self.mlm_probability,
            self._num_predictions(token_ids.shape[1]),
            seed=self._next_seed(),
        )
        mask_weights = weights
        if self.mask_replacement_rate < 1.0:
            shown_as_mask = keras.random.uniform(
                ops.shape(weights), seed=self._next_seed()
            )
            shown_as_mask = shown_as_mask < self.mask_replacement_rate
            mask_weights = weights * ops.cast(shown_as_mask, weights.dtype)
        masked_ids, _ = generator_masking.replace_tokens(
            token_ids, positions, mask_weights, self.mask_token_id
        )
        embeddings = self.backbone.token_embedding(masked_ids)
        hidden = self.generator(embeddings, padding_mask, training=training)
        hidden = ops.take_along_axis(hidden, positions[:, :, None], axis=1)
        logits = self.generator_head(
            hidden, self.backbone.token_embedding.embeddings
        )
        # Only ordinary pieces may be predicted or sampled (a sampled
        # sentinel would break the span-corruption alignment).
        logits = ops.where(ordinary, ops.cast(logits, "float32"), -1e9)
        # The sample carries no gradient (ELECTRA): G learns from L_MLM only.
        sample_logits = ops.stop_gradient(logits) / self.sampling_temperature
        batch, slots = ops.shape(positions)[0], ops.shape(positions)[1]
        samples = keras.random.categorical(
            ops.reshape(sample_logits, (-1, ops.shape(logits)[-1])),
            1,
            seed=self._next_seed(),
            dtype="int32",
        )
        samples = ops.reshape(samples, (batch, slots))
        replaced, _ = generator_masking.replace_tokens(
            token_ids, positions, weights, samples
        )
        return {
            "replaced_token_ids": replaced,
            "is_replaced": ops.not_equal(replaced, token_ids),
            "eligible": eligible,
            "positions": positions,
            "weights": weights,
            "original_token_ids": ops.take_along_axis(
                token_ids, positions, axis=1
            ),
            "logits": logits,
        }

    def compute_losses(
        self, x, y, sample_weight=None, hybrid=True, training=True
    ):
        """All SpacTor losses for one batch, backend neutral.

        Args:
            x: dict of the four T5 inputs.
            y: int tensor of span-corruption targets.
            sample_weight: target weights; defaults to `y != pad`.
            hybrid: bool (Python). Stage 1 if True, plain SC if False.
            training: bool.

        Returns:
            `(loss, stats)` with `stats` a dict of float32 scalars (the
            stage-1-only entries are zeros when `hybrid` is False).
        """
        x = {k: ops.convert_to_tensor(v) for k, v in x.items()}
        token_ids = ops.cast(x["encoder_token_ids"], "int32")
        padding_mask = x["encoder_padding_mask"]
        y = ops.cast(y, "int32")
        if sample_weight is None:
            sample_weight = ops.not_equal(y, self.pad_token_id)
        zero = ops.zeros((), "float32")
        stats = {name: zero for name in HYBRID_ONLY_METRICS}
        encoder_ids = token_ids
        if hybrid:
            generated = self.generator_forward(
                token_ids, padding_mask, training=training
            )
            encoder_ids = generated["replaced_token_ids"]
            targets = generated["original_token_ids"]
            mlm_loss = _weighted_mean(
                ops.sparse_categorical_crossentropy(
                    targets, generated["logits"], from_logits=True
                ),
                generated["weights"],
            )
            stats["mlm_loss"] = mlm_loss
            stats["generator_accuracy"] = _weighted_mean(
                ops.equal(
                    ops.cast(ops.argmax(generated["logits"], -1), "int32"),
                    targets,
                ),
                generated["weights"],
            )
        outputs = self.backbone(
            {
                "encoder_token_ids": encoder_ids,
                "encoder_padding_mask": padding_mask,
                "decoder_token_ids": x["decoder_token_ids"],
                "decoder_padding_mask": x["decoder_padding_mask"],
            },
            training=training,
        )
        logits = ops.cast(
            self.lm_logits(outputs["decoder_sequence_output"]), "float32"
        )
        sc_loss = _weighted_mean(
            ops.sparse_categorical_crossentropy(y, logits, from_logits=True),
            sample_weight,
        )
        stats["sc_loss"] = sc_loss
        stats["sc_accuracy"] = _weighted_mean(
            ops.equal(ops.cast(ops.argmax(logits, -1), "int32"), y),
            sample_weight,
        )
        loss = sc_loss
        if hybrid:
            rtd_logits = ops.cast(
                self.rtd_head(outputs["encoder_sequence_output"]), "float32"
            )
            labels = ops.cast(generated["is_replaced"], "float32")
            rtd_weights = generated["eligible"]
            if self.rtd_positions == "all":
                rtd_weights = padding_mask
            stats["rtd_loss"] = _weighted_mean(
                ops.binary_crossentropy(labels, rtd_logits, from_logits=True),
                rtd_weights,
            )
            stats["rtd_accuracy"] = _weighted_mean(
                ops.equal(ops.cast(rtd_logits > 0, "float32"), labels),
                rtd_weights,
            )
            loss = (
                sc_loss
                + self.mlm_loss_weight * stats["mlm_loss"]
                + self.rtd_loss_weight * stats["rtd_loss"]
            )
        stats["loss"] = loss
        return loss, stats

    def update_train_metrics(self, stats, hybrid):
        """Update the trackers; stage-1-only ones only count stage-1 steps."""
        hybrid_weight = ops.cast(hybrid, "float32")
        for metric in self.metrics:
            weight = None
            if metric.name in HYBRID_ONLY_METRICS:
                weight = hybrid_weight
            metric.update_state(stats[metric.name], sample_weight=weight)
        logs = {metric.name: metric.result() for metric in self.metrics}
        logs["stage"] = 2.0 - hybrid_weight
        return logs

    def update_test_metrics(self, stats):
        trackers = [
            self.loss_tracker,
            self.sc_loss_tracker,
            self.sc_accuracy_tracker,
        ]
        for metric in trackers:
            metric.update_state(stats[metric.name])
        return {metric.name: metric.result() for metric in trackers}

    # ------------------------------------------------------------------
    # Training loop integration.

    def check_batch(self, x, y=None):
        """Clear errors for malformed batches, before anything compiles."""
        batch_checks.check_structure(x, y)

    def fit(self, x=None, y=None, *args, **kwargs):
        batch_checks.check_first_batch(self, x, y)
        return super().fit(x, y, *args, **kwargs)

    def _maybe_symbolic_build(self, iterator=None, data_batch=None):
        # TF backend under a tf.distribute strategy only. Keras reduces the
        # first distributed batch with MEAN to get its shapes, which fails
        # on our bool padding masks (AddN has no bool kernel); the first
        # replica's values have the same (per-replica) shapes.
        if iterator is not None and self._distribute_strategy is not None:
            strategy = self._distribute_strategy
            for _, _, it in iterator:
                data_batch = keras.tree.map_structure(
                    lambda v: strategy.experimental_local_results(v)[0],
                    next(it),
                )
                break
            iterator = None
        return super()._maybe_symbolic_build(iterator, data_batch)

    def train_step(self, *args):
        return train_steps.train_step(self, *args, mode="hybrid")

    def test_step(self, *args):
        return train_steps.test_step(self, *args)

    def make_train_function(self, force=False):
        if self.train_function is not None and not force:
            return self.train_function
        self._train_variants = {}
        self._host_step = None
        self._stage2_confirmed = False
        self.train_function = self._dispatch_train_function
        return self.train_function

    def _variant(self, mode, args=()):
        """The compiled train function for `hybrid`, `sc` or `mixed`."""
        if mode not in self._train_variants:
            with train_steps.state_attached(self, args):
                self._build_variant(mode)
        return self._train_variants[mode]

    def _build_variant(self, mode):
        # A distinct step function per stage: jit caches traces by
        # function, so the variants must not share `self.train_step`.
        def step(*args):
            return train_steps.train_step(self, *args, mode=mode)

        self.train_step = step
        try:
            super().make_train_function(force=True)
        finally:
            del self.train_step
        self._train_variants[mode] = self.train_function
        self.train_function = self._dispatch_train_function

    def _trainable_indices(self, hybrid):
        return train_steps.trainable_indices(self, hybrid)

    def _next_mode(self, args):
        tau = self._tau
        if tau is None:
            return "hybrid"
        if self._stage2_confirmed:
            return "sc"
        per_call = self.steps_per_execution
        # The host count can only run ahead of the real step (a short last
        # execution), so "hybrid" is safe without a device read; near tau,
        # read the real step once per call.
        if self._host_step is None or self._host_step + per_call > tau:
            self._host_step = train_steps.read_iterations(self, args)
        if self._host_step >= tau:
            self._stage2_confirmed = True
            return "sc"
        if self._host_step + per_call <= tau:
            return "hybrid"
        return "mixed"

    def _dispatch_train_function(self, *args):
        mode = self._next_mode(args)
        function = self._variant(mode, args)
        outputs = function(*args)
        if self._host_step is not None:
            self._host_step += self.steps_per_execution
        return outputs

    def current_stage(self):
        """1 (hybrid) or 2 (plain SC) for the next optimizer step."""
        if self._tau is None:
            return 1
        step = int(ops.convert_to_numpy(self.optimizer.iterations))
        return 1 if step < self._tau else 2

    # ------------------------------------------------------------------
    # Presets and serialization.

    @classmethod
    def from_preset(
        cls,
        preset,
        load_weights=True,
        *,
        vocabulary_size=None,
        tokenizer=None,
        dtype=None,
        **kwargs,
    ):
        """Build a SpacTorT5 from a preset, as keras-hub's tasks do.

        Args:
            preset: one of `SpacTorT5.presets` (a T5 v1.1 shape, always
                randomly initialised, for pre-training), a local preset
                directory written by `save_to_preset` (resumes generator
                and heads too), or a keras-hub T5 preset such as
                `"t5_1.1_base"` (downloads; to continue pre-training).
            load_weights: bool. If `False`, a directory or keras-hub preset
                gives its architecture with random weights (token
                embeddings drawn as T5X does, like the built-in presets).
                Built-in presets are random either way.
            vocabulary_size: int. Tokenizer vocabulary size (default: the
                tokenizer's, else the preset's, else T5's 32,100).
            tokenizer: a `keras_hub.models.T5Tokenizer` (default: the
                preset's, if any); its `<mask>` piece, if any, becomes
                the mask id.
            dtype: dtype policy of the backbone.
            **kwargs: other `SpacTorT5` arguments (e.g. `tau`, `seed`);
                they override a local preset's stored ones.

        Example:
        ```python
        model = SpacTorT5.from_preset("spactor_t5_tiny", tau=1000)
        # The architecture of a saved preset, from scratch.
        fresh = SpacTorT5.from_preset("./my_preset", load_weights=False)
        ```
        """
        return preset_io.load_preset(
            cls,
            preset,
            load_weights=load_weights,
            vocabulary_size=vocabulary_size,
            tokenizer=tokenizer,
            dtype=dtype,
            **kwargs,
        )

    # keras-hub's layout: `{name: {"metadata": {"description", "params"},
    # "config"}}`, `config` being the `T5Backbone` arguments at T5's
    # vocabulary and `params` the backbone's (generator and heads aside).
    presets = preset_io.spactor_presets.keras_hub_presets()

    def save_to_preset(self, preset_dir):
        """Write a keras-hub T5 preset plus what SpacTor needs to resume.

        `keras_hub.models.T5Backbone.from_preset(preset_dir)` and
        `keras_hub.models.T5Seq2SeqLM.from_preset(preset_dir)` load the
        result as they are; `SpacTorT5.from_preset(preset_dir)` also
        restores the SpacTor settings (`spactor.json`) and the generator
        and heads (`spactor_auxiliary.weights.h5`, a Keras weights file).
        """
        preset_io.save_preset(self, preset_dir)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "backbone": keras.layers.serialize(self.backbone),
                "vocabulary_size": self.vocabulary_size,
                "num_sentinels": self.num_sentinels,
                "mask_token_id": self.mask_token_id,
                "eos_token_id": self.eos_token_id,
                "pad_token_id": self.pad_token_id,
                "generator_num_layers": self.generator_num_layers,
                "generator_hidden_dim": self.generator_hidden_dim,
                "generator_num_heads": self.generator_num_heads,
                "generator_intermediate_dim": self.generator_intermediate_dim,
                "mlm_probability": self.mlm_probability,
                "mask_replacement_rate": self.mask_replacement_rate,
                "max_predictions": self.max_predictions,
                "sampling_temperature": self.sampling_temperature,
                "mlm_loss_weight": self.mlm_loss_weight,
                "rtd_loss_weight": self.rtd_loss_weight,
                "rtd_positions": self.rtd_positions,
                "tau": self._tau,
                "seed": self.seed,
            }
        )
        return config

    @classmethod
    def from_config(cls, config):
        config = dict(config)
        config["backbone"] = keras.layers.deserialize(config["backbone"])
        return cls(**config)

    def spactor_config(self):
        """The SpacTor-only part of the config (no backbone, no base keys)."""
        config = self.get_config()
        for key in ("backbone", "name", "trainable", "dtype"):
            config.pop(key, None)
        return config
