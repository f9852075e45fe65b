"""The command line's config options: --set KEY=VALUE and dotted flags become overrides in order, malformed ones are
named, and the config is validated before a command does anything."""
import pytest

from slade import config
from slade.cli.config_args import override_pairs
from slade.cli.main import main


def test_sets_and_flags_become_ordered_pairs():
    pairs = override_pairs(["train.lr=1e-3", "student.epochs = 3"],
                           ["--runtime.seed", "4", "--eval.recall-ks=[1, 5]", "--out-dir", "x"])
    assert pairs == [("train.lr", "1e-3"), ("student.epochs", " 3"), ("runtime.seed", "4"),
                     ("eval.recall_ks", "[1, 5]"), ("out_dir", "x")]


@pytest.mark.parametrize("sets,extra,match", [(["train.lr"], [], "--set expects KEY=VALUE, got 'train.lr'"),
                                              ([], ["--train.lr"], "--train.lr needs a value"),
                                              ([], ["stray"], "unexpected argument 'stray'")])
def test_malformed_overrides_are_named(sets, extra, match):
    with pytest.raises(config.ConfigError, match=match):
        override_pairs(sets, extra)


@pytest.mark.parametrize("flag,field", [("--student.epochs=-1", "student.epochs"),
                                        ("--student.selection=agreee", "student.selection"),
                                        ("--train.lr=nan", "train.lr")])
def test_bad_values_stop_the_command_before_any_data_is_read(tmp_path, capsys, flag, field):
    out = tmp_path / "run"
    assert main(["run", flag, "--runtime.out_dir", str(out), "--data.cache_dir", str(tmp_path / "c")]) == 2
    assert f"{field}: got" in capsys.readouterr().err
    assert not (tmp_path / "c").exists() and not (out / "init").exists()
