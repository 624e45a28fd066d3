"""The dataset sink: receives final rows in any order, has their shards written, commits the ledger.

A source is complete when the shares of its rows add up to one (see `records.Record`). Only
complete sources are written, and a source is committed only once every shard holding its
samples is (a source may span shards; `Ledger` explains the resume).

The shards are written by a `ShardWriter` that the executor places (a Ray actor on a worker for
the Ray runner): the sink sends it rows, never media, and commits what it closes with a rename and
the sha256 the writer measured, so no sample's bytes pass through the driver.
"""

from __future__ import annotations

import collections
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import TYPE_CHECKING

from tqdm import tqdm

from voxhear.manifests import Ledger, LedgerState, SourceManifestRow, clip_row_type
from voxhear.pipeline.config import RunConfig
from voxhear.pipeline.records import STATUS_FAILED, STATUS_FILTERED, STATUS_OK, Record, ShotRecord, clip_span
from voxhear.pipeline.shards import ShardWriter, ShardWriterLike, WrittenShard, commit_written
from voxhear.pipeline.workarea import remove_input_work, work_dir

if TYPE_CHECKING:
    from voxhear.manifests.schemas import ClipRow


class RunAbortedError(RuntimeError):
    """Too many inputs failed: the cause is likely not the data (see the failed rows)."""


@dataclass
class _Waiting:
    """A complete source whose samples are not all published yet."""

    source: SourceManifestRow
    shards: set[str] = field(default_factory=set)
    clips: list[ClipRow] = field(default_factory=list)  # rejected clips, recorded with the source


@dataclass
class _Pending:
    share: Fraction = Fraction(0)
    rows: list[ShotRecord] = field(default_factory=list)


class DatasetSink:
    def __init__(
        self,
        config: RunConfig,
        ledger: Ledger,
        state: LedgerState,
        final_type: type[ShotRecord],
        total_sources: int,
        show_progress: bool = True,
        after_commit: Callable[[], object] = lambda: None,
        writer: ShardWriterLike | None = None,
        on_committed_shards: Callable[[list[WrittenShard]], object] = lambda written: None,
    ) -> None:
        self.config = config
        # Called after every ledger commit: publishes it when the run directory is on object storage.
        self.after_commit = after_commit
        # Called with the shards a commit published, before after_commit (records the writer's uploads).
        self.on_committed_shards = on_committed_shards
        self.clip_type = clip_row_type(final_type)
        self.ledger = ledger
        self.state = state
        self.writer = writer or shard_writer_for(config, ledger, state)
        self.commit_seq = state.next_commit
        self.work = work_dir(ledger.run_dir)
        self.incomplete: dict[str, _Pending] = {}
        # Sources complete but not yet committed, and the kept clips of each unpublished shard.
        self.waiting: list[_Waiting] = []
        self.clips_by_shard: dict[str, list[ClipRow]] = {}
        self.last_commit = time.monotonic()
        self.completed = 0
        self.failed = 0
        # One line for the whole run: inputs done of those to do, and what they gave so far.
        self.progress = tqdm(
            total=total_sources, desc="inputs", unit="input", disable=not show_progress, dynamic_ncols=True
        )
        self.clips_kept = 0
        self.clip_seconds = 0.0

    def consume(self, rows: Sequence[Record]) -> None:
        for row in rows:
            if not isinstance(row, ShotRecord):
                raise TypeError(f"the sink writes shots; it was given a {type(row).__name__} row")
            pending = self.incomplete.setdefault(row.source_uri, _Pending())
            pending.rows.append(row)
            pending.share += Fraction(1, row.share_den)
            if pending.share > 1:
                raise RuntimeError(f"source {row.source_uri} received more than its rows (share {pending.share})")
            if pending.share == 1:
                del self.incomplete[row.source_uri]
                self._complete(pending.rows)

    def _complete(self, rows: list[ShotRecord]) -> None:
        source = summarize_source(rows)
        owner = self.state.source_ids.get(source.source_id)
        # Same content as a kept source is a duplicate whatever became of it: two copies of one video
        # share a work folder (it is named by content), which the first one's commit may have
        # removed while the second was still being processed (see workarea).
        if source.source_id and owner not in (None, source.source_uri):
            source.mark(
                STATUS_FILTERED,
                "sink",
                "duplicate_content",
                message=f"same content (source_id {source.source_id}) as {owner}",
            )
            for row in rows:
                if row.status == STATUS_OK:
                    row.mark(STATUS_FILTERED, "sink", "duplicate_content", message=source.error_message)
            source.n_clips_filtered += source.n_clips_ok
            source.n_clips_ok, source.clip_seconds = 0, 0.0
        elif source.status == STATUS_OK:
            self.state.source_ids[source.source_id] = source.source_uri
        waiting = _Waiting(source=source)
        to_write = []
        for row in sorted((r for r in rows if r.shot_index >= 0), key=lambda r: r.key):
            if row.status != STATUS_OK:
                waiting.clips.append(self.clip_type.from_parent(row))
            elif row.key not in self.state.published_keys:  # else an earlier attempt published it
                to_write.append(row)
        # The writer reads the samples' media where it runs; only the rows travel to it.
        names, has_closed = self.writer.add_samples(to_write) if to_write else ([], False)
        for row, name in zip(to_write, names):
            clip = self.clip_type.from_parent(row)
            clip.shard = name
            self.clips_by_shard.setdefault(name, []).append(clip)
            waiting.shards.add(name)
        self.waiting.append(waiting)
        self.completed += 1
        self.failed += source.status == STATUS_FAILED
        self.clips_kept += source.n_clips_ok
        self.clip_seconds += source.clip_seconds
        self.progress.update(1)
        seconds = self.clip_seconds
        length = f"{seconds / 3600:.2f} h" if seconds >= 3600 else f"{seconds / 60:.1f} min"
        self.progress.set_postfix_str(f"clips {self.clips_kept} ({length}), failed {self.failed}", refresh=False)
        due = time.monotonic() - self.last_commit > self.config.shards.commit_every_s
        if has_closed or due:
            self.commit(close_open=due)
        self._check_failure_rate()

    def commit(self, close_open: bool = False) -> None:
        """Publish closed shards and record them, and every source now fully published, in the ledger.

        Args:
            close_open: also close the shard being filled (at the end, or when a commit is due).
        """
        if close_open:
            self.writer.close_current()
        written = self.writer.take_closed()
        published = commit_written(self.ledger.shards_dir, written)
        clips = [clip for name in published for clip in self.clips_by_shard.pop(name)]
        for name in published:
            for waiting in self.waiting:
                waiting.shards.discard(name)
        ready = [w for w in self.waiting if not w.shards]
        self.waiting = [w for w in self.waiting if w.shards]
        if not clips and not ready:
            return
        sources = [w.source for w in ready]
        clips += [clip for w in ready for clip in w.clips]
        known = {shard.name: (shard.sha256, shard.bytes) for shard in written}
        self.ledger.commit(self.commit_seq, sources, clips, self.clip_type, shards=published, known=known)
        for source in sources:
            self.state.status_by_uri[source.source_uri] = source.status
        self.state.published_keys.update(clip.key for clip in clips if clip.shard)
        self.commit_seq += 1
        self.on_committed_shards(written)
        self.after_commit()
        self.last_commit = time.monotonic()
        if not self.config.keep_work:
            # Only now: the commit is durable, and a crash before this line leaves files for the
            # next run's start to remove, never a committed input without its data.
            for source in sources:
                remove_input_work(self.work, source.source_id, source.source_uri)

    def _check_failure_rate(self) -> None:
        cfg = self.config
        if self.completed >= cfg.min_inputs_for_failure_rate and self.failed / self.completed > cfg.max_failure_rate:
            self.commit(close_open=True)
            raise RunAbortedError(
                f"{self.failed} of {self.completed} inputs failed (> max_failure_rate={cfg.max_failure_rate}); "
                f"stopping. Read the failed rows' error_message in manifests/sources.parquet."
            )

    def finish(self) -> None:
        self.commit(close_open=True)
        self.progress.close()
        if self.incomplete:
            raise RuntimeError(f"{len(self.incomplete)} sources never completed: {sorted(self.incomplete)[:5]}")


def shard_writer_for(config: RunConfig, ledger: Ledger, state: LedgerState, upload_url: str = "") -> ShardWriter:
    """The run's shard writer as configured, numbering shards after what earlier attempts committed."""
    return ShardWriter(
        ledger.shards_dir,
        config.shards.max_samples,
        int(config.shards.max_megabytes * 1e6),
        next_number=state.next_shard,
        upload_url=upload_url,
    )


def summarize_source(rows: list[ShotRecord]) -> SourceManifestRow:
    """One manifest row for a source from all of its final rows."""
    first = rows[0]
    source = SourceManifestRow.from_parent(first, wall_s={}, cpu_s={}, peak_mb={}, share_den=1)
    for row in rows:
        for stage, peak in row.peak_mb.items():
            source.peak_mb[stage] = max(source.peak_mb.get(stage, 0.0), peak)
        for stage, seconds in row.wall_s.items():
            source.wall_s[stage] = source.wall_s.get(stage, 0.0) + seconds
        for stage, seconds in row.cpu_s.items():
            source.cpu_s[stage] = source.cpu_s.get(stage, 0.0) + seconds
    source.total_wall_s = sum(source.wall_s.values())
    source.total_cpu_s = sum(source.cpu_s.values())
    shots = [r for r in rows if r.shot_index >= 0]
    source.n_shots = len(shots)
    kept = [r for r in shots if r.status == STATUS_OK]
    source.n_clips_ok = len(kept)
    source.n_clips_filtered = len(shots) - len(kept)
    source.clip_seconds = sum(end - start for start, end in (clip_span(r.to_row()) for r in kept))
    if not shots:  # the source ended before the scene cut: its one row says why
        source.mark(first.status, first.stage, first.reason, first.error_type, first.error_message)
    elif kept:
        source.mark(STATUS_OK, "", "")
    else:
        reasons = collections.Counter(r.reason for r in shots)
        summary = ", ".join(f"{reason} x{count}" for reason, count in reasons.most_common())
        source.mark(STATUS_FILTERED, "sink", "no_clip_kept", message=f"every clip was rejected: {summary}")
    return source
