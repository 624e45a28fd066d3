"""Executors: who schedules the stages. Both call `apply_stage` and feed the same sink."""

from __future__ import annotations

import contextlib
import logging
import math
import os
import re
import socket
import sys
import time
from collections.abc import Callable, Iterator, Sequence
from typing import Any, Protocol

import pyarrow as pa

from voxhear.pipeline import raylog
from voxhear.pipeline.config import RayConfig
from voxhear.pipeline.records import Record, ShotRecord
from voxhear.pipeline.shards import ShardWriter, ShardWriterLike, WrittenShard
from voxhear.pipeline.sink import DatasetSink
from voxhear.pipeline.stage import Stage, SystemFault, apply_stage

log = logging.getLogger(__name__)


TOKEN_AUTH_DOCS = "https://docs.ray.io/en/latest/ray-security/token-auth.html"


class RayConnectionError(RuntimeError):
    """The Ray cluster to join cannot be reached or refuses this process; the message (one line)
    says what to set."""


class Executor(Protocol):
    def execute(self, stages: list[Stage], rows: list[Record], sink: DatasetSink) -> None: ...

    def shard_writer(self, writer: ShardWriter) -> ShardWriterLike:
        """Where the run's shards are written: `writer` itself, or a copy of it on a worker."""
        ...


class LocalExecutor:
    """In-process, one source at a time: for debugging and for machines without Ray."""

    def shard_writer(self, writer: ShardWriter) -> ShardWriterLike:
        return writer

    def execute(self, stages: list[Stage], rows: list[Record], sink: DatasetSink) -> None:
        for stage in stages:
            stage.setup()
        for row in rows:
            batch = [row]
            for stage in stages:
                batch = apply_stage(stage, batch)
            sink.consume(batch)


class _ActorShardWriter:
    """A `ShardWriter` in a Ray actor, called like the local one (each call waits for its answer:
    which shard a sample lands in is the writer's to say)."""

    def __init__(self, actor: Any) -> None:
        self.actor = actor

    def _answer(self, pending: Any) -> Any:
        import ray
        import ray.exceptions

        try:
            return ray.get(pending)
        except ray.exceptions.RayActorError as error:
            raise SystemFault(
                f"the shard writer (a Ray actor) died ({type(error).__name__}); what was committed is kept, "
                "and a rerun resumes from there"
            ) from error
        except ray.exceptions.RayTaskError as error:
            if isinstance(error.cause, OSError):
                raise error.cause from error  # a full disk where it writes: the same one line as in-process
            fault = _worker_fault(error)  # the writer's own SystemFault, as one line (no credentials, ...)
            if fault is None:
                raise
            raise SystemFault(fault) from error

    def add_samples(self, rows: Sequence[ShotRecord]) -> tuple[list[str], bool]:
        return self._answer(self.actor.add_samples.remote(list(rows)))

    def close_current(self) -> None:
        self._answer(self.actor.close_current.remote())

    def take_closed(self) -> list[WrittenShard]:
        return self._answer(self.actor.take_closed.remote())

    def close(self) -> None:
        """Kill the actor and wait until it is gone: an upload it still had under way must not land
        after the run released the run directory (a resume may commit a shard of the same name)."""
        import ray
        import ray.exceptions

        ray.kill(self.actor, no_restart=True)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                ray.get(self.actor.take_closed.remote(), timeout=5)
            except ray.exceptions.RayActorError:
                return  # gone
            except ray.exceptions.GetTimeoutError:
                continue  # still dying
            time.sleep(0.1)
        log.warning("the shard writer actor did not stop within 30 s of being killed")


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
    fitted = _fit(stages, total_cpus, lambda s: s.resources.cpus)
    # Ray accounts CPUs in units of 1e-4; round down so the sum stays within the total.
    return {name: math.floor(value * 1e4) / 1e4 for name, value in fitted.items()}


def fit_memory_requests(stages: list[Stage], total_bytes: float) -> dict[str, float]:
    """Bytes of memory to request per worker of each stage (`memory_gb` of its section), scaled
    down like the CPUs when the standing actors plus one task would not fit in the cluster's
    memory resource: on a small machine every stage must still get its first worker."""
    fitted = _fit(stages, total_bytes, lambda s: s.resources.memory_gb * 2**30)
    return {name: math.floor(value) for name, value in fitted.items()}


def _fit(stages: list[Stage], total: float, amount: Callable[[Stage], float]) -> dict[str, float]:
    actors = sum(amount(s) for s in stages if s.uses_models)
    tasks = max((amount(s) for s in stages if not s.uses_models), default=0.0)
    need = actors + tasks
    factor = 1.0 if need <= total or need <= 0 else total / need
    return {s.name: amount(s) * factor for s in stages}


def cluster_cpus(present: float, max_cluster_cpus: int | None) -> float:
    """The CPUs to fit the stages' requests into: what an autoscaling cluster can grow to (set by the
    user: Ray has no public call for it), else what is there now (at least one: a cluster whose head
    has no CPU and whose workers are still starting would otherwise scale every request to nothing)."""
    if max_cluster_cpus is not None:
        return max(present, float(max_cluster_cpus))
    if present <= 0:
        log.warning(
            "the Ray cluster has no CPU yet (workers still starting?); set ray.max_cluster_cpus to the "
            "CPUs it will have, so that the stages' CPU requests are sized for it"
        )
    return max(present, 1.0)


class RayExecutor:
    """Ray Data: each stage a streaming map over Arrow blocks; model stages as actor pools."""

    # Re-block every stage's output one row per block (see _map); off only to measure what it changes.
    spread_rows: bool = True

    def __init__(self, config: RayConfig, show_progress: bool = True) -> None:
        self.config = config
        self.show_progress = show_progress

    def connect(self) -> None:
        """Start a local Ray, or join the cluster at ray.address (else RAY_ADDRESS).

        Raises RayConnectionError, one line saying what to set, when the cluster cannot be joined.
        """
        import ray

        if ray.is_initialized():
            return
        address = self.config.address or os.environ.get("RAY_ADDRESS") or None
        if address:
            source = "--ray-address / ray.address" if self.config.address else "RAY_ADDRESS"
            _check_reachable(address, source)
            _use_local_cluster_token(address)
        try:
            with contextlib.nullcontext() if address else _stdin_not_a_terminal():
                ray.init(
                    address=address,
                    # Only a local cluster is sized here; an existing one keeps its own CPUs.
                    num_cpus=None if address else self.config.num_cpus,
                    include_dashboard=False,
                    log_to_driver=True,
                    # INFO (which cluster, which session) only where it goes to the run's log file.
                    logging_level=logging.INFO if raylog.active() else logging.WARNING,
                )
        except Exception as error:
            if not address:
                raise
            raise RayConnectionError(_join_failure(address, error)) from error
        raylog.forward_worker_output()

    def shard_writer(self, writer: ShardWriter) -> ShardWriterLike:
        """The writer as a Ray actor, so that the samples' media is read and written on a worker.

        `num_cpus=0`: it waits on disks, and a CPU it held would be one the stages' fitted requests
        (fit_cpu_requests) do not know about. It must run on a node that mounts the work area and
        the run (or staging) directory, as every stage does. `max_restarts=0`: a restarted actor
        would have lost its open shard; the run stops instead, and the resume redoes what was not
        committed."""
        import ray

        self.connect()
        remote_class = ray.remote(num_cpus=0, max_restarts=0)(ShardWriter)
        actor = remote_class.remote(
            writer.shards_dir,
            writer.max_samples,
            writer.max_bytes,
            next_number=writer.next_number,
            upload_url=writer.upload_url,
        )
        return _ActorShardWriter(actor)

    def execute(self, stages: list[Stage], rows: list[Record], sink: DatasetSink) -> None:
        import ray
        import ray.data

        if not rows:
            return
        self.connect()
        context = ray.data.DataContext.get_current()
        # While Ray's output goes to the run's log, Ray Data's bars would still draw on the terminal:
        # off. (Off a terminal Ray Data logs its progress instead, and that goes to the log file.)
        context.enable_progress_bars = self.show_progress and not (raylog.active() and sys.stdout.isatty())
        # One row per block so that sources spread over workers from the start.
        table = type(rows[0]).to_table(rows)
        dataset = ray.data.from_arrow([table.slice(i, 1) for i in range(table.num_rows)])
        resources = ray.cluster_resources()
        total_cpus = cluster_cpus(float(resources.get("CPU", 0.0)), self.config.max_cluster_cpus)
        cpus = fit_cpu_requests(stages, total_cpus)
        if any(cpus[s.name] < s.resources.cpus for s in stages):
            log.warning(
                "the stages' standing actors need more than the %g CPUs Ray has: every CPU request is "
                "scaled by %.2f so that no stage waits forever for a slot",
                total_cpus,
                min(cpus[s.name] / s.resources.cpus for s in stages if s.resources.cpus),
            )
        # Memory as declared per stage (memory_gb), fit into what the cluster has, as the CPUs are.
        total_memory = float(resources.get("memory", 0.0))
        memory = fit_memory_requests(stages, total_memory) if total_memory > 0 else {s.name: 0 for s in stages}
        if any(memory[s.name] < s.resources.memory_gb * 2**30 - 1 for s in stages):
            log.warning(
                "the stages' standing actors declare more memory than the %.1f GB Ray has: every memory "
                "request is scaled down so that each stage gets a worker (lower their memory_gb, or add memory)",
                total_memory / 2**30,
            )
        # The re-blocking of _map runs as a task of 1 CPU wherever Ray Data cannot fuse it into the
        # stage's own tasks (after an actor pool, or a task stage not asking exactly 1 CPU). Such a
        # task must always find a CPU that no standing actor holds: not on a machine whose requests
        # were scaled down to fit (there the stream would hang, and there are no spare workers to
        # spread over anyway).
        standing = sum(cpus[s.name] for s in stages if s.uses_models)
        unscaled = all(cpus[s.name] == s.resources.cpus for s in stages)
        spread = self.spread_rows and unscaled and total_cpus - standing >= 1
        for stage in stages:
            dataset = self._map(dataset, stage, cpus[stage.name], total_cpus, spread, memory[stage.name])
        out_type = stages[-1].output_type
        try:
            for batch in dataset.iter_batches(batch_format="pyarrow", batch_size=None):
                sink.consume(out_type.from_table(batch))
        except Exception as error:
            fault = _worker_fault(error)
            if fault is None:
                raise
            raise SystemFault(fault) from error

    def _map(self, dataset, stage: Stage, cpus: float, total_cpus: float, spread: bool = True, memory: float = 0):
        """`stage` as a streaming map over `dataset`, its output re-blocked one row per block if `spread`.

        A stage that turns one row into many (scene_cut: a source into its shots; faces: a shot into
        its face tracks) returns them as one block, and a block goes whole to one task or actor of
        the next stage: one long source would then run serially on one worker however large the
        cluster. (Ray Data also fuses adjacent task stages into one task, so scene_cut's shots would
        go through shot_media inside scene_cut's own task.) `repartition(target_num_rows_per_block=1)`
        splits every output block into one-row blocks as it comes out; it is a map operator
        (logical StreamingRepartition, planned as a MapOperator), not an all-to-all exchange, so the
        stream is kept: a shot goes on to the next stage while the rest of the run is still being
        read. Ray Data fuses it into the stage's tasks when their requests match, and never fuses the
        stage that follows into that (ray/data/_internal/logical/rules/operator_fusion.py), so the
        next stage gets one task (or actor call) per row, on whichever workers are free.
        """
        import ray.data

        res = stage.resources
        remote_args = dict(num_cpus=cpus, num_gpus=res.gpus or None, memory=memory or None)
        remote_args = {k: v for k, v in remote_args.items() if v is not None}
        if stage.uses_models:
            max_size = self.config.max_actors_per_stage
            if max_size is None and cpus < res.cpus:
                # A scaled-down request must not let one pool grow past what its real need allows.
                max_size = max(1, int(total_cpus // max(res.cpus, 1e-4)))
            pool = ray.data.ActorPoolStrategy(min_size=1, max_size=max_size)
            dataset = dataset.map_batches(
                _StageActor,
                fn_constructor_kwargs={"stage": stage},
                compute=pool,
                batch_format="pyarrow",
                batch_size=stage.batch_size,
                **remote_args,
            )
        else:
            dataset = dataset.map_batches(
                _apply_to_table,
                fn_kwargs={"stage": stage},
                batch_format="pyarrow",
                batch_size=stage.batch_size,
                **remote_args,
            )
        return dataset.repartition(target_num_rows_per_block=1) if spread else dataset


def disconnect() -> None:
    """Leave Ray (stopping the local Ray this process started), if this process uses it."""
    ray = sys.modules.get("ray")
    if ray is not None and ray.is_initialized():
        ray.shutdown()


@contextlib.contextmanager
def _stdin_not_a_terminal() -> Iterator[None]:
    """Start the local Ray with stdin on /dev/null when this process's stdin is a terminal.

    Ray's processes, and the workers they start, inherit the driver's stdin. Workers are not in the
    terminal's foreground process group, so a subprocess of theirs that touches the terminal
    (scenedetect's `ffmpeg -v quiet` probe does) is stopped by the kernel (SIGTTIN/SIGTTOU) and
    the run waits for it forever: `voxhear run` in a terminal hung in scene_cut."""
    try:
        terminal = os.isatty(0)
    except OSError:
        terminal = False
    if not terminal:
        yield
        return
    saved = os.dup(0)
    devnull = os.open(os.devnull, os.O_RDONLY)
    try:
        os.dup2(devnull, 0)
        yield
    finally:
        os.dup2(saved, 0)
        os.close(saved)
        os.close(devnull)


def _gcs_host_port(address: str) -> tuple[str, int] | None:
    """(host, port) of `host:port` or `ray://host:port`; None for "auto", "local" and anything else."""
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not host or not port.isdigit():
        return None
    return host.strip("[]"), int(port)


def _check_reachable(address: str, source: str) -> None:
    """Fail at once when nothing listens at the address (Ray itself retries for 20 s, its C++
    core printing a line a second, before it says so)."""
    parsed = _gcs_host_port(address)
    if parsed is None:
        return
    try:
        socket.create_connection(parsed, timeout=5).close()
    except OSError as error:
        reason = "no answer in 5 s" if isinstance(error, TimeoutError) else (error.strerror or type(error).__name__)
        raise RayConnectionError(
            f"no Ray cluster answers at {address} (from {source}: {reason}): start one there "
            f"(`ray start --head --port {parsed[1]}`), correct the address, or leave it unset for a local Ray"
        ) from error


def _use_local_cluster_token(address: str) -> None:
    """Join a token-authenticated cluster on this machine as `ray.init(address="auto")` does.

    `ray start --head` turns token authentication on whenever a token is where Ray looks for one
    (RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH, ~/.ray/auth_token, which every local `ray.init()`
    writes), and `ray.init()` with no address or "auto" turns it on for the client too; an address
    given explicitly never does (ray/_private/worker.py, init), so `--ray-address` to that very
    cluster failed with InvalidAuthToken. Here an explicit address of a cluster running on this
    machine (one that Ray's own "auto" discovery finds) is treated like "auto". Any other address
    is left as Ray leaves it, so that this machine's token is never sent to another host unasked:
    for those, RAY_AUTH_MODE=token is set by hand as Ray documents (TOKEN_AUTH_DOCS). An explicit
    RAY_AUTH_MODE is always respected.
    """
    parsed = _gcs_host_port(address)
    if os.environ.get("RAY_AUTH_MODE") is not None or address.startswith("ray://") or parsed is None:
        return
    try:
        from ray._private import services
        from ray._private.authentication.authentication_token_setup import (
            maybe_enable_token_auth_if_token_available,
        )

        wanted = {services.canonicalize_bootstrap_address(address)}
        with contextlib.suppress(OSError):
            ip = socket.gethostbyname(parsed[0])
            wanted.add(services.canonicalize_bootstrap_address(f"{ip}:{parsed[1]}"))
        if wanted & set(services.find_gcs_addresses()):
            enabled = maybe_enable_token_auth_if_token_available(warn_if_disabled=False)
            log.info(
                "%s is a Ray cluster on this machine: token authentication %s",
                address,
                "on (a token was found)" if enabled else "off (no token found)",
            )
    except Exception:  # Ray's internals moved: authentication is left to RAY_AUTH_MODE, as Ray does
        log.debug("could not tell whether %s is a Ray cluster on this machine", address, exc_info=True)


def _error_chain(error: BaseException) -> list[BaseException]:
    """The error and what it was raised from, outermost first."""
    chain: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _error_text(error: BaseException) -> str:
    return "\n".join(f"{type(e).__name__}: {e}" for e in _error_chain(error))


def _join_failure(address: str, error: BaseException) -> str:
    """One line: why joining the cluster at `address` failed and what to set."""
    text = _error_text(error)
    token_where = (
        "put the cluster's token (`ray get-auth-token` on its head node prints it) in RAY_AUTH_TOKEN, "
        f"in the file RAY_AUTH_TOKEN_PATH names, or in ~/.ray/auth_token; see {TOKEN_AUTH_DOCS}"
    )
    if any(word in text for word in ("InvalidAuthToken", "AuthenticationError", "Unauthenticated")):
        if os.environ.get("RAY_AUTH_MODE", "").lower() == "token":
            return f"the Ray cluster at {address} did not accept this process's authentication token: {token_where}"
        return f"the Ray cluster at {address} requires token authentication: set RAY_AUTH_MODE=token and {token_where}"
    versions = re.findall(r"Ray: (\S+)\s+Python: (\S+)", text)
    if "Version mismatch" in text and len(versions) >= 2:
        (cluster_ray, cluster_python), (our_ray, our_python) = versions[:2]
        return (
            f"the Ray cluster at {address} runs Ray {cluster_ray} on Python {cluster_python}, this environment "
            f"Ray {our_ray} on Python {our_python}: run voxhear where Ray and Python match the cluster's"
        )
    if "Could not find any running Ray instance" in text:
        return (
            f"ray.address is {address!r} but no Ray cluster runs on this machine: start one (`ray start --head`) "
            "or leave ray.address and RAY_ADDRESS unset for a local Ray"
        )
    # The innermost error's last line: its own message (or, where it quotes a traceback, the error
    # that ends it), not the wrappers' "Failed to connect".
    inner = _error_chain(error)[-1]
    lines = [line for line in str(inner).splitlines() if line.strip()]
    detail = " ".join(lines[-1].split())[:300] if lines else type(inner).__name__
    return f"could not join the Ray cluster at {address}: {detail} (`voxhear --verbose run ...` shows more)"


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
