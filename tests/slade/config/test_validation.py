"""Value rules, checked when a config is built (before any data is read): each message names the dotted field,
the bad value and what is allowed."""
import contextlib
import math
import os
import subprocess
import typing

import pytest

from slade import config
from slade.config.schema import leaves
from slade.config.validation import RANGES, problems


@pytest.fixture(autouse=True)
def _in_tmp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # the presets' relative out_dir must be writable


def build(*pairs):
    return config.build(None, list(pairs))


# A hostile user's overrides (each raised only after a stage had trained, or never, before the config checked
# itself) and the message that now stops them.
HOSTILE = [
    ("student.epochs", "-1", r"student\.epochs: got -1, must be an integer >= 1"),
    ("student.selection", "agreee", r"student\.selection: got 'agreee', must be one of 'none', 'literal', 'agree'"),
    ("student.sd_beta", "1.5", r"student\.sd_beta: got 1\.5, must be a finite number in \[0, 1\)"),
    ("train.epochs", "-1", r"train\.epochs: got -1, must be an integer >= 1"),
    ("train.batch_size", "0", r"train\.batch_size: got 0, must be an integer >= 1"),
    ("loss.name", "triplet", r"loss\.name: got 'triplet', must be one of 'multi_similarity', 'contrastive'"),
    ("data.channels", "2", r"data\.channels: got 2, must be one of 1, 3"),
    ("student.lr", "-1", r"student\.lr: got -1\.0, must be a finite number > 0 \(or null for the teacher's "
                         r"learning rate\)"),
    ("train.lr", "nan", r"train\.lr: got nan, must be a finite number > 0"),
    ("student.lambda2", "nan", r"student\.lambda2: got nan, must be a finite number >= 0"),
    ("selfsup.epochs", "-1", r"selfsup\.epochs: got -1, must be an integer >= 1 \(0 only with "
                             r"selfsup\.enabled=false\)"),
    ("student.warmup_steps", "-5", r"student\.warmup_steps: got -5, must be an integer >= 0"),
    ("eval.grid_queries", "-1", r"eval\.grid_queries: got -1, must be an integer >= 0"),
    ("student.checkpoint_every", "-1", r"student\.checkpoint_every: got -1, must be an integer >= 0"),
    ("selftrain.rounds", "0", r"selftrain\.rounds: got 0, must be an integer >= 1"),
    ("selftrain.folds", "0", r"selftrain\.folds: got 0, must be an integer >= 1"),
    ("student.init", "random", r"student\.init: got 'random', must be one of 'selfsup', 'teacher'"),
    ("train.optimizer", "sgd", r"train\.optimizer: got 'sgd', must be one of 'adamw', 'rmsprop'"),
    ("train.scheduler", "linear", r"train\.scheduler: got 'linear', must be one of 'none', 'cosine', 'step'"),
    ("loss.miner", "hard", r"loss\.miner: got 'hard', must be one of 'multi_similarity', 'none'"),
    ("data.name", "imagenet", r"data\.name: got 'imagenet', must be one of 'glyphs', 'fashion-mnist'"),
    ("data.unlabeled_format", "tar", r"data\.unlabeled_format: got 'tar', must be one of 'folder', 'nabirds'"),
    ("student.sd_grad", "both", r"student\.sd_grad: got 'both', must be one of 'paper', 'batch'"),
    ("student.selection_negatives", "all",
     r"student\.selection_negatives: got 'all', must be one of 'threshold', 'pseudo'"),
    ("eval.knn_backend", "annoy", r"eval\.knn_backend: got 'annoy', must be one of 'auto', 'faiss', 'torch'"),
    ("model.backbone", "resnet50", r"model\.backbone: got 'resnet50', must be one of 'small_cnn', "
                                   r"'efficientnet_lite0', 'torchvision:<name>'"),
    ("model.backbone", "torchvision:9net", r"model\.backbone: got 'torchvision:9net'"),
    ("model.backbone", "torchvision:resnet18", r"model\.weights: got None, must be a local weights file"),
    ("runtime.device", "gpu", r"runtime\.device: got 'gpu', must be one of 'auto', 'cpu', 'cuda', 'cuda:N'"),
    ("runtime.device", "cuda:x", r"runtime\.device: got 'cuda:x'"),
    ("runtime.seed", "-1", r"runtime\.seed: got -1, must be an integer >= 0"),
    ("runtime.workers", "-2", r"runtime\.workers: got -2, must be an integer >= 0"),
    ("runtime.out_dir", "''", r"runtime\.out_dir: got '', must be a directory path"),
    ("pseudo.k", "0", r"pseudo\.k: got 0, must be an integer >= 1"),
    ("data.val_fraction", "1.0", r"data\.val_fraction: got 1\.0, must be a finite number in \[0, 1\)"),
    ("data.image_size", "4", r"data\.image_size: got 4, must be an integer >= 8"),
    ("data.n_fonts", "2", r"data\.n_fonts: got 2, must be an integer >= 4"),
    ("data.n_train_classes", "5000", r"data\.n_train_classes: got 5000, must be an integer in \[0, 791\]"),
    ("data.class_depth", "0", r"data\.class_depth: got 0, must be an integer >= 1"),
    ("selfsup.batch_size", "1", r"selfsup\.batch_size: got 1, must be an integer >= 2"),
    ("selfsup.temperature", "0", r"selfsup\.temperature: got 0\.0, must be a finite number > 0"),
    ("selfsup.erase_prob", "1.5", r"selfsup\.erase_prob: got 1\.5, must be a finite number in \[0, 1\]"),
    ("selfsup.scale", "[1.2, 0.8]", r"selfsup\.scale: got \[1\.2, 0\.8\], must be \[low, high\] with low <= high"),
    ("selfsup.scale", "[0.8]", r"selfsup\.scale: got \[0\.8\], must be a list \[low, high\]"),
    ("selfsup.scale", "[0, 1]", r"selfsup\.scale\[0\]: got 0\.0, must be a finite number > 0"),
    ("eval.recall_ks", "[1, 0]", r"eval\.recall_ks\[1\]: got 0, must be an integer >= 1"),
    ("eval.recall_ks", "[]", r"eval\.recall_ks: got \[\], must be a non-empty list"),
    ("train.warmup_epochs", "-1", r"train\.warmup_epochs: got -1, must be an integer >= 0"),
    ("student.ce_scale", "0", r"student\.ce_scale: got 0\.0, must be a finite number > 0"),
    ("student.basis_lr", "inf", r"student\.basis_lr: got inf, must be a finite number > 0"),
    ("model.embedding_dim", "0", r"model\.embedding_dim: got 0, must be an integer >= 1"),
    ("train.visits_per_class", "0", r"train\.visits_per_class: got 0, must be an integer >= 1"),
]


@pytest.mark.parametrize("key, raw, message", HOSTILE, ids=[f"{k}={v}" for k, v, _ in HOSTILE])
def test_hostile_overrides_are_stopped_with_field_value_and_allowed(key, raw, message):
    with pytest.raises(config.ConfigError, match=message):
        build((key, raw))


def test_student_lr_is_named_as_itself_not_train_lr():
    with pytest.raises(config.ConfigError) as info:
        build(("student.lr", "-1"))
    assert "student.lr" in str(info.value) and "train.lr" not in str(info.value)
    with pytest.raises(config.ConfigError, match="student.lr: got 0.0"):  # 0 would silently fall back to train.lr
        build(("student.lr", "0"))


FLOATS = [(name, typing.get_origin(hint) is list) for name, hint, _ in leaves()
          if float in (typing.get_args(hint) or (hint,))]


@pytest.mark.parametrize("name, is_list", FLOATS, ids=[name for name, _ in FLOATS])
@pytest.mark.parametrize("raw", ["nan", ".nan", "inf", "-.inf"])
def test_no_float_field_takes_nan_or_inf(name, is_list, raw):
    with pytest.raises(config.ConfigError, match=rf"{name}{'.0.' if is_list else ''}: got -?(nan|inf)"):
        build((name, f"[{raw}, 1.0]" if is_list else raw))


def test_every_number_has_a_rule():
    numbers = {name for name, hint, _ in leaves()
               if {int, float} & set(typing.get_args(hint) or (hint,))}
    assert numbers == set(RANGES)


def test_cross_field_rules():
    with pytest.raises(config.ConfigError, match=r"student\.selection: got 'agree', must be 'none' when "
                                                 r"student\.basis=false"):
        build(("student.basis", "false"))
    assert build(("student.basis", "false"), ("student.selection", "none")).student.basis is False
    with pytest.raises(config.ConfigError, match=r"student\.unlabeled_batch / student\.unlabeled_m = 8 clusters per "
                                                 r"batch, more than pseudo\.k=4"):
        build(("pseudo.k", "4"))
    with pytest.raises(config.ConfigError, match=r"train\.batch_size: got 30, must be a multiple of "
                                                 r"train\.m_per_class=4"):
        build(("train.batch_size", "30"))
    with pytest.raises(config.ConfigError, match=r"student\.labeled_batch: got 30, must be a multiple of "
                                                 r"train\.m_per_class=4"):
        build(("student.labeled_batch", "30"))
    with pytest.raises(config.ConfigError, match=r"student\.unlabeled_batch: got 30, must be a multiple of "
                                                 r"student\.unlabeled_m=4"):
        build(("student.unlabeled_batch", "30"))
    with pytest.raises(config.ConfigError, match=r"selfsup\.epochs: got 0, must be an integer >= 1"):
        build(("selfsup.epochs", "0"))
    assert build(("selfsup.epochs", "0"), ("selfsup.enabled", "false")).selfsup.epochs == 0
    with pytest.raises(config.ConfigError, match=r"selfsup\.epochs: got -1, must be an integer >= 0"):
        build(("selfsup.epochs", "-1"), ("selfsup.enabled", "false"))
    with pytest.raises(config.ConfigError, match=r"data\.root: got None, must be the data set's directory "
                                                 r"\(required for data\.name='cub200'\)"):
        build(("data.name", "cub200"))
    assert build(("data.name", "cub200"), ("data.root", "/data/cub")).data.root == "/data/cub"


def test_glyph_class_counts_against_the_samplers():
    # 12 training classes, 10 % held out for validation -> max(2, round(1.2)) = 2 held out, 10 to train on.
    small = [("data.n_train_classes", "12")]
    assert build(*small, ("train.batch_size", "40"), ("student.labeled_batch", "40"))
    with pytest.raises(config.ConfigError, match=r"train\.batch_size: got 44, must be at most 40: train\.batch_size "
                                                 r"/ train\.m_per_class = 11 classes per batch, but the labeled set "
                                                 r"has 10 classes"):
        build(*small, ("train.batch_size", "44"))
    with pytest.raises(config.ConfigError, match=r"student\.labeled_batch: got 44, must be at most 40"):
        build(*small, ("student.labeled_batch", "44"))
    with pytest.raises(config.ConfigError, match=r"data\.val_fraction: got 0\.75, must leave at least 2 of the 4 "
                                                 r"training classes \(data\.n_train_classes\) to train on; it holds "
                                                 r"out 3"):
        build(("data.n_train_classes", "4"), ("data.val_fraction", "0.75"))
    # 4 folds of the 10 classes: the largest holds 3 out, leaving 7 classes = 28 items in batches of 4 per class.
    folds = [*small, ("selftrain.folds", "4")]
    assert build(*folds, ("train.batch_size", "28"), ("student.labeled_batch", "28"))
    with pytest.raises(config.ConfigError, match=r"train\.batch_size: got 32, must be at most 28"):
        build(*folds)
    with pytest.raises(config.ConfigError, match=r"selftrain\.folds: got 6, must be at most 5"):
        build(*small, ("selftrain.folds", "6"))


def test_all_problems_are_reported_at_once():
    with pytest.raises(config.ConfigError) as info:
        build(("train.epochs", "-1"), ("student.sd_beta", "1.5"), ("runtime.workers", "-1"))
    assert len(info.value.errors) == 3 and str(info.value).startswith("invalid config (3 problems):")
    assert [e.split(":")[0] for e in info.value.errors] == ["train.epochs", "student.sd_beta", "runtime.workers"]


def test_configs_built_in_python_are_checked_too():
    cfg = config.Config()
    cfg.student.selection = "agreee"
    cfg.train.epochs = "many"
    cfg.eval.recall_ks = [1, "ten"]
    cfg.train.lr = float("nan")
    with pytest.raises(config.ConfigError) as info:
        config.validate(cfg)
    assert info.value.errors == ["train.epochs: expected int, got 'many'", "train.lr: got nan, must be a finite "
                                 "number > 0", "eval.recall_ks[1]: expected int, got 'ten'",
                                 "student.selection: got 'agreee', must be one of 'none', 'literal', 'agree', 'veto'"]


def test_out_dir_that_is_a_file(tmp_path):
    (tmp_path / "taken").write_text("x")
    with pytest.raises(config.ConfigError, match=r"runtime\.out_dir: got '.*taken', must be a directory, but it is an "
                                                 r"existing file"):
        build(("runtime.out_dir", str(tmp_path / "taken")))
    with pytest.raises(config.ConfigError, match=r"runtime\.out_dir: got '.*taken/run', must be a directory path, "
                                                 r"but '.*taken' is a file"):
        build(("runtime.out_dir", str(tmp_path / "taken" / "run")))
    assert build(("runtime.out_dir", str(tmp_path / "new" / "deeper"))).runtime.out_dir.endswith("deeper")
    assert not (tmp_path / "new").exists()  # validation creates nothing
    assert list(tmp_path.iterdir()) == [tmp_path / "taken"]  # nor leaves its write test behind
    with pytest.raises(config.ConfigError, match=r"data\.cache_dir: got '.*taken', must be a directory, but it is an "
                                                 r"existing file"):
        build(("data.cache_dir", str(tmp_path / "taken")))
    # filesystem=False (presets, a config inspected elsewhere) checks the values only.
    assert config.build(None, [("runtime.out_dir", str(tmp_path / "taken"))], filesystem=False)


def _is_read_only(directory) -> bool:
    try:
        (directory / "probe").write_text("x")
    except OSError:
        return True
    (directory / "probe").unlink()
    return False


@contextlib.contextmanager
def read_only(directory):
    """A directory nobody can create files in: chmod 555, or for root (whom modes do not stop) the immutable flag."""
    directory.chmod(0o555)
    immutable = False
    try:
        if not _is_read_only(directory):
            immutable = subprocess.run(["chattr", "+i", str(directory)], capture_output=True).returncode == 0
            if not (immutable and _is_read_only(directory)):
                pytest.skip("neither chmod nor chattr +i makes a directory read-only here")
        yield directory
    finally:
        if immutable:
            subprocess.run(["chattr", "-i", str(directory)], check=True)
        directory.chmod(0o755)


def test_read_only_out_dir_and_read_only_parent(tmp_path):
    (tmp_path / "locked").mkdir()
    with read_only(tmp_path / "locked") as locked:
        with pytest.raises(config.ConfigError, match=r"runtime\.out_dir: got '.*locked', must be a writable "
                                                     r"directory: (Permission denied|Operation not permitted)"):
            build(("runtime.out_dir", str(locked)))
        with pytest.raises(config.ConfigError, match=r"runtime\.out_dir: got '.*locked/a/b', must be a writable "
                                                     r"directory \(it would be created under '.*locked'\)"):
            build(("runtime.out_dir", str(locked / "a" / "b")))


def test_out_dir_write_check_as_root_does_not_trust_os_access(tmp_path, monkeypatch):
    """os.access says yes for root; the check creates a file for real, so a failing create is reported."""
    import tempfile

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(os, "access", lambda *a, **k: True)
    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    with pytest.raises(config.ConfigError, match=r"runtime\.out_dir: got '.*ro', must be a writable directory \(it "
                                                 r"would be created under '.*'\): Permission denied"):
        build(("runtime.out_dir", str(tmp_path / "ro")))


def test_torchvision_weights_must_exist(tmp_path):
    with pytest.raises(config.ConfigError, match=r"model\.weights: got '.*missing\.pt', must be an existing weights "
                                                 r"file \(model\.backbone='torchvision:resnet18'\)"):
        build(("model.backbone", "torchvision:resnet18"), ("model.weights", str(tmp_path / "missing.pt")))
    (tmp_path / "w.pt").write_bytes(b"")
    cfg = build(("model.backbone", "torchvision:resnet18"), ("model.weights", str(tmp_path / "w.pt")))
    assert cfg.model.backbone == "torchvision:resnet18"
    # Without the file system checks (presets, checkpoints on another machine) only the values count.
    assert config.build(None, [("model.backbone", "torchvision:resnet18"), ("model.weights", "/elsewhere/w.pt")],
                        filesystem=False).model.weights == "/elsewhere/w.pt"


def test_valid_edges_pass():
    cfg = build(("student.sd_beta", "0"), ("data.val_fraction", "0"), ("student.warmup_steps", "0"),
                ("eval.grid_queries", "0"), ("student.checkpoint_every", "0"), ("runtime.device", "cuda:1"),
                ("loss.base", "-1.5"), ("student.lr", "null"), ("data.channels", "3"), ("student.init", "teacher"))
    assert cfg.student.sd_beta == 0 and cfg.runtime.device == "cuda:1" and cfg.data.channels == 3
    assert problems(cfg) == []
    assert math.isclose(build(("train.lr", "1e-4")).train.lr, 1e-4)
