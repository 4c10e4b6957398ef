"""Fine-tuning a pre-trained preset on a labelled task with keras-hub, and
its rank-classification accuracy.

keras-hub's `T5Seq2SeqLM` is fine-tuned text to text (the encoder reads the
sentence, the decoder learns to write the label), then evaluated by rank
classification (`rank_classification.py`). `finetune` runs the pieces in
order: the checks and the examples (`finetuning_inputs.py`, before any
model is loaded), `load_for_finetuning`, `set_sequence_lengths`,
`train_on_examples`, `rank_metrics` (and `generation_metrics`), and the
outputs.
"""

import json

import numpy as np

from keras_spactor import file_paths
from keras_spactor.evaluation.classification_metrics import exact_match_accuracy
from keras_spactor.evaluation.classification_metrics import label_counts
from keras_spactor.evaluation.classification_metrics import majority_accuracy
from keras_spactor.evaluation.classification_metrics import majority_label
from keras_spactor.evaluation.classification_metrics import wilson_interval
from keras_spactor.evaluation.finetuning_inputs import DEFAULT_BATCH_SIZE
from keras_spactor.evaluation.finetuning_inputs import DEFAULT_DROPOUT
from keras_spactor.evaluation.finetuning_inputs import DEFAULT_LEARNING_RATE
from keras_spactor.evaluation.finetuning_inputs import check_finetuning_settings
from keras_spactor.evaluation.finetuning_inputs import finetuning_steps
from keras_spactor.evaluation.finetuning_inputs import read_labelled_task
from keras_spactor.evaluation.label_generation import generate_labels
from keras_spactor.evaluation.rank_classification import DEFAULT_SCORING
from keras_spactor.evaluation.rank_classification import SCORINGS
from keras_spactor.evaluation.rank_classification import label_log_likelihoods
from keras_spactor.evaluation.rank_classification import label_scores
from keras_spactor.evaluation.rank_classification import label_token_counts

# Training examples re-scored after fine-tuning (`train_accuracy`).
TRAIN_ACCURACY_EXAMPLES = 500


def load_for_finetuning(
    preset, dropout=DEFAULT_DROPOUT, decoder="pretrained", seed=None
):
    """`T5Seq2SeqLM.from_preset(preset)` with the backbone's dropout set
    (presets saved for pre-training have none) and its position bias
    trained without a scatter (`use_one_hot_position_bias`).

    Args:
        preset: a keras-hub T5 preset.
        dropout: float. The backbone's dropout.
        decoder: `"pretrained"`, or `"fresh"` to draw the decoder and
            output embedding anew (`reinitialize_decoder`).
        seed: optional int. Seeds Keras (`keras.utils.set_random_seed`)
            before loading: a fresh decoder's draws and the dropout
            follow it. It cannot come later: on TensorFlow, seeding after
            the tokenizer is made deletes its SentencePiece resource.

    Example:
    ```python
    lm = load_for_finetuning("runs/demo/preset", dropout=0.1)
    ```
    """
    import keras
    import keras_hub

    from keras_spactor.layers import use_one_hot_position_bias
    from keras_spactor.models.t5x_initialization import reinitialize_decoder

    if seed is not None:
        keras.utils.set_random_seed(seed)
    backbone = keras_hub.models.T5Backbone.from_preset(preset, dropout=dropout)
    model = keras_hub.models.T5Seq2SeqLM.from_preset(preset, backbone=backbone)
    use_one_hot_position_bias(model)
    if decoder == "fresh":
        reinitialize_decoder(
            model.backbone,
            vocabulary_size=model.preprocessor.tokenizer.vocabulary_size(),
        )
    return model


def warmup_then_constant(learning_rate, warmup_steps):
    """Linear warmup from 0 to `learning_rate`, then constant (as T5
    fine-tunes)."""
    import keras

    if not warmup_steps:
        return learning_rate
    # A cosine decay to `alpha * warmup_target` with alpha=1 is constant.
    return keras.optimizers.schedules.CosineDecay(
        0.0,
        decay_steps=1,
        alpha=1.0,
        warmup_target=learning_rate,
        warmup_steps=warmup_steps,
    )


def _loss_curve_callback(steps, windows=10):
    """A callback collecting the mean training loss of (about) `windows`
    consecutive stretches of the run into its `.curve` list."""
    import keras

    bounds = [len(a) for a in np.array_split(np.arange(steps), windows)]
    ends = set(np.cumsum([b for b in bounds if b]).tolist())

    class LossCurve(keras.callbacks.Callback):
        def on_train_begin(self, logs=None):
            self.curve, self._last = [], (0, 0.0)

        def on_train_batch_end(self, batch, logs=None):
            # Keras logs the running mean since the epoch began (batches
            # are all full, so equally weighted); a stretch's mean is the
            # difference of two running sums.
            done = batch + 1
            if done in ends:
                total = float(logs["loss"]) * done
                last_done, last_total = self._last
                self.curve.append((total - last_total) / (done - last_done))
                self._last = (done, total)

    return LossCurve()


def training_arrays(model, texts, labels, num_examples, seed):
    """`num_examples` preprocessed training examples, in training order.

    Shuffled passes over the training set, back to back (what
    shuffle-repeat-batch gives), tokenized once by `model.preprocessor`
    into numpy arrays, so fine-tuning needs no `tf.data`.

    Args:
        model: a `keras_hub.models.T5Seq2SeqLM` with its preprocessor.
        texts, labels: lists of str, the training set.
        num_examples: int. Steps times batch size.
        seed: int. Seeds the order.

    Returns:
        `(x, y, sample_weight)` of numpy arrays with `num_examples` rows.

    Example:
    ```python
    x, y, w = training_arrays(lm, ["a gem", "a dud"], ["pos", "neg"], 8, 0)
    ```
    """
    x, y, sample_weight = model.preprocessor(
        {"encoder_text": list(texts), "decoder_text": list(labels)}
    )
    rng = np.random.default_rng(seed)
    passes = -(-num_examples // len(texts))
    order = np.concatenate([rng.permutation(len(texts)) for _ in range(passes)])
    order = order[:num_examples]
    x = {name: np.asarray(value)[order] for name, value in x.items()}
    return x, np.asarray(y)[order], np.asarray(sample_weight)[order]


def finetune(
    preset,
    train_path,
    validation_path,
    output_dir,
    steps=None,
    epochs=None,
    warmup_steps=None,
    batch_size=DEFAULT_BATCH_SIZE,
    learning_rate=DEFAULT_LEARNING_RATE,
    dropout=DEFAULT_DROPOUT,
    scoring=DEFAULT_SCORING,
    decoder="pretrained",
    generate=False,
    encoder_length=64,
    decoder_length=None,
    max_train_examples=None,
    max_validation_examples=None,
    seed=0,
    save_preset=True,
):
    """Fine-tune `preset` on a labelled task with `T5Seq2SeqLM` and report
    rank-classification accuracy on its evaluation examples.

    Training is T5's text-to-text recipe: a fixed step budget, AdamW with a
    linear warmup then a constant learning rate, dropout 0.1. Evaluation
    scores every training label by its log-likelihood (tokens + EOS) under
    the fine-tuned model and predicts the best. The defaults, and the
    choice of the summed scoring over the per-token mean, were measured on
    SST-2 and TREC (BENCHMARKS.md); `metrics["accuracy_by_scoring"]`
    reports both scorings. Settings and both sources are checked, and the
    examples read, before any model is loaded.

    Args:
        preset: a keras-hub T5 preset (e.g. `save_to_preset`'s directory).
        train_path: str. The training examples: a `label<TAB>text` TSV,
            `builtin:<name>[:<split>]` (shipped, e.g.
            `builtin:sentiment-tiny`) or `tfds:<name>[:<split>]` (e.g.
            `tfds:glue/sst2`, written to `output_dir/data/train.tsv`);
            split `train` unless one is named.
        validation_path: str. The evaluation examples, as `train_path`
            (split `validation`); their labels must all occur in training.
        output_dir: str. Receives `preset/` (fine-tuned) and
            `metrics.json`; a folder or a `gs://` URL.
        steps: int. Optimizer steps (wins over `epochs`); default
            `DEFAULT_STEPS`.
        epochs: int. Passes over the training set, if `steps` is unset.
        warmup_steps: int. Steps of linear learning-rate warmup; default
            a tenth of the steps.
        batch_size: int. Examples per step (and texts per scoring batch).
        learning_rate: float. AdamW's rate after warmup.
        dropout: float. The backbone's dropout while fine-tuning.
        scoring: `"summed"` (the label's log-likelihood) or `"mean"` (per
            token).
        decoder: `"pretrained"` (T5's protocol: fine-tune the whole model)
            or `"fresh"`: keep the pre-trained encoder and input embedding,
            draw the decoder and output embedding anew (needs untied
            embeddings), which measures what the encoder learnt.
        generate: bool. Also report greedy exact-match accuracy (slow).
        encoder_length: int. Encoder tokens (longer texts are cut).
        decoder_length: int. Decoder tokens; default and minimum: the
            longest label + EOS.
        max_train_examples, max_validation_examples: optional slices.
        seed: int.
        save_preset: bool. Whether to write the fine-tuned `preset/`
            (experiments that only need the metrics can skip it).

    Returns:
        The metrics dict written to `metrics.json`: `accuracy` (the rank
        classification accuracy, also `rank_accuracy`), its 95% Wilson
        `accuracy_interval`, `majority_accuracy` (predicting the evaluation
        file's most frequent label), `train_accuracy` and
        `train_majority_accuracy` (the same scoring on the first
        `TRAIN_ACCURACY_EXAMPLES` training examples: near the majority
        rate, fine-tuning did not fit the task), `prediction_counts`,
        `accuracy_by_scoring` and, with `generate`, `exact_match_accuracy`.

    Raises:
        FinetuningInputError: a setting, source or labelled file that
            cannot be used (raised before any model is loaded).

    Example:
    ```python
    finetune("runs/demo/preset", "sst2.train.tsv", "sst2.validation.tsv",
             "runs/sst2")
    # The shipped sentences (offline), or a TFDS task:
    finetune("runs/demo/preset", "builtin:sentiment-tiny",
             "builtin:sentiment-tiny", "runs/sentiment")
    finetune("runs/demo/preset", "tfds:glue/sst2", "tfds:glue/sst2",
             "runs/glue_sst2")
    ```
    """
    check_finetuning_settings(preset, learning_rate, dropout, scoring, decoder)
    train, evaluation = read_labelled_task(
        train_path,
        validation_path,
        output_dir,
        max_train_examples,
        max_validation_examples,
    )
    steps, warmup_steps = finetuning_steps(
        steps, epochs, warmup_steps, len(train[0]), batch_size
    )
    candidates = sorted(set(train[0]))

    import keras

    model = load_for_finetuning(preset, dropout, decoder, seed)
    decoder_length = set_sequence_lengths(
        model, candidates, encoder_length, decoder_length
    )
    curve = train_on_examples(
        model, train, steps, batch_size, learning_rate, warmup_steps, seed
    )
    metrics = rank_metrics(
        model, train, evaluation, candidates, scoring, batch_size
    )
    metrics.update(
        train_examples=len(train[0]),
        steps=steps,
        warmup_steps=warmup_steps,
        learning_rate=learning_rate,
        batch_size=batch_size,
        dropout=dropout,
        decoder=decoder,
        train_loss_curve=curve,
        backend=keras.backend.backend(),
        preset=preset,
    )
    if generate:
        metrics.update(generation_metrics(model, evaluation, decoder_length))
    _write_results(model, metrics, output_dir, save_preset)
    return metrics


def set_sequence_lengths(model, candidates, encoder_length, decoder_length):
    """Set the preprocessor's encoder and decoder lengths; returns the
    decoder length (default and minimum: the longest label + EOS).

    Args:
        model: a `keras_hub.models.T5Seq2SeqLM` with its preprocessor.
        candidates: list of str. The labels the decoder writes.
        encoder_length: int. Encoder tokens (longer texts are cut).
        decoder_length: optional int. Decoder tokens.

    Example:
    ```python
    set_sequence_lengths(lm, ["negative", "positive"], 64, None)  # 5
    ```
    """
    longest = int(label_token_counts(model, candidates).max())
    if decoder_length is not None and decoder_length < longest:
        raise ValueError(
            f"decoder_length={decoder_length} cannot hold the longest label "
            f"({longest} tokens with EOS)."
        )
    decoder_length = decoder_length or longest
    model.preprocessor.encoder_sequence_length = encoder_length
    model.preprocessor.decoder_sequence_length = decoder_length
    return decoder_length


def compile_for_finetuning(model, learning_rate, warmup_steps):
    """T5's fine-tuning optimizer on `model`: AdamW, a linear warmup to
    `learning_rate` then constant, the token cross-entropy, and greedy
    generation (keras-hub's default samples at random, top-k)."""
    import keras

    model.compile(
        optimizer=keras.optimizers.AdamW(
            warmup_then_constant(learning_rate, warmup_steps)
        ),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["sparse_categorical_accuracy"],
        sampler="greedy",
    )


def train_on_examples(
    model, train, steps, batch_size, learning_rate, warmup_steps, seed=0
):
    """Fine-tune `model` for `steps` batches of shuffled training examples
    (compiled by `compile_for_finetuning`); returns the training loss curve
    (the mean loss of ten stretches of the run).

    Args:
        model: a `keras_hub.models.T5Seq2SeqLM` with its preprocessor.
        train: `(labels, texts)`, two lists of str.
        steps: int. Optimizer steps.
        batch_size: int. Examples per step.
        learning_rate: float. AdamW's rate after warmup.
        warmup_steps: int. Steps of linear learning-rate warmup.
        seed: int. Seeds the order of the examples.

    Example:
    ```python
    curve = train_on_examples(lm, (["pos", "neg"], ["a gem", "a dud"]),
                              steps=4, batch_size=2, learning_rate=3e-4,
                              warmup_steps=0)
    ```
    """
    import keras

    compile_for_finetuning(model, learning_rate, warmup_steps)
    labels, texts = train
    x, y, sample_weight = training_arrays(
        model, texts, labels, steps * batch_size, seed
    )
    curve = _loss_curve_callback(steps)
    # keras-hub's `fit` would run the preprocessor again on these arrays.
    keras.Model.fit(
        model,
        x,
        y,
        sample_weight=sample_weight,
        batch_size=batch_size,
        epochs=1,
        shuffle=False,  # the arrays are in the order to train on
        callbacks=[curve],
        verbose=2,
    )
    return curve.curve


def generation_metrics(model, evaluation, decoder_length):
    """Greedy generation's exact-match accuracy on the evaluation
    examples, and a sample of what it wrote.

    Args:
        model: a `keras_hub.models.T5Seq2SeqLM`, compiled with a greedy
            sampler.
        evaluation: `(labels, texts)`, two lists of str.
        decoder_length: int. Tokens generated at most.

    Example:
    ```python
    generation_metrics(lm, (["pos"], ["a gem"]), 5)
    ```
    """
    labels, texts = evaluation
    generated = generate_labels(model, texts, decoder_length)
    return {
        "exact_match_accuracy": exact_match_accuracy(generated, labels),
        "generated_sample": generated[:8],
    }


def rank_metrics(
    model, train, evaluation, candidates, scoring=DEFAULT_SCORING, batch_size=16
):
    """Rank-classification metrics of a fine-tuned model on a task.

    Did fine-tuning fit the task at all? A model left at the label prior
    scores about the majority rate on its own training examples too, and
    its evaluation accuracy is then noise around the majority rate; so the
    first `TRAIN_ACCURACY_EXAMPLES` training examples are scored too, in
    the same pass (one compiled scorer).

    Args:
        model: a `keras_hub.models.T5Seq2SeqLM` with its preprocessor.
        train, evaluation: `(labels, texts)` pairs of lists of str.
        candidates: list of str. The labels to rank.
        scoring: `"summed"` or `"mean"`; see `label_scores`.
        batch_size: int. Texts per forward pass.

    Returns:
        The metrics `finetune` reports of its evaluation (see there).

    Example:
    ```python
    rank_metrics(lm, (labels, texts), (eval_labels, eval_texts),
                 sorted(set(labels)))
    ```
    """
    (train_labels, train_texts), (eval_labels, eval_texts) = train, evaluation
    fit_labels = train_labels[:TRAIN_ACCURACY_EXAMPLES]
    fit_texts = train_texts[: len(fit_labels)]
    scored = label_log_likelihoods(
        model, eval_texts + fit_texts, candidates, batch_size
    )
    log_likelihoods, fit_log_likelihoods = np.split(scored, [len(eval_texts)])
    token_counts = label_token_counts(model, candidates)

    def predict(log_likelihoods, name):
        best = np.argmax(label_scores(log_likelihoods, token_counts, name), 1)
        return [candidates[i] for i in best]

    accuracy_by_scoring = {
        name: exact_match_accuracy(predict(log_likelihoods, name), eval_labels)
        for name in SCORINGS
    }
    predictions = predict(log_likelihoods, scoring)
    fit_predictions = predict(fit_log_likelihoods, scoring)
    hits = sum(p == t for p, t in zip(predictions, eval_labels))
    n = len(eval_labels)
    return {
        "accuracy": hits / n,
        "rank_accuracy": hits / n,
        "accuracy_interval": list(wilson_interval(hits, n)),
        "scoring": scoring,
        "accuracy_by_scoring": accuracy_by_scoring,
        "evaluation_examples": n,
        "majority_accuracy": majority_accuracy(eval_labels),
        "evaluation_majority_label": majority_label(eval_labels),
        "train_majority_label": majority_label(train_labels),
        "train_accuracy": exact_match_accuracy(fit_predictions, fit_labels),
        "train_majority_accuracy": majority_accuracy(fit_labels),
        "prediction_counts": label_counts(predictions, candidates),
        "evaluation_label_counts": label_counts(eval_labels, candidates),
        "labels": candidates,
        "label_tokens": token_counts.tolist(),
        "predictions_sample": predictions[:8],
    }


def _write_results(model, metrics, output_dir, save_preset):
    file_paths.makedirs(output_dir)
    if save_preset:
        # keras-hub writes with `os`: a `gs://` preset goes through a
        # local folder.
        file_paths.write_through_local_folder(
            file_paths.join(output_dir, "preset"), model.save_to_preset
        )
    metrics_file = file_paths.join(output_dir, "metrics.json")
    with file_paths.open_file(metrics_file, "w") as f:
        f.write(json.dumps(metrics, indent=2))
