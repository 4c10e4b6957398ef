"""What tools/reproduce_paper.py measures on each preset: the held-out
span-corruption measures, then on every labelled task a linear probe of
the frozen encoder and fine-tuning, each way in `--decoders`."""

import json
import os

import reproduce_paper_data as data
import reproduce_paper_report as report


def preset_row(model, preset, preprocessor, args, arm, training):
    """Saves `model` as `preset`; its row, with the held-out measures.

    Args:
        arm: dict. The row's `objective`, `tau` and `seed`.
        training: dict. The row's `steps`, `train_flops` and, where
            measured, `train_seconds`.
    """
    from keras_spactor.evaluation import validation_metrics

    model.save_to_preset(preset)
    held_out = data.held_out_batches(preprocessor, args)
    return {
        **arm,
        "steps": training["steps"],
        "train_flops": training["train_flops"],
        "train_seconds": training.get("train_seconds"),
        "preset": preset,
        **validation_metrics(model, held_out),
    }


def probe(row, args, tasks):
    """Add each task's linear-probe accuracy (frozen encoder, the same
    labelled examples as fine-tuning) to the row."""
    from keras_spactor.evaluation import linear_probe

    for task, (train, evaluation) in tasks.items():
        metrics = linear_probe(
            row["preset"],
            train,
            evaluation,
            max_train_examples=args.finetune_examples,
            max_evaluation_examples=args.evaluation_examples,
        )
        row[report.probe_key(task)] = metrics["accuracy"]
        row[f"{task}_majority"] = metrics["majority_accuracy"]


def finetune_and_probe(row, args, tasks, out):
    """Probe and fine-tune the row's preset on every task, each way in
    `args.decoders`; add the accuracies to it."""
    from keras_spactor.evaluation import finetune

    probe(row, args, tasks)
    for decoder in args.decoders:
        for task, (train, evaluation) in tasks.items():
            name = f"{os.path.basename(row['preset'])}_{task}_{decoder}"
            metrics = finetune(
                row["preset"],
                train,
                evaluation,
                os.path.join(out, "finetune", name),
                steps=args.finetune_steps,
                learning_rate=args.finetune_learning_rate,
                decoder=decoder,
                max_train_examples=args.finetune_examples,
                max_validation_examples=args.evaluation_examples,
                seed=row["seed"],
                save_preset=False,
            )
            row[report.accuracy_key(task, decoder)] = metrics["accuracy"]
            row[report.train_accuracy_key(task, decoder)] = metrics[
                "train_accuracy"
            ]
            row[f"{task}_majority"] = metrics["majority_accuracy"]
            row[f"{task}_examples"] = metrics["evaluation_examples"]
    print(json.dumps(row), flush=True)


def finetune_order(rows):
    """Baselines and the final checkpoints first, every seed before the next
    arm: a run cut short still answers the main questions on all seeds."""
    last = max(r["steps"] for r in rows)

    def key(row):
        first = row["objective"] == "random" or row["steps"] == last
        # Then SpacTor at N/2 (the paper's claim) before SC at N/2.
        arm_rank = {"random": 0, "sc": 1 if first else 3}.get(
            row["objective"], 2
        )
        return (not first, arm_rank, row["seed"])

    return sorted(rows, key=key)


def flops_at(summary, steps):
    """Training FLOPs of a run's first `steps` steps, from its summary."""
    from keras_spactor.flops import flops_of_first_steps

    flops = summary["flops_per_step"]
    return flops_of_first_steps(
        steps, summary["tau"], flops["hybrid"], flops["span_corruption"]
    )
