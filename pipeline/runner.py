"""Run the pipeline: expand inputs, skip what is committed, execute the stages, consolidate."""

from __future__ import annotations

import collections
import dataclasses
import hashlib
import json
import logging
import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from voxhear.manifests import Ledger, consolidate
from voxhear.manifests.sample_index import write_sample_index
from voxhear.pipeline import registry, remote_run, workarea
from voxhear.pipeline.config import ConfigError, RunConfig, save_config
from voxhear.pipeline.executors import make_executor
from voxhear.pipeline.inputs import expand_inputs, is_remote
from voxhear.pipeline.models import ModelStore, UnknownModelError
from voxhear.pipeline.records import STATUS_FAILED, ShotRecord, SourceRecord, clip_span
from voxhear.pipeline.remote_run import RemoteRunDir, RemoteRunLock, local_run_dir
from voxhear.pipeline.runlock import RunLock
from voxhear.pipeline.shards import WrittenShard
from voxhear.pipeline.sink import DatasetSink, shard_writer_for
from voxhear.pipeline.stage import RunContext, Stage

log = logging.getLogger(__name__)


def build_stages(config: RunConfig, context: RunContext) -> list[Stage]:
    """The configured stages, in registry order, each given its own config section."""
    stages = [registry.stage_class(name)(config.section(name), context) for name in config.stages]
    for before, after in zip(stages, stages[1:]):
        if not issubclass(before.output_type, after.input_type):
            raise ConfigError(
                f"stage {after.name} takes {after.input_type.__name__} rows but {before.name} "
                f"emits {before.output_type.__name__}; check the config's 'stages'"
            )
    return stages


def final_record_type(stages: list[Stage]) -> type[ShotRecord]:
    """The rows the last stage emits: shots or a subclass (the sink writes one sample per shot)."""
    final = stages[-1].output_type
    if not issubclass(final, ShotRecord):
        raise ConfigError(f"the last stage, {stages[-1].name}, emits {final.__name__} rows; the sink writes shots")
    return final


def run_provenance(config: RunConfig, store: ModelStore) -> dict:
    """Model file hashes (as the store verifies them before loading) and a hash of the settings."""
    hashes = {}
    for name in registry.models_in_use(config):
        try:
            hashes.update({f.path: f.sha256 for f in store.spec(name).files})
        except UnknownModelError:
            # Models of stage-local registries (e.g. Demucs) are verified where they are loaded.
            hashes[name] = "see the stage's registry"
    settings = json.dumps(config.processing_sections(), sort_keys=True, default=str)
    return {"model_hashes": hashes, "config_hash": hashlib.sha256(settings.encode()).hexdigest()[:16]}


@dataclass
class RunSummary:
    run_dir: Path
    inputs: int = 0
    skipped: int = 0
    status_counts: dict[str, int] = field(default_factory=dict)
    reason_counts: dict[str, int] = field(default_factory=dict)
    clips: int = 0
    clip_hours: float = 0.0
    input_hours: float = 0.0
    wall_s: float = 0.0
    shards: int = 0
    # What is left in run_dir/work at the end (everything with keep_work; else inputs never committed).
    work_bytes: int = 0
    keep_work: bool = False
    # The run directory on object storage that run_dir (its staging copy) was published to.
    run_url: str = ""

    @property
    def real_time_factor(self) -> float:
        """Wall seconds of this attempt per second of input video processed in it."""
        return self.wall_s / (self.input_hours * 3600) if self.input_hours else 0.0

    def format(self) -> str:
        kept = "keep_work: kept" if self.keep_work else "committed inputs' files removed; keep_work=true keeps them"
        published = self.run_url or str(self.run_dir)
        lines = [
            f"run directory: {published}" + (f" (staged in {self.run_dir})" if self.run_url else ""),
            f"inputs: {self.inputs} ({self.skipped} already done in an earlier attempt)",
            "status: " + ", ".join(f"{k} {v}" for k, v in sorted(self.status_counts.items())),
        ]
        for reason, count in sorted(self.reason_counts.items(), key=lambda kv: -kv[1]):
            lines.append(f"  {reason}: {count}")
        lines += [
            f"clips: {self.clips} ({self.clip_hours:.4f} h) in {self.shards} shards",
            f"input video: {self.input_hours:.4f} h; wall time {self.wall_s:.1f} s; "
            f"real-time factor {self.real_time_factor:.3f}",
            f"work area: {workarea.format_size(self.work_bytes)} in {workarea.work_dir(self.run_dir)} ({kept})",
            f"manifests: {published}/manifests",
            f"shards: {published}/shards",
        ]
        return "\n".join(lines)


def check_resume_compatible(config: RunConfig, run_dir: Path) -> None:
    """Refuse to mix outputs of different processing settings in one run directory."""
    saved_path = run_dir / "config.yaml"
    if not saved_path.exists():
        return
    saved = yaml.safe_load(saved_path.read_text()) or {}
    current = config.processing_sections()
    defaults = {name: dataclasses.asdict(cls()) for name, cls in registry.section_classes().items()}
    for section, values in current.items():
        before = saved.get(section)
        if isinstance(before, dict) and isinstance(values, dict):
            # A key added since the directory was made counts as its default then; what a worker
            # may hold (memory_gb) does not change what it produces.
            before = {**defaults.get(section, {}), **before}
            before, values = ({k: v for k, v in d.items() if k != "memory_gb"} for d in (before, values))
        if before != values:
            raise ConfigError(
                f"run directory {run_dir} was made with different '{section}' settings "
                f"({saved.get(section)} vs {values}); use a new run_dir, or the same settings to resume"
            )


def run_pipeline(config: RunConfig, show_progress: bool = True) -> RunSummary:
    """Run (or resume) `config`; refused at once (RunLockedError) while another run holds its run_dir."""
    started = time.perf_counter()
    run_dir = local_run_dir(config.run_dir, config.staging_dir)
    if remote_run.is_remote(config.run_dir):
        return _run_remote(config, run_dir, show_progress, started)
    # Taken before anything in the directory is read or written: recovery deletes what it takes
    # for a killed run's debris, which would be a live run's files.
    with RunLock(run_dir):
        return _run_locked(config, run_dir, show_progress, started)


def unshared_staging_warning(config: RunConfig, staging: Path) -> str | None:
    """What to say when a run on a cluster stages its object-storage run directory in the default,
    machine-local folder (workers on other nodes write the work area there too)."""
    joined = config.runner == "ray" and (config.ray.address or os.environ.get("RAY_ADDRESS"))
    if not joined or config.staging_dir:
        return None
    return (
        f"run_dir is on object storage and its staging copy (with the work area the workers write) is in "
        f"{staging} on this machine: on a cluster of several nodes, set staging_dir to a folder every node mounts"
    )


def _run_remote(config: RunConfig, staging: Path, show_progress: bool, started: float) -> RunSummary:
    """A run directory on object storage: run in the staging copy, publish after every commit."""
    remote = RemoteRunDir(config.run_dir, staging)
    warning = unshared_staging_warning(config, staging)
    if warning:
        log.warning(warning)
    # Both locks: the bucket's against other drivers, the staging copy's against another run of
    # the same URL on this machine with the same staging_dir.
    with RunLock(staging), RemoteRunLock(remote.fs, remote.root):
        downloaded = remote.pull()  # the bucket is the truth: what it lacks was never committed
        if downloaded:
            log.info("staged %d files of %s in %s", downloaded, remote.url, staging)
        summary = _run_locked(
            config,
            staging,
            show_progress,
            started,
            publish=remote.push,
            upload_url=remote.url,
            on_committed_shards=remote.remember_uploaded,
        )
    summary.run_url = remote.url
    return summary


def _run_locked(
    config: RunConfig,
    run_dir: Path,
    show_progress: bool,
    started: float,
    publish: Callable[[], object] = lambda: None,
    upload_url: str = "",
    on_committed_shards: Callable[[list[WrittenShard]], object] = lambda written: None,
) -> RunSummary:
    """Run in `run_dir`, calling `publish` after each commit of the ledger and after the passes.

    Args:
        upload_url: the run directory on object storage that the shard writer uploads shards to.
        on_committed_shards: called with the shards each commit published (their uploads recorded).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    check_resume_compatible(config, run_dir)
    save_config(config, run_dir / "config.yaml")
    store = ModelStore.from_config(config.models)
    context = RunContext(run_dir=run_dir, model_store=store, provenance=run_provenance(config, store))
    stages = build_stages(config, context)
    ledger = Ledger(run_dir)
    state = ledger.recover()
    # A run directory inside an input folder must not feed its own work files back in.
    inputs = [uri for uri in expand_inputs(config.inputs) if not uri.startswith(str(run_dir) + "/")]
    todo = [
        uri
        for uri in inputs
        if uri not in state.status_by_uri or (config.retry_failed and state.status_by_uri[uri] == STATUS_FAILED)
    ]
    log.info("%d inputs, %d to process", len(inputs), len(todo))
    # After recovery (which settles what is committed) and under the run lock.
    workarea.clean_at_start(context.work_dir, config.keep_work, [uri for uri in todo if is_remote(uri)])
    executor = make_executor(config.runner, config.ray, show_progress=show_progress)
    writer = shard_writer_for(config, ledger, state, upload_url)
    sink = DatasetSink(
        config,
        ledger,
        state,
        final_type=final_record_type(stages),
        total_sources=len(todo),
        show_progress=show_progress,
        after_commit=publish,
        # Placed by the executor (a Ray actor on a worker): nothing to write, nothing to place.
        writer=executor.shard_writer(writer) if todo else writer,
        on_committed_shards=on_committed_shards,
    )
    try:
        executor.execute(stages, [SourceRecord(source_uri=uri) for uri in todo], sink)
        sink.finish()
        sink.writer.close()
    except BaseException:
        # What was committed is consolidated all the same, but failing to (a full disk, often the
        # very fault that stopped the run) must not replace the error the run stopped with.
        try:
            # First: a writer on a worker must not upload anything once this run lets go of the
            # run directory (a resume could be committing a shard of the same name by then).
            sink.writer.close()
            consolidate(run_dir)
            publish()
        except Exception as error:
            log.warning("the manifests were not consolidated (or published) after the run stopped: %s", error)
        raise
    consolidate(run_dir)
    if "faces" in config.stages:
        # Identities need every face track of the run, so they are clustered after consolidation.
        from voxhear.passes.identities import assign_identities

        assign_identities(run_dir, config.faces.identity_threshold)
    if "talk" in config.stages:
        from voxhear.passes.splits import write_splits

        write_splits(run_dir, config.shards.val_share, config.shards.test_share, config.shards.split_seed)
    # Also where no splits pass ran (it writes the index itself); shards it has read are not read again.
    write_sample_index(run_dir)
    publish()
    summary = summarize_run(
        run_dir,
        inputs_total=len(inputs),
        skipped=len(inputs) - len(todo),
        wall_s=time.perf_counter() - started,
        processed=set(todo),
    )
    summary.keep_work = config.keep_work
    return summary


def summarize_run(run_dir: Path, inputs_total: int, skipped: int, wall_s: float, processed: set[str]) -> RunSummary:
    from voxhear.manifests import read_manifests

    sources, clips = read_manifests(run_dir)
    summary = RunSummary(run_dir=run_dir, inputs=inputs_total, skipped=skipped, wall_s=wall_s)
    rows = sources.to_pylist()
    summary.status_counts = dict(collections.Counter(r["status"] for r in rows))
    summary.reason_counts = dict(
        collections.Counter(f"{r['status']}/{r['stage']}/{r['reason']}" for r in rows if r["status"] != "ok")
    )
    kept = [c for c in clips.to_pylist() if c["status"] == "ok"]
    summary.clips = len(kept)
    summary.clip_hours = sum(end - start for start, end in map(clip_span, kept)) / 3600
    summary.input_hours = sum(r["duration_s"] for r in rows if r["source_uri"] in processed) / 3600
    summary.shards = len({c["shard"] for c in kept})
    summary.work_bytes = workarea.size_bytes(workarea.work_dir(run_dir))
    return summary
