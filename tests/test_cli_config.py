"""Config: one dataclass tree, YAML/JSON files, dotted overrides with type checks."""
import json

import pytest

from slade import config
from slade.cli.config_args import apply_overrides


def test_defaults_round_trip_through_yaml_and_json(tmp_path):
    cfg = config.Config()
    config.save(cfg, tmp_path / "c.yaml")
    assert config.load(tmp_path / "c.yaml") == cfg
    (tmp_path / "c.json").write_text(json.dumps(config.to_dict(cfg)))
    assert config.load(tmp_path / "c.json") == cfg
    assert config.load(None) == cfg


def test_partial_file_keeps_defaults(tmp_path):
    (tmp_path / "p.yaml").write_text("train:\n  lr: 1e-4\n  epochs: 3\ndata:\n  n_fonts: 6\n")
    cfg = config.load(tmp_path / "p.yaml")
    assert cfg.train.lr == 1e-4 and cfg.train.epochs == 3 and cfg.data.n_fonts == 6
    assert cfg.train.batch_size == config.TrainConfig().batch_size


def test_unknown_keys_and_wrong_types_are_named(tmp_path):
    (tmp_path / "u.yaml").write_text("train:\n  learning_rate: 1\n")
    with pytest.raises(config.ConfigError, match="train.learning_rate"):
        config.load(tmp_path / "u.yaml")
    (tmp_path / "t.yaml").write_text("eval:\n  recall_ks: [1, two]\n")
    with pytest.raises(config.ConfigError, match=r"eval.recall_ks\[1\]"):
        config.load(tmp_path / "t.yaml")
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        config.load(tmp_path / "nope.yaml")


def test_overrides_from_set_and_dotted_flags():
    cfg = apply_overrides(config.Config(), ["train.lr=1e-3", "data.fonts=null", "eval.recall_ks=[1, 5]"],
                          ["--train.epochs", "7", "--data.root=/data/cub", "--out-dir", "runs/x",
                           "--train.amp", "false", "--data.cache_dir", "2024"])
    assert cfg.train.lr == 1e-3 and cfg.data.fonts is None and cfg.eval.recall_ks == [1, 5]
    assert cfg.train.epochs == 7 and cfg.data.root == "/data/cub" and cfg.out_dir == "runs/x"
    assert cfg.train.amp is False and cfg.data.cache_dir == "2024"  # a number-like path stays a string
    with pytest.raises(config.ConfigError, match="KEY=VALUE"):
        apply_overrides(config.Config(), ["train.lr"], [])
    with pytest.raises(config.ConfigError, match="needs a value"):
        apply_overrides(config.Config(), [], ["--train.lr"])
    with pytest.raises(config.ConfigError, match="unknown config key 'model2'"):
        apply_overrides(config.Config(), ["model2.width=3"], [])
    with pytest.raises(config.ConfigError, match="train.amp: expected bool"):
        apply_overrides(config.Config(), ["train.amp=sometimes"], [])
