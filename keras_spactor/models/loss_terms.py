"""The pieces of SpacTor's loss terms and of their accuracies.

Backend-neutral `keras.ops` only. A term's loss is a weighted mean over the
positions it scores; its accuracy, computed by the metric update and not
by the loss, reads the same logits, labels and weights (`Scored`).
"""

from typing import NamedTuple

from keras import ops


class Scored(NamedTuple):
    """What one loss term scored, for its accuracy metric.

    Args:
        logits: float32 logits: `[..., classes]` for a categorical term,
            `[...]` for a binary one.
        labels: the targets, `[...]`.
        weights: `[...]`, 0 where a position does not count.
    """

    logits: object
    labels: object
    weights: object


def weighted_mean(values, weights):
    """`sum(values * weights) / max(sum(weights), 1)`, in float32."""
    weights = ops.cast(weights, "float32")
    total = ops.sum(ops.cast(values, "float32") * weights)
    return total / ops.maximum(ops.sum(weights), 1.0)


def cross_entropy(scored):
    """The weighted mean of the categorical cross-entropy of the logits."""
    losses = ops.sparse_categorical_crossentropy(
        scored.labels, scored.logits, from_logits=True
    )
    return weighted_mean(losses, scored.weights)


def binary_cross_entropy(scored):
    """The weighted mean of the binary cross-entropy of the logits."""
    losses = ops.binary_crossentropy(
        scored.labels, scored.logits, from_logits=True
    )
    return weighted_mean(losses, scored.weights)


def categorical_accuracy(scored):
    """Weighted share of positions whose argmax is the label."""
    predictions = ops.cast(ops.argmax(scored.logits, -1), "int32")
    return weighted_mean(ops.equal(predictions, scored.labels), scored.weights)


def binary_accuracy(scored):
    """Weighted share of positions whose `logit > 0` is the (0/1) label."""
    predictions = ops.cast(scored.logits > 0, "float32")
    return weighted_mean(ops.equal(predictions, scored.labels), scored.weights)
