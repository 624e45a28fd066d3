"""One view model of a run, loaded from its manifests, for the dashboard and the datasheet.

Nothing here knows a fixed list of QC metrics: a clip metric is any numeric column of
`clips.parquet` that is neither bookkeeping nor a fact inherited from the source row, so the
columns later stages add (face quality, talk/listen time, ...) show up without an edit here.
Thresholds and reject reasons are the exception: which config key bounds which column, and which
keys decide each (stage, reason), is declared by the stages themselves and read from the stage
registry (voxhear.pipeline.registry), since the manifests do not say it.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterable

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

if TYPE_CHECKING:
    from voxhear.pipeline.stage import Bound

IDENTITIES_FILE = "identities.parquet"

# Columns of clips.parquet that are positions, counters or ids rather than quality measures.
CLIP_BOOKKEEPING = frozenset({
    "share_den", "commit", "shot_index", "n_shots", "start_frame", "end_frame", "start_s", "end_s",
    "track_index", "n_tracks", "track_start_frame", "track_end_frame", "track_start_s", "track_end_s",
    "crop_size", "identity_tracks", "identity_sources", "clip_start_s", "clip_end_s",
})
SOURCE_BOOKKEEPING = frozenset({"share_den", "commit"})
# Derived clip columns, computed here (first in every listing).
DERIVED_CLIP_METRICS = ("clip_s", "shot_s")
# Talk/listen time columns, recognised by name: <class>_s, <class>_seconds or <class>_time_s.
TALK_CLASSES = ("talk", "listen", "both", "silence")


def thresholds() -> list[Bound]:
    """Which config key bounds which manifest column: every registered stage's declared bounds.

    Read from the registry at each call (stage modules are imported on first use only, so loading
    this module stays cheap).
    """
    from voxhear.pipeline import registry

    return registry.bounds()


def reason_keys() -> dict[tuple[str, str], tuple[str, ...]]:
    """(stage, reason) -> the config keys that decide it, as each registered stage declares them."""
    from voxhear.pipeline import registry

    return {key: reason.keys for key, reason in registry.reject_reasons().items()}


def __getattr__(name: str) -> Any:
    # The former hand-written tables, now derived from the registry (computed on access).
    if name == "THRESHOLDS":
        return tuple(thresholds())
    if name == "REASON_KEYS":
        return reason_keys()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def split_label(label: str) -> tuple[str, str, str]:
    """`status: stage/reason` (a row's label) -> (status, stage, reason)."""
    status, _, rest = label.partition(": ")
    stage, _, reason = rest.rpartition("/")
    return status, stage, reason


def explain_reason(config: dict[str, Any], stage: str, reason: str) -> list[tuple[str, Any]]:
    """The config keys `stage` declares for `reason`, with their values in `config` (None if unset)."""
    return [(key, config_value(config, key)) for key in reason_keys().get((stage, reason), ())]


def config_value(config: dict[str, Any], dotted: str) -> Any:
    """The value at `a.b.c` of a nested dict, or None."""
    node: Any = config
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node


@dataclass(frozen=True)
class BoundValue:
    """A threshold resolved against the run's config."""

    bound: Bound
    value: float

    @property
    def label(self) -> str:
        sign = "\u00b1" if self.bound.kind == "abs_max" else ""
        return f"{self.bound.key} = {sign}{_short(self.value)}"

    def lines(self) -> list[float]:
        """Where to draw it on the metric's axis."""
        return [-self.value, self.value] if self.bound.kind == "abs_max" else [self.value]


def _short(value: float) -> str:
    return f"{value:g}"


@dataclass
class RunData:
    """The manifests of one run as DataFrames, plus the resolved config.

    `clips` has derived columns: `clip_start_s`/`clip_end_s`/`clip_s` (the clip's own span: the
    talk stage's clip window when there is one, else the face track's, else the shot's), `shot_s`, `label` ("ok" or
    "stage/reason"), `source_name`, and `identity_id` joined from `identities.parquet`.
    """

    run_dir: Path
    config: dict[str, Any]
    sources: pd.DataFrame
    clips: pd.DataFrame
    source_metric_names: list[str] = field(default_factory=list)
    clip_metric_names: list[str] = field(default_factory=list)
    map_columns: dict[str, list[str]] = field(default_factory=dict)
    mtimes: tuple = ()

    @property
    def shards_dir(self) -> Path:
        return self.run_dir / "shards"

    def thresholds(self, table: str, column: str) -> list[BoundValue]:
        found = []
        for bound in thresholds():
            if bound.table == table and bound.column == column:
                value = config_value(self.config, bound.key)
                if isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value):
                    found.append(BoundValue(bound, float(value)))
        return found

    def talk_columns(self) -> dict[str, str]:
        """Talk/listen/both/silence time columns present in clips.parquet, by class."""
        found = {}
        for cls in TALK_CLASSES:
            for name in (f"{cls}_s", f"{cls}_seconds", f"{cls}_time_s"):
                if name in self.clips.columns and pd.api.types.is_numeric_dtype(self.clips[name]):
                    found[cls] = name
                    break
        return found

    def subset(self, clips: pd.DataFrame, sources: pd.DataFrame) -> RunData:
        return RunData(self.run_dir, self.config, sources, clips, self.source_metric_names,
                       self.clip_metric_names, self.map_columns, self.mtimes)


def manifest_mtimes(run_dir: Path) -> tuple:
    names = ("sources.parquet", "clips.parquet", IDENTITIES_FILE)
    out = []
    for name in names:
        path = Path(run_dir) / "manifests" / name
        out.append(path.stat().st_mtime_ns if path.exists() else 0)
    return tuple(out)


def _read_parquet(path: Path) -> tuple[pd.DataFrame, list[str]]:
    """Read a manifest, leaving out list columns (embeddings) and maps of text (model hashes), and
    turning numeric maps (per-stage times, per-speaker evidence) into dicts."""
    schema = pq.read_schema(path)

    def numeric_map(t: pa.DataType) -> bool:
        return pa.types.is_map(t) and (pa.types.is_floating(t.item_type) or pa.types.is_integer(t.item_type))

    keep = [f.name for f in schema if not pa.types.is_list(f.type) and not pa.types.is_large_list(f.type)
            and (not pa.types.is_map(f.type) or numeric_map(f.type))]
    maps = [f.name for f in schema if numeric_map(f.type)]
    table = pq.read_table(path, columns=keep)
    frame = table.to_pandas(maps_as_pydicts="strict") if maps else table.to_pandas()
    for name in maps:
        frame[name] = [dict(v) if v is not None else {} for v in frame[name]]
    return frame, maps


def load_run(run_dir: str | Path) -> RunData:
    """Load `RUN/manifests/*.parquet` and `RUN/config.yaml` into one `RunData`.

    Raises:
        FileNotFoundError: the folder has no consolidated manifests.
    """
    run_dir = Path(run_dir).expanduser().absolute()
    manifests = run_dir / "manifests"
    if not (manifests / "sources.parquet").exists():
        raise FileNotFoundError(f"{run_dir} has no manifests/sources.parquet (is it a voxhear run directory?)")
    mtimes = manifest_mtimes(run_dir)
    sources, source_maps = _read_parquet(manifests / "sources.parquet")
    if (manifests / "clips.parquet").exists():
        clips, clip_maps = _read_parquet(manifests / "clips.parquet")
    else:
        clips, clip_maps = pd.DataFrame(columns=["source_uri", "source_id", "status", "stage", "reason", "key",
                                                 "shard", "start_s", "end_s"]), []
    config_path = run_dir / "config.yaml"
    config = (yaml.safe_load(config_path.read_text()) or {}) if config_path.exists() else {}
    identities = manifests / IDENTITIES_FILE
    if identities.exists() and len(clips):
        ids = pq.read_table(identities).to_pandas()
        ids = ids.drop(columns=[c for c in ("source_id",) if c in ids.columns]).drop_duplicates("key", keep="last")
        clips = clips.drop(columns=[c for c in ids.columns if c != "key" and c in clips.columns])
        clips = clips.merge(ids, on="key", how="left")
    if "identity_id" not in clips.columns:
        clips["identity_id"] = ""
    clips["identity_id"] = clips["identity_id"].fillna("").astype(str)
    _derive_clip_columns(clips)
    _derive_source_columns(sources)
    data = RunData(run_dir=run_dir, config=config, sources=sources, clips=clips, mtimes=mtimes)
    data.source_metric_names = [c for c in sources.columns if c not in SOURCE_BOOKKEEPING
                                and _is_number(sources[c]) and c not in ("n_clips_rejected",)]
    inherited = set(sources.columns) - {"status", "stage", "reason"}
    data.clip_metric_names = list(DERIVED_CLIP_METRICS) + [
        c for c in clips.columns if c not in CLIP_BOOKKEEPING and c not in inherited
        and c not in DERIVED_CLIP_METRICS and _is_number(clips[c])]
    data.map_columns = {"sources": source_maps, "clips": clip_maps}
    return data


def _is_number(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _derive_clip_columns(clips: pd.DataFrame) -> None:
    n = len(clips)
    start = clips["start_s"].astype(float) if "start_s" in clips else pd.Series(np.zeros(n))
    end = clips["end_s"].astype(float) if "end_s" in clips else pd.Series(np.zeros(n))
    clip_start, clip_end = start.copy(), end.copy()
    if {"track_index", "track_start_s", "track_end_s"} <= set(clips.columns):
        has_track = clips["track_index"].astype(int) >= 0
        clip_start = clip_start.where(~has_track, clips["track_start_s"].astype(float))
        clip_end = clip_end.where(~has_track, clips["track_end_s"].astype(float))
    if {"clip_index", "clip_start_s", "clip_end_s"} <= set(clips.columns):
        # The talk stage cuts a long track into several clips: each has its own span
        # (the same rule as voxhear.pipeline.records.clip_span).
        own_start, own_end = clips["clip_start_s"].astype(float), clips["clip_end_s"].astype(float)
        has_clip = (clips["clip_index"].astype(int) >= 0) & (own_end > own_start)
        clip_start = clip_start.where(~has_clip, own_start)
        clip_end = clip_end.where(~has_clip, own_end)
    clips["clip_start_s"] = clip_start.values
    clips["clip_end_s"] = clip_end.values
    clips["clip_s"] = (clip_end - clip_start).values
    clips["shot_s"] = (end - start).values
    clips["label"] = _labels(clips)
    clips["source_name"] = [_source_name(u) for u in clips.get("source_uri", pd.Series([""] * n))]
    for column in ("shard", "key", "stage", "reason", "error_message"):
        if column not in clips.columns:
            clips[column] = ""


def _derive_source_columns(sources: pd.DataFrame) -> None:
    sources["label"] = _labels(sources)
    sources["source_name"] = [_source_name(u) for u in sources["source_uri"]]


def _labels(frame: pd.DataFrame) -> list[str]:
    if not len(frame):
        return []
    return ["ok" if status == "ok" else f"{status}: {stage or '?'}/{reason or '?'}"
            for status, stage, reason in zip(frame["status"], frame["stage"], frame["reason"])]


def _source_name(uri: str) -> str:
    return os.path.basename(str(uri).rstrip("/")) or str(uri)


# ------------------------------------------------------------------------------------------
# Filtering


@dataclass
class Filter:
    """Live filter of the dashboard. Empty lists mean "any".

    Status and reason select clips and the inputs whose own status/reason matches or that have a
    matching clip; source and identity select both; metric ranges select clips only.
    """

    statuses: list[str] = field(default_factory=list)
    reasons: list[str] = field(default_factory=list)
    sources: list[str] = field(default_factory=list)
    identities: list[str] = field(default_factory=list)
    ranges: dict[str, tuple[float | None, float | None]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not (self.statuses or self.reasons or self.sources or self.identities or self.ranges)

    @classmethod
    def from_query(cls, query: dict[str, list[str]]) -> Filter:
        """From URL query parameters: status, reason, source, identity (repeatable), range=col:lo:hi."""
        ranges: dict[str, tuple[float | None, float | None]] = {}
        for item in query.get("range", []):
            column, _, rest = item.partition(":")
            lo, _, hi = rest.partition(":")
            if column:
                ranges[column] = (_float_or_none(lo), _float_or_none(hi))
        clean = lambda name: [v for v in query.get(name, []) if v]  # noqa: E731
        return cls(statuses=clean("status"), reasons=clean("reason"), sources=clean("source"),
                   identities=clean("identity"), ranges=ranges)

    def apply(self, data: RunData) -> RunData:
        if self.empty:
            return data
        clips, sources = data.clips, data.sources
        clip_mask = pd.Series(True, index=clips.index)
        source_mask = pd.Series(True, index=sources.index)
        if self.sources:
            wanted = set(self.sources)
            clip_mask &= clips["source_id"].isin(wanted) | clips["source_name"].isin(wanted)
            source_mask &= sources["source_id"].isin(wanted) | sources["source_name"].isin(wanted)
        if self.identities:
            clip_mask &= clips["identity_id"].isin(set(self.identities))
            source_mask &= sources["source_id"].isin(set(clips.loc[clip_mask, "source_id"]))
        ranged = False
        for column, (lo, hi) in self.ranges.items():
            if column not in clips.columns or not _is_number(clips[column]):
                continue
            ranged = True
            values = clips[column].astype(float)
            keep = values.notna()
            if lo is not None:
                keep &= values >= lo
            if hi is not None:
                keep &= values <= hi
            clip_mask &= keep
        if ranged:
            source_mask &= sources["source_id"].isin(set(clips.loc[clip_mask, "source_id"]))
        if self.statuses or self.reasons:
            clip_sel = pd.Series(True, index=clips.index)
            src_sel = pd.Series(True, index=sources.index)
            if self.statuses:
                clip_sel &= clips["status"].isin(self.statuses)
                src_sel &= sources["status"].isin(self.statuses)
            if self.reasons:
                clip_sel &= clips["label"].isin(self.reasons)
                src_sel &= sources["label"].isin(self.reasons)
            clip_mask &= clip_sel
            with_clip = sources["source_id"].isin(set(clips.loc[clip_mask, "source_id"]))
            source_mask &= src_sel | with_clip
        return data.subset(clips[clip_mask], sources[source_mask])


def _float_or_none(text: str) -> float | None:
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        return None
    return value if math.isfinite(value) else None


# ------------------------------------------------------------------------------------------
# Summaries shared by the report, the server's JSON and the datasheet


def kept(clips: pd.DataFrame) -> pd.DataFrame:
    return clips[clips["status"] == "ok"]


def hours(seconds: Iterable[float] | pd.Series) -> float:
    return float(np.nansum(np.asarray(list(seconds) if not isinstance(seconds, pd.Series) else seconds,
                                      dtype=float))) / 3600.0


def headline(data: RunData) -> dict[str, Any]:
    """The numbers at the top of the dashboard (and in the server's JSON)."""
    clips, sources = data.clips, data.sources
    ok = kept(clips)
    shards = sorted({s for s in ok["shard"] if s})
    return {
        "inputs": int(len(sources)),
        "inputs_ok": int((sources["status"] == "ok").sum()),
        "inputs_filtered": int((sources["status"] == "filtered").sum()),
        "inputs_failed": int((sources["status"] == "failed").sum()),
        "input_hours": hours(sources["duration_s"]) if "duration_s" in sources else 0.0,
        "clips": int(len(clips)),
        "clips_kept": int(len(ok)),
        "clips_rejected": int(len(clips) - len(ok)),
        "kept_hours": hours(ok["clip_s"]),
        "rejected_hours": hours(clips.loc[clips["status"] != "ok", "clip_s"]),
        "identities": int(len({i for i in ok["identity_id"] if i})),
        "shards": len(shards),
    }


def funnel(data: RunData) -> list[dict[str, Any]]:
    """From inputs to kept clips: count and hours at each step."""
    sources, clips = data.sources, data.clips
    ok_sources = sources[sources["status"] == "ok"]
    steps = [
        {"step": "inputs", "count": len(sources), "hours": hours(sources.get("duration_s", []))},
        {"step": "inputs processed (ok)", "count": len(ok_sources), "hours": hours(ok_sources.get("duration_s", []))},
    ]
    if "shot_index" in clips.columns and len(clips):
        shots = clips[clips["shot_index"] >= 0].drop_duplicates(["source_id", "shot_index"])
        steps.append({"step": "shots", "count": len(shots), "hours": hours(shots["shot_s"])})
    steps.append({"step": "candidate clips", "count": len(clips), "hours": hours(clips["clip_s"])})
    ok = kept(clips)
    steps.append({"step": "kept clips", "count": len(ok), "hours": hours(ok["clip_s"])})
    return [{**s, "count": int(s["count"])} for s in steps]


def breakdown(frame: pd.DataFrame, seconds_column: str) -> list[dict[str, Any]]:
    """Count and hours per label (status and reason), largest first."""
    if not len(frame):
        return []
    grouped = frame.groupby("label", sort=False)[seconds_column].agg(["count", "sum"]).reset_index()
    rows = [{"label": r["label"], "status": r["label"].split(":")[0], "count": int(r["count"]),
             "hours": float(r["sum"]) / 3600.0} for _, r in grouped.iterrows()]
    return sorted(rows, key=lambda r: (r["label"] != "ok", -r["count"], r["label"]))


def stage_timings(data: RunData) -> list[dict[str, Any]]:
    """Per stage: wall and CPU seconds summed over inputs, real-time factors (per input second), and
    the peak resident memory (MB) of a process running it, the largest over inputs (NaN if unrecorded)."""
    sources = data.sources
    if "wall_s" not in sources.columns or not len(sources):
        return []
    walls: dict[str, float] = {}
    cpus: dict[str, float] = {}
    media: dict[str, float] = {}
    order: list[str] = []
    peaks: dict[str, float] = {}
    for peak in sources.get("peak_mb", [{}] * len(sources)):
        for stage, mb in (peak or {}).items():
            peaks[stage] = max(peaks.get(stage, 0.0), float(mb))
    for wall, cpu, duration in zip(sources["wall_s"], sources.get("cpu_s", [{}] * len(sources)),
                                   sources.get("duration_s", [0.0] * len(sources))):
        for stage, seconds in (wall or {}).items():
            if stage not in order:
                order.append(stage)
            walls[stage] = walls.get(stage, 0.0) + float(seconds)
            media[stage] = media.get(stage, 0.0) + float(duration or 0.0)
        for stage, seconds in (cpu or {}).items():
            cpus[stage] = cpus.get(stage, 0.0) + float(seconds)
    rows = []
    for stage in order:
        seconds_in = media.get(stage, 0.0)
        rows.append({"stage": stage, "wall_s": walls.get(stage, 0.0), "cpu_s": cpus.get(stage, 0.0),
                     "input_s": seconds_in,
                     "rtf_wall": walls.get(stage, 0.0) / seconds_in if seconds_in else float("nan"),
                     "rtf_cpu": cpus.get(stage, 0.0) / seconds_in if seconds_in else float("nan"),
                     "peak_mb": peaks.get(stage, float("nan"))})
    total_in = float(np.nansum(sources.get("duration_s", pd.Series(dtype=float)).astype(float)))
    total_wall = sum(walls.values())
    total_cpu = sum(cpus.values())
    rows.append({"stage": "all stages", "wall_s": total_wall, "cpu_s": total_cpu, "input_s": total_in,
                 "rtf_wall": total_wall / total_in if total_in else float("nan"),
                 "rtf_cpu": total_cpu / total_in if total_in else float("nan"),
                 "peak_mb": max(peaks.values(), default=float("nan"))})
    return rows


def map_means(frame: pd.DataFrame, column: str) -> dict[str, float]:
    """Mean of every key of a map column over the rows that have it."""
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}
    for mapping in frame[column] if column in frame.columns else []:
        for key, value in (mapping or {}).items():
            if value is not None and math.isfinite(float(value)):
                sums[key] = sums.get(key, 0.0) + float(value)
                counts[key] = counts.get(key, 0) + 1
    return {k: sums[k] / counts[k] for k in sums}


def per_source(data: RunData) -> pd.DataFrame:
    """One row per input: status, duration, clips kept/rejected, kept hours, identities, wall time."""
    sources, clips = data.sources, data.clips
    ok = kept(clips)
    kept_n = ok.groupby("source_id").size()
    kept_s = ok.groupby("source_id")["clip_s"].sum()
    rejected_n = clips[clips["status"] != "ok"].groupby("source_id").size()
    ids = ok[ok["identity_id"] != ""].groupby("source_id")["identity_id"].nunique()
    out = pd.DataFrame({
        "source": sources["source_name"].values,
        "source_id": sources["source_id"].values,
        "status": sources["label"].values,
        "duration_s": sources.get("duration_s", pd.Series(np.nan, index=sources.index)).astype(float).values,
    })
    sid = sources["source_id"]
    out["clips_kept"] = sid.map(kept_n).fillna(0).astype(int).values
    out["clips_rejected"] = sid.map(rejected_n).fillna(0).astype(int).values
    out["kept_s"] = sid.map(kept_s).fillna(0.0).values
    out["identities"] = sid.map(ids).fillna(0).astype(int).values
    if "wall_s" in sources.columns:  # the per-stage map: total_wall_s is its sum
        wall = np.array([sum((m or {}).values()) for m in sources["wall_s"]], dtype=float)
    else:
        wall = sources.get("total_wall_s", pd.Series(np.nan, index=sources.index)).astype(float).values
    out["wall_s"] = wall
    with np.errstate(divide="ignore", invalid="ignore"):
        out["rtf"] = np.where(out["duration_s"] > 0, wall / out["duration_s"], np.nan)
    out["message"] = sources.get("error_message", pd.Series("", index=sources.index)).astype(str).values
    return out.sort_values(["clips_kept", "source"], ascending=[False, True]).reset_index(drop=True)


def per_identity(data: RunData) -> pd.DataFrame:
    """One row per identity over kept clips: clips, hours, sources, and talk/listen seconds if present."""
    ok = kept(data.clips)
    ok = ok[ok["identity_id"] != ""]
    columns = ["identity", "clips", "kept_s", "sources"]
    talk = data.talk_columns()
    if not len(ok):
        return pd.DataFrame(columns=columns + list(talk))
    grouped = ok.groupby("identity_id")
    out = pd.DataFrame({"clips": grouped.size(), "kept_s": grouped["clip_s"].sum(),
                        "sources": grouped["source_id"].nunique()})
    for cls, column in talk.items():
        out[cls + "_s"] = grouped[column].sum()
    out = out.reset_index().rename(columns={"identity_id": "identity"})
    return out.sort_values(["clips", "identity"], ascending=[False, True]).reset_index(drop=True)


def talk_totals(data: RunData) -> dict[str, float]:
    """Seconds of talk, listen, both and silence over kept clips (only the classes the run has)."""
    ok = kept(data.clips)
    return {cls: float(np.nansum(ok[column].astype(float))) for cls, column in data.talk_columns().items()}


def filter_options(data: RunData) -> dict[str, Any]:
    """What the dashboard's filter controls offer (over the whole, unfiltered run)."""
    clips, sources = data.clips, data.sources
    reasons = sorted(set(clips["label"]) | set(sources["label"]))
    metrics = {}
    for name in data.clip_metric_names:
        values = clips[name].astype(float)
        finite = values[np.isfinite(values)]
        metrics[name] = [float(finite.min()), float(finite.max())] if len(finite) else [None, None]
    return {
        "statuses": [s for s in ("ok", "filtered", "failed")
                     if s in set(clips["status"]) | set(sources["status"])],
        "reasons": reasons,
        "sources": [{"id": i, "name": n} for i, n in sorted(zip(sources["source_id"], sources["source_name"]),
                                                          key=lambda p: p[1])],
        "identities": sorted({i for i in clips["identity_id"] if i}),
        "metrics": metrics,
    }
