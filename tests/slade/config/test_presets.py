"""The presets: YAML files of configs/, shipped in the package as slade.presets, found by name or path."""
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
import yaml

from slade import config

ROOT = Path(__file__).resolve().parents[3]

# slade/config/presets.py GLYPHS_CPU before the presets became YAML (out_dir now runtime.out_dir): `slade run`'s
# results stay bit-identical only if the preset keeps exactly these values.
GLYPHS_CPU = {
    "data": {"name": "glyphs", "image_size": 32, "n_novel_classes": 300},
    "model": {"backbone": "small_cnn", "width": 16, "embedding_dim": 64},
    "train": {"epochs": 12, "batch_size": 32, "m_per_class": 4, "lr": 2e-3},
    "eval": {"clustering": True, "grid_queries": 8},
    "selfsup": {"epochs": 2, "batch_size": 128},
    "pseudo": {"k": 600},
    "student": {"epochs": 12, "init": "teacher", "basis_logits": "cosine", "ce_scale": 16.0, "basis_lr_mult": 10.0,
                "warmup_steps": 300, "warmup_ce_ratio": 0.5, "selection": "agree", "selection_negatives": "pseudo",
                "checkpoint_every": 50},
    "runtime": {"out_dir": "runs/slade"},
}
# slade/pipeline/ablation.py BASE.
ABLATION_BASE = {
    "data": {"name": "glyphs", "image_size": 24, "n_train_classes": 300, "n_test_classes": 300,
             "n_novel_classes": 150},
    "model": {"backbone": "small_cnn", "width": 16, "embedding_dim": 64},
    "train": {"epochs": 10, "lr": 2e-3},
    "eval": {"clustering": False, "grid_queries": 0},
    "selfsup": {"epochs": 1, "batch_size": 128},
    "pseudo": {"k": 300},
    "student": {"epochs": 10, "basis_logits": "cosine", "ce_scale": 16, "basis_lr_mult": 10, "warmup_steps": 300,
                "warmup_ce_ratio": 0.5, "selection": "agree", "selection_negatives": "pseudo", "checkpoint_every": 0},
}
SHIPPED = sorted(p.stem for p in (ROOT / "configs").glob("*.yaml"))


@pytest.mark.parametrize("name, values", [("glyphs_cpu", GLYPHS_CPU), ("ablation_base", ABLATION_BASE)])
def test_presets_hold_exactly_the_former_dicts(name, values):
    assert config.preset(name) == config.from_dict(config.Config, values)
    on_disk = yaml.safe_load(config.preset_path(name).read_text())
    assert on_disk == values  # no other field is set, and every number is read as the same float or int


def test_default_is_the_glyphs_cpu_preset(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.DEFAULT_PRESET == "glyphs_cpu"
    assert config.default() == config.preset("glyphs_cpu") == config.build() == config.build("glyphs_cpu")
    cfg = config.build(None, [("student.epochs", "3")])
    assert cfg.student.epochs == 3 and cfg.runtime.out_dir == "runs/slade" and cfg.model.width == 16


def test_presets_by_name_or_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert config.preset_names() == SHIPPED and {"glyphs_cpu", "ablation_base"} <= set(SHIPPED)
    by_path = config.preset(ROOT / "configs" / "cub_nabirds.yaml")
    assert by_path == config.preset("cub_nabirds") == config.build("cub_nabirds", filesystem=False)
    assert by_path.data.name == "cub200" and by_path.runtime.workers == 8
    assert config.build(str(ROOT / "configs" / "glyphs_cpu.yaml")) == config.default()
    with pytest.raises(config.ConfigError, match=r"no preset named 'glyphs_gpu'; the presets are ablation_base, .*"
                                                 r"glyphs_cpu"):
        config.preset("glyphs_gpu")


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_configs_are_valid_and_use_the_new_keys(name):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DeprecatedKeyWarning
        cfg = config.preset(name)
    assert config.validate(cfg, filesystem=False) is cfg
    assert cfg.runtime.out_dir.startswith("runs/") and cfg.pseudo.k > 0


def test_presets_are_one_copy_shipped_as_package_data(tmp_path):
    """setup.py maps configs/ to slade.presets: an installed (non-editable) package finds the presets there."""
    assert not list((ROOT / "python").rglob("*.yaml"))  # no second copy beside the code
    build = subprocess.run([sys.executable, "setup.py", "-q", "build_py", "--build-lib", str(tmp_path / "lib")],
                           cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert build.returncode == 0, build.stderr[-2000:]
    assert sorted(p.stem for p in (tmp_path / "lib" / "slade" / "presets").glob("*.yaml")) == SHIPPED
    probe = ("from slade import config; from slade.config import builtin; "
             "print(builtin.preset_dirs()[0]); print(config.default().runtime.out_dir)")
    run = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path, capture_output=True, text=True, timeout=120,
                         env={"PYTHONPATH": str(tmp_path / "lib"), "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr[-2000:]
    where, out_dir = run.stdout.split()
    assert Path(where) == tmp_path / "lib" / "slade" / "presets" and out_dir == "runs/slade"
