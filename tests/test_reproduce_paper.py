"""The reproduction tool (tools/reproduce_paper.py and its data, measures
and report modules): its statistics against hand-computed values, its
settings, its data and its report."""

import importlib
import importlib.util
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _tool(name="reproduce_paper"):
    """A module of the tool (the tool puts tools/ on `sys.path`, so its
    modules import each other by name)."""
    path = os.path.join(ROOT, "tools", f"{name}.py")
    spec = importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _report():
    _tool()
    return importlib.import_module("reproduce_paper_report")


def _data():
    _tool()
    return importlib.import_module("reproduce_paper_data")


def _measures():
    _tool()
    return importlib.import_module("reproduce_paper_measures")


def _row(objective, steps, seed, sst2, trec=0.5, loss=5.0, tau=None):
    return {
        "objective": objective,
        "tau": tau,
        "seed": seed,
        "steps": steps,
        "train_flops": steps * 10,
        "validation_sc_loss": loss,
        "sst2_accuracy": sst2,
        "trec_accuracy": trec,
    }


def test_paired_differences_are_per_seed_with_standard_errors():
    report = _report()
    rows = [
        _row("random", 0, 0, 0.60),
        _row("random", 0, 1, 0.50),
        _row("random", 0, 2, 0.55),
        _row("sc", 10, 0, 0.70),
        _row("sc", 10, 1, 0.62),
        _row("sc", 10, 2, 0.58),
    ]
    (result,) = report.paired_differences(rows, [(("sc", 10), ("random", 0))])
    sst2 = result["sst2_accuracy"]
    # Differences 0.10, 0.12, 0.03: mean 0.0833..., sample std 0.04726,
    # SE = std / sqrt(3) = 0.02728.
    assert sst2["differences"] == pytest.approx([0.10, 0.12, 0.03])
    assert sst2["mean"] == pytest.approx(0.25 / 3)
    assert sst2["standard_error"] == pytest.approx(0.027285, rel=1e-4)
    assert sst2["z"] == pytest.approx((0.25 / 3) / 0.027285, rel=1e-4)
    # A metric with no spread over seeds has no z.
    assert result["trec_accuracy"]["mean"] == 0.0
    assert result["trec_accuracy"]["z"] is None


def test_summary_groups_seeds_and_names_spactor_arms_by_tau():
    report = _report()
    rows = [
        _row("spactor", 10, 0, 0.7, tau=4),
        _row("spactor", 10, 1, 0.5, tau=4),
        _row("random", 0, 0, 0.5),
    ]
    table = report.summarize(rows)
    assert [e["arm"] for e in table] == ["random", "spactor tau=4"]
    spactor = table[1]
    assert spactor["seeds"] == 2
    assert spactor["sst2_accuracy"] == pytest.approx(0.6)
    assert spactor["sst2_accuracy_std"] == pytest.approx(0.02**0.5)


def test_comparisons_cover_the_questions_asked():
    tool = _tool()
    args = tool.parse_args(["--steps", "100", "--tau", "25"])
    pairs = _report().comparisons(args.steps, args.tau)
    arm = "spactor tau=25"
    assert (("sc", 100), ("random", 0)) in pairs
    assert ((arm, 50), ("sc", 100)) in pairs  # the paper's claim
    assert ((arm, 100), ("sc", 100)) in pairs
    assert args.seeds == [0, 1, 2]  # the default setting has 3 seeds
    assert args.warmup_steps == 10  # a tenth of the run


def test_report_has_a_column_per_way_of_finetuning():
    report = _report()
    rows = [_row("random", 0, s, 0.5 + s / 10) for s in range(2)]
    rows += [_row("sc", 10, s, 0.6) for s in range(2)]
    for row, fresh in zip(rows, (0.70, 0.60, 0.75, 0.75)):
        row["sst2_fresh_decoder_accuracy"] = fresh
    table = report.summarize(rows)
    differences = report.paired_differences(rows, [(("sc", 10), ("random", 0))])
    text = report.markdown(table, differences, {"sst2": 0.5, "trec": 0.25})
    header = text.splitlines()[0]
    assert "| SST-2 acc | TREC acc | SST-2 acc (fresh decoder) |" in header
    random, sc = text.splitlines()[2:4]
    # Cells: arm, steps, TFLOPs, val SC loss, SST-2, TREC, SST-2 fresh.
    assert random.split("|")[7].strip() == "0.650 ± 0.071"  # 0.70, 0.60
    assert sc.split("|")[7].strip() == "0.750 ± 0.000"
    # sc - random per seed: +0.05, +0.15 -> mean 0.10, SE 0.05.
    fresh = differences[0]["sst2_fresh_decoder_accuracy"]
    assert fresh["mean"] == pytest.approx(0.10)
    assert fresh["standard_error"] == pytest.approx(0.05)
    majority = text.splitlines()[4]
    assert majority.split("|")[4:8] == ["  ", " 0.500 ", " 0.250 ", " 0.500 "]


def test_report_shows_whether_finetuning_fit_the_training_examples():
    report = _report()
    rows = [_row("random", 0, s, 0.5) for s in range(2)]
    for row, fit in zip(rows, (0.9, 0.8)):
        row["sst2_train_accuracy"] = fit
    text = report.markdown(
        report.summarize(rows), [], {"sst2": 0.5, "trec": 0.25}
    )
    header = [c.strip() for c in text.splitlines()[0].split("|")]
    column = header.index("SST-2 train acc")
    assert header[column - 2 : column] == ["SST-2 acc", "TREC acc"]
    assert text.splitlines()[2].split("|")[column].strip() == "0.850 ± 0.071"
    # The majority row is the evaluation file's: none for a fit column.
    assert text.splitlines()[3].split("|")[column].strip() == ""
    # A check on each run, not something to compare arms by.
    differences = report.paired_differences(
        rows, [(("random", 0), ("random", 0))]
    )
    text = report.markdown(report.summarize(rows), differences, {"sst2": 0.5})
    assert "SST-2 train acc" not in text.split("Paired differences")[1]


def test_probe_columns_sit_beside_the_finetuning_ones_with_the_majority():
    report = _report()
    rows = [_row("random", 0, s, 0.5) for s in range(2)]
    for row, probe in zip(rows, (0.6, 0.7)):
        row["trec_probe_accuracy"] = probe
    text = report.markdown(
        report.summarize(rows), [], {"sst2": 0.5, "trec": 0.25}
    )
    header = [c.strip() for c in text.splitlines()[0].split("|")]
    column = header.index("TREC probe")
    assert header[column - 1] == "TREC acc"
    assert text.splitlines()[2].split("|")[column].strip() == "0.650 ± 0.071"
    assert text.splitlines()[3].split("|")[column].strip() == "0.250"


def _write_tsv(path, rows):
    with open(path, "w", encoding="utf-8") as f:
        f.write("label\tsentence\n")
        f.writelines(f"{label}\t{text}\n" for label, text in rows)


def test_task_text_holds_training_sentences_only_without_labels(tmp_path):
    import gzip
    import json

    data = _data()
    downstream = tmp_path / "downstream"
    downstream.mkdir()
    train_texts = {}
    for task in ("sst2", "trec"):
        train, evaluation = data.TASK_FILES[task]
        train_texts[task] = [f"{task} training sentence {i}" for i in range(45)]
        _write_tsv(downstream / train, [("yes", t) for t in train_texts[task]])
        _write_tsv(downstream / evaluation, [("yes", f"{task} held-out text")])
    tasks = data.task_files(str(downstream))
    assert sorted(tasks) == ["sst2", "trec"]
    corpus = data.write_task_text(tasks, str(tmp_path / "text"))

    def read(split):
        path = os.path.join(corpus, f"task_text.{split}.jsonl.gz")
        with gzip.open(path, "rt", encoding="utf-8") as f:
            return [json.loads(line)["text"] for line in f]

    train, validation = read("train"), read("validation")
    # Every training sentence lands in exactly one split, label-free; the
    # evaluation files' text in neither.
    everything = [t for texts in train_texts.values() for t in texts]
    assert sorted(train + validation) == sorted(everything)
    # 45 sentences per task: the 20th and 40th of each are held out.
    assert sorted(validation) == sorted(
        f"{task} training sentence {i}" for task in tasks for i in (19, 39)
    )
    # Shuffled together, so the first documents (the vocabulary's sample)
    # hold every task.
    assert {t.split()[0] for t in train[:20]} == set(tasks)


def test_default_data_is_shipped_or_asked_for(tmp_path):
    tool, data = _tool(), _data()
    # The smoke setting runs on what the repository ships.
    args = tool.parse_args(["--setting", "quick"])
    assert args.corpus == ["builtin:python-docs"]
    tasks = data.task_files(args.downstream)
    assert list(tasks) == ["sentiment_tiny"]
    assert all(os.path.isfile(path) for path in tasks["sentiment_tiny"])
    data.check_inputs(args)
    # The experiment's tasks are not shipped: a one-line request for them.
    with pytest.raises(SystemExit, match="pass --downstream DIR"):
        tool.main(["--output-dir", str(tmp_path / "out")])
    args = tool.parse_args(["--downstream", str(tmp_path)])
    with pytest.raises(SystemExit, match="holds none of"):
        data.check_inputs(args)
    assert not (tmp_path / "out").exists()


def test_arms_are_runs_with_the_packages_recipe_checkpointed_at_half(tmp_path):
    tool = _tool()
    args = tool.parse_args(["--setting", "quick", "--steps", "10"])
    config = tool.pretraining_config(
        "spactor", 2, 1, "vocab.model", args, str(tmp_path)
    )
    assert (config.steps, config.tau, config.seed) == (10, 2, 1)
    assert config.checkpoint_every == 5  # presets at N/2 and N
    assert config.warmup_steps == 1  # a tenth of the run
    assert (config.optimizer, config.schedule) == ("adamw", "cosine")
    assert config.data == "builtin:python-docs"
    assert config.output_dir.endswith(os.path.join("spactor_tau2_seed1"))
    # --batches: each seed's exported batches, read by the same run.
    args = tool.parse_args(["--setting", "quick", "--batches", "exported"])
    config = tool.pretraining_config("sc", 0, 1, "v.model", args, "out")
    assert config.data == os.path.join("exported", "pretrain_seed1.npz")
    with pytest.raises(SystemExit, match="must be even"):
        tool.parse_args(["--setting", "quick", "--steps", "9"])


def test_flops_of_the_first_steps_count_hybrid_steps_before_tau():
    measures = _measures()
    flops = {"hybrid": 3.0, "span_corruption": 2.0}
    summary = {"tau": 4, "flops_per_step": flops}
    assert measures.flops_at(summary, 10) == 4 * 3.0 + 6 * 2.0
    assert measures.flops_at(summary, 3) == 3 * 3.0
    assert measures.flops_at(dict(summary, tau=None), 5) == 5 * 3.0


def test_report_lists_the_decoders_finetune_takes():
    # The report keeps its own copy (it imports no Keras); it must be the
    # package's.
    from keras_spactor.evaluation.finetuning_inputs import DECODERS

    assert _report().DECODERS == DECODERS
