"""Markdown tables of an evaluation's `results.json` (written by `viewdiff.training.evaluate`)."""
from __future__ import annotations

from pathlib import Path

METRICS = (("accuracy", "accuracy"), ("tar_far1", "TAR @ FAR 1%"), ("rank1", "rank-1 / 500"))


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _versus(entry: dict, ref: str) -> str:
    """'W/T/L p' per metric against `ref`, e.g. '9/0/1 p=0.004'."""
    tests = [entry.get(key, {}).get(f"vs_{ref}") for key in entry if isinstance(entry.get(key), dict)]
    return "; ".join(f"{t['wins']}/{t['ties']}/{t['losses']} p={t['p']:.3f}" for t in tests if t)


def protocol_table(results: dict, proto: str) -> list[str]:
    lines = [f"| method | {' | '.join(name for _, name in METRICS)} | vs raw: wins/ties/losses over folds, "
             f"p (acc; TAR; rank-1) | vs DREAM |", "|---|" + "---|" * (len(METRICS) + 2)]
    for m, entry in results["methods"].items():
        cells = [_pct(entry[f"cfp_fp/{proto}/{metric}"]["mean"]) for metric, _ in METRICS]
        keys = [f"cfp_fp/{proto}/{metric}" for metric, _ in METRICS]
        sub = {k: entry[k] for k in keys}
        lines.append(f"| {m} | {' | '.join(cells)} | {_versus(sub, 'raw')} | {_versus(sub, 'dream')} |")
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
    out += ["", "CFP-FF (frontal-frontal, probe protocol) and the spread over seeds (CFP-FP probe accuracy / rank-1):",
            "", "| method | FF accuracy | FF TAR @ FAR 1% | FP accuracy per seed | FP rank-1 per seed | s per fold |",
            "|---|---|---|---|---|---|"]
    for m, e in results["methods"].items():
        out.append(f"| {m} | {_pct(e['cfp_ff/probe/accuracy']['mean'])} | {_pct(e['cfp_ff/probe/tar_far1']['mean'])} | "
                   f"{' / '.join(_pct(v) for v in e['cfp_fp/probe/accuracy']['seed_means'])} | "
                   f"{' / '.join(_pct(v) for v in e['cfp_fp/probe/rank1']['seed_means'])} | {e['seconds_per_fold']} |")
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
