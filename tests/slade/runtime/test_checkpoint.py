"""Checkpoints and stage files: a damaged file is named with what is wrong and what to do, a full disk says so and
leaves the earlier file intact, and a checkpoint of another format is refused."""
import json
import os

import pytest
import torch

from slade.runtime import checkpoint
from slade.runtime.checkpoint import NoSpaceError, StageFileError
from slade.runtime.stage_result import StageResult, finished

GOOD = {"format": checkpoint.FORMAT, "model": {"w": torch.ones(3)}, "epoch": 1}


def damaged(path, kind):
    good = path.with_name("good.pt")
    checkpoint.save_atomic(GOOD, good)
    data = good.read_bytes()
    return {"empty": b"", "garbage": b"not a checkpoint at all" * 10, "truncated": data[: len(data) // 2]}[kind]


@pytest.mark.parametrize("name", ["last.pt", "best.pt", "pseudo_labels.pt", "init.pt"])
@pytest.mark.parametrize("kind", ["empty", "garbage", "truncated"])
def test_damaged_checkpoint_is_named_with_advice(tmp_path, name, kind):
    path = tmp_path / name
    path.write_bytes(damaged(path, kind))
    with pytest.raises(StageFileError) as err:
        checkpoint.load(path, "checkpoint", keys=("format", "model"))
    message = str(err.value)
    assert str(path) in message and "delete it to redo its stage, or run without --resume" in message
    assert ("empty" if kind == "empty" else "truncated or corrupt") in message


def test_wrong_keys_and_wrong_format_are_refused(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"format": checkpoint.FORMAT, "weights": 1}, path)
    with pytest.raises(StageFileError, match=r"last.pt: is not a checkpoint: it lacks 'model'"):
        checkpoint.load(path, keys=("format", "model"))
    torch.save({"format": 1, "model": {}}, path)
    with pytest.raises(StageFileError, match="has checkpoint format 1, this version reads 2"):
        checkpoint.load(path, keys=("format", "model"))
    torch.save([1, 2, 3], path)
    with pytest.raises(StageFileError, match="holds a list, not a mapping"):
        checkpoint.load(path)


def test_state_that_does_not_fit_the_model_is_named(tmp_path):
    path = tmp_path / "best.pt"
    checkpoint.save_atomic({"format": checkpoint.FORMAT, "model": {"weight": torch.ones(2, 2)}}, path)
    with pytest.raises(StageFileError, match="best.pt: does not fit this run's model"):
        checkpoint.restore(checkpoint.load(path), path, model=torch.nn.Linear(3, 3))


def test_unsafe_pickles_are_not_loaded(tmp_path):
    path = tmp_path / "last.pt"
    torch.save({"format": checkpoint.FORMAT, "payload": object()}, path)  # needs arbitrary unpickling
    with pytest.raises(StageFileError, match="truncated or corrupt"):
        checkpoint.load(path)


@pytest.mark.parametrize("text", ["", "{not json", "[1, 2]", '{"stage": "teacher"}'])
def test_damaged_result_json_is_named(tmp_path, text):
    (tmp_path / "result.json").write_text(text)
    with pytest.raises(StageFileError) as err:
        finished(tmp_path, "teacher", resume=True)
    assert str(tmp_path / "result.json") in str(err.value) and "delete it" in str(err.value)


def test_result_of_another_stage_is_refused(tmp_path):
    StageResult("student", tmp_path, 1.0).save()
    with pytest.raises(StageFileError, match="is the result of stage 'student', not 'teacher'"):
        finished(tmp_path, "teacher", resume=True)
    assert finished(tmp_path, "student", resume=False) is None  # without --resume every stage runs again
    assert finished(tmp_path, "student", resume=True).stage == "student"


@pytest.mark.skipif(not os.path.exists("/dev/full"), reason="needs /dev/full")
@pytest.mark.parametrize("save", [lambda path: checkpoint.save_atomic(GOOD, path),
                                  lambda path: checkpoint.save_json({"a": 1}, path)])
def test_full_disk_says_so_and_keeps_the_earlier_file(tmp_path, monkeypatch, save):
    path = tmp_path / "last.pt"
    checkpoint.save_atomic(GOOD, path)
    before = path.read_bytes()
    # The next write goes to /dev/full, which fails every write with ENOSPC, as a full disk does.
    monkeypatch.setattr(checkpoint.tempfile, "mkstemp",
                        lambda dir, prefix, suffix: (os.open("/dev/full", os.O_WRONLY), str(tmp_path / "tmp")))
    with pytest.raises(NoSpaceError, match=rf"no space left on {tmp_path} while writing last.pt"):
        save(path)
    assert path.read_bytes() == before
    assert json.dumps(checkpoint.load(path)["epoch"]) == "1"
