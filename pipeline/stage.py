"""The one stage interface, and the one function that applies a stage to rows.

Both runners (Ray Data and in-process) call `apply_stage`, so per-row error isolation, timing
and resume bookkeeping behave identically whoever schedules the work.
"""

from __future__ import annotations

import errno
import os
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, NoReturn, TypeVar

from voxhear.pipeline import memory
from voxhear.pipeline.io import DISK_ERRNOS, DiskError, filesystem_note
from voxhear.pipeline.models import ModelStore, ModelStoreError
from voxhear.pipeline.records import STATUS_FAILED, STATUS_FILTERED, STATUS_OK, Record
from voxhear.pipeline.settings import ConfigError

In = TypeVar("In", bound=Record)
Out = TypeVar("Out", bound=Record)


@dataclass(frozen=True)
class Resources:
    """What one worker of a stage needs; the Ray runner turns this into scheduling requests."""

    cpus: float = 1.0
    gpus: float = 0.0
    memory_gb: float = 0.0


@dataclass(frozen=True)
class Bound:
    """A config key that bounds a manifest column (drawn on the QC dashboard's histograms).

    `kind` is min (kept when the value is >= the key's value), max (<=) or abs_max (|x| <=).
    """

    key: str
    table: str
    column: str
    kind: str


@dataclass(frozen=True)
class RejectReason:
    """A reason a stage filters a row, and the config keys that decide it.

    `keys` is empty only for a property of the input that no setting changes (no audio stream);
    the datasheet and the QC page explain every reject from this declaration.
    """

    name: str
    keys: tuple[str, ...] = ()
    doc: str = ""
    bounds: tuple[Bound, ...] = ()


@dataclass(frozen=True)
class RunContext:
    """Where a run lives and how models are found; pickled to every worker."""

    run_dir: Path
    model_store: ModelStore
    # What every sample records of how it was made: model file hashes and the config hash.
    provenance: dict[str, Any] = field(default_factory=dict)

    @property
    def work_dir(self) -> Path:
        return self.run_dir / "work"

    def source_work_dir(self, source_id: str) -> Path:
        path = self.work_dir / source_id
        path.mkdir(parents=True, exist_ok=True)
        return path


class FilteredError(Exception):
    """Raised by a stage to filter the whole input row with a reason (not a failure)."""

    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


class InputError(Exception):
    """Raised by a stage when the input itself is broken (corrupt, truncated, unreadable)."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class Stage(Generic[In, Out]):
    """A pipeline stage: the one place that declares everything about it.

    Subclasses declare `name`, `input_type`, `output_type`, their config section's class
    (`config_class`; the section is named after the stage), the stages they need earlier in the
    run (`requires`), the reasons they filter rows for (`reasons`), the models a config makes
    them load (`models`) and the resources a worker needs (`resources_for`). The registry
    (voxhear.pipeline.registry) lists the stage classes; config sections, factories, provenance,
    the QC page and the datasheet are all read from these declarations.

    A stage takes its config section in `__init__`, loads models in `setup()` (once per worker)
    and implements `process` (one input row to any number of output rows) or, to batch on a
    GPU, `process_batch`.
    """

    name: ClassVar[str]
    input_type: ClassVar[type[Record]]
    output_type: ClassVar[type[Record]]
    config_class: ClassVar[type | None] = None
    requires: ClassVar[tuple[str, ...]] = ()
    reasons: ClassVar[tuple[RejectReason, ...]] = ()
    # Set per instance from the config section (resources_for).
    resources: Resources
    # Stages that load models run as Ray actor pools so setup() happens once per worker.
    uses_models: ClassVar[bool] = False
    # Rows per call of process_batch on Ray (map_batches); a stage may set it from its config.
    batch_size: int = 1

    def __init__(self, config: Any, context: RunContext) -> None:
        self.config = config
        self.context = context
        self.resources = self.resources_for(config)

    @classmethod
    def models(cls, config: Any) -> list[str]:
        """Model store names this stage loads under `config` (its section)."""
        return []

    @classmethod
    def resources_for(cls, config: Any) -> Resources:
        """One worker's request: a CPU per thread the section asks for, and its GPU share."""
        return Resources(
            cpus=float(getattr(config, "threads", 1)),
            gpus=float(getattr(config, "gpus", 0.0)),
            memory_gb=float(getattr(config, "memory_gb", 0.0)),
        )

    def setup(self) -> None:
        """Load models; called once per worker before the first batch."""

    def process_batch(self, rows: list[In]) -> list[list[Out]]:
        """Return, for every input row, the list of rows it becomes (possibly empty)."""
        return [self.process(row) for row in rows]

    def process(self, row: In) -> list[Out]:
        raise NotImplementedError(f"stage {self.name} implements neither process nor process_batch")


class SystemFault(RuntimeError):
    """The machine or the installation failed, not the input: a missing or unrunnable ffmpeg, a full
    or read-only disk, a tool killed by a signal. It stops the run and leaves the input uncommitted,
    so that the rerun (after the fault is fixed) processes it instead of skipping a `failed` row."""


class StageContractError(RuntimeError):
    """A stage broke the interface (e.g. `process_batch` returned a list per row of the wrong length):
    a bug in the stage, not in the data, so it stops the run."""


# Errors that are about the installation or the machine, not the row: they stop the run.
FATAL_ERRORS: tuple[type[BaseException], ...] = (
    StageContractError,
    ImportError,
    ModelStoreError,
    ConfigError,
    MemoryError,
    NotImplementedError,
    SystemFault,
    KeyboardInterrupt,
    SystemExit,
)

# OSError numbers that are about the machine: a full, over-quota or read-only disk, no memory or
# file handles left. Any of them anywhere in an error's cause chain stops the run.
SYSTEM_ERRNOS = frozenset({errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.ENOMEM, errno.EMFILE, errno.ENFILE})


# How torch reports a broken or lost accelerator (a RuntimeError whatever the input): "CUDA error:
# ...", "CUDA driver ...", "cuDNN error: ...", "NCCL error ...". Not the input's fault, so fatal.
_ACCELERATOR_FAULT = re.compile(r"\b(CUDA (error|driver)|cuDNN error|CUBLAS_STATUS_|NCCL error)")


def _is_fatal(error: BaseException) -> bool:
    # Exceptions outside Exception (KeyboardInterrupt, SystemExit, GeneratorExit) are never data errors;
    # torch.cuda.OutOfMemoryError is recognised by name so that torch is not imported here.
    if isinstance(error, FATAL_ERRORS) or not isinstance(error, Exception):
        return True
    if isinstance(error, RuntimeError) and _ACCELERATOR_FAULT.search(str(error)):
        return True
    return type(error).__name__ == "OutOfMemoryError" or system_oserror(error) is not None


def system_oserror(error: BaseException) -> OSError | None:
    """The OSError in `error`'s cause chain that is about the machine, not the data, or None.

    That is one with an errno of SYSTEM_ERRNOS, or one raised while starting a program (a missing
    or not executable ffmpeg: `subprocess` raises FileNotFoundError naming the executable).
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, OSError) and (current.errno in SYSTEM_ERRNOS or _raised_starting_a_program(current)):
            return current
        current = current.__cause__ or current.__context__
    return None


def _raised_starting_a_program(error: OSError) -> bool:
    traceback = error.__traceback__
    while traceback is not None:
        if traceback.tb_frame.f_code.co_name == "_execute_child":  # subprocess.Popen's exec of the program
            return True
        traceback = traceback.tb_next
    return False


# How a tool's stderr says the disk is full, over quota or read-only ("No space left on device", ...).
_DISK_STRERRORS = tuple(os.strerror(number) for number in sorted(DISK_ERRNOS))


def _raise_fatal(stage: Stage, error: Exception) -> NoReturn:
    """Raise a fatal `error` for apply_stage: a machine OSError as a SystemFault with a one-line
    message (caused by the original), any other fatal error as it is; a full or read-only disk
    named either way (its mount point and free space)."""
    cause = None if isinstance(error, FATAL_ERRORS) else system_oserror(error)
    if cause is None:
        work_dir = getattr(getattr(stage, "context", None), "work_dir", None)
        text = str(error)
        if isinstance(error, SystemFault) and work_dir and any(e in text for e in _DISK_STRERRORS):
            raise SystemFault(f"{text}; the work area {work_dir} is on {filesystem_note(work_dir)}") from error
        raise error
    if _raised_starting_a_program(cause):
        what = f"cannot run {cause.filename}: {cause.strerror} (install it or fix PATH)"
    elif isinstance(cause, DiskError):
        what = f"{cause.strerror} ({cause.filename})"
    else:
        what = f"{os.strerror(cause.errno or 0)} ({cause.filename or cause})"
    raise SystemFault(f"stage {stage.name}: {what}; the input is left uncommitted, rerun once this is fixed") from error


def _clock() -> tuple[float, float]:
    times = os.times()
    # Children's CPU counts too: most stages spend it in ffmpeg subprocesses.
    cpu = times.user + times.system + times.children_user + times.children_system
    return time.perf_counter(), cpu


def apply_stage(stage: Stage, rows: list[Record]) -> list[Record]:
    """Run `stage` on `rows`, isolating failures per row and keeping resume bookkeeping exact.

    Rows that are not `ok` pass through unchanged (converted to the output type). A data error in
    a batch is retried row by row so that one bad row fails alone. An input that yields no output
    rows becomes one `filtered` row, so that the sink still sees its share of the source.
    """
    out_type = stage.output_type
    results: list[list[Record] | BaseException | None] = [None] * len(rows)
    active = [i for i, row in enumerate(rows) if row.status == STATUS_OK]
    seconds: dict[int, tuple[float, float]] = {}
    peaks: dict[int, float] = {}

    def run(indices: list[int]) -> None:
        memory.reset_peak()
        wall0, cpu0 = _clock()
        outputs = stage.process_batch([rows[i] for i in indices])
        wall1, cpu1 = _clock()
        peak = memory.peak_mb()
        memory.release_free_memory()
        if len(outputs) != len(indices):
            raise StageContractError(f"stage {stage.name} returned {len(outputs)} lists for {len(indices)} rows")
        for i, produced in zip(indices, outputs):
            results[i] = list(produced)
            seconds[i] = ((wall1 - wall0) / len(indices), (cpu1 - cpu0) / len(indices))
            peaks[i] = peak

    batch_error: BaseException | None = None
    if active:
        try:
            run(active)
        except Exception as error:  # sorted into fatal vs data below; BaseExceptions are never caught
            if _is_fatal(error):
                _raise_fatal(stage, error)
            batch_error = error
    if batch_error is not None:
        # Retried outside the except block, so a row's own error does not carry the batch's as its cause.
        if len(active) == 1:
            results[active[0]] = batch_error
            seconds[active[0]] = (0.0, 0.0)
        else:
            for i in active:
                try:
                    run([i])
                except Exception as row_error:
                    if _is_fatal(row_error):
                        _raise_fatal(stage, row_error)
                    results[i] = row_error
                    seconds[i] = (0.0, 0.0)

    emitted: list[Record] = []
    for i, row in enumerate(rows):
        outcome = results[i]
        if row.status != STATUS_OK:
            emitted.append(row if isinstance(row, out_type) else out_type.from_parent(row))
            continue
        wall, cpu = seconds.get(i, (0.0, 0.0))
        if isinstance(outcome, BaseException):
            child = out_type.from_parent(row)
            if isinstance(outcome, FilteredError):
                child.mark(STATUS_FILTERED, stage.name, outcome.reason, "", _text(str(outcome)))
            else:
                reason = getattr(outcome, "reason", None) or type(outcome).__name__
                child.mark(STATUS_FAILED, stage.name, reason, type(outcome).__name__, _full_message(outcome))
            children = [child]
        elif not outcome:
            child = out_type.from_parent(row)
            child.mark(STATUS_FILTERED, stage.name, "no_output", "", f"stage {stage.name} produced no rows")
            children = [child]
        else:
            children = outcome
        _split_share(row, children, stage.name, wall, cpu, peaks.get(i))
        emitted.extend(children)
    return emitted


def _split_share(
    parent: Record, children: list[Record], stage_name: str, wall: float, cpu: float, peak: float | None = None
) -> None:
    n = len(children)
    # Read the parent before writing any child: a stage may return its input row among its outputs.
    source_uri, source_id, share_den = parent.source_uri, parent.source_id, parent.share_den
    parent_wall, parent_cpu, parent_peak = dict(parent.wall_s), dict(parent.cpu_s), dict(parent.peak_mb)
    for child in children:
        child.source_uri = source_uri
        child.source_id = child.source_id or source_id
        child.share_den = share_den * n
        # Each child carries 1/n of everything spent on its ancestors, so summing a source's
        # final rows gives exactly its total time.
        child.wall_s = {k: v / n for k, v in parent_wall.items()}
        child.cpu_s = {k: v / n for k, v in parent_cpu.items()}
        child.peak_mb = dict(parent_peak)
        child.wall_s[stage_name] = child.wall_s.get(stage_name, 0.0) + wall / n
        child.cpu_s[stage_name] = child.cpu_s.get(stage_name, 0.0) + cpu / n
        if peak is not None:  # memory is not shared out: each child carries the call's peak
            child.peak_mb[stage_name] = max(child.peak_mb.get(stage_name, 0.0), peak)


def _full_message(error: BaseException) -> str:
    message = f"{type(error).__name__}: {error}"
    cause = error.__cause__ or (None if error.__suppress_context__ else error.__context__)
    if cause is not None and cause is not error:
        message += f" (caused by {type(cause).__name__}: {cause})"
    return _text(message)


def _text(message: str) -> str:
    """`message` storable in a manifest: the bytes of a path that is not UTF-8 (surrogate escapes) as \\udcXX."""
    return message.encode("utf-8", "backslashreplace").decode("utf-8")
