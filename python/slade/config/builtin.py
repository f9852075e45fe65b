"""The built-in presets: the YAML files of the repository's configs/ folder, installed as the package data
`slade.presets` (setup.py), found by name (`preset("glyphs_cpu")`) or by path.

glyphs_cpu is the default of every command (`slade run`, `slade train-teacher`): the whole pipeline on the glyph
benchmark sized for two CPU cores. ablation_base is the ablation's (slade.pipeline.ablation)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

from slade.config.errors import ConfigError
from slade.config.loading import from_file
from slade.config.schema import Config
from slade.config.validation import validate

DEFAULT_PRESET = "glyphs_cpu"
SUFFIXES = (".yaml", ".yml", ".json")


def preset_dirs() -> list[Path]:
    """Where presets are looked for: the installed package data, then a source checkout's configs/."""
    dirs = []
    try:
        spec = importlib.util.find_spec("slade.presets")
    except (ImportError, ValueError):
        spec = None
    if spec is not None and spec.submodule_search_locations:
        dirs += [Path(p) for p in spec.submodule_search_locations]
    dirs.append(Path(__file__).resolve().parents[3] / "configs")  # python/slade/config/ -> the repository root
    seen, out = set(), []
    for d in dirs:
        if d.is_dir() and d.resolve() not in seen:
            seen.add(d.resolve())
            out.append(d)
    return out


def preset_names() -> list[str]:
    return sorted({p.stem for d in preset_dirs() for p in d.iterdir() if p.suffix in SUFFIXES})


def is_preset_name(source) -> bool:
    return isinstance(source, str) and bool(source) and "/" not in source and "\\" not in source \
        and not source.endswith(SUFFIXES)


def preset_path(name: str) -> Path:
    """The file of the preset called `name` (e.g. 'glyphs_cpu')."""
    for d in preset_dirs():
        for suffix in SUFFIXES:
            if (d / f"{name}{suffix}").is_file():
                return d / f"{name}{suffix}"
    raise ConfigError(f"no preset named {name!r}; the presets are {', '.join(preset_names()) or 'missing'} "
                      "(or give the path of a config file)")


def read_preset(name_or_path: str | Path, warn: bool = True) -> Config:
    """Unvalidated: the CLI validates once, after its overrides."""
    if is_preset_name(name_or_path) and not Path(name_or_path).is_file():
        return from_file(preset_path(name_or_path), warn)
    if not Path(name_or_path).is_file():
        raise FileNotFoundError(f"config file {str(name_or_path)!r} does not exist (the presets, by name: "
                                f"{', '.join(preset_names())})")
    return from_file(name_or_path, warn)


def preset(name_or_path: str | Path = DEFAULT_PRESET) -> Config:
    """A preset by name ('glyphs_cpu', 'ablation_base', ...) or a config file by path, its values validated (the
    file system is not: see validate)."""
    return validate(read_preset(name_or_path), filesystem=False)


def default() -> Config:
    """The default of every command: the glyphs_cpu preset."""
    return preset(DEFAULT_PRESET)
