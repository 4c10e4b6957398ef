"""The command-line arguments the step tools share (`benchmark_step.py`,
`benchmark_hf.py`, `profile_step.py`): a preset's shape, one batch, timed
in rounds. No imports, so that the PyTorch tool can use it too."""

CONFIGS = ["tiny", "small", "base", "large"]


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
