"""Markdown tables of an evaluation's `results.json` (written by `viewdiff.training.evaluate`).

    python -m viewdiff.training.report docs/results/nested/results.json   # rewrites tables.md beside it
"""
from __future__ import annotations

from pathlib import Path

METRICS = (("accuracy", "accuracy"), ("tar_far1", "TAR @ FAR 1%"), ("tar_far01", "TAR @ FAR 0.1%"),
           ("rank1", "rank-1 / 500"))


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _versus(entry: dict, ref: str) -> str:
    """'W/T/L p' per metric against `ref`, e.g. '9/0/1 p=0.004'."""
    tests = [entry.get(key, {}).get(f"vs_{ref}") for key in entry if isinstance(entry.get(key), dict)]
    return "; ".join(f"{t['wins']}/{t['ties']}/{t['losses']} p={t['p']:.3f}" for t in tests if t)


def protocol_table(results: dict, proto: str) -> list[str]:
    lines = [f"| method | {' | '.join(name for _, name in METRICS)} | vs raw: wins/ties/losses over folds, "
             f"p (acc; TAR 1%; TAR 0.1%; rank-1) | vs DREAM |", "|---|" + "---|" * (len(METRICS) + 2)]
    for m, entry in results["methods"].items():
        cells = [_pct(entry[f"cfp_fp/{proto}/{metric}"]["mean"]) for metric, _ in METRICS]
        keys = [f"cfp_fp/{proto}/{metric}" for metric, _ in METRICS]
        sub = {k: entry[k] for k in keys}
        lines.append(f"| {m} | {' | '.join(cells)} | {_versus(sub, 'raw')} | {_versus(sub, 'dream')} |")
    return lines


def selection_table(method: str, selections: list[dict]) -> list[str]:
    """Which recipe the nested selection chose for each test fold, with every candidate's inner score."""
    names = list(selections[0]["scores"])
    lines = ["", f"Nested selection of {method} (inner score: mean of accuracy, TAR @ FAR 1% and rank-1 on the "
             "inner folds, seed 0; the test fold is never used):", "",
             "| test fold | inner folds | chosen | " + " | ".join(names) + " |", "|---|---|---|" + "---|" * len(names)]
    for s in selections:
        lines.append(f"| {s['test_fold']} | {', '.join(map(str, s['inner_folds']))} | {s['chosen']} | "
                     + " | ".join(_pct(s["scores"][n]["score"]) for n in names) + " |")
    means = {n: sum(s["scores"][n]["score"] for s in selections) / len(selections) for n in names}
    lines.append(f"| mean | | **{max(means, key=means.get)}** (the recipe for all identities) | "
                 + " | ".join(_pct(v) for v in means.values()) + " |")
    return lines


def write_report(results: dict, path: Path) -> str:
    """The tables as one markdown text, also written to `path`."""
    seeds = ", ".join(map(str, results["seeds"]))
    out = [f"CFP-FP, folds {results['folds'][0]}-{results['folds'][-1]}, seeds {seeds} (per-fold values averaged "
           f"over seeds; p: exact sign-flip test over folds). Embedder fingerprint {results['fingerprint']}.", "",
           "Transformed probe vs raw frontal gallery (the product's protocol):", ""]
    out += protocol_table(results, "probe")
    out += ["", "Both sides transformed:", ""]
    out += protocol_table(results, "both")
    if any("cfp_fp/fused/accuracy" in e for e in results["methods"].values()):
        out += ["", "Transformed probe vs a gallery of flip-fused templates (each gallery photo averaged with its "
                "mirror):", ""]
        out += protocol_table(results, "fused")
    out += ["", "CFP-FF (frontal-frontal, probe protocol) and the spread over seeds (CFP-FP probe accuracy / rank-1):",
            "", "| method | FF accuracy | FF TAR @ FAR 1% | FF TAR @ FAR 0.1% | FP accuracy per seed | FP rank-1 per "
            "seed | s per fold |", "|---|---|---|---|---|---|---|"]
    for m, e in results["methods"].items():
        out.append(f"| {m} | {_pct(e['cfp_ff/probe/accuracy']['mean'])} | {_pct(e['cfp_ff/probe/tar_far1']['mean'])} | "
                   f"{_pct(e['cfp_ff/probe/tar_far01']['mean'])} | "
                   f"{' / '.join(_pct(v) for v in e['cfp_fp/probe/accuracy']['seed_means'])} | "
                   f"{' / '.join(_pct(v) for v in e['cfp_fp/probe/rank1']['seed_means'])} | {e['seconds_per_fold']} |")
    for m, e in results["methods"].items():
        if e.get("selections"):
            out += selection_table(m, e["selections"])
    with_p04 = {m: e["pointing04"] for m, e in results["methods"].items() if "pointing04" in e}
    if with_p04:
        out += ["", "Pointing'04 (never trained on): rank-1 among 15 people against raw near-frontal means, per abs(yaw):",
                "", "| abs(yaw) | n | " + " | ".join(with_p04) + " |", "|---|---|" + "---|" * len(with_p04)]
        first = next(iter(with_p04.values()))
        for i, row in enumerate(first):
            out.append(f"| {row['yaw']} | {row['n']} | " + " | ".join(f"{100 * rows[i]['rank1']:.1f}"
                                                                   for rows in with_p04.values()) + " |")
    text = "\n".join(out) + "\n"
    Path(path).write_text(text)
    return text


if __name__ == "__main__":
    import json
    import sys

    source = Path(sys.argv[1])
    print(write_report(json.loads(source.read_text()), source.parent / "tables.md"))
