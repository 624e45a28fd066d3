"""Executors: who schedules the stages. Both call `apply_stage` and feed the same sink."""

from __future__ import annotations

import logging
import math
import os
import re
from typing import Protocol

import pyarrow as pa

from voxhear.pipeline.config import RayConfig
from voxhear.pipeline.records import Record
from voxhear.pipeline.sink import DatasetSink
from voxhear.pipeline.stage import Stage, SystemFault, apply_stage

log = logging.getLogger(__name__)


class Executor(Protocol):
    def execute(self, stages: list[Stage], rows: list[Record], sink: DatasetSink) -> None: ...


class LocalExecutor:
    """In-process, one source at a time: for debugging and for machines without Ray."""

    def execute(self, stages: list[Stage], rows: list[Record], sink: DatasetSink) -> None:
        for stage in stages:
            stage.setup()
        for row in rows:
            batch = [row]
            for stage in stages:
                batch = apply_stage(stage, batch)
            sink.consume(batch)


def _apply_to_table(table: pa.Table, stage: Stage) -> pa.Table:
    """Ray task body for stages without models."""
    stage.setup()
    return _run_on_table(stage, table)


def _run_on_table(stage: Stage, table: pa.Table) -> pa.Table:
    rows = stage.input_type.from_table(table)
    return stage.output_type.to_table(apply_stage(stage, rows))


class _StageActor:
    """Ray actor body for stages that load models: setup() once per actor."""

    def __init__(self, stage: Stage) -> None:
        self.stage = stage
        stage.setup()

    def __call__(self, table: pa.Table) -> pa.Table:
        return _run_on_table(self.stage, table)


def fit_cpu_requests(stages: list[Stage], total_cpus: float) -> dict[str, float]:
    """CPUs to request per worker of each stage so that every actor pool can hold one actor at once.

    Ray Data keeps at least one actor of every model stage alive while the stream runs, and an
    actor holds its CPUs for its whole life. With more model stages than CPUs (five on a 2-core
    laptop) a downstream pool can take the last slots while an upstream pool still waits for its
    first actor, and the stream hangs forever. So when the standing actors plus one task would
    not fit, every request is scaled by the same factor: the stages then share the cores (the
    OS time-slices them) instead of waiting for each other. Enough CPUs: requests unchanged.
    """
    actors = sum(s.resources.cpus for s in stages if s.uses_models)
    tasks = max((s.resources.cpus for s in stages if not s.uses_models), default=0.0)
    need = actors + tasks
    factor = 1.0 if need <= total_cpus or need <= 0 else total_cpus / need
    # Ray accounts CPUs in units of 1e-4; round down so the sum stays within the total.
    return {s.name: math.floor(s.resources.cpus * factor * 1e4) / 1e4 for s in stages}


class RayExecutor:
    """Ray Data: each stage a streaming map over Arrow blocks; model stages as actor pools."""

    def __init__(self, config: RayConfig, show_progress: bool = True) -> None:
        self.config = config
        self.show_progress = show_progress

    def connect(self) -> None:
        import ray

        if ray.is_initialized():
            return
        address = self.config.address or os.environ.get("RAY_ADDRESS")
        ray.init(
            address=address or None,
            # Only a local cluster is sized here; an existing one keeps its own CPUs.
            num_cpus=None if address else self.config.num_cpus,
            include_dashboard=False,
            log_to_driver=True,
            logging_level=logging.WARNING,
        )

    def execute(self, stages: list[Stage], rows: list[Record], sink: DatasetSink) -> None:
        import ray
        import ray.data

        if not rows:
            return
        self.connect()
        context = ray.data.DataContext.get_current()
        context.enable_progress_bars = self.show_progress
        # One row per block so that sources spread over workers from the start.
        table = type(rows[0]).to_table(rows)
        dataset = ray.data.from_arrow([table.slice(i, 1) for i in range(table.num_rows)])
        total_cpus = float(ray.cluster_resources().get("CPU", 1.0))
        cpus = fit_cpu_requests(stages, total_cpus)
        if any(cpus[s.name] < s.resources.cpus for s in stages):
            log.warning(
                "the stages' standing actors need more than the %g CPUs Ray has: every CPU request is "
                "scaled by %.2f so that no stage waits forever for a slot",
                total_cpus,
                min(cpus[s.name] / s.resources.cpus for s in stages if s.resources.cpus),
            )
        for stage in stages:
            dataset = self._map(dataset, stage, cpus[stage.name], total_cpus)
        out_type = stages[-1].output_type
        try:
            for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                sink.consume(out_type.from_table(batch))
        except Exception as error:
            fault = _worker_fault(error)
            if fault is None:
                raise
            raise SystemFault(fault) from error

    def _map(self, dataset, stage: Stage, cpus: float, total_cpus: float):
        import ray.data

        res = stage.resources
        remote_args = dict(
            num_cpus=cpus, num_gpus=res.gpus or None, memory=res.memory_gb * 2**30 if res.memory_gb else None
        )
        remote_args = {k: v for k, v in remote_args.items() if v is not None}
        if stage.uses_models:
            max_size = self.config.max_actors_per_stage
            if max_size is None and cpus < res.cpus:
                # A scaled-down request must not let one pool grow past what its real need allows.
                max_size = max(1, int(total_cpus // max(res.cpus, 1e-4)))
            pool = ray.data.ActorPoolStrategy(min_size=1, max_size=max_size)
            return dataset.map_batches(
                _StageActor,
                fn_constructor_kwargs={"stage": stage},
                compute=pool,
                batch_format="pyarrow",
                batch_size=stage.batch_size,
                **remote_args,
            )
        return dataset.map_batches(
            _apply_to_table,
            fn_kwargs={"stage": stage},
            batch_format="pyarrow",
            batch_size=stage.batch_size,
            **remote_args,
        )


def _worker_fault(error: BaseException) -> str | None:
    """The message of a SystemFault a Ray worker raised, or None.

    Ray Data hands the driver a RayTaskError(UserCodeException) whose text holds the worker's
    traceback, not the SystemFault itself; the run must stop with the same one-line message as
    in-process."""
    if isinstance(error, SystemFault):
        return None  # raised here, not in a worker: re-raised as it is
    found = re.findall(rf"^{re.escape(SystemFault.__module__)}\.SystemFault: (.+)$", str(error), re.MULTILINE)
    return found[-1].strip() if found else None


def make_executor(runner: str, ray_config: RayConfig, show_progress: bool = True) -> Executor:
    if runner == "local":
        return LocalExecutor()
    return RayExecutor(ray_config, show_progress=show_progress)
