"""A frozen-encoder linear probe: what a pre-trained encoder already knows.

Fine-tuning a tiny T5 is noisy (the data order, dropout and a decoder that
must first learn to read the encoder all move the result), and at a small
labelled budget it may not fit the task at all. The probe has no draw: each
text becomes the mean of the encoder's outputs over its tokens, and an
L2-regularised multinomial logistic regression (fitted to convergence by
L-BFGS) reads the label from that vector. Same preset, same data, same
number.

Example:
```python
metrics = linear_probe("runs/demo/preset", "sst2.train.tsv",
                       "sst2.validation.tsv")
metrics["accuracy"], metrics["majority_accuracy"]
```
"""

import numpy as np

from keras_spactor.evaluation.classification_metrics import majority_accuracy
from keras_spactor.evaluation.classification_metrics import wilson_interval
from keras_spactor.evaluation.labelled_tasks import read_task


def encoder_features(backbone, tokenizer, texts, length=64, batch_size=256):
    """Each text's encoder outputs, averaged over its tokens (EOS included,
    padding not).

    Args:
        backbone: a `keras_hub.models.T5Backbone`.
        tokenizer: its `keras_hub.models.T5Tokenizer`.
        texts: list of str.
        length: int. Encoder tokens per text, EOS included (longer texts
            are cut, as `finetune` cuts them).
        batch_size: int. Texts per forward pass.

    Returns:
        A float64 array `(len(texts), hidden_dim)`.
    """
    eos = tokenizer.end_token_id
    rows = []
    for start in range(0, len(texts), batch_size):
        pieces = tokenizer(texts[start : start + batch_size])
        ids = np.zeros((len(pieces), length), "int32")
        for i, row in enumerate(pieces):
            row = [int(t) for t in row][: length - 1] + [eos]
            ids[i, : len(row)] = row
        mask = ids != 0
        # The backbone needs a decoder input: two positions (one would
        # make Keras warn about a softmax over one key).
        outputs = backbone(
            {
                "encoder_token_ids": ids,
                "encoder_padding_mask": mask,
                "decoder_token_ids": ids[:, :2],
                "decoder_padding_mask": mask[:, :2],
            }
        )
        hidden = np.asarray(outputs["encoder_sequence_output"], "float64")
        weights = mask[..., None]
        rows.append((hidden * weights).sum(1) / weights.sum(1))
    return np.concatenate(rows)


def fit_logistic_regression(features, labels, l2=1.0):
    """Multinomial logistic regression on standardised features.

    Minimises the summed negative log-likelihood plus `l2 / 2` times the
    squared norm of the weights (not the biases), with L-BFGS to
    convergence: deterministic for given inputs.

    Args:
        features: float array `(n, d)`.
        labels: int array `(n,)` of class ids `0..k-1`.
        l2: float. The weights' penalty.

    Returns:
        A function mapping a feature array to predicted class ids.
    """
    from scipy.optimize import minimize

    features = np.asarray(features, "float64")
    labels = np.asarray(labels)
    mean = features.mean(0)
    scale = features.std(0) + 1e-8
    x = (features - mean) / scale
    n, d = x.shape
    k = int(labels.max()) + 1
    onehot = np.eye(k)[labels]

    def loss_and_gradient(flat):
        weights, bias = flat[: d * k].reshape(d, k), flat[d * k :]
        logits = x @ weights + bias
        logits -= logits.max(1, keepdims=True)
        log_probs = logits - np.log(np.exp(logits).sum(1, keepdims=True))
        loss = -(log_probs * onehot).sum() + 0.5 * l2 * (weights**2).sum()
        error = np.exp(log_probs) - onehot
        grad_weights = x.T @ error + l2 * weights
        return loss, np.concatenate([grad_weights.ravel(), error.sum(0)])

    result = minimize(
        loss_and_gradient,
        np.zeros(d * k + k),
        jac=True,
        method="L-BFGS-B",
        options={"maxiter": 1000},
    )
    weights, bias = result.x[: d * k].reshape(d, k), result.x[d * k :]

    def predict(new_features):
        z = (np.asarray(new_features, "float64") - mean) / scale
        return np.argmax(z @ weights + bias, axis=1)

    return predict


def linear_probe(
    preset,
    train_path,
    evaluation_path,
    length=64,
    l2=1.0,
    max_train_examples=None,
    max_evaluation_examples=None,
):
    """Probe a preset's frozen encoder on a labelled TSV.

    Args:
        preset: a keras-hub T5 preset (e.g. `save_to_preset`'s directory).
        train_path: str. Training TSV (`label<TAB>text`).
        evaluation_path: str. Evaluation TSV; its labels must all occur in
            training.
        length: int. Encoder tokens per text.
        l2: float. See `fit_logistic_regression`.
        max_train_examples, max_evaluation_examples: optional slices.

    Returns:
        A dict: `accuracy` on the evaluation file with its 95% Wilson
        `accuracy_interval`, `majority_accuracy` (the evaluation file's most
        frequent label), `train_accuracy`, `evaluation_examples`,
        `train_examples`.

    Example:
    ```python
    linear_probe("runs/demo/preset", "sst2.train.tsv", "sst2.validation.tsv")
    ```
    """
    import keras_hub

    (train_labels, train_texts), (eval_labels, eval_texts) = read_task(
        train_path, evaluation_path, max_train_examples, max_evaluation_examples
    )
    names = sorted(set(train_labels))
    backbone = keras_hub.models.T5Backbone.from_preset(preset)
    tokenizer = keras_hub.models.T5Tokenizer.from_preset(preset)
    train_x = encoder_features(backbone, tokenizer, train_texts, length)
    eval_x = encoder_features(backbone, tokenizer, eval_texts, length)
    train_y = np.array([names.index(label) for label in train_labels])
    eval_y = np.array([names.index(label) for label in eval_labels])
    predict = fit_logistic_regression(train_x, train_y, l2)
    hits = int((predict(eval_x) == eval_y).sum())
    n = len(eval_y)
    return {
        "accuracy": hits / n,
        "accuracy_interval": list(wilson_interval(hits, n)),
        "majority_accuracy": majority_accuracy(eval_labels),
        "train_accuracy": float((predict(train_x) == train_y).mean()),
        "evaluation_examples": n,
        "train_examples": len(train_y),
    }
