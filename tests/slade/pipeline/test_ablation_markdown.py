"""results/ABLATION.md's tables are generated from the studies' JSON files (slade.pipeline.ablation_markdown)."""
import json
from pathlib import Path

import pytest

from slade.pipeline import ablation_markdown

ROOT = Path(__file__).resolve().parents[3]


def _metrics(map_at_r):
    return {"map_at_r": map_at_r, "r_precision": map_at_r + 0.1, "precision_at_1": map_at_r + 0.2}


def _study(path: Path, seeds: dict):
    path.write_text(json.dumps({"seeds": seeds, "overrides": [], "config": {}, "seconds": 1.0}))


@pytest.fixture
def studies(tmp_path):
    _study(tmp_path / "a.json", {
        "0": {"teacher": _metrics(0.10), "plain": _metrics(0.12), "pairs": {"plain": {"pairs_pos": 4.0}}},
        "1": {"teacher": _metrics(0.20), "plain": _metrics(0.23), "pairs": {"plain": {"pairs_pos": 6.0}}}})
    _study(tmp_path / "b.json", {  # a second study of the same seeds: its teacher and "plain" are not used
        "0": {"teacher": _metrics(0.50), "plain": _metrics(0.50), "best": _metrics(0.15), "pairs": {}},
        "1": {"teacher": _metrics(0.50), "plain": _metrics(0.50), "best": _metrics(0.27), "pairs": {}}})
    return tmp_path


def test_the_shipped_page_is_up_to_date():
    assert ablation_markdown.main([str(ROOT / "results" / "ABLATION.md"), "--check"]) == 0


def test_summary_is_the_mean_and_spread_over_seeds(studies):
    page = studies / "page.md"
    page.write_text("intro\n<!-- begin summary a.json -->\nstale\n<!-- end -->\noutro\n")
    text = ablation_markdown.render(page)
    assert text.startswith("intro\n<!-- begin summary a.json -->\n") and text.endswith("<!-- end -->\noutro\n")
    assert "stale" not in text
    # MAP@R 12 and 23 -> mean 17.50, sample std 7.78; minus the teacher: 2 and 3 -> 2.50 +- 0.71
    assert "| plain | 17.50 +- 7.78 | 27.50 +- 7.78 | 37.50 +- 7.78 | 2.50 +- 0.71 |" in text
    assert "| plain | 5 | - | - | - |" in text


def test_differences_are_paired_per_seed_and_the_first_file_wins(studies):
    page = studies / "page.md"
    page.write_text("<!-- begin differences a.json b.json | plain - teacher | best - plain -->\n<!-- end -->\n")
    text = ablation_markdown.render(page)
    assert "| 0 | 10.00 | +2.00 | +3.00 |" in text
    assert "| 1 | 20.00 | +3.00 | +4.00 |" in text
    assert "| mean | | +2.50 | +3.50 |" in text


def test_check_fails_on_a_hand_edited_table(studies):
    page = studies / "page.md"
    page.write_text("<!-- begin differences a.json | plain - teacher -->\n<!-- end -->\n")
    assert ablation_markdown.main([str(page)]) == 0
    assert ablation_markdown.main([str(page), "--check"]) == 0
    page.write_text(page.read_text().replace("+2.00", "+2.10"))
    assert ablation_markdown.main([str(page), "--check"]) == 1


@pytest.mark.parametrize("block, message", [
    ("<!-- begin differences a.json | plain -->", "differences: columns are 'model a - model b'"),
    ("<!-- begin histogram a.json -->", "unknown table kind 'histogram'"),
])
def test_bad_blocks_are_named(studies, block, message):
    page = studies / "page.md"
    page.write_text(block + "\n<!-- end -->\n")
    with pytest.raises(ValueError, match=message):
        ablation_markdown.render(page)
