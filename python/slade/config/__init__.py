"""The run configuration: one dataclass tree (schema.py), loadable from YAML or JSON and overridable by dotted paths
(loading.py), checked before any data is read (validation.py), with built-in presets (builtin.py, the files of
configs/) and one entry point for commands (assembly.build)."""
from slade.config.assembly import build, from_checkpoint, load
from slade.config.builtin import DEFAULT_PRESET, default, preset, preset_names, preset_path
from slade.config.errors import ConfigError, DeprecatedKeyWarning
from slade.config.loading import from_dict, override, save, to_dict
from slade.config.schema import (PATH_FIELDS, RENAMED, Config, DataConfig, EvalConfig, LossConfig, ModelConfig,
                                 PseudoLabelConfig, RuntimeConfig, SelfSupConfig, SelfTrainConfig, StudentConfig,
                                 TrainConfig)
from slade.config.validation import validate

__all__ = [
    "Config", "DataConfig", "ModelConfig", "LossConfig", "TrainConfig", "EvalConfig", "SelfSupConfig",
    "PseudoLabelConfig", "StudentConfig", "SelfTrainConfig", "RuntimeConfig",
    "ConfigError", "DeprecatedKeyWarning", "PATH_FIELDS", "RENAMED", "DEFAULT_PRESET",
    "load", "from_dict", "to_dict", "override", "save", "validate", "build", "from_checkpoint",
    "default", "preset", "preset_names", "preset_path",
]
