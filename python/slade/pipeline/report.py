"""The final report of a SLADE run: report.json (everything measured) and report.md (for people), plus the plots of
report_plots.py, written into the run directory. It reads the stages' results from memory."""
from __future__ import annotations

import json
from pathlib import Path

from slade import config
from slade.runtime.stage_result import StageResult
from slade.evaluation.metrics import HEADLINE
from slade.pipeline.report_plots import plot_basis_stats, plot_comparison, plot_pseudo_quality, plot_selected_pairs

PLOTS = {"compare.png": "teacher vs student", "pseudo_labels.png": "pseudo-label quality",
         "basis_stats.png": "mu+ / mu- of the basis similarity", "selected_pairs.png": "selected pairs per step"}


def _without(d: dict, *keys) -> dict:
    return {k: v for k, v in d.items() if k not in keys}


def _test_metrics(folds: list, concatenated: dict | None) -> dict[str, dict]:
    """Model name -> test metrics: the single model's, or the folds' concatenated embedding."""
    if concatenated is not None:
        return concatenated
    fold = folds[0]
    return {"teacher": fold.teacher.metrics, **{f"student_round{r.round}": r.student.metrics for r in fold.rounds}}


def _trained(result: StageResult) -> dict:
    return {"best_epoch": result.best_epoch, "best_val_map_at_r": result.best_val_map_at_r, "test": result.metrics,
            "seconds": result.seconds}


def readable_sizes(bench, stages) -> dict[str, int]:
    """Images per set that could be read: listed, less the unreadable ones any stage met."""
    skipped: dict[str, set] = {}
    for stage in stages:
        for name, paths in stage.skipped.items():
            skipped.setdefault(name, set()).update(paths)
    return {role: len(images) - len(skipped.get(images.name, ())) for role, images in bench.sets().items()}


def pair_summary(steps: list[dict]) -> dict:
    """Means over the trained (post warm-up) student steps: unlabeled pairs per batch and their precision."""
    trained = [s for s in steps if not s["warmup"]]
    out = {}
    for key in ("pairs_pos", "pairs_neg", "pos_precision", "neg_precision"):
        values = [s[key] for s in trained if key in s]
        if values:
            out[key] = sum(values) / len(values)
    return out


def basis_summary(steps: list[dict]) -> dict:
    """Whether W learned: the warm-up's length, L_CE / log K (1 = nothing learned) at the first step, at the end of
    the warm-up and at the last step, and the last mu+ - mu- (the basis similarity's separation). {} without a basis."""
    with_basis = [s for s in steps if "ce_ratio" in s]
    if not with_basis:
        return {}
    warm = [s for s in with_basis if s["warmup"]]
    out = {"warmup_steps": len(warm), "ce_ratio_first": with_basis[0]["ce_ratio"],
           "ce_ratio_last": with_basis[-1]["ce_ratio"], "basis_gap_last": with_basis[-1]["basis_gap"]}
    if warm:
        out["ce_ratio_after_warmup"] = warm[-1]["ce_ratio"]
    return out


def _markdown(report: dict) -> str:
    cfg, test = report["config"], report["test"]
    s = cfg["student"]
    variant = "plain pseudo-label pairs" if not s["basis"] else f"feature basis, selection {s['selection']}"
    if s["basis"] and s["selection"] != "none" and s.get("selection_negatives") == "pseudo":
        variant += " with pseudo-label negatives"
    if s["basis"]:
        variant += f"; L_CE logits {s.get('basis_logits', 'linear')} (scale {s['ce_scale']:g})"
    lines = [f"# SLADE on {report['benchmark']}", "",
             f"Student: {variant}; init from {s['init']}; {report['rounds']} round(s); "
             f"{report['folds']} fold(s){' (concatenated test embeddings)' if report['folds'] > 1 else ''}; "
             f"backbone {cfg['model']['backbone']}, {cfg['model']['embedding_dim']}-d; "
             f"{report['seconds'] / 60:.1f} min in this invocation.", "",
             "Readable images: " + ", ".join(f"{k} {v}" for k, v in report["sizes"].items()), "",
             "## Test classes", "",
             "| model | " + " | ".join(label for _, label in HEADLINE) + " | R@1 |",
             "|---|" + "---|" * (len(HEADLINE) + 1)]
    for name, m in test.items():
        values = [f"{100 * m[key]:.2f}" for key, _ in HEADLINE] + [f"{100 * m.get('recall_at_1', float('nan')):.2f}"]
        lines.append(f"| {name.replace('_', ' ')} | " + " | ".join(values) + " |")
    lines += ["", "## Pseudo labels (fold 1)", "", "| round | k | images | purity | NMI | sizes min / median / max |",
              "|---|---|---|---|---|---|"]
    for r in report["runs"][0]["rounds"]:
        q = r["pseudo"]
        purity = f"{q['purity']:.3f}" if "purity" in q else "n/a"
        nmi = f"{q['nmi']:.3f}" if "nmi" in q else "n/a"
        lines.append(f"| {r['round']} | {q['k']} | {q['n']} | {purity} | {nmi} | "
                     f"{q['size_min']} / {q['size_median']:g} / {q['size_max']} |")
    lines += ["", "## Unlabeled pairs per student step (fold 1, after the W warm-up)", "",
              "| round | positive | negative | precision of positives | precision of negatives |",
              "|---|---|---|---|---|"]
    for r in report["runs"][0]["rounds"]:
        p = r["pairs"]
        cells = [f"{p[k]:.1f}" if k in p else "all" for k in ("pairs_pos", "pairs_neg")]
        cells += [f"{p[k]:.3f}" if k in p else "n/a" for k in ("pos_precision", "neg_precision")]
        lines.append(f"| {r['round']} | " + " | ".join(cells) + " |")
    lines += ["", "## Feature basis per student (fold 1): did W learn?", "",
              "| round | warm-up steps | L_CE / log K: first / end of warm-up / last | mu+ - mu-, last |",
              "|---|---|---|---|"]
    for r in report["runs"][0]["rounds"]:
        b = r.get("basis") or {}
        if not b:
            lines.append(f"| {r['round']} | no basis | - | - |")
            continue
        after = f"{b['ce_ratio_after_warmup']:.3f}" if "ce_ratio_after_warmup" in b else "-"
        lines.append(f"| {r['round']} | {b['warmup_steps']} | {b['ce_ratio_first']:.3f} / {after} / "
                     f"{b['ce_ratio_last']:.3f} | {b['basis_gap_last']:.3f} |")
    lines += ["", "Purity, NMI and pair precision use the hidden true classes of the unlabeled images: logged, never "
              "trained on.", "",
              "## Plots", ""] + [f"![{title}]({name})" for name, title in PLOTS.items()]
    return "\n".join(lines) + "\n"


def write_report(out: Path, cfg: config.Config, bench, folds: list, concatenated: dict | None, init,
                 seconds: float, write: bool = True) -> dict:
    """folds: the pipeline's FoldResults, read from memory; init: the self-supervised stage's result or None.
    write=False (the other ranks of a torchrun job) returns the report without writing it."""
    stages = [s for f in folds for s in (f.teacher, *(x for r in f.rounds for x in (r.pseudo, r.student)))]
    steps = [r.student.steps for r in folds[0].rounds]
    report = {
        "benchmark": bench.name, "folds": len(folds), "rounds": len(folds[0].rounds), "seconds": seconds,
        "sizes": readable_sizes(bench, stages + ([init] if init is not None else [])),
        "skipped": {s.stage: s.skipped for s in stages if s.skipped},
        "test": _test_metrics(folds, concatenated),
        "runs": [{"teacher": _trained(f.teacher),
                  "rounds": [{"round": r.round, "pseudo": _without(r.pseudo.metrics, "sizes"),
                              "student": _trained(r.student), "pairs": pair_summary(r.student.steps),
                              "basis": basis_summary(r.student.steps)}
                             for r in f.rounds]}
                 for f in folds],
        "config": config.to_dict(cfg),
    }
    if not write:
        return report
    (out / "report.json").write_text(json.dumps(report, indent=2), encoding="utf-8")
    (out / "report.md").write_text(_markdown(report), encoding="utf-8")
    plot_comparison(report["test"], out / "compare.png")
    plot_pseudo_quality([r.pseudo.metrics for r in folds[0].rounds], out / "pseudo_labels.png")
    plot_basis_stats(steps, out / "basis_stats.png")
    plot_selected_pairs(steps, out / "selected_pairs.png")
    return report
