"""What the step tools share (`benchmark_step.py`, `benchmark_hf.py`,
`profile_step.py`): their arguments (a preset's shape, one batch, timed in
rounds) and that batch's token ids. NumPy only, so that the PyTorch tool
uses it too."""

import numpy as np

CONFIGS = ["tiny", "small", "base", "large"]
# T5's vocabulary: 32,100 pieces, the top 100 of them sentinels.
VOCABULARY = 32100


def add_step_arguments(parser, steps=10, rounds=5):
    """Add `--config`, the batch's shape, `--steps`, `--rounds` and
    `--mixed-precision` to an `argparse.ArgumentParser`."""
    parser.add_argument("--config", default="tiny", choices=CONFIGS)
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--inputs-length", type=int, default=128)
    parser.add_argument("--targets-length", type=int, default=29)
    parser.add_argument("--steps", type=int, default=steps)
    parser.add_argument("--rounds", type=int, default=rounds)
    parser.add_argument("--mixed-precision", action="store_true")


def synthetic_ids(batch_size, inputs_length, targets_length, seed=0):
    """int32 `(encoder, decoder_input, targets)` ids of a span-corruption-
    like batch with no padding: a sentinel every 7 inputs, EOS last, the
    decoder input the targets shifted right after id 0. The work does not
    depend on the ids, only on the shapes."""
    rng = np.random.RandomState(seed)
    encoder = rng.randint(3, VOCABULARY - 100, (batch_size, inputs_length))
    encoder[:, 10::7] = VOCABULARY - 1
    encoder[:, -1] = 1
    targets = rng.randint(3, VOCABULARY, (batch_size, targets_length))
    start = np.zeros((batch_size, 1), targets.dtype)
    decoder = np.concatenate([start, targets[:, :-1]], 1)
    return (
        encoder.astype("int32"),
        decoder.astype("int32"),
        targets.astype("int32"),
    )
