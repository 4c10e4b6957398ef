"""The paper's claim at small scale: SpacTor vs plain span corruption.

For each seed, pre-trains (a) span corruption (tau=0) and (b) SpacTor with
each requested tau for N steps on a real corpus, keeping presets at N/2 and
N; fine-tunes every preset on SST-2 and TREC with the `finetune` command's
code; and reports validation SC loss, downstream accuracy, steps and
training FLOPs in one table (Markdown + JSON), plus PNG plots against steps
and against FLOPs. The paper's claim (Ye et al., 2024): SpacTor at N/2 steps
matches SC at N steps downstream.

    KERAS_BACKEND=jax python tools/reproduce_paper.py            # ~1 hour
    KERAS_BACKEND=jax python tools/reproduce_paper.py --quick    # minutes
    KERAS_BACKEND=jax python tools/reproduce_paper.py --tau 100 400

Results go to --output-dir (default runs/reproduce): results.json,
results.md, loss_accuracy.png.
"""

import argparse
import json
import os
import statistics
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SHARED = os.path.join(ROOT, "..", "shared", "data")
sys.path.insert(0, ROOT)


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", default=os.path.join(SHARED, "corpus"))
    p.add_argument("--downstream", default=os.path.join(SHARED, "downstream"))
    p.add_argument("--preset", default="spactor_t5_tiny")
    p.add_argument("--steps", type=int, default=400, help="N")
    p.add_argument(
        "--tau",
        type=int,
        nargs="+",
        default=None,
        help="SpacTor switch steps to compare (default N/4). tau=N is "
        "hybrid throughout.",
    )
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--inputs-length", type=int, default=128)
    p.add_argument("--learning-rate", type=float, default=1e-3)
    p.add_argument("--vocabulary-size", type=int, default=8000)
    p.add_argument("--validation-batches", type=int, default=20)
    p.add_argument("--finetune-examples", type=int, default=2000)
    p.add_argument("--finetune-epochs", type=int, default=2)
    p.add_argument("--evaluation-examples", type=int, default=None)
    p.add_argument("--output-dir", default=os.path.join("runs", "reproduce"))
    p.add_argument("--quick", action="store_true", help="Minutes, not hours.")
    args = p.parse_args(argv)
    if args.quick:
        args.steps = 16
        args.batch_size = 4
        args.validation_batches = 2
        args.finetune_examples = 64
        args.finetune_epochs = 1
        args.evaluation_examples = 32
        args.vocabulary_size = 2000
    if args.tau is None:
        args.tau = [args.steps // 4]
    return args


def corpus_vocabulary(args):
    """Path of a SentencePiece model trained (once, cached) on the corpus."""
    from keras_spactor.data.vocabulary import default_cache_dir
    from keras_spactor.data.vocabulary import train_vocabulary

    prefix = os.path.join(
        default_cache_dir(), f"reproduce_{args.vocabulary_size}"
    )
    if not os.path.exists(prefix + ".model"):
        train_vocabulary(
            os.path.join(args.corpus, "*train*.jsonl*"),
            prefix,
            vocabulary_size=args.vocabulary_size,
            max_documents=4000,
        )
    return prefix + ".model"


def validation_sc_loss(model, tokenizer, args):
    from keras_spactor.data import pretraining_dataset

    dataset = pretraining_dataset(
        args.corpus,
        tokenizer,
        batch_size=args.batch_size,
        inputs_length=args.inputs_length,
        split="validation",
        seed=1234,
        shuffle_buffer=None,
        repeat=False,
    ).take(args.validation_batches)
    return model.evaluate(dataset, verbose=0, return_dict=True)["sc_loss"]


def pretrain(name, tau, seed, vocabulary, args, out):
    """Train N steps; save presets at N/2 and N. Returns checkpoint rows."""
    import keras
    import keras_hub

    import keras_spactor
    from keras_spactor.data import pretraining_dataset
    from keras_spactor.data import span_corruption_lengths
    from keras_spactor.flops import train_step_flops

    # Seed first: on TF, set_random_seed clears the kernel caches, which
    # deletes the SentencePiece resource of a tokenizer made before it.
    keras.utils.set_random_seed(seed)
    tokenizer = keras_hub.models.T5Tokenizer(proto=vocabulary)
    model = keras_spactor.SpacTorT5.from_preset(
        args.preset, tokenizer=tokenizer, seed=seed
    )
    model.compile(optimizer=keras.optimizers.AdamW(args.learning_rate))
    dataset = pretraining_dataset(
        args.corpus,
        tokenizer,
        batch_size=args.batch_size,
        inputs_length=args.inputs_length,
        seed=seed,
    )
    shape = (
        args.batch_size,
        args.inputs_length,
        span_corruption_lengths(args.inputs_length)[1],
    )
    progress = keras_spactor.callbacks.TrainingProgress(
        args.batch_size * args.inputs_length,
        train_step_flops(model, *shape, hybrid=True),
        train_step_flops(model, *shape, hybrid=False),
    )
    half = args.steps // 2
    rows = []
    for checkpoint in (half, args.steps):
        start = time.time()
        model.fit(
            # The stream is deterministic: skip what was consumed.
            dataset.skip(progress.step),
            steps_per_epoch=checkpoint - progress.step,
            epochs=1,
            verbose=0,
            callbacks=[keras_spactor.callbacks.TauScheduler(tau), progress],
        )
        preset = os.path.join(out, f"{name}_seed{seed}_step{checkpoint}")
        model.save_to_preset(preset)
        rows.append(
            {
                "objective": name,
                "tau": tau,
                "seed": seed,
                "steps": checkpoint,
                "train_flops": progress.train_flops,
                "validation_sc_loss": validation_sc_loss(
                    model, tokenizer, args
                ),
                "train_seconds": round(time.time() - start, 1),
                "preset": preset,
            }
        )
        print(json.dumps(rows[-1]), flush=True)
    return rows


def downstream(row, args, out):
    from keras_spactor.finetune import finetune

    tasks = {
        "sst2": ("sst2.train.tsv", "sst2.validation.tsv"),
        "trec": ("trec.train.tsv", "trec.test.tsv"),
    }
    for task, (train, evaluation) in tasks.items():
        metrics = finetune(
            row["preset"],
            os.path.join(args.downstream, train),
            os.path.join(args.downstream, evaluation),
            os.path.join(
                out, "finetune", f"{os.path.basename(row['preset'])}_{task}"
            ),
            epochs=args.finetune_epochs,
            max_train_examples=args.finetune_examples,
            max_validation_examples=args.evaluation_examples,
            seed=row["seed"],
        )
        row[f"{task}_accuracy"] = metrics["accuracy"]
        print(json.dumps(row), flush=True)


def summarize(rows):
    """Mean and spread over seeds, per (objective, tau, steps)."""
    groups = {}
    for row in rows:
        key = (row["objective"], row["tau"], row["steps"])
        groups.setdefault(key, []).append(row)
    table = []
    for (objective, tau, steps), group in sorted(groups.items()):
        entry = {
            "objective": objective,
            "tau": tau,
            "steps": steps,
            "seeds": len(group),
            "train_flops": group[0]["train_flops"],
        }
        for metric in ("validation_sc_loss", "sst2_accuracy", "trec_accuracy"):
            values = [r[metric] for r in group if metric in r]
            entry[metric] = statistics.mean(values) if values else None
            entry[metric + "_std"] = (
                statistics.stdev(values) if len(values) > 1 else 0.0
            )
        table.append(entry)
    return table


def markdown(table):
    lines = [
        "| objective | tau | steps | train TFLOPs | val SC loss | SST-2 acc "
        "| TREC acc | seeds |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for e in table:

        def cell(metric, digits=3):
            if e[metric] is None:
                return "n/a"
            return f"{e[metric]:.{digits}f} ± {e[metric + '_std']:.{digits}f}"

        lines.append(
            f"| {e['objective']} | {e['tau']} | {e['steps']} | "
            f"{e['train_flops'] / 1e12:.1f} | {cell('validation_sc_loss')} | "
            f"{cell('sst2_accuracy')} | {cell('trec_accuracy')} | "
            f"{e['seeds']} |"
        )
    return "\n".join(lines)


def plot(table, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = ["validation_sc_loss", "sst2_accuracy", "trec_accuracy"]
    figure, axes = plt.subplots(2, 3, figsize=(14, 7))
    series = {}
    for e in table:
        series.setdefault((e["objective"], e["tau"]), []).append(e)
    for (objective, tau), entries in series.items():
        label = objective if objective == "sc" else f"spactor tau={tau}"
        for column, metric in enumerate(metrics):
            ys = [e[metric] for e in entries]
            errors = [e[metric + "_std"] for e in entries]
            for row, x_key in enumerate(("steps", "train_flops")):
                xs = [e[x_key] for e in entries]
                axes[row][column].errorbar(
                    xs, ys, yerr=errors, marker="o", label=label
                )
                axes[row][column].set_xlabel(
                    "steps" if x_key == "steps" else "training FLOPs"
                )
                axes[row][column].set_ylabel(metric)
    axes[0][0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def main(argv=None):
    args = parse_args(argv)
    for path in (args.corpus, args.downstream):
        if not os.path.isdir(path):
            raise SystemExit(f"reproduce_paper: {path} does not exist")
    os.makedirs(args.output_dir, exist_ok=True)
    vocabulary = corpus_vocabulary(args)
    rows = []
    for seed in args.seeds:
        rows += pretrain("sc", 0, seed, vocabulary, args, args.output_dir)
        for tau in args.tau:
            rows += pretrain(
                "spactor", tau, seed, vocabulary, args, args.output_dir
            )
    for row in rows:
        downstream(row, args, args.output_dir)
    table = summarize(rows)
    with open(os.path.join(args.output_dir, "results.json"), "w") as f:
        json.dump(
            {"args": vars(args), "rows": rows, "table": table}, f, indent=2
        )
    text = markdown(table)
    with open(os.path.join(args.output_dir, "results.md"), "w") as f:
        f.write(text + "\n")
    plot(table, os.path.join(args.output_dir, "loss_accuracy.png"))
    print(text)


if __name__ == "__main__":
    main()
