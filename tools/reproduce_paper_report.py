"""The report of tools/reproduce_paper.py: what a row holds, the table of
means over seeds, the paired differences, and results.md / results.json /
accuracy.png.

A row is one preset measured: its `objective` (`random`, `sc`,
`spactor`), `tau`, `seed`, `steps`, `train_flops`, `preset`, and the
metrics below that were measured on it. rows.jsonl holds one per line,
written as each one is finished.
"""

import json
import os

# `keras_spactor.evaluation.finetune`'s ways of fine-tuning a preset (its
# `decoder`): whole, or the encoder under a fresh decoder. A copy, so that
# the report imports no Keras; a test keeps it equal to the package's.
DECODERS = ("pretrained", "fresh")
# Each task's name in the report.
TASK_NAMES = {"sst2": "SST-2", "trec": "TREC", "sentiment_tiny": "sentiment"}


def accuracy_key(task, decoder):
    """The row key of a task's accuracy for one way of fine-tuning."""
    if decoder == "pretrained":
        return f"{task}_accuracy"
    return f"{task}_{decoder}_decoder_accuracy"


def train_accuracy_key(task, decoder):
    """The row key of the fine-tuned model's accuracy on its own training
    examples (did fine-tuning fit the task?)."""
    return accuracy_key(task, decoder).replace("_accuracy", "_train_accuracy")


def probe_key(task):
    """The row key of a task's frozen-encoder linear-probe accuracy."""
    return f"{task}_probe_accuracy"


TRAINING_METRICS = ["validation_sc_loss", "encoder_use", "encoder_token_cosine"]
# Each accuracy a row can hold -> its task.
METRIC_TASKS = {accuracy_key(t, d): t for d in DECODERS for t in TASK_NAMES}
METRIC_TASKS.update({probe_key(t): t for t in TASK_NAMES})
# Every metric a row can hold, in report order, and its column name.
FIT_METRICS = [train_accuracy_key(t, d) for d in DECODERS for t in TASK_NAMES]
METRICS = TRAINING_METRICS + list(METRIC_TASKS) + FIT_METRICS
METRIC_NAMES = {
    "validation_sc_loss": "val SC loss",
    "encoder_use": "encoder use",
    "encoder_token_cosine": "encoder cosine",
    **{
        accuracy_key(t, d): f"{TASK_NAMES[t]} acc"
        + (" (fresh decoder)" if d == "fresh" else "")
        for d in DECODERS
        for t in TASK_NAMES
    },
    **{probe_key(t): f"{TASK_NAMES[t]} probe" for t in TASK_NAMES},
    **{
        train_accuracy_key(t, d): f"{TASK_NAMES[t]} train acc"
        + (" (fresh decoder)" if d == "fresh" else "")
        for d in DECODERS
        for t in TASK_NAMES
    },
}


def metrics_in(records):
    """The metrics (in report order) that any of `records` holds."""
    return [m for m in METRICS if any(m in r for r in records)]


def arm(row):
    """The row's arm in the report: `random`, `sc` or `spactor tau=N`."""
    if row["objective"] == "spactor":
        return f"spactor tau={row['tau']}"
    return row["objective"]


def summarize(rows):
    """Mean and std over seeds, per (arm, steps)."""
    # Imported here: the tool starts (--help) without Keras.
    from keras_spactor.evaluation import mean_and_std

    groups = {}
    for row in rows:
        groups.setdefault((arm(row), row["steps"]), []).append(row)
    table = []
    for (name, steps), group in groups.items():
        entry = {
            "arm": name,
            "steps": steps,
            "seeds": len(group),
            "train_flops": group[0]["train_flops"],
        }
        for metric in metrics_in(rows):
            values = [r[metric] for r in group if r.get(metric) is not None]
            entry[metric], entry[metric + "_std"] = mean_and_std(values)
            entry[metric + "_n"] = len(values)
        table.append(entry)
    return sorted(
        table, key=lambda e: (e["arm"] != "random", e["arm"], e["steps"])
    )


def comparisons(steps, taus):
    """The questions asked, as `(a, b)` pairs of (arm, steps): each
    pre-training against random init, each SpacTor against SC at the same
    steps, and SpacTor at N/2 against SC at N (the paper's claim)."""
    half, full = steps // 2, steps
    pairs = [(("sc", s), ("random", 0)) for s in (half, full)]
    for tau in taus:
        arm = f"spactor tau={tau}"
        pairs += [((arm, s), ("random", 0)) for s in (half, full)]
        pairs += [((arm, s), ("sc", s)) for s in (half, full)]
        pairs.append(((arm, half), ("sc", full)))
    return pairs


def paired_differences(rows, comparisons):
    """Per-seed differences `a - b` for each `(a, b)` of (arm, steps) keys:
    `keras_spactor.evaluation.paired_difference` of every metric."""
    from keras_spactor.evaluation import paired_difference

    results = []
    for a, b in comparisons:
        entry = {"a": list(a), "b": list(b)}
        for metric in metrics_in(rows):
            by_seed = [
                {
                    r["seed"]: r.get(metric)
                    for r in rows
                    if (arm(r), r["steps"]) == key
                }
                for key in (a, b)
            ]
            entry[metric] = paired_difference(*by_seed)
        results.append(entry)
    return results


def _cell(entry, metric, digits=3):
    if entry.get(metric) is None:
        return "n/a"
    text = f"{entry[metric]:.{digits}f} ± {entry[metric + '_std']:.{digits}f}"
    if entry.get(metric + "_n", entry["seeds"]) < entry["seeds"]:
        text += f" (n={entry[metric + '_n']})"  # a run cut short
    return text


def markdown(table, differences, majority):
    """The table of means and the paired differences, in Markdown."""
    metrics = metrics_in(table)
    names = [METRIC_NAMES[m] for m in metrics]
    lines = [
        "| arm | steps | train TFLOPs | " + " | ".join(names) + " | seeds |",
        "|---|---:|---:|" + "---:|" * len(metrics) + "---:|",
    ]
    for e in table:
        lines.append(
            f"| {e['arm']} | {e['steps']} | {e['train_flops'] / 1e12:.2f} | "
            + " | ".join(_cell(e, m) for m in metrics)
            + f" | {e['seeds']} |"
        )
    lines.append(
        "| majority class | | | "
        + " | ".join(
            f"{majority[METRIC_TASKS[m]]:.3f}"
            if METRIC_TASKS.get(m) in majority
            else ""
            for m in metrics
        )
        + " | |"
    )
    # Whether fine-tuning fit is a check on each run, not a comparison.
    metrics = [m for m in metrics if m not in FIT_METRICS]
    names = [METRIC_NAMES[m] for m in metrics]
    lines += [
        "",
        "Paired differences over seeds (a - b: mean ± standard error, z):",
        "",
        "| a | b | " + " | ".join(names) + " |",
        "|---|---|" + "---:|" * len(metrics),
    ]
    for d in differences:

        def cell(metric):
            m = d.get(metric)
            if m is None or m["mean"] is None:
                return "n/a"
            z = f", z={m['z']:.1f}" if m["z"] is not None else ""
            return f"{m['mean']:+.3f} ± {m['standard_error']:.3f}{z}"

        lines.append(
            f"| {d['a'][0]} @ {d['a'][1]} | {d['b'][0]} @ {d['b'][1]} | "
            + " | ".join(cell(m) for m in metrics)
            + " |"
        )
    return "\n".join(lines)


def plot(table, majority, path):
    """Each metric against steps and against training FLOPs, per arm."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    metrics = metrics_in(table)
    figure, axes = plt.subplots(
        2, len(metrics), figsize=(3.6 * len(metrics), 7), squeeze=False
    )
    random = next((e for e in table if e["arm"] == "random"), None)
    series = {}
    for e in table:
        if e["arm"] != "random":
            series.setdefault(e["arm"], []).append(e)
    for column, metric in enumerate(metrics):
        for row, x_key in enumerate(("steps", "train_flops")):
            ax = axes[row][column]
            for name, entries in series.items():
                entries = [e for e in entries if e[metric] is not None]
                ax.errorbar(
                    [e[x_key] for e in entries],
                    [e[metric] for e in entries],
                    yerr=[e[metric + "_std"] for e in entries],
                    marker="o",
                    label=name,
                )
            if random is not None and random.get(metric) is not None:
                ax.axhline(random[metric], color="gray", label="random init")
            task = METRIC_TASKS.get(metric)
            if task in majority:
                ax.axhline(
                    majority[task], color="gray", ls=":", label="majority"
                )
            ax.set_xlabel("steps" if x_key == "steps" else "training FLOPs")
            ax.set_ylabel(METRIC_NAMES[metric])
    axes[0][0].legend()
    figure.tight_layout()
    figure.savefig(path, dpi=100)


def append_row(path, row):
    """Adds a row to rows.jsonl."""
    with open(path, "a") as f:
        f.write(json.dumps(row) + "\n")


def read_rows(path):
    """The latest version of each (arm, steps, seed) row in rows.jsonl."""
    rows = {}
    with open(path) as f:
        for line in f:
            row = json.loads(line)
            rows[(arm(row), row["steps"], row["seed"])] = row
    return list(rows.values())


def write_report(rows, comparisons, output_dir, settings, minutes=None):
    """Writes results.json, results.md and accuracy.png; prints the table.

    Args:
        rows: the measured rows.
        comparisons: the `(a, b)` pairs of (arm, steps) to difference.
        output_dir: str. Where to write.
        settings: dict. The run's settings, kept in results.json.
        minutes: `{"pretraining": ..., "all": ...}` wall time, or `None`.
    """
    majority = {
        task: row[f"{task}_majority"]
        for row in rows
        for task in TASK_NAMES
        if f"{task}_majority" in row
    }
    table = summarize(rows)
    differences = paired_differences(rows, comparisons)
    with open(os.path.join(output_dir, "results.json"), "w") as f:
        json.dump(
            {
                "args": settings,
                "rows": rows,
                "table": table,
                "paired_differences": differences,
                "majority_accuracy": majority,
                "minutes": minutes,
            },
            f,
            indent=2,
        )
    text = markdown(table, differences, majority)
    if minutes:
        text += f"\n\nWall time: {minutes['all']:.1f} min "
        text += f"({minutes['pretraining']:.1f} pre-training)."
    with open(os.path.join(output_dir, "results.md"), "w") as f:
        f.write(text + "\n")
    plot(table, majority, os.path.join(output_dir, "accuracy.png"))
    print(text)
