"""slade: the thin training layer (data sets, backbones, evaluation, teacher training, CLI) over slade_ext."""

__version__ = "0.1.0"
