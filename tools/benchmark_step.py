"""Seconds per train step: keras-hub T5 vs SpacTorT5 (tau=0, stage 1, 2).

(a) keras-hub `T5Backbone` + LM head (`T5Seq2SeqLM`) trained with plain
`fit`; (b) SpacTorT5 with tau=0; (c) SpacTorT5 in stage 1 (hybrid);
(d) SpacTorT5 in stage 2. Each variant is timed in alternating rounds on
the same synthetic batch (so the input pipeline costs nothing); ratios use
each variant's best round (medians are printed too), with the analytic
FLOPs ratios next to the measured ones. `--against-hf` first times
Hugging Face's T5 under `torch.compile` on the same shape and batch
(`tools/benchmark_hf.py`, in a process of its own, before this one takes
the accelerator; `HF_PYTHON` names another interpreter for it, one with
torch) and reports (b) against it. `--fused-attention both`
times (b), (c) and (d) once more with `use_fused_attention` (variants
named `..._fused`) and reports each fused/unfused ratio.

    KERAS_BACKEND=jax python tools/benchmark_step.py --config tiny
    KERAS_BACKEND=jax python tools/benchmark_step.py --against-hf
"""

import argparse
import functools
import json
import os
import statistics
import subprocess
import sys
import time

import keras
import keras_hub
import numpy as np
from step_common import VOCABULARY
from step_common import add_step_arguments
from step_common import synthetic_ids

import keras_spactor
from keras_spactor.flops import train_step_flops
from keras_spactor.models.spactor_presets import SPACTOR_PRESETS
from keras_spactor.models.spactor_presets import T5_V1_1

ROWS = 32128
FUSED = "_fused"  # a variant with `use_fused_attention`


def cpu_peak_tflops(flops_per_cycle=32, ghz=2.5):
    """A stated CPU peak: cores x FP32 FLOPs/cycle (AVX2: 2 FMA x 8 lanes x 2)
    x clock. An estimate, not a measurement: MFU on CPU is indicative only.
    """
    import os

    return os.cpu_count() * flops_per_cycle * ghz / 1e3


def batch(batch_size, inputs_length, targets_length):
    enc, dec, tgt = synthetic_ids(batch_size, inputs_length, targets_length)
    x = {
        "encoder_token_ids": enc,
        "encoder_padding_mask": np.ones_like(enc, bool),
        "decoder_token_ids": dec,
        "decoder_padding_mask": np.ones_like(dec, bool),
    }
    return x, tgt


def repeated(x, y):
    """The batch forever: a `tf.data` dataset where TensorFlow is, else a
    generator (a GPU machine with JAX alone)."""
    try:
        import tensorflow as tf
    except ImportError:

        def forever():
            while True:
                yield x, y

        return forever()
    # No tf.data autotuning: there is nothing to tune in one repeated
    # batch, and with it on, the end of a `fit` call on these CPUs
    # sometimes waited for the autotuner's thread to wake (its period
    # doubles from 10 ms: 2.56 s, 5.12 s), which made whole rounds
    # exactly 5.12 or 10.24 s long.
    options = tf.data.Options()
    options.autotune.enabled = False
    dataset = tf.data.Dataset.from_tensors((x, y)).repeat()
    return dataset.with_options(options)


def backbone(config):
    shape = dict(T5_V1_1)
    shape.update(SPACTOR_PRESETS[f"spactor_t5_{config}"]["backbone"])
    return keras_hub.models.T5Backbone(vocabulary_size=ROWS, **shape)


def build(variant, config, jit_compile="auto"):
    keras.utils.set_random_seed(0)
    if variant.endswith(FUSED):
        model = build(variant[: -len(FUSED)], config, jit_compile)
        keras_spactor.layers.use_fused_attention(model)
        return model
    if variant == "a_keras_hub":
        model = keras_hub.models.T5Seq2SeqLM(backbone(config))
        model.compile(
            optimizer=keras.optimizers.AdamW(1e-4),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            metrics=[],
            jit_compile=jit_compile,
        )
        return model
    tau = {"b_tau0": 0, "c_stage1": None, "d_stage2": 0}[variant]
    model = keras_spactor.SpacTorT5(
        backbone(config), vocabulary_size=VOCABULARY, tau=tau
    )
    model.compile(
        optimizer=keras.optimizers.AdamW(1e-4), jit_compile=jit_compile
    )
    return model


def time_steps(model, dataset, steps):
    # keras-hub's `fit` only adds a preprocessing pass (none here) and
    # needs tf.data or grain for it: call Keras' own for its model.
    fit = model.fit
    if isinstance(model, keras_hub.models.Task):
        fit = functools.partial(keras.Model.fit, model)
    fit(dataset, steps_per_epoch=2, epochs=1, verbose=0)  # compile
    start = time.perf_counter()
    fit(dataset, steps_per_epoch=steps, epochs=1, verbose=0)
    return (time.perf_counter() - start) / steps


def hugging_face_step(args):
    """`tools/benchmark_hf.py`'s result for this run's shape and batch, or
    None if it failed."""
    tools = os.path.dirname(os.path.abspath(__file__))
    command = [
        # Where torch lives, if not in this interpreter (`HF_PYTHON`).
        os.environ.get("HF_PYTHON", sys.executable),
        os.path.join(tools, "benchmark_hf.py"),
        f"--config={args.config}",
        f"--batch-size={args.batch_size}",
        f"--inputs-length={args.inputs_length}",
        f"--targets-length={args.targets_length}",
        f"--steps={args.steps}",
        f"--rounds={args.rounds}",
    ]
    if args.mixed_precision:
        command.append("--mixed-precision")
    done = subprocess.run(command, stdout=subprocess.PIPE, text=True)
    if done.returncode != 0:
        # Its error is above; the Keras variants are still worth timing.
        print(
            "--against-hf: tools/benchmark_hf.py failed (it needs torch and "
            "transformers: pip install torch transformers); timing the "
            "Keras variants alone.",
            file=sys.stderr,
        )
        return None
    result = json.loads(done.stdout.strip().splitlines()[-1])
    print(json.dumps(result), flush=True)
    return result


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    add_step_arguments(parser)
    parser.add_argument(
        "--peak-tflops",
        type=float,
        default=None,
        help="Peak of the device for MFU (e.g. 989 for an H100/H200 in "
        "bf16, dense). Default: an estimate for this CPU, see BENCHMARKS.md.",
    )
    parser.add_argument(
        "--against-hf",
        action="store_true",
        help="Also time Hugging Face's T5 + torch.compile on the same work "
        "(needs torch and transformers).",
    )
    parser.add_argument(
        "--xla",
        action="store_true",
        help="compile(jit_compile=True): on TensorFlow without a GPU or "
        "TPU, Keras's default ('auto') trains without XLA.",
    )
    parser.add_argument(
        "--fused-attention",
        choices=["off", "on", "both"],
        default="off",
        help="Time SpacTorT5's variants without (off), with (on) or with "
        "and without (both) keras_spactor.layers.use_fused_attention.",
    )
    parser.add_argument(
        "--variants",
        default="a_keras_hub,b_tau0,c_stage1,d_stage2",
        help="Which variants to time, comma-separated (b_tau0 always).",
    )
    args = parser.parse_args()
    # First, while no Keras backend holds the accelerator's memory.
    hf = hugging_face_step(args) if args.against_hf else None
    if args.mixed_precision:
        keras.mixed_precision.set_global_policy("mixed_bfloat16")
    peak = args.peak_tflops or cpu_peak_tflops()
    x, y = batch(args.batch_size, args.inputs_length, args.targets_length)
    dataset = repeated(x, y)
    variants = [
        v
        for v in ("a_keras_hub", "b_tau0", "c_stage1", "d_stage2")
        if v in args.variants.split(",") or v == "b_tau0"
    ]
    if args.fused_attention != "off":
        # Each fused variant right after its unfused one: the rounds
        # alternate, so both see the same machine.
        variants = [
            name
            for v in variants
            for name in (v, v + FUSED)
            if v != "a_keras_hub" or name == v
        ]
    if args.fused_attention == "on":
        variants = [v for v in variants if v.endswith(FUSED) or v[0] == "a"]
    base = "b_tau0" if "b_tau0" in variants else "b_tau0" + FUSED
    models = {}
    for v in variants:
        start = time.perf_counter()
        models[v] = build(v, args.config, True if args.xla else "auto")
        print(json.dumps({"built": v, "s": time.perf_counter() - start}))
    for v in models:
        if v.startswith("d_stage2"):
            # Stage 2 "after" stage 1: one hybrid step, then tau passes.
            models[v].tau = None
            models[v].fit(dataset, steps_per_epoch=1, verbose=0)
            models[v].tau = 1
    seconds = {v: [] for v in variants}
    for round_index in range(args.rounds):
        for v in variants:
            seconds[v].append(time_steps(models[v], dataset, args.steps))
            # One line per measurement: a run cut short (a time limit on
            # a rented accelerator) still reports what it measured.
            line = {"round": round_index, "variant": v, "s": seconds[v][-1]}
            print(json.dumps(line), flush=True)
    # This VM's step times are bimodal (steal / thread scheduling): the
    # ratios use the best round of each variant, the median is reported too.
    median = {v: statistics.median(s) for v, s in seconds.items()}
    best = {v: min(s) for v, s in seconds.items()}
    spactor = models[base]
    shape = (args.batch_size, args.inputs_length, args.targets_length)
    flops_sc = train_step_flops(spactor, *shape, hybrid=False)
    flops_hybrid = train_step_flops(spactor, *shape, hybrid=True)
    result = {
        "backend": keras.backend.backend(),
        "jit_compile": models[base].jit_compile,
        "config": args.config,
        "batch": shape,
        "seconds_per_step_best": best,
        "seconds_per_step_median": median,
    }
    ratios = {
        "b/a": ("b_tau0", "a_keras_hub"),
        "c/b": ("c_stage1", "b_tau0"),
        "d/b": ("d_stage2", "b_tau0"),
    }
    if args.fused_attention != "off":
        ratios["c/b fused"] = ("c_stage1" + FUSED, "b_tau0" + FUSED)
        ratios["d/b fused"] = ("d_stage2" + FUSED, "b_tau0" + FUSED)
        for v in ("b_tau0", "c_stage1", "d_stage2"):
            ratios[f"{v} fused/unfused"] = (v + FUSED, v)
    for name, (numerator, denominator) in ratios.items():
        if numerator in best and denominator in best:
            result[name] = best[numerator] / best[denominator]
    result.update(
        {
            "flops_per_step_sc": flops_sc,
            "flops_per_step_hybrid": flops_hybrid,
            "flops_ratio_c/b": flops_hybrid / flops_sc,
            "peak_tflops": peak,
            "achieved_tflops": {},
            "mfu": {},
        }
    )
    for v in best:
        flops = flops_hybrid if v.startswith("c_stage1") else flops_sc
        achieved = flops / best[v] / 1e12
        result["achieved_tflops"][v] = achieved
        result["mfu"][v] = achieved / peak
    if hf:
        result["hf_torch_compile"] = hf
        for v in ("b_tau0", "b_tau0" + FUSED):
            if v in best:
                name = "b/hf" if v == "b_tau0" else "b_fused/hf"
                result[name] = best[v] / hf["seconds_per_step_best"]
        result["achieved_tflops"]["hf_torch_compile"] = (
            flops_sc / hf["seconds_per_step_best"] / 1e12
        )
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
