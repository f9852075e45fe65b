"""Value rules of the config, checked before any data is read: ranges of the numbers (NaN and inf are rejected in
every float field), the choices, and the rules that tie fields together (sampler batch shapes, the student's
selection and basis, the clusters per batch against pseudo.k, the glyph benchmark's class counts). With
filesystem=True also the paths that are written or must exist: runtime.out_dir (a writable directory, or creatable
under one) and model.weights (for torchvision backbones).

Every problem is a line "<dotted field>: got <value>, must be <allowed values or range>"; validate() collects them
all and raises one ConfigError."""
from __future__ import annotations

import math
import os
import re
import tempfile
import typing
from dataclasses import dataclass
from pathlib import Path

from slade.config.errors import ConfigError
from slade.config.loading import coerce
from slade.config.schema import Config, get, leaves


@dataclass(frozen=True)
class Range:
    """lo <= x (lo < x when lo_open), x <= hi (x < hi when hi_open); None: unbounded. Floats must be finite."""
    lo: float | None = None
    hi: float | None = None
    lo_open: bool = False
    hi_open: bool = False
    note: str = ""  # appended to the description, e.g. what null means

    def ok(self, x) -> bool:
        if isinstance(x, float) and not math.isfinite(x):
            return False
        if self.lo is not None and (x <= self.lo if self.lo_open else x < self.lo):
            return False
        return self.hi is None or (x < self.hi if self.hi_open else x <= self.hi)

    def describe(self, integer: bool) -> str:
        kind = "an integer" if integer else "a finite number"
        if self.lo is not None and self.hi is not None:
            text = f"{kind} in {'(' if self.lo_open else '['}{self.lo:g}, {self.hi:g}{')' if self.hi_open else ']'}"
        elif self.lo is not None:
            text = f"{kind} {'>' if self.lo_open else '>='} {self.lo:g}"
        elif self.hi is not None:
            text = f"{kind} {'<' if self.hi_open else '<='} {self.hi:g}"
        else:
            text = kind
        return f"{text} ({self.note})" if self.note else text


ANY = Range()
POSITIVE = Range(0, lo_open=True)
NON_NEGATIVE = Range(0)
AT_LEAST_1 = Range(1)
PROBABILITY = Range(0, 1)
MIN_GLYPH_FONTS = 4  # slade/data/glyphs/benchmark.py MIN_FONTS
MIN_IMAGE_SIZE = 8  # slade/data/glyphs/grid.py; the small CNN pools three times

# The range of every int and float field (of each element for lists). A field of those types without an entry
# fails test_every_number_has_a_rule: new fields must say what they accept.
RANGES: dict[str, Range] = {
    "data.class_depth": AT_LEAST_1,
    "data.image_size": Range(MIN_IMAGE_SIZE),
    "data.val_fraction": Range(0, 1, hi_open=True),
    "data.seed": NON_NEGATIVE,
    "data.n_fonts": Range(MIN_GLYPH_FONTS),
    "data.n_train_classes": NON_NEGATIVE,  # upper bounds: _glyph_classes
    "data.n_test_classes": NON_NEGATIVE,
    "data.n_novel_classes": NON_NEGATIVE,
    "model.width": AT_LEAST_1,
    "model.embedding_dim": AT_LEAST_1,
    "loss.alpha": POSITIVE,
    "loss.beta": POSITIVE,
    "loss.base": ANY,
    "loss.pos_margin": ANY,
    "loss.neg_margin": ANY,
    "loss.miner_epsilon": ANY,
    "train.epochs": AT_LEAST_1,
    "train.batch_size": AT_LEAST_1,
    "train.m_per_class": AT_LEAST_1,
    "train.visits_per_class": AT_LEAST_1,
    "train.lr": POSITIVE,
    "train.weight_decay": NON_NEGATIVE,
    "train.warmup_epochs": NON_NEGATIVE,
    "train.step_size": AT_LEAST_1,
    "train.gamma": POSITIVE,
    "eval.batch_size": AT_LEAST_1,
    "eval.recall_ks": AT_LEAST_1,
    "eval.grid_queries": NON_NEGATIVE,
    "selfsup.epochs": Range(1, note="0 only with selfsup.enabled=false"),  # see _rule
    "selfsup.batch_size": Range(2),
    "selfsup.lr": POSITIVE,
    "selfsup.temperature": POSITIVE,
    "selfsup.projection_dim": AT_LEAST_1,
    "selfsup.rotation": NON_NEGATIVE,
    "selfsup.scale": POSITIVE,
    "selfsup.shift": NON_NEGATIVE,
    "selfsup.erase_prob": PROBABILITY,
    "pseudo.k": AT_LEAST_1,
    "pseudo.iterations": AT_LEAST_1,
    "student.epochs": AT_LEAST_1,
    "student.labeled_batch": AT_LEAST_1,
    "student.unlabeled_batch": AT_LEAST_1,
    "student.unlabeled_m": AT_LEAST_1,
    "student.lr": Range(0, lo_open=True, note="or null for the teacher's learning rate"),
    "student.basis_lr": Range(0, lo_open=True, note="or null for the student's learning rate"),
    "student.basis_lr_mult": POSITIVE,
    "student.t_pos_quantile": Range(0, 1, lo_open=True, hi_open=True, note="or null for mu+"),
    "student.t_neg_quantile": Range(0, 1, lo_open=True, hi_open=True, note="or null for mu-"),
    "student.warmup_ce_ratio": Range(0, 1, lo_open=True, note="or null for a fixed warm-up of warmup_steps"),
    "student.lambda1": NON_NEGATIVE,
    "student.lambda2": NON_NEGATIVE,
    "student.sd_margin": ANY,
    "student.sd_lambda_var": NON_NEGATIVE,
    "student.sd_beta": Range(0, 1, hi_open=True),
    "student.warmup_steps": NON_NEGATIVE,
    "student.warmup_max_fraction": Range(0, 1),
    "student.ce_scale": POSITIVE,
    "student.checkpoint_every": NON_NEGATIVE,
    "selftrain.rounds": AT_LEAST_1,
    "selftrain.folds": AT_LEAST_1,
    "runtime.seed": NON_NEGATIVE,
    "runtime.workers": NON_NEGATIVE,
}

BACKBONE = re.compile(r"small_cnn|efficientnet_lite0|torchvision:[A-Za-z_][A-Za-z0-9_.]*")
DEVICE = re.compile(r"auto|cpu|cuda(:[0-9]+)?")
NEEDS_ROOT = ("cub200", "cars196", "inshop", "folders")  # slade/data/benchmark.py _require_root


def _bad(path: str, value, allowed: str) -> str:
    return f"{path}: got {value!r}, must be {allowed}"


def _rule(cfg: Config, path: str) -> Range | None:
    if path == "selfsup.epochs" and cfg.selfsup.enabled is False:
        return NON_NEGATIVE  # no self-supervised stage: its epochs do not matter
    return RANGES.get(path)


def _types_and_ranges(cfg: Config) -> list[str]:
    errors = []
    for path, hint, _ in leaves():
        value = get(cfg, path)
        try:
            coerce(value, hint, path, strict=True)
        except ConfigError as err:
            errors.append(str(err))
            continue
        rule = _rule(cfg, path)
        if rule is None or value is None:
            continue
        integer = int in (typing.get_args(hint) or (hint,))
        for i, x in enumerate(value if isinstance(value, list) else [value]):
            if not rule.ok(x):
                where = f"{path}[{i}]" if isinstance(value, list) else path
                errors.append(_bad(where, x, rule.describe(integer)))
    return errors


def _glyph_classes(cfg: Config) -> tuple[list[str], int | None]:
    """Errors of the glyph class counts, and the number of labeled (fit) classes when it is known."""
    from slade.data.glyphs import classes  # plain Python: the characters come from the codecs

    d, errors = cfg.data, []
    available = {"n_train_classes": len(classes.train_characters()), "n_test_classes": len(classes.test_characters()),
                 "n_novel_classes": len(classes.novel_jis_characters())}
    for name, most in available.items():
        n = getattr(d, name)
        if isinstance(n, int) and n > most:
            errors.append(_bad(f"data.{name}", n, f"an integer in [0, {most}] (the benchmark's classes) or null"))
    n = available["n_train_classes"] if d.n_train_classes is None else d.n_train_classes
    if errors:
        return errors, None
    if d.val_fraction == 0:  # slade/data/class_split.py hold_out_classes, the same arithmetic
        return errors, n
    n_val = max(2, round(d.val_fraction * n))
    if n_val > n - 2:
        errors.append(f"data.val_fraction: got {d.val_fraction!r}, must leave at least 2 of the {n} training classes "
                      f"(data.n_train_classes) to train on; it holds out {n_val}")
        return errors, None
    return errors, n - n_val


def _samplers(cfg: Config, fit_classes: int | None) -> list[str]:
    """slade/data/samplers.py MPerClassBatchSampler: batch_size a positive multiple of m, and no more classes per
    batch than the labels hold."""
    t, s, errors = cfg.train, cfg.student, []
    batches = [("train.batch_size", t.batch_size, "train.m_per_class", t.m_per_class),
               ("student.labeled_batch", s.labeled_batch, "train.m_per_class", t.m_per_class),
               ("student.unlabeled_batch", s.unlabeled_batch, "student.unlabeled_m", s.unlabeled_m)]
    labeled, folds = fit_classes, cfg.selftrain.folds
    if fit_classes is not None and folds > 1:
        if fit_classes < 2 * folds:
            errors.append(f"selftrain.folds: got {folds}, must be at most {fit_classes // 2} (the folds need 2 of the "
                          f"{fit_classes} labeled classes each)")
            labeled = None
        else:  # slade/data/folds.py: fold i trains on the other folds' classes; the largest fold leaves the fewest
            labeled = fit_classes - -(-fit_classes // folds)
    for name, size, m_name, m in batches:
        if size % m:
            errors.append(f"{name}: got {size}, must be a multiple of {m_name}={m} (m items per class)")
        elif labeled is not None and name != "student.unlabeled_batch" and size // m > labeled:
            errors.append(f"{name}: got {size}, must be at most {labeled * m}: {name} / {m_name} = {size // m} "
                          f"classes per batch, but the labeled set has {labeled} classes")
    per_batch = s.unlabeled_batch // s.unlabeled_m  # slade/pipeline/selftrain.py _check
    if per_batch > cfg.pseudo.k:
        errors.append(f"student.unlabeled_batch: got {s.unlabeled_batch}, must be at most "
                      f"{cfg.pseudo.k * s.unlabeled_m}: student.unlabeled_batch / student.unlabeled_m = "
                      f"{per_batch} clusters per batch, more than pseudo.k={cfg.pseudo.k}")
    return errors


def _cross_field(cfg: Config) -> list[str]:
    errors = []
    d, m, s = cfg.data, cfg.model, cfg.student
    if d.name in NEEDS_ROOT and not d.root:
        errors.append(_bad("data.root", d.root, f"the data set's directory (required for data.name={d.name!r})"))
    if not BACKBONE.fullmatch(m.backbone):
        errors.append(_bad("model.backbone", m.backbone, "one of 'small_cnn', 'efficientnet_lite0', "
                           "'torchvision:<name>' (with model.weights)"))
    elif m.backbone.startswith("torchvision:") and not m.weights:
        errors.append(_bad("model.weights", m.weights,
                           f"a local weights file: model.backbone={m.backbone!r} needs one"))
    if not DEVICE.fullmatch(cfg.runtime.device):
        errors.append(_bad("runtime.device", cfg.runtime.device, "one of 'auto', 'cpu', 'cuda', 'cuda:N'"))
    if not cfg.runtime.out_dir.strip():
        errors.append(_bad("runtime.out_dir", cfg.runtime.out_dir, "a directory path"))
    if s.selection != "none" and not s.basis:
        errors.append(f"student.selection: got {s.selection!r}, must be 'none' when student.basis=false (confident "
                      "pairs are picked by the feature basis; set student.basis=true)")
    if (s.t_pos_quantile is None) != (s.t_neg_quantile is None):
        errors.append(_bad("student.t_neg_quantile" if s.t_neg_quantile is None else "student.t_pos_quantile", None,
                           "set together with the other quantile (or leave both null for the means)"))
    if len(cfg.eval.recall_ks) == 0:
        errors.append(_bad("eval.recall_ks", cfg.eval.recall_ks, "a non-empty list of integers >= 1"))
    scale = cfg.selfsup.scale
    if len(scale) != 2:
        errors.append(_bad("selfsup.scale", scale, "a list [low, high] of two zoom factors"))
    elif scale[0] > scale[1]:
        errors.append(_bad("selfsup.scale", scale, "[low, high] with low <= high"))
    return errors


def _writable_dir(path: str, field: str) -> str | None:
    """None when `path` is a writable directory or can be created under one (nothing is created here)."""
    p = probe = Path(path).expanduser()
    try:
        if p.exists() and not p.is_dir():
            return f"{field}: got {path!r}, must be a directory, but it is an existing file"
        while not probe.exists():
            probe = probe.parent
        if not probe.is_dir():
            return f"{field}: got {path!r}, must be a directory path, but {str(probe)!r} is a file"
        # os.access lies for root (and on some network file systems): try it for real.
        fd, name = tempfile.mkstemp(dir=probe, prefix=".slade-write-test-")
        os.close(fd)
        os.unlink(name)
    except OSError as err:
        where = "" if probe == p else f" (it would be created under {str(probe)!r})"
        return f"{field}: got {path!r}, must be a writable directory{where}: {err.strerror or err}"
    return None


def _filesystem(cfg: Config) -> list[str]:
    errors = []
    if cfg.runtime.out_dir.strip():
        problem = _writable_dir(cfg.runtime.out_dir, "runtime.out_dir")
        if problem:
            errors.append(problem)
    m = cfg.model
    if m.backbone.startswith("torchvision:") and m.weights and not Path(m.weights).expanduser().is_file():
        errors.append(_bad("model.weights", m.weights, f"an existing weights file (model.backbone={m.backbone!r})"))
    cache = cfg.data.cache_dir
    if cache and Path(cache).expanduser().exists() and not Path(cache).expanduser().is_dir():
        errors.append(_bad("data.cache_dir", cache, "a directory, but it is an existing file"))
    return errors


def problems(cfg: Config, filesystem: bool = True) -> list[str]:
    """Every problem of `cfg`, one line each ([] when it is valid)."""
    errors = _types_and_ranges(cfg)
    if errors:  # the rules below read the values: only once each has its type and range
        return errors
    errors += _cross_field(cfg)
    fit_classes = None
    if cfg.data.name == "glyphs":
        glyph_errors, fit_classes = _glyph_classes(cfg)
        errors += glyph_errors
    errors += _samplers(cfg, fit_classes)
    if filesystem:
        errors += _filesystem(cfg)
    return errors


def validate(cfg: Config, filesystem: bool = True) -> Config:
    """cfg itself when every rule holds; otherwise a ConfigError listing every problem (and .errors)."""
    errors = problems(cfg, filesystem)
    if errors:
        head = "invalid config: " if len(errors) == 1 else f"invalid config ({len(errors)} problems):\n  "
        raise ConfigError(head + "\n  ".join(errors), errors)
    return cfg
