"""Files (YAML / JSON, duplicate keys, syntax errors), dicts, dotted overrides, old keys, checkpoints."""
import json
import warnings

import pytest

from slade import config


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # relative out_dirs are checked for writability against the working directory


def test_defaults_round_trip_through_yaml_and_json(tmp_path):
    cfg = config.Config()
    config.save(cfg, tmp_path / "c.yaml")
    assert config.load(tmp_path / "c.yaml") == cfg
    (tmp_path / "c.json").write_text(json.dumps(config.to_dict(cfg)))
    assert config.load(tmp_path / "c.json") == cfg
    assert config.load(None) == cfg
    saved = (tmp_path / "c.yaml").read_text()
    assert "runtime:" in saved and "\nout_dir" not in saved


def test_partial_file_keeps_defaults(tmp_path):
    (tmp_path / "p.yaml").write_text("train:\n  lr: 1e-4\n  epochs: 3\ndata:\n  n_fonts: 6\n")
    cfg = config.load(tmp_path / "p.yaml")
    assert cfg.train.lr == 1e-4 and cfg.train.epochs == 3 and cfg.data.n_fonts == 6
    assert cfg.train.batch_size == config.TrainConfig().batch_size
    (tmp_path / "empty.yaml").write_text("# nothing\n")
    assert config.load(tmp_path / "empty.yaml") == config.Config()


def test_unknown_keys_and_wrong_types_are_named(tmp_path):
    (tmp_path / "u.yaml").write_text("train:\n  learning_rate: 1\n")
    with pytest.raises(config.ConfigError, match="train.learning_rate"):
        config.load(tmp_path / "u.yaml")
    (tmp_path / "t.yaml").write_text("eval:\n  recall_ks: [1, two]\n")
    with pytest.raises(config.ConfigError, match=r"eval.recall_ks\[1\]"):
        config.load(tmp_path / "t.yaml")
    (tmp_path / "e.yaml").write_text("train:\n  epochs: many\n")
    with pytest.raises(config.ConfigError, match="train.epochs: expected int, got 'many'"):
        config.load(tmp_path / "e.yaml")
    (tmp_path / "s.yaml").write_text("train: 3\n")
    with pytest.raises(config.ConfigError, match="train: expected a mapping"):
        config.load(tmp_path / "s.yaml")
    (tmp_path / "l.yaml").write_text("- train\n")
    with pytest.raises(config.ConfigError, match="expected a mapping"):
        config.load(tmp_path / "l.yaml")
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        config.load(tmp_path / "nope.yaml")
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        config.build(str(tmp_path / "nope.yaml"))


def test_duplicate_yaml_keys_name_the_key_and_the_file(tmp_path):
    path = tmp_path / "dup.yaml"
    path.write_text("train:\n  lr: 1.0e-3\n  epochs: 3\n  lr: 1.0e-2\n")
    with pytest.raises(config.ConfigError, match=r"dup\.yaml:4: duplicate key 'lr' \(first given at line 2\)"):
        config.load(path)
    path.write_text("train: {epochs: 3}\nmodel: {width: 8}\ntrain: {lr: 0.1}\n")
    with pytest.raises(config.ConfigError, match=r"dup\.yaml:3: duplicate key 'train'"):
        config.build(str(path))
    (tmp_path / "dup.json").write_text('{"train": {"epochs": 3, "epochs": 4}}')
    with pytest.raises(config.ConfigError, match=r"dup\.json: duplicate key 'epochs'"):
        config.load(tmp_path / "dup.json")


def test_broken_files_give_file_and_line_not_a_parser_traceback(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("train:\n  epochs: 3\n  lr: [1, 2\nmodel: {width: 8}\n")
    with pytest.raises(config.ConfigError, match=r"broken\.yaml:\d+:\d+: invalid YAML") as info:
        config.load(path)
    assert info.value.__cause__ is None and info.value.__suppress_context__
    path.write_text("train:\n  epochs: 3\n lr: 0.1\n")
    with pytest.raises(config.ConfigError, match=r"broken\.yaml:3:\d+: invalid YAML"):
        config.build(str(path))
    (tmp_path / "broken.json").write_text('{"train": {"epochs": 3,}}')
    with pytest.raises(config.ConfigError, match=r"broken\.json:1:\d+: invalid JSON"):
        config.load(tmp_path / "broken.json")


def test_overrides_parse_as_yaml_and_check_types():
    with pytest.warns(config.DeprecatedKeyWarning) as caught:
        cfg = config.build(None, [("train.lr", "1e-3"), ("data.fonts", "null"), ("eval.recall_ks", "[1, 5]"),
                                  ("train.epochs", "7"), ("data.root", "/data/cub"), ("out-dir", "runs/x"),
                                  ("train.amp", "false"), ("data.cache_dir", "2024")])
    assert cfg.train.lr == 1e-3 and cfg.data.fonts is None and cfg.eval.recall_ks == [1, 5]
    assert cfg.train.epochs == 7 and cfg.data.root == "/data/cub" and cfg.runtime.out_dir == "runs/x"
    assert cfg.runtime.amp is False and cfg.data.cache_dir == "2024"  # a number-like path stays a string
    assert sorted(str(w.message).split(":")[0] for w in caught) == ["config key out_dir is now runtime.out_dir",
                                                                   "config key train.amp is now runtime.amp"]
    assert config.build(None, ["student.sd_beta=0.5", "selfsup.scale=[0.9, 1.1]"]).student.sd_beta == 0.5
    with pytest.raises(config.ConfigError, match="KEY=VALUE"):
        config.build(None, ["train.lr"])
    with pytest.raises(config.ConfigError, match="unknown config key 'model2'"):
        config.build(None, [("model2.width", "3")])
    with pytest.raises(config.ConfigError, match="unknown config field 'train.nope'"):
        config.build(None, [("train.nope", "3")])
    with pytest.raises(config.ConfigError, match="runtime.amp: expected bool"):
        config.build(None, [("runtime.amp", "sometimes")])
    with pytest.raises(config.ConfigError, match="train.epochs: expected int, got 'many'"):
        config.build(None, [("train.epochs", "many")])
    with pytest.raises(config.ConfigError, match=r"eval.recall_ks: cannot parse '\[1, 2'"):
        config.build(None, [("eval.recall_ks", "[1, 2")])


@pytest.mark.parametrize("key, new, raw, value", [
    ("train.seed", "runtime.seed", "3", 3),
    ("train.device", "runtime.device", "cpu", "cpu"),
    ("train.amp", "runtime.amp", "false", False),
    ("data.workers", "runtime.workers", "2", 2),
    ("out_dir", "runtime.out_dir", "runs/x", "runs/x"),
    ("out-dir", "runtime.out_dir", "runs/y", "runs/y"),
])
def test_old_override_keys_set_the_new_field_with_a_warning(key, new, raw, value):
    with pytest.warns(FutureWarning, match=f"{key.replace('-', '_')} is now {new}"):
        cfg = config.build(None, [(key, raw)])
    section, leaf = new.split(".")
    assert getattr(getattr(cfg, section), leaf) == value
    with pytest.warns(config.DeprecatedKeyWarning, match=f"is now {new}"):
        assert config.build(None, [f"{key}={raw}"]) == cfg  # the --set form


def test_old_file_keys_load_with_a_warning(tmp_path):
    path = tmp_path / "old.yaml"
    path.write_text("train: {seed: 3, device: cpu, amp: false, epochs: 2}\ndata: {workers: 2, seed: 5}\n"
                    "out_dir: runs/old\n")
    with pytest.warns(config.DeprecatedKeyWarning) as caught:
        cfg = config.load(path)
    assert cfg.runtime == config.RuntimeConfig(device="cpu", seed=3, amp=False, workers=2, out_dir="runs/old")
    assert cfg.train.epochs == 2 and cfg.data.seed == 5  # data.seed stays the data set's own
    assert {str(w.message).split(":")[0] for w in caught} == {f"config key {o} is now {n}"
                                                              for o, n in config.RENAMED.items()}
    path.write_text("train: {seed: 3}\nruntime: {seed: 4}\n")
    with pytest.raises(config.ConfigError, match="train.seed=3 and runtime.seed=4 both given"):
        config.load(path)
    path.write_text("train: {seed: 4}\nruntime: {seed: 4}\n")
    with pytest.warns(config.DeprecatedKeyWarning):
        assert config.load(path).runtime.seed == 4
    with pytest.warns(config.DeprecatedKeyWarning, match="train.seed is now runtime.seed"):
        assert config.from_dict(config.Config, {"train": {"seed": 7}}).runtime.seed == 7


def test_from_checkpoint_takes_paths_from_the_user(tmp_path):
    trained = config.Config()
    trained.data.root, trained.data.cache_dir, trained.model.weights = "/gone/data", "/gone/cache", "/gone/w.pt"
    trained.data.fonts, trained.data.unlabeled_root = "/gone/fonts", "/gone/unlabeled"
    trained.runtime.out_dir, trained.runtime.seed, trained.model.width = "/gone/run", 5, 8
    base = config.Config()
    base.data.root, base.runtime.out_dir, base.model.width = str(tmp_path / "data"), str(tmp_path / "eval"), 64
    cfg = config.from_checkpoint(config.to_dict(trained), base)
    for path in config.PATH_FIELDS:
        section, leaf = path.split(".")
        assert getattr(getattr(cfg, section), leaf) == getattr(getattr(base, section), leaf), path
    assert cfg.model.width == 8 and cfg.runtime.seed == 5  # everything else is the checkpoint's
    state = {"model": {}, "epoch": 3, "config": config.to_dict(trained)}
    assert config.from_checkpoint(state, base) == cfg
    # A checkpoint of the old layout loads without a warning (the user cannot change it).
    old = config.to_dict(trained)
    old["train"]["seed"] = old["runtime"].pop("seed")
    old["out_dir"] = old["runtime"].pop("out_dir")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert config.from_checkpoint({"config": old}, base) == cfg
    built = config.build(None, [("eval.batch_size", "64"), ("runtime.out_dir", str(tmp_path / "e2"))],
                         checkpoint=state)
    assert built.model.width == 8 and built.eval.batch_size == 64 and built.data.root is None
    assert built.runtime.out_dir == str(tmp_path / "e2")
