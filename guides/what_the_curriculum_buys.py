"""
Title: What the tau curriculum buys
Author: keras-spactor contributors
Date created: 2026/11/26
Last modified: 2026/11/26
Description: SpacTor's two-stage curriculum explained, and a small comparison with plain span corruption in validation loss per step and per FLOP.
Accelerator: GPU
"""

"""
## Introduction

SpacTor ([Ye et al., 2024](https://arxiv.org/abs/2401.13160)) is a
*curriculum*, not just a loss. Training runs in two stages:

1. **Stage 1, steps `0 … tau-1`: the hybrid objective.** A small generator
   (an encoder with a quarter of the layers, sharing the token embedding)
   fills 15% of the span-corrupted input with guesses for `<mask>`ed
   tokens. The T5 encoder reads that corrupted input and must both detect
   which tokens were replaced (ELECTRA's replaced-token detection, RTD) and,
   through the decoder, reconstruct the missing spans (T5's span
   corruption, SC):
   `L = L_SC + lambda_mlm * L_MLM + lambda_rtd * L_RTD`.
2. **Stage 2, from step `tau` on: plain span corruption.** The generator and
   the RTD head are dropped: they neither run nor receive updates, so a
   stage-2 step costs exactly a T5 step.

Why switch at all? RTD gives the encoder a learning signal at *every*
input position instead of only the 15% that SC hides, which speeds up the
start of training. But the generator keeps improving, and late in training
its replacements become too hard to tell from the original tokens; the
paper finds that keeping the hybrid objective throughout (`tau = inf`)
ends *worse* than SC. With the switch, SpacTor reaches SC's downstream
quality with about half the steps and 40% fewer FLOPs.

Because a stage-1 step costs more than an SC step (the generator's forward
and backward passes and the RTD head), a fair comparison puts **training
FLOPs** on the x-axis, not only steps. keras-spactor counts both with the
`TrainingProgress` callback.

This guide trains plain SC (`tau = 0`) and SpacTor (`tau = STEPS // 2`)
from the same initialisation and plots the validation SC loss against steps
and against FLOPs. By default (`SPACTOR_GUIDE_SIZE=small`) both runs are a
toy model trained for a handful of steps on a corpus embedded in the
library, so the guide runs anywhere in well under a minute, and the curves
show the mechanics, not the result. If the reproduction script
`tools/reproduce_paper.py` has already written `runs/reproduce/results.json`,
the guide plots those results instead.
"""

"""
## Setup

Install keras-spactor from its wheel (`python -m build --wheel` in a
checkout; in Colab, upload the wheel first) or with
`pip install "git+<the repository's URL>"`; `pip install -e .` in a
checkout for development. The plots need matplotlib.
"""

"""shell
pip install -q keras_spactor-0.1.0-py3-none-any.whl matplotlib
"""

import json
import os

os.environ.setdefault("KERAS_BACKEND", "jax")

import keras
import matplotlib.pyplot as plt

import keras_spactor
from keras_spactor.callbacks import TauScheduler
from keras_spactor.callbacks import TrainingProgress
from keras_spactor.data import span_corruption_lengths

"""
## Settings

Everything that depends on the size lives in this cell.
"""

SMALL = os.environ.get("SPACTOR_GUIDE_SIZE", "small") == "small"
OUTPUT_DIR = os.environ.get("SPACTOR_GUIDE_OUTPUT", "runs/guides")
RESULTS = os.environ.get(
    "SPACTOR_GUIDE_RESULTS", os.path.join("runs", "reproduce", "results.json")
)
os.makedirs(OUTPUT_DIR, exist_ok=True)

if SMALL:
    PRESET = "spactor_t5_nano"  # 2+2 layers, width 64
    DATA = "builtin:python-docs"
    BATCH_SIZE, INPUTS_LENGTH = 4, 64
    STEPS, EVALUATE_EVERY, VALIDATION_BATCHES = 4, 2, 1
    SHUFFLE_BUFFER = 64  # documents
else:
    PRESET = "spactor_t5_tiny"  # 4+4 layers, width 256
    # C4 (train and validation splits); any JSONL directory with
    # `*train*` and `*validation*` files works too.
    DATA = "tfds:c4/en"
    BATCH_SIZE, INPUTS_LENGTH = 16, 128
    STEPS, EVALUATE_EVERY, VALIDATION_BATCHES = 400, 50, 20
    SHUFFLE_BUFFER = 10_000
TAU = STEPS // 2
TARGETS_LENGTH = span_corruption_lengths(INPUTS_LENGTH)[1]

"""
## One training run

`run(tau)` builds the model from a fixed seed, trains `STEPS` steps with
`TauScheduler(tau)` and, every `EVALUATE_EVERY` steps, records the steps,
the cumulative training FLOPs and the SC loss on held-out batches.
`tau = 0` is plain span corruption through the same code.

The small size uses the `spactor_t5_nano` preset (2+2 layers, width 64),
the full size `spactor_t5_tiny` (4+4 layers, width 256).
"""


def build_model(seed):
    """The model and its tokenizer, initialised from `seed`."""
    keras.utils.set_random_seed(seed)
    tokenizer = keras_spactor.data.default_vocabulary()
    model = keras_spactor.SpacTorT5.from_preset(
        PRESET,
        tokenizer=tokenizer,  # gives the vocabulary size and mask id
        seed=seed,
    )
    return model, tokenizer


def run(tau, seed=0):
    model, tokenizer = build_model(seed)
    model.compile(optimizer=keras.optimizers.AdamW(1e-3))
    train = keras_spactor.data.pretraining_dataset(
        DATA,
        tokenizer,
        batch_size=BATCH_SIZE,
        inputs_length=INPUTS_LENGTH,
        seed=seed,
        shuffle_buffer=SHUFFLE_BUFFER,
    )
    validation = keras_spactor.data.pretraining_dataset(
        DATA,
        tokenizer,
        batch_size=BATCH_SIZE,
        inputs_length=INPUTS_LENGTH,
        split="validation",
        seed=1234,
        shuffle_buffer=None,
        repeat=False,
    ).take(VALIDATION_BATCHES)
    progress = TrainingProgress.for_model(
        model, BATCH_SIZE, INPUTS_LENGTH, TARGETS_LENGTH
    )
    points = []
    while progress.step < STEPS:
        model.fit(
            train.skip(progress.step),  # the stream is deterministic
            steps_per_epoch=EVALUATE_EVERY,
            epochs=1,
            verbose=0,
            callbacks=[TauScheduler(tau), progress],
        )
        logs = model.evaluate(validation, verbose=0, return_dict=True)
        points.append(
            {
                "steps": progress.step,
                "train_flops": progress.train_flops,
                "validation_sc_loss": float(logs["sc_loss"]),
            }
        )
        print(f"tau={tau}", points[-1])
    return points


"""
## The comparison

Both runs see the same batches in the same order; only the objective of the
first `TAU` steps differs. If the reproduction results exist, we read their
table (mean over seeds, per objective, `tau` and checkpoint) instead of
training.
"""

if os.path.exists(RESULTS):
    print("Plotting", RESULTS)
    with open(RESULTS) as f:
        table = json.load(f)["table"]
    curves = {}
    for entry in table:
        if entry["objective"] == "sc":
            label = "span corruption"
        else:
            label = f"SpacTor, tau={entry['tau']}"
        curves.setdefault(label, []).append(entry)
else:
    curves = {
        "span corruption": run(tau=0),
        f"SpacTor, tau={TAU}": run(tau=TAU),
    }

"""
## Plotting

Left: validation SC loss per optimizer step. Right: the same points against
cumulative training FLOPs, where each SpacTor step before `tau` is more
expensive than an SC step, so SpacTor's curve is stretched to the right
until the switch.
"""

figure, (by_steps, by_flops) = plt.subplots(1, 2, figsize=(11, 4))
for label, points in curves.items():
    points = sorted(points, key=lambda point: point["steps"])
    losses = [point["validation_sc_loss"] for point in points]
    by_steps.plot([p["steps"] for p in points], losses, "o-", label=label)
    by_flops.plot([p["train_flops"] for p in points], losses, "o-", label=label)
by_steps.set_xlabel("optimizer steps")
by_flops.set_xlabel("training FLOPs")
for axis in (by_steps, by_flops):
    axis.set_ylabel("validation SC loss")
    axis.grid(alpha=0.3)
by_steps.legend()
figure.suptitle("Span corruption vs SpacTor")
figure.tight_layout()
plot_path = os.path.join(OUTPUT_DIR, "curriculum.png")
figure.savefig(plot_path, dpi=100)
print("Wrote", plot_path)
plt.show()

"""
## Reading the curves

- Per step, SpacTor's SC loss is usually higher during stage 1 (the decoder
  reads an encoder that also learns RTD on an input with replaced tokens)
  and catches up after the switch; what matters downstream is the encoder,
  which the RTD signal trains at every position.
- Per FLOP, every stage-1 step is charged for the generator, so the
  comparison is fair to SC.
- At toy sizes and a handful of steps the curves are noise. For the paper's
  claim at small scale (SpacTor at N/2 steps against SC at N steps, on
  SST-2 and TREC accuracy, averaged over seeds), run
  `python tools/reproduce_paper.py --downstream DIR` (DIR: SST-2's and
  TREC's `label<TAB>text` files, see its `--help`; about an hour on CPUs)
  and rerun this guide: it then plots `runs/reproduce/results.json`.
"""
