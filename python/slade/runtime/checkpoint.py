"""Checkpoints and stage files: one versioned format, atomic writes (temp file + rename in the same directory, so an
interrupted or failed write never replaces a good file), safe loading (tensors and plain values only: no arbitrary
unpickling) and errors that name the file, what is wrong with it and what to do."""
from __future__ import annotations

import errno
import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

FORMAT = 2  # of every last.pt / best.pt / init.pt / pseudo_labels.pt; 1 was the layout before the one training loop

REDO = "delete it to redo its stage, or run without --resume"


class StageFileError(ValueError):
    """A checkpoint or stage file that exists but cannot be used."""

    def __init__(self, path: Path, problem: str, advice: str = REDO):
        super().__init__(f"{path}: {problem}; {advice}")
        self.path = path


class NoSpaceError(OSError):
    def __init__(self, path: Path):
        super().__init__(errno.ENOSPC, f"no space left on {path.parent} while writing {path.name}; the files "
                                       "written before are intact: free some space and rerun with --resume")


def _is_disk_full(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT):
        return True
    # torch.save reports a short write from its zip writer as "[enforce fail at inline_container.cc] unexpected pos"
    text = str(err)
    return isinstance(err, RuntimeError) and ("unexpected pos" in text or "file write failed" in text)


def _write_atomic(path: Path, write) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as err:
        Path(tmp).unlink(missing_ok=True)
        if _is_disk_full(err):
            raise NoSpaceError(path) from err
        raise


def save_atomic(state: dict, path: str | Path) -> None:
    _write_atomic(Path(path), lambda fh: torch.save(state, fh))


def save_json(data: dict, path: str | Path) -> None:
    _write_atomic(Path(path), lambda fh: fh.write(json.dumps(data, indent=2).encode("utf-8")))


def _require(state, path: Path, what: str, keys) -> dict:
    if not isinstance(state, dict):
        raise StageFileError(path, f"is not a {what} (holds a {type(state).__name__}, not a mapping)")
    missing = [k for k in keys if k not in state]
    if missing:
        raise StageFileError(path, f"is not a {what}: it lacks {', '.join(map(repr, missing))}")
    return state


def load(path: str | Path, what: str = "checkpoint", keys=("format",)) -> dict:
    """The state saved at `path`, which must hold `keys`; a file of another FORMAT is refused."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    if path.stat().st_size == 0:
        raise StageFileError(path, f"is empty (0 bytes), not a {what}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except (EOFError, pickle.UnpicklingError, zipfile.BadZipFile, RuntimeError, ValueError, OSError) as err:
        raise StageFileError(path, f"is not a readable {what} (truncated or corrupt: {type(err).__name__}: "
                                   f"{str(err).splitlines()[0][:200]})") from err
    _require(state, path, what, keys)
    if "format" in keys and state["format"] != FORMAT:
        raise StageFileError(path, f"has checkpoint format {state['format']!r}, this version reads {FORMAT}")
    return state


def load_json(path: str | Path, what: str, keys=()) -> dict:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{what} {str(path)!r} does not exist")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise StageFileError(path, f"is not a readable {what} ({err})") from err
    return _require(data, path, what, keys)


def restore(state: dict, path: Path, **stateful) -> None:
    """Loads state[name] into each named object (model, optimizer, scheduler, scaler...) of a resumed run."""
    for name, obj in stateful.items():
        if name not in state:
            raise StageFileError(path, f"holds no state for {name!r}")
        try:
            obj.load_state_dict(state[name])
        except (RuntimeError, KeyError, ValueError, TypeError) as err:
            raise StageFileError(path, f"does not fit this run's {name} ({str(err).splitlines()[0][:200]})",
                                 "delete it to redo its stage with this config") from err
