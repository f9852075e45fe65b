"""What a stage hands on: a typed result written to <stage dir>/result.json. One rule for every stage: a stage is
finished when its result.json exists and is valid, and with --resume a finished stage is not run again."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path

from slade.runtime import checkpoint

RESULT_FILE = "result.json"


@dataclass
class StageResult:
    stage: str  # selfsup | teacher | pseudo_labels | student
    directory: Path
    seconds: float
    metrics: dict = field(default_factory=dict)  # test metrics (teacher, student) or the stage's own figures
    best_epoch: int | None = None
    best_val_map_at_r: float | None = None
    history: list[dict] = field(default_factory=list)  # per epoch
    steps: list[dict] = field(default_factory=list)  # per training step
    skipped: dict = field(default_factory=dict)  # image set name -> paths of the unreadable images met
    weights_file: str | None = None  # the checkpoint in `directory` holding the weights the stage hands on
    weights: dict | None = field(default=None, repr=False, compare=False)  # those weights, in memory

    def save(self, ranks=None) -> "StageResult":
        """Writes result.json (on rank 0 of a torchrun job, the others wait: runtime.distributed.Ranks)."""
        if ranks is None or ranks.main:
            data = dataclasses.asdict(self)
            data["directory"] = str(self.directory)
            del data["weights"]
            checkpoint.save_json(data, Path(self.directory) / RESULT_FILE)
        if ranks is not None:
            ranks.barrier()
        return self

    @classmethod
    def load(cls, directory: Path, stage: str) -> "StageResult":
        names = [f.name for f in dataclasses.fields(cls) if f.name != "weights"]
        data = checkpoint.load_json(Path(directory) / RESULT_FILE, f"{stage} result", keys=names)
        if data["stage"] != stage:
            raise checkpoint.StageFileError(Path(directory) / RESULT_FILE, f"is the result of stage "
                                                                           f"{data['stage']!r}, not {stage!r}")
        result = cls(**{**data, "directory": Path(directory)})
        if result.weights_file is not None:
            path = Path(directory) / result.weights_file
            result.weights = checkpoint.load(path, f"{stage} weights", keys=("format", "model"))["model"]
        return result


def finished(directory: Path, stage: str, resume: bool) -> StageResult | None:
    """The saved result of a finished stage when resuming, else None (the stage runs)."""
    if resume and (Path(directory) / RESULT_FILE).is_file():
        return StageResult.load(directory, stage)
    return None
