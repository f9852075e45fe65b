"""SLADE's ablation on the glyph benchmark (docs/method.md, "Reference figures"): teacher; student with plain pseudo-label
pairs; + feature basis; + basis + confident-pair selection (literal, agree, agree with pseudo-label negatives, veto);
and the control without the unlabeled loss; and a diagnostic upper bound, the best student trained on the unlabeled
images' true classes instead of the teacher's clusters (never a recipe: it reads the hidden labels).
Per seed, the self-supervised init, the teacher and the pseudo labels are shared by the student variants
(the pipeline's stages, resumable: rerun the same command to continue). Writes <out>/ablation.json and a markdown
table (mean +- sample std over seeds).

    python -m slade.pipeline.ablation --out runs/ablation --seeds 0 1 2 3 4 [--set student.epochs=8 ...] [--markdown FILE]
    python -m slade.pipeline.ablation --out runs/ablation --seeds 0 --tag _blr --set student.basis_lr=0.02  # a probe

The base config is configs/ablation_base.yaml (a study size for five seeds x five students on two CPU cores).
"""
from __future__ import annotations

import argparse
import copy
import json
import re
import time
from pathlib import Path

import numpy as np

from slade import config
from slade.cli.config_args import override_pairs
from slade.data.benchmark import build_benchmark
from slade.pipeline.ablation_markdown import table, variants_of
from slade.pipeline.report import pair_summary
from slade.pipeline.selftrain import selfsup_stage, teacher_stage
from slade.runtime.context import RunContext
from slade.runtime.stage_result import finished
from slade.data.pseudo_labels import PseudoLabels, load_pseudo_labels
from slade.stages.pseudo_labels import pseudo_label
from slade.stages.student import train_student

VARIANTS = {
    "plain pseudo-label pairs": {"basis": False, "selection": "none"},
    "+ basis": {"basis": True, "selection": "none"},
    "+ basis + selection (literal)": {"basis": True, "selection": "literal"},
    "+ basis + selection (agree)": {"basis": True, "selection": "agree"},
    "+ basis + selection (agree, pseudo-label negatives)": {"basis": True, "selection": "agree",
                                                           "selection_negatives": "pseudo"},
    "+ basis + selection (veto)": {"basis": True, "selection": "veto", "selection_negatives": "pseudo"},
    # L_CE trains W only: does the basis help beyond L_CE acting as a proxy loss on the labeled classes?
    "+ basis + selection (agree, pseudo-label negatives), L_CE detached": {
        "basis": True, "selection": "agree", "selection_negatives": "pseudo", "ce_detach": True},
    # the control: the best student (agree, pseudo-label negatives) with the unlabeled loss switched off,
    # everything else equal
    "control: best student, lambda1 = 0": {"basis": True, "selection": "agree", "selection_negatives": "pseudo",
                                          "lambda1": 0.0},
    # the diagnosis: what the unlabeled loss could add with perfect clusters (an upper bound for better pseudo
    # labels); "pseudo_source" is the study's switch, not a student setting
    "oracle: best student, true classes as pseudo labels": {
        "basis": True, "selection": "agree", "selection_negatives": "pseudo", "pseudo_source": "oracle"},
}


def oracle_pseudo_labels(pseudo: PseudoLabels, unlabeled) -> PseudoLabels:
    """`pseudo` with each image's cluster replaced by its true (hidden) class, numbered 0..C-1."""
    if unlabeled.hidden_labels is None:
        raise ValueError("the oracle variant needs a benchmark that knows the unlabeled images' classes (glyphs)")
    _, labels = np.unique(unlabeled.hidden_labels[pseudo.indices], return_inverse=True)
    labels = labels.astype(pseudo.labels.dtype)
    return PseudoLabels(labels, pseudo.indices, {"oracle": True, "k": int(labels.max()) + 1, "n": int(len(labels))})


def student_pseudo_labels(pseudo_dir: Path, oracle: bool, unlabeled) -> PseudoLabels:
    """The pseudo labels a student trains on: the stage's clusters, or with `oracle` the true classes."""
    pseudo = load_pseudo_labels(pseudo_dir)
    return oracle_pseudo_labels(pseudo, unlabeled) if oracle else pseudo


def run_seed(cfg: config.Config, variants: dict, tag: str, progress: bool, rounds: int = 1) -> dict:
    """One seed: the shared init, teacher and pseudo labels, then each student variant (resumable stages), and
    with rounds > 1 each variant's later self-training rounds (its student is the next round's teacher)."""
    ctx = RunContext.from_config(cfg, progress=progress, resume=True)
    bench = build_benchmark(cfg.data)
    init = selfsup_stage(cfg, bench, ctx)
    teacher = teacher_stage(cfg, bench, init, ctx)
    pseudo_dir = ctx.paths.root / f"pseudo_k{cfg.pseudo.k}"
    pseudo_result = finished(pseudo_dir, "pseudo_labels", True) or pseudo_label(cfg, bench, ctx, pseudo_dir,
                                                                               teacher.weights)
    result = {"teacher": teacher.metrics, "pseudo": {k: v for k, v in pseudo_result.metrics.items() if k != "sizes"},
              "pairs": {}}
    for name, switches in variants.items():
        switches = dict(switches)
        oracle = switches.pop("pseudo_source", "teacher") == "oracle"
        variant = copy.deepcopy(cfg)
        for key, value in switches.items():
            setattr(variant.student, key, value)
        config.validate(variant)
        student_dir = ctx.paths.root / (re.sub(r"[^\w-]+", "_", name).strip("_") + tag)
        current_teacher, round_pseudo_dir, out = teacher, pseudo_dir, student_dir
        for r in range(1, rounds + 1):
            if r > 1:  # as pipeline.selftrain.run_fold: new pseudo labels from the last round's student
                round_dir = student_dir.with_name(f"{student_dir.name}_round{r}")
                round_pseudo_dir, out = round_dir / "pseudo", round_dir / "student"
                finished(round_pseudo_dir, "pseudo_labels", True) or pseudo_label(
                    variant, bench, ctx, round_pseudo_dir, current_teacher.weights)
            student_init = init if variant.student.init == "selfsup" else current_teacher
            student = finished(out, "student", True) or train_student(
                variant, bench, student_pseudo_labels(round_pseudo_dir, oracle, bench.unlabeled), ctx, out,
                None if student_init is None else student_init.weights)
            key = name if r == 1 else f"{name}, round {r}"
            result[key] = student.metrics
            result["pairs"][key] = pair_summary(student.steps)
            current_teacher = student
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="runs/ablation")
    parser.add_argument("--config", default="ablation_base", help="the study's base config (a preset name or file)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=list(VARIANTS))
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override")
    parser.add_argument("--tag", default="", help="suffix of the student directories and of ablation.json: "
                        "student-only overrides then reuse the seeds' init, teacher and pseudo labels")
    parser.add_argument("--rounds", type=int, default=1, help="self-training rounds per variant (selftrain.rounds)")
    parser.add_argument("--markdown", help="also write the table to this file")
    parser.add_argument("--no-progress", action="store_true")
    args = parser.parse_args()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    variants = {name: VARIANTS[name] for name in args.variants}
    per_seed, began = {}, time.time()
    for seed in args.seeds:
        # The data set stays the same (data.seed); training randomness changes with the seed.
        cfg = config.build(args.config, [*override_pairs(args.set, []), ("runtime.seed", str(seed)),
                                         ("runtime.out_dir", str(out / f"seed{seed}"))])
        config.save(cfg, out / f"seed{seed}{args.tag}.yaml")
        per_seed[seed] = run_seed(cfg, variants, args.tag, not args.no_progress, args.rounds)
        (out / f"ablation{args.tag}.json").write_text(json.dumps({
            "seeds": per_seed, "overrides": args.set, "config": config.to_dict(cfg),
            "seconds": round(time.time() - began, 1)}, indent=2))
    text = table(per_seed, variants_of(per_seed))
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text, encoding="utf-8")


if __name__ == "__main__":
    main()
