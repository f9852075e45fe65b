"""The tables of results/ABLATION.md, generated from the studies' JSON files (python -m slade.pipeline.ablation writes
them: seed -> model -> metrics). The page's prose is written by hand; each table sits between two markers and is
rewritten from the files the opening marker names:

    <!-- begin summary ablation.json -->            mean +- std over seeds per model, then the unlabeled pairs
    <!-- begin differences a.json b.json | plain pseudo-label pairs - teacher | + basis - plain pseudo-label pairs -->
                                                    per seed: the teacher's MAP@R and each paired difference
    <!-- end -->

Paths are relative to the page. `python -m slade.pipeline.ablation_markdown results/ABLATION.md` rewrites the
tables in place; `--check` only says whether the page is up to date (exit 1 if not)."""
from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
from pathlib import Path

from slade.evaluation.metrics import HEADLINE

NOT_VARIANTS = ("teacher", "pseudo", "pairs")
PAIR_COLUMNS = (("pairs_pos", ".0f"), ("pairs_neg", ".0f"), ("pos_precision", ".3f"), ("neg_precision", ".3f"))
BLOCK = re.compile(r"(<!-- begin (\w+) (.*?) -->\n)(.*?)(<!-- end -->)", re.S)


def variants_of(per_seed: dict) -> list[str]:
    """The student variants of a study, in the order they were run."""
    names: list[str] = []
    for result in per_seed.values():
        names += [n for n in result if n not in NOT_VARIANTS and n not in names]
    return names


def table(per_seed: dict, variants) -> str:
    """Mean +- sample std over seeds of each model's headline metrics and of its paired difference from the
    teacher, then the unlabeled pairs each student trained on."""
    def mean_spread(values) -> str:
        return f"{statistics.mean(values):.2f} +- {statistics.stdev(values) if len(values) > 1 else 0.0:.2f}"

    rows = ["| model | " + " | ".join(label for _, label in HEADLINE) + " | MAP@R - teacher's (same seed) |",
            "|---|" + "---|" * (len(HEADLINE) + 1)]
    for name in ["teacher", *variants]:
        cells = [mean_spread([100 * per_seed[s][name][key] for s in per_seed]) for key, _ in HEADLINE]
        cells.append(mean_spread([100 * (per_seed[s][name]["map_at_r"] - per_seed[s]["teacher"]["map_at_r"])
                                  for s in per_seed]))
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    rows += ["", "Unlabeled pairs per trained step and their precision against the hidden classes (means over steps, "
             "then over seeds):", "", "| student | positives | negatives | precision of positives | "
             "precision of negatives |", "|---|---|---|---|---|"]
    for name in variants:
        cells = []
        for key, fmt in PAIR_COLUMNS:
            seen = [per_seed[s].get("pairs", {}).get(name, {}) for s in per_seed]
            values = [pairs[key] for pairs in seen if key in pairs]
            cells.append(format(statistics.mean(values), fmt) if values else "-")
        rows.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(rows) + "\n"


def differences(per_seed: dict, pairs: list[tuple[str, str]]) -> str:
    """Per seed, the teacher's test MAP@R and each (a - b) difference of MAP@R; a last row of means."""
    header = "| seed | teacher | " + " | ".join(f"{a} - {b}" for a, b in pairs) + " |"
    rows = [header, "|---|---|" + "---|" * len(pairs)]
    columns: list[list[float]] = [[] for _ in pairs]
    for seed in sorted(per_seed, key=int):
        result = per_seed[seed]
        cells = []
        for column, (a, b) in zip(columns, pairs):
            column.append(100 * (result[a]["map_at_r"] - result[b]["map_at_r"]))
            cells.append(f"{column[-1]:+.2f}")
        rows.append(f"| {seed} | {100 * result['teacher']['map_at_r']:.2f} | " + " | ".join(cells) + " |")
    rows.append("| mean | | " + " | ".join(f"{statistics.mean(c):+.2f}" for c in columns) + " |")
    return "\n".join(rows) + "\n"


def load_studies(paths: list[Path]) -> dict:
    """seed -> model -> metrics, merged over the files (the same seeds share their teacher). A model found in
    several files is taken from the first."""
    merged: dict = {}
    for path in paths:
        for seed, result in json.loads(path.read_text(encoding="utf-8"))["seeds"].items():
            into = merged.setdefault(str(seed), {"pairs": {}})
            for model, metrics in result.items():
                if model != "pairs":
                    into.setdefault(model, metrics)
            for model, pairs in result.get("pairs", {}).items():
                into["pairs"].setdefault(model, pairs)
    return merged


def render_block(kind: str, args: str, base: Path) -> str:
    files, _, rest = args.partition("|")
    per_seed = load_studies([base / name for name in files.split()])
    if kind == "summary":
        return table(per_seed, variants_of(per_seed))
    if kind == "differences":
        pairs = [tuple(part.strip() for part in column.split(" - ")) for column in rest.split("|")]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError(f"differences: columns are 'model a - model b', got {rest!r}")
        return differences(per_seed, pairs)
    raise ValueError(f"unknown table kind {kind!r} (summary | differences)")


def render(page: Path) -> str:
    text = page.read_text(encoding="utf-8")
    return BLOCK.sub(lambda m: m.group(1) + "\n" + render_block(m.group(2), m.group(3), page.parent) + "\n"
                     + m.group(5), text)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("page", type=Path)
    parser.add_argument("--check", action="store_true", help="exit 1 if the page's tables are not up to date")
    args = parser.parse_args(argv)
    text = render(args.page)
    if args.check:
        stale = text != args.page.read_text(encoding="utf-8")
        print(f"{args.page}: {'tables out of date' if stale else 'up to date'}")
        return int(stale)
    args.page.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
