"""Markdown tables of an evaluation's `results.json` (written by `viewdiff.training.evaluate`).

    python -m viewdiff.training.report docs/results/nested/results.json   # rewrites tables.md beside it
"""
from __future__ import annotations

import math
from pathlib import Path

METRICS = (("accuracy", "accuracy"), ("tar_far1", "TAR @ FAR 1%"), ("tar_far01", "TAR @ FAR 0.1%"),
           ("pauc", "pAUC, FAR 0.1-1%"), ("rank1_heldout", "held-out rank-1"),
           ("rank1", "rank-1 among all identities"))   # the last: results.json files written before the held-out rank-1
REFERENCES = ("raw", "flip_fused")   # the baselines every method is compared with


def _pct(x: float) -> str:
    return f"{100 * x:.2f}"


def _signed(x: float) -> str:
    return f"{100 * x:+.2f}"


def _metrics(results: dict, proto: str, key: str = "cfp_fp") -> list[tuple[str, str]]:
    """The METRICS this results file holds for `proto` (on CFP-FP, or `key` ``second``: the folder dataset's test)."""
    first = next(iter(results["methods"].values()))
    return [(metric, name) for metric, name in METRICS if f"{key}/{proto}/{metric}" in first]


def _value(cell: dict) -> str:
    """'97.34 [96.90, 97.75]': the mean and its bootstrap 95% interval when there is one."""
    ci = cell.get("ci95")
    return _pct(cell["mean"]) + (f" [{_pct(ci[0])}, {_pct(ci[1])}]" if ci and math.isfinite(ci[0]) else "")


def _versus(cell: dict, ref: str) -> str:
    """'+0.25 [-0.10, +0.61], 6/2/2, p=0.062': mean difference (its bootstrap 95% interval when there is one),
    wins/ties/losses over folds and the sign-flip p against `ref`; empty without that comparison."""
    t = cell.get(f"vs_{ref}")
    if not t:
        return ""
    if not math.isfinite(t["p"]):
        return "n/a"   # a fold's value is undefined (TAR without different-person pairs)
    ci = t.get("diff_ci95")
    return (_signed(t["mean_diff"]) + (f" [{_signed(ci[0])}, {_signed(ci[1])}]" if ci and math.isfinite(ci[0]) else "")
            + f", {t['wins']}/{t['ties']}/{t['losses']}, p={t['p']:.3f}")


def protocol_table(results: dict, proto: str, key: str = "cfp_fp") -> list[str]:
    """Two tables of one protocol: each method's figures (TARs and pAUC with their 95% intervals), then its
    paired comparisons with raw and with flip_fused."""
    metrics = _metrics(results, proto, key)
    first = next(iter(results["methods"].values()))
    names = " | ".join(name + (" [95% CI]" if "ci95" in first[f"{key}/{proto}/{metric}"] else "")
                       for metric, name in metrics)
    lines = [f"| method | {names} |", "|---|" + "---|" * len(metrics)]
    for m, entry in results["methods"].items():
        lines.append(f"| {m} | " + " | ".join(_value(entry[f"{key}/{proto}/{metric}"]) for metric, _ in metrics)
                     + " |")
    refs = [*REFERENCES, *([results["reference"]] if results.get("reference") else [])]
    lines += ["", f"Paired with {', '.join(refs)}: method minus that one (its bootstrap 95% interval where the metric "
              "has one), wins/ties/losses over folds, p of the sign-flip test:", "",
              f"| method | vs | {' | '.join(name for _, name in metrics)} |", "|---|---|" + "---|" * len(metrics)]
    for m, entry in results["methods"].items():
        for ref in refs:
            cells = [_versus(entry[f"{key}/{proto}/{metric}"], ref) for metric, _ in metrics]
            if any(cells):
                lines.append(f"| {m} | {ref} | " + " | ".join(cells) + " |")
    return lines


def selection_table(method: str, selections: list[dict]) -> list[str]:
    """Which recipe the nested selection chose for each test fold, with every candidate's inner score."""
    names = list(selections[0]["scores"])
    criterion = selections[0].get("criterion", "mean of accuracy, TAR @ FAR 1% and rank-1")
    lines = ["", f"Nested selection of {method} (inner score: {criterion}, on the inner folds, seed 0; the test fold "
             "is never used):", "",
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
    boot = results.get("bootstrap")
    out = [f"CFP-FP, folds {results['folds'][0]}-{results['folds'][-1]}, seeds {seeds} (per-fold values averaged "
           f"over seeds; p: exact sign-flip test over folds). Embedder fingerprint {results['fingerprint']}. "
           "Held-out rank-1: each fold's profiles searched among that fold's own identities (frontal means). "
           "pAUC: the mean TAR over FAR 0.1%..1% (1 = perfect)."
           + (f" [95% CI]: percentile interval over {boot['resamples']} bootstrap resamples of the identities "
              "within each fold (thresholds recomputed; the same resamples for every method, so the difference "
              "from flip_fused has its own interval); it covers the choice of identities, not the seeds."
              if boot else ""), "",
           "Transformed probe vs raw frontal gallery (the product's protocol):", ""]
    out += protocol_table(results, "probe")
    out += ["", "Both sides transformed:", ""]
    out += protocol_table(results, "both")
    if any("cfp_fp/fused/accuracy" in e for e in results["methods"].values()):
        out += ["", "Transformed probe vs a gallery of flip-fused templates (each gallery photo averaged with its "
                "mirror):", ""]
        out += protocol_table(results, "fused")
    if "second" in results:
        second = results["second"]
        out += ["", f"**Second test: {second['dataset']}, cross-pose, identity-disjoint** ({second['pairs']} pairs, "
                f"{second['same']} same-person; {second['definition']}). Transformed probe vs raw gallery photo:", ""]
        out += protocol_table(results, "probe", "second")
        out += ["", f"{second['dataset']}, transformed probe vs flip-fused gallery photo (the demo's protocol):", ""]
        out += protocol_table(results, "fused", "second")
    rank1, rank1_name = next((metric, name) for metric, name in _metrics(results, "probe") if metric.startswith("rank1"))
    out += ["", f"CFP-FF (frontal-frontal, probe protocol) and the spread over seeds (CFP-FP probe accuracy / "
            f"{rank1_name}):", "", "| method | FF accuracy | FF TAR @ FAR 1% | FF TAR @ FAR 0.1% | FP accuracy per seed | "
            f"FP {rank1_name} per seed | s per fold |", "|---|---|---|---|---|---|---|"]
    for m, e in results["methods"].items():
        out.append(f"| {m} | {_pct(e['cfp_ff/probe/accuracy']['mean'])} | {_pct(e['cfp_ff/probe/tar_far1']['mean'])} | "
                   f"{_pct(e['cfp_ff/probe/tar_far01']['mean'])} | "
                   f"{' / '.join(_pct(v) for v in e['cfp_fp/probe/accuracy']['seed_means'])} | "
                   f"{' / '.join(_pct(v) for v in e[f'cfp_fp/probe/{rank1}']['seed_means'])} | "
                   f"{e['seconds_per_fold']} |")
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


# the ablations of the shipped recipe (`viewdiff.training.evaluate` METHODS): method -> (part, how it is tried)
PARTS = {"enhanced_map_no_projection": ("projection", "off"), "enhanced_map_no_surface": ("surface", "off"),
         "enhanced_map_no_lora": ("lora", "off"), "enhanced_map_no_adaln": ("adaln", "off"),
         "enhanced_map_no_mirror": ("mirror", "off"), "enhanced_map_prior": ("prior", "on")}


def part_figures(cell: dict, reference: str, full: dict, tried: str) -> dict:
    """One part's TAR with and without it and the difference (with minus without: its 95% interval, wins/ties/losses
    over folds), from an ablation's `cell` compared with the full model (`reference`, its cell `full`); `tried`:
    ``off`` (the ablation removes the part) or ``on`` (it adds it)."""
    versus = cell[f"vs_{reference}"]
    ci, wtl = versus.get("diff_ci95") or [float("nan")] * 2, [versus["wins"], versus["ties"], versus["losses"]]
    if tried == "on":
        return {"with": cell["mean"], "without": full["mean"], "diff_ci95": ci, "wins_ties_losses": wtl}
    return {"with": full["mean"], "without": cell["mean"], "diff_ci95": [-ci[1], -ci[0]], "wins_ties_losses": wtl[::-1]}


def ablation_summary(ablations: dict, source: str) -> dict:
    """Each part of the shipped recipe (`PARTS`) tried in an ablation run (``evaluate --reference``, the full model):
    its `part_figures` at TAR @ FAR 0.1% in the demo's protocol on CFP-FP and on the second test."""
    reference = ablations.get("reference")
    if not reference or reference not in ablations["methods"]:
        raise ValueError("the ablation results need the full model as --reference (evaluate --reference METHOD)")
    parts = []
    for m, entry in ablations["methods"].items():
        if m in PARTS:
            part, tried = PARTS[m]
            parts.append({"part": part, "tried": tried, "method": m, **{
                name: part_figures(entry[f"{key}/fused/tar_far01"], reference,
                                   ablations["methods"][reference][f"{key}/fused/tar_far01"], tried)
                for name, key in (("cfp_fp", "cfp_fp"), ("second", "second")) if f"{key}/fused/tar_far01" in entry}})
    return {"reference": reference, "folds": len(ablations["folds"]), "seeds": ablations["seeds"], "source": source,
            "parts": parts}


def card_summary(results: dict, method: str, source: str, ablations: dict | None = None) -> dict:
    """What the demo's model card says about `method` (the shipped recipe) from an evaluation's results: TAR @ FAR
    0.1% in the demo's protocol (transformed probe vs flip-fused gallery photos) on CFP-FP and, when evaluated, on
    the folder dataset's cross-pose test, beside raw and flip_fused, with the difference from flip_fused (its 95%
    interval and wins/ties/losses over folds); `source`: the results file, repo-relative. With `ablations`
    (`ablation_summary`), also what each part adds."""
    def figures(key: str) -> dict:
        cells = {m: results["methods"][m][f"{key}/fused/tar_far01"] for m in ("raw", "flip_fused", method)}
        versus = cells[method]["vs_flip_fused"]
        return {"raw": cells["raw"]["mean"], "flip_fused": cells["flip_fused"]["mean"], "model": cells[method]["mean"],
                "diff_ci95": versus.get("diff_ci95"), "wins_ties_losses": [versus["wins"], versus["ties"],
                                                                           versus["losses"]]}
    out = {"method": method, "metric": "TAR @ FAR 0.1%, transformed probe vs flip-fused gallery photos",
           "folds": len(results["folds"]), "seeds": results["seeds"], "source": source, "cfp_fp": figures("cfp_fp")}
    if "second" in results:
        out["second"] = {"dataset": results["second"]["dataset"], **figures("second")}
    if ablations is not None:
        if ablations["reference"] != method:
            raise ValueError(f"the ablations compare their parts with {ablations['reference']}, not with {method}: run "
                             f"them with --reference {method}")
        out["ablations"] = ablations
    return out


if __name__ == "__main__":
    import argparse
    import json

    p = argparse.ArgumentParser(description="Rewrite tables.md beside an evaluation's results.json; with --card, "
                                "also write the demo model card's summary of one method (the shipped recipe)")
    p.add_argument("results")
    p.add_argument("--card", default=None, help="the method, e.g. enhanced_map")
    p.add_argument("--card_out", default=None, help="e.g. weights/transformer/<fingerprint>/evaluation.json")
    p.add_argument("--ablations", default=None, help="with --card: an ablation run's results.json (evaluate "
                   "--reference METHOD), so the card also says what each part adds")
    args = p.parse_args()
    source = Path(args.results)
    results = json.loads(source.read_text())
    print(write_report(results, source.parent / "tables.md"))
    if args.card:
        from viewdiff.paths import repo_relative
        parts = None
        if args.ablations:
            parts = ablation_summary(json.loads(Path(args.ablations).read_text()), repo_relative(Path(args.ablations)))
        Path(args.card_out).write_text(json.dumps(card_summary(results, args.card, repo_relative(source), parts),
                                                  indent=2))
