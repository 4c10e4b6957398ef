"""`tools/gpu_benchmark.sh`'s table: one Markdown table and one JSON file
from the logs of its bare matrix product and its step timings.

Reads the JSON lines that `tools/profile_step.py --rows matmul` and
`tools/benchmark_step.py` print, the per-round lines too, so that a run
cut short by a time limit still gives the rows it measured.

    python tools/gpu_benchmark_table.py OUT_DIR
"""

import json
import os
import sys

ORDER = [
    "hf_torch_compile",
    "b_tau0",
    "b_tau0_fused",
    "c_stage1",
    "c_stage1_fused",
    "d_stage2",
    "d_stage2_fused",
]
RATIOS = [
    "c/b",
    "c/b fused",
    "flops_ratio_c/b",
    "d/b",
    "d/b fused",
    "b_tau0 fused/unfused",
    "c_stage1 fused/unfused",
    "d_stage2 fused/unfused",
    "b/hf",
    "b_fused/hf",
]


def json_lines(path):
    """Every line of `path` that is a JSON object, and the last indented
    JSON object (benchmark_step's result), parsed."""
    if not os.path.exists(path):
        return [], None
    with open(path) as f:
        text = f.read()
    lines = []
    for line in text.splitlines():
        if line.startswith("{") and line.endswith("}"):
            try:
                lines.append(json.loads(line))
            except ValueError:
                pass
    result = None
    start = text.rfind("\n{\n")
    if start >= 0:
        try:
            result = json.loads(text[start + 1 :])
        except ValueError:
            result = None
    return lines, result


def summary(out):
    matmul_lines, _ = json_lines(os.path.join(out, "matmul.log"))
    step_lines, result = json_lines(os.path.join(out, "steps.log"))
    summary = {"matmul": None, "rounds": {}, "result": result}
    for line in matmul_lines:
        if line.get("row") == "matmul":
            summary["matmul"] = line
    for line in step_lines:
        if "variant" in line:
            summary["rounds"].setdefault(line["variant"], []).append(line["s"])
        elif "seconds_per_step_best" in line and "variant" not in line:
            summary["rounds"].setdefault("hf_torch_compile", []).append(
                line["seconds_per_step_best"]
            )
    return summary


def table(summary):
    result = summary["result"] or {}
    mfu = result.get("mfu", {})
    tflops = result.get("achieved_tflops", {})
    rows = ["| row | s/step (best) | rounds | TFLOP/s | MFU |"]
    rows.append("|---|---:|---:|---:|---:|")
    matmul = summary["matmul"]
    if matmul:
        rows.append(
            f"| bare matmul | {matmul['seconds']:.4g} | | "
            f"{matmul.get('tflops_per_s', float('nan')):.1f} | |"
        )
    for name in ORDER:
        seconds = summary["rounds"].get(name)
        if not seconds:
            continue
        achieved = tflops.get(name)
        rows.append(
            f"| {name} | {min(seconds):.4g} | {len(seconds)} | "
            + (f"{achieved:.1f}" if achieved else "")
            + " | "
            + (f"{100 * mfu[name]:.1f}%" if name in mfu else "")
            + " |"
        )
    ratios = [f"{k} = {result[k]:.3f}" for k in RATIOS if k in result]
    if not result:
        ratios.append("(cut short: no final result, best rounds above)")
    return "\n".join(rows) + "\n\n" + "; ".join(ratios)


def main():
    out = sys.argv[1]
    data = summary(out)
    print(table(data))
    with open(os.path.join(out, "gpu_benchmark.json"), "w") as f:
        json.dump(data, f, indent=2)


if __name__ == "__main__":
    main()
