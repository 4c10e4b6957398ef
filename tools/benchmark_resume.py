"""How long a resumed run waits for its first batch, at step 10 and 10,000.

For each step N the input stream is fast-forwarded N batches (no training)
and its position saved, as `keras-spactor pretrain` does at a checkpoint.
Then, each timed from nothing built: restoring the saved position
(`ResumableBatches.resume`) and reading the first batch, against the old
way, `dataset.skip(N)`, which reads, tokenizes and corrupts every example
before batch N again.

    python tools/benchmark_resume.py                       # builtin corpus
    python tools/benchmark_resume.py --data corpus/ --steps 10 10000
"""

import argparse
import os
import sys
import tempfile
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def parse_args(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", default="builtin:python-docs")
    parser.add_argument("--steps", type=int, nargs="+", default=[10, 10_000])
    parser.add_argument("--batch-size", type=int, default=8)
    parser.add_argument("--inputs-length", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=2)
    return parser.parse_args(argv)


def _directory_megabytes(path):
    total = 0
    for root, _, files in os.walk(path):
        total += sum(os.path.getsize(os.path.join(root, f)) for f in files)
    return total / 2**20


def main(argv=None):
    args = parse_args(argv)
    from keras_spactor import data

    tokenizer = data.default_vocabulary()

    def stream():
        return data.pretraining_dataset(
            args.data,
            tokenizer,
            batch_size=args.batch_size,
            inputs_length=args.inputs_length,
            seed=0,
        )

    print(
        f"data {args.data}, batch {args.batch_size} x {args.inputs_length}, "
        f"best of {args.rounds} rounds",
        flush=True,
    )
    print(
        "| step | fast-forward s | restore + first batch s | "
        "skip + first batch s | state MiB |"
    )
    print("|---:|---:|---:|---:|---:|")
    for step in args.steps:
        with tempfile.TemporaryDirectory() as directory:
            start = time.perf_counter()
            batches = data.ResumableBatches(stream(), directory, step)
            generator = batches.batches()
            for _ in range(step):
                next(generator)
            batches.save_position(step)
            forward = time.perf_counter() - start
            restore, skip = [], []
            for _ in range(args.rounds):
                start = time.perf_counter()
                resumed = data.ResumableBatches(stream(), directory, step)
                assert resumed.resume(step) == 0
                next(resumed.batches())
                restore.append(time.perf_counter() - start)
                start = time.perf_counter()
                next(iter(stream().skip(step)))
                skip.append(time.perf_counter() - start)
            print(
                f"| {step:,} | {forward:.1f} | {min(restore):.2f} | "
                f"{min(skip):.2f} | {_directory_megabytes(directory):.1f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
