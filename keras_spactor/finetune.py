"""Text-to-text fine-tuning of a pre-trained preset with keras-hub.

This is how the project checks downstream quality: the encoder reads the
sentence, the decoder generates the label's words, and accuracy is the exact
match of the generated text with the label.
"""

import json
import os

import numpy as np


def read_labelled_tsv(path, max_examples=None):
    """Read `label<TAB>text` lines (a `label<TAB>...` header is skipped).

    Args:
        path: str. The TSV file.
        max_examples: int. Keep only the first examples.

    Returns:
        `(labels, texts)`, two lists of str.

    Raises:
        FileNotFoundError: the file does not exist.
        ValueError: a line has no tab or an empty label (names file and
            line).
    """
    if not os.path.isfile(path):
        raise FileNotFoundError(f"No such labelled TSV file: {path}")
    labels, texts = [], []
    with open(path, encoding="utf-8", errors="replace") as f:
        for number, line in enumerate(f, start=1):
            line = line.rstrip("\n")
            if not line.strip():
                continue
            if "\t" not in line:
                raise ValueError(
                    f"{path}, line {number}: no tab; expected 'label<TAB>text'."
                )
            label, text = line.split("\t", 1)
            if number == 1 and label.strip().lower() == "label":
                continue
            if not label.strip():
                raise ValueError(f"{path}, line {number}: empty label.")
            labels.append(label.strip())
            texts.append(text.strip())
            if max_examples and len(labels) >= max_examples:
                break
    if not labels:
        raise ValueError(f"{path} holds no labelled examples.")
    return labels, texts


def check_labels(train_labels, validation_labels, validation_path):
    unseen = sorted(set(validation_labels) - set(train_labels))
    if unseen:
        raise ValueError(
            f"{validation_path} has labels unseen in training: {unseen}."
        )


def exact_match_accuracy(predictions, labels):
    """Fraction of generated strings equal to their label (whitespace
    stripped)."""
    hits = [p.strip() == t.strip() for p, t in zip(predictions, labels)]
    return float(np.mean(hits)) if hits else 0.0


def finetune(
    preset,
    train_path,
    validation_path,
    output_dir,
    epochs=1,
    batch_size=16,
    learning_rate=1e-3,
    encoder_length=64,
    decoder_length=8,
    max_train_examples=None,
    max_validation_examples=None,
    seed=0,
):
    """Fine-tune `preset` on a labelled TSV with `T5Seq2SeqLM`; report
    validation accuracy (exact match of the generated label).

    Args:
        preset: a keras-hub T5 preset (e.g. `save_to_preset`'s directory).
        train_path: str. Training TSV.
        validation_path: str. Validation TSV.
        output_dir: str. Receives `preset/` (fine-tuned) and
            `metrics.json`.
        epochs, batch_size, learning_rate: training settings.
        encoder_length, decoder_length: sequence lengths.
        max_train_examples, max_validation_examples: optional slices.
        seed: int.

    Returns:
        The metrics dict written to `metrics.json`.

    Example:
    ```python
    finetune("runs/demo/preset", "sst2.train.tsv", "sst2.validation.tsv",
             "runs/sst2")
    ```
    """
    train_labels, train_texts = read_labelled_tsv(
        train_path, max_train_examples
    )
    val_labels, val_texts = read_labelled_tsv(
        validation_path, max_validation_examples
    )
    check_labels(train_labels, val_labels, validation_path)

    import keras
    import keras_hub
    import tensorflow as tf

    keras.utils.set_random_seed(seed)
    model = keras_hub.models.T5Seq2SeqLM.from_preset(preset)
    model.preprocessor.encoder_sequence_length = encoder_length
    model.preprocessor.decoder_sequence_length = decoder_length
    model.compile(
        optimizer=keras.optimizers.AdamW(learning_rate),
        loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
        weighted_metrics=["sparse_categorical_accuracy"],
        sampler="greedy",  # keras-hub's default samples at random (top-k)
    )
    train = tf.data.Dataset.from_tensor_slices(
        {"encoder_text": train_texts, "decoder_text": train_labels}
    )
    train = train.shuffle(len(train_texts), seed=seed).batch(batch_size)
    history = model.fit(train, epochs=epochs, verbose=2)
    predictions = []
    for start in range(0, len(val_texts), batch_size):
        texts = val_texts[start : start + batch_size]
        outputs = model.generate(
            {"encoder_text": texts, "decoder_text": [""] * len(texts)},
            max_length=decoder_length,
        )
        predictions.extend(str(o) for o in outputs)
    accuracy = exact_match_accuracy(predictions, val_labels)
    os.makedirs(output_dir, exist_ok=True)
    model.save_to_preset(os.path.join(output_dir, "preset"))
    metrics = {
        "accuracy": accuracy,
        "validation_examples": len(val_labels),
        "train_examples": len(train_labels),
        "labels": sorted(set(train_labels)),
        "epochs": epochs,
        "train_loss_per_epoch": [float(v) for v in history.history["loss"]],
        "predictions_sample": predictions[:8],
        "backend": keras.backend.backend(),
        "preset": preset,
    }
    with open(os.path.join(output_dir, "metrics.json"), "w") as f:
        json.dump(metrics, f, indent=2)
    return metrics
