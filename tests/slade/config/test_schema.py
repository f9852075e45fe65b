"""The dataclass tree: defaults unchanged by the move into runtime, choices as Literal, the path fields."""
import dataclasses
import typing

from slade import config
from slade.config.schema import hints, leaves

# Config() before the split, with train.device/seed/amp, data.workers and out_dir moved into runtime, and the
# student options added since (each default keeps the earlier behaviour).
DEFAULTS = {
    "data": {"name": "glyphs", "root": None, "unlabeled_root": None, "unlabeled_format": "folder", "class_depth": 1,
             "image_size": 32, "channels": 1, "val_fraction": 0.1, "seed": 0, "fonts": None, "n_fonts": None,
             "n_train_classes": None, "n_test_classes": None, "n_novel_classes": None, "jitter": True,
             "cache_dir": None, "photo": None},
    "model": {"backbone": "small_cnn", "weights": None, "pretrained": True, "width": 32, "embedding_dim": 128},
    "loss": {"name": "multi_similarity", "alpha": 2.0, "beta": 50.0, "base": 0.5, "pos_margin": 0.0,
             "neg_margin": 1.0, "miner": "multi_similarity", "miner_epsilon": 0.1},
    "train": {"epochs": 20, "batch_size": 32, "m_per_class": 4, "visits_per_class": 1, "optimizer": "adamw",
              "lr": 1e-3, "weight_decay": 1e-4, "scheduler": "cosine", "warmup_epochs": 0, "step_size": 10,
              "gamma": 0.1},
    "eval": {"batch_size": 256, "recall_ks": [1, 10, 20, 40], "clustering": True, "knn_backend": "auto",
             "grid_queries": 8},
    "selfsup": {"enabled": True, "epochs": 10, "batch_size": 128, "lr": 1e-3, "temperature": 0.2,
                "projection_dim": 64, "rotation": 10.0, "scale": [0.8, 1.15], "shift": 0.1, "erase_prob": 0.5},
    "pseudo": {"k": 400, "iterations": 20, "gpu": True},
    "student": {"epochs": 20, "labeled_batch": 32, "unlabeled_batch": 32, "unlabeled_m": 4, "lr": None,
                "basis_lr": None, "basis": True, "selection": "literal", "selection_negatives": "threshold",
                "lambda1": 1.0, "lambda2": 0.25, "sd_margin": 0.5, "sd_lambda_var": 1.0, "sd_beta": 0.99,
                "sd_grad": "paper", "warmup_steps": 100, "restart_averages": True, "ce_scale": 1.0,
                "init": "selfsup", "checkpoint_every": 50,
                # added later, defaults keep the earlier behaviour
                "basis_lr_mult": 1.0, "basis_logits": "linear", "ce_detach": False, "t_pos_quantile": None,
                "t_neg_quantile": None, "warmup_ce_ratio": None,
                # a deliberate change: the warm-up no longer takes a small student's whole budget (docs/method.md)
                "warmup_max_fraction": 0.3},
    "selftrain": {"rounds": 1, "folds": 1},
    "runtime": {"device": "auto", "seed": 0, "amp": True, "workers": 0, "out_dir": "runs/teacher", "sync_batchnorm": True},
}


def test_defaults_are_unchanged_except_for_the_runtime_section():
    assert config.to_dict(config.Config()) == DEFAULTS
    assert config.validate(config.Config(), filesystem=False) == config.Config()


def test_choice_fields_are_literals():
    expected = {
        "data.name": ("glyphs", "fashion-mnist", "cub200", "cars196", "inshop", "folders"),
        "data.unlabeled_format": ("folder", "nabirds"),
        "data.channels": (1, 3),
        "loss.name": ("multi_similarity", "contrastive"),
        "loss.miner": ("multi_similarity", "none"),
        "train.optimizer": ("adamw", "rmsprop"),
        "train.scheduler": ("none", "cosine", "step"),
        "eval.knn_backend": ("auto", "faiss", "torch"),
        "student.selection": ("none", "literal", "agree", "veto"),
        "student.basis_logits": ("linear", "cosine"),
        "student.selection_negatives": ("threshold", "pseudo"),
        "student.sd_grad": ("paper", "batch"),
        "student.init": ("selfsup", "teacher"),
    }
    literals = {name: typing.get_args(hint) for name, hint, _ in leaves()
                if typing.get_origin(hint) is typing.Literal}
    assert literals == expected


def test_path_fields():
    assert config.PATH_FIELDS == ("data.root", "data.unlabeled_root", "data.fonts", "data.cache_dir",
                                  "model.weights", "runtime.out_dir")


def test_renamed_fields_left_their_old_sections():
    names = {name for name, _, _ in leaves()}
    for old, new in config.RENAMED.items():
        assert old not in names and new in names
    assert "seed" in hints(config.DataConfig)  # the data set's own seed stays
    assert [f.name for f in dataclasses.fields(config.RuntimeConfig)] == ["device", "seed", "amp", "workers",
                                                                          "out_dir", "sync_batchnorm"]
