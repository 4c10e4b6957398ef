"""The masking and sampling randomness of `SpacTorT5`, as a saved weight.

The stream's state is a `[2]` weight of the model, not a
`keras.random.SeedGenerator` (whose state Keras does not save), so a
checkpoint resumes the masks and samples exactly.
"""

import keras
from keras import ops


class DrawnSeed(keras.random.SeedGenerator):
    """A seed already drawn (a tensor), for `keras.random` ops, which take
    a `SeedGenerator` or an int but not a tensor."""

    def __init__(self, value):
        self._value = value

    def next(self, ordered=True):
        return self._value


def state_weight_arguments(seed):
    """`add_weight` arguments of the stream's state, started from `seed`.

    Keras' own generator draws the first state (from Python's `random`
    when `seed` is None, which `keras.utils.set_random_seed` seeds) in the
    backend's seed dtype.

    Example:
    ```python
    self.masking_seed_state = self.add_weight(**state_weight_arguments(1))
    ```
    """
    drawn = keras.random.SeedGenerator(seed).state
    return dict(
        name="masking_seed_state",
        shape=(2,),
        dtype=drawn.dtype,
        initializer=keras.initializers.Constant(
            ops.convert_to_numpy(drawn.value)
        ),
        trainable=False,
        aggregation="none",
    )


def next_seed(state):
    """The seed of the next random draw; advances `state` (a variable).

    Under tf.distribute the replica id is folded in: mirrored replicas
    share the state, and would otherwise draw the same masks and samples.

    Returns:
        A `DrawnSeed`, to pass as a `keras.random` op's `seed`.
    """
    seed = state.value * 1  # a copy, not the variable
    state.assign(seed + ops.convert_to_tensor([0, 1], dtype=seed.dtype))
    if keras.backend.backend() == "tensorflow":
        import tensorflow as tf

        replica = tf.distribute.get_replica_context()
        if replica is not None and replica.num_replicas_in_sync > 1:
            offset = tf.cast(replica.replica_id_in_sync_group, seed.dtype)
            seed = seed + tf.stack([offset, tf.zeros_like(offset)])
    return DrawnSeed(seed)
