"""Seconds per train step of Hugging Face's T5 under `torch.compile`.

The same work as `tools/benchmark_step.py`'s (b) (span corruption, tau=0):
a `transformers.T5ForConditionalGeneration` of a built-in preset's T5 v1.1
shape (gated GELU, untied embeddings, no dropout, 32,128 rows), AdamW at
1e-4, one synthetic batch repeated, bf16 autocast with `--mixed-precision`
(float32 weights, as Keras' `mixed_bfloat16`). The fastest thing a user
would pick instead of this package, timed on the same machine.

    pip install torch transformers      # optional: never needed otherwise
    python tools/benchmark_hf.py --config tiny

`tools/benchmark_step.py --against-hf` runs it in a process of its own
(before JAX or TensorFlow take the accelerator) and reports the ratio.
Prints one JSON line.
"""

import argparse
import json
import os
import runpy
import statistics
import time

import torch
import transformers
from step_common import add_step_arguments
from step_common import synthetic_ids

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ROWS = 32128


def preset_shape(config):
    """A built-in preset's backbone shape and parameter count, read from the
    presets file alone (importing the package would import Keras here)."""
    path = os.path.join(ROOT, "keras_spactor", "models", "spactor_presets.py")
    preset = runpy.run_path(path)["SPACTOR_PRESETS"][f"spactor_t5_{config}"]
    return preset["backbone"], preset["params"]


def hf_model(shape):
    config = transformers.T5Config(
        vocab_size=ROWS,
        d_model=shape["hidden_dim"],
        d_kv=shape["key_value_dim"],
        d_ff=shape["intermediate_dim"],
        num_layers=shape["num_layers"],
        num_decoder_layers=shape["num_layers"],
        num_heads=shape["num_heads"],
        dropout_rate=0.0,
        layer_norm_epsilon=1e-6,
        feed_forward_proj="gated-gelu",
        tie_word_embeddings=False,  # T5 v1.1: no scaling of the output
        decoder_start_token_id=0,
        pad_token_id=0,
    )
    model = transformers.T5ForConditionalGeneration(config)
    # Versions differ in what `tie_word_embeddings` ties (5.24 ties the
    # output layer to the input embedding whatever it says; the parameter
    # count in `main` caught it): lay out T5 v1.1 explicitly, one input
    # embedding for both stacks and an output layer of its own.
    model.set_input_embeddings(model.shared)
    if model.lm_head.weight is model.shared.weight:
        untied = torch.empty_like(model.shared.weight)
        # std d^-0.5, the fan-in init of T5X (and of this package).
        torch.nn.init.normal_(untied, std=shape["hidden_dim"] ** -0.5)
        model.lm_head.weight = torch.nn.Parameter(untied)
    return model


def batch(batch_size, inputs_length, targets_length, device):
    ids = synthetic_ids(batch_size, inputs_length, targets_length)
    enc, dec, tgt = (
        torch.as_tensor(a, dtype=torch.long, device=device) for a in ids
    )
    return {
        "input_ids": enc,
        "attention_mask": torch.ones_like(enc),
        "decoder_input_ids": dec,
        "labels": tgt,
    }


def main():
    parser = argparse.ArgumentParser(description=__doc__)
    add_step_arguments(parser)
    parser.add_argument(
        "--no-compile", action="store_true", help="Eager PyTorch."
    )
    args = parser.parse_args()
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    torch.manual_seed(0)
    shape, preset_params = preset_shape(args.config)
    model = hf_model(shape).to(device)
    params = sum(p.numel() for p in model.parameters())
    # The same work or no comparison: T5 v1.1's parameters, counted by
    # keras-hub for the preset, equal Hugging Face's for the same shape.
    if params != preset_params:
        raise SystemExit(
            f"Hugging Face's T5 has {params:,} parameters, the "
            f"spactor_t5_{args.config} preset {preset_params:,}: not the "
            "same model."
        )
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-4)
    forward = model if args.no_compile else torch.compile(model)
    inputs = batch(
        args.batch_size, args.inputs_length, args.targets_length, device
    )

    def train_step():
        with torch.autocast(
            device.type, dtype=torch.bfloat16, enabled=args.mixed_precision
        ):
            loss = forward(**inputs).loss
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss

    def timed(steps):
        start = time.perf_counter()
        for _ in range(steps):
            loss = train_step()
        last = loss.item()  # waits for the device
        return (time.perf_counter() - start) / steps, last

    start = time.perf_counter()
    timed(2)  # compiles
    compile_seconds = time.perf_counter() - start
    rounds = [timed(args.steps) for _ in range(args.rounds)]
    seconds = [s for s, _ in rounds]
    print(
        json.dumps(
            {
                "system": "hf_torch_compile"
                if not args.no_compile
                else "hf_torch_eager",
                "device": torch.cuda.get_device_name()
                if device.type == "cuda"
                else "cpu",
                "torch": torch.__version__,
                "transformers": transformers.__version__,
                "params": params,
                "batch": [
                    args.batch_size,
                    args.inputs_length,
                    args.targets_length,
                ],
                "mixed_precision": args.mixed_precision,
                "compile_s": compile_seconds,
                "seconds_per_step_best": min(seconds),
                "seconds_per_step_median": statistics.median(seconds),
                "last_loss": rounds[-1][1],
            }
        ),
        flush=True,
    )


if __name__ == "__main__":
    main()
