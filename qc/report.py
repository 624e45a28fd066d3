"""The QC dashboard as HTML: one self-contained file (`voxhear qc report`), or the page and the
filtered fragments that `voxhear qc serve` returns.

Both render the same sections from a `RunData` (already filtered, for the server); only where
media come from differs: the file embeds a capped number of clips as base64 data URIs so it can
be mailed, the server links to its `/media/` routes, which read the shards in place.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from datetime import datetime, timezone
from html import escape
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import pandas as pd

from voxhear.pipeline.io import atomic_write_text
from voxhear.qc import charts
from voxhear.qc.data import (RunData, breakdown, explain_reason, funnel, headline, kept, load_run, map_means,
                             per_identity, per_source, split_label, stage_timings, talk_totals)
from voxhear.qc.media import ShardIndex, Track, sample_tracks, track_bytes

# A rendered table shows at most this many rows (the server's filters narrow the rest down).
MAX_TABLE_ROWS = 200


@dataclass
class ReportOptions:
    """Limits that keep the single file mailable."""

    gallery_clips: int = 6
    reject_clips: int = 6
    # Media embedded in the file in total (MB); what does not fit is listed without a player.
    max_media_mb: float = 20.0
    # Audio tracks per clip (video aside); the rest are listed by name.
    max_tracks_per_clip: int = 5


MediaSource = Callable[[Track, dict], "str | None"]


class EmbeddedMedia:
    """Media as data URIs, within a byte budget."""

    def __init__(self, index: ShardIndex, budget_bytes: int) -> None:
        self.index = index
        self.budget = budget_bytes
        self.used = 0
        self.skipped = 0

    def __call__(self, track: Track, clip: dict) -> str | None:
        size = track.member.size if track.member is not None else None
        if size is not None and self.used + size > self.budget:
            self.skipped += 1
            return None
        try:
            data = track_bytes(self.index, track)
        except (OSError, RuntimeError, ValueError):
            return None
        if self.used + len(data) > self.budget:
            self.skipped += 1
            return None
        self.used += len(data)
        return f"data:{track.mime};base64,{base64.b64encode(data).decode('ascii')}"


# ------------------------------------------------------------------------------------------
# Formatting helpers


def _num(value: Any, digits: int = 3) -> str:
    if value is None:
        return ""
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (int, np.integer)):
        return f"{int(value):,}"
    if isinstance(value, (float, np.floating)):
        return charts.fmt(float(value), digits)
    return escape(str(value))


def _table(columns: Sequence[str], rows: Sequence[Sequence[Any]], css: str = "", total: int | None = None,
           raw: Sequence[str] = ()) -> str:
    """An HTML table; cells are escaped unless their column is in `raw` (pre-rendered HTML)."""
    head = "".join(f"<th>{escape(c)}</th>" for c in columns)
    body = []
    for row in rows[:MAX_TABLE_ROWS]:
        cells = []
        for column, value in zip(columns, row):
            numeric = isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool)
            text = value if column in raw else _num(value)
            cells.append(f'<td class="{"n" if numeric else ""}">{text}</td>')
        body.append("<tr>" + "".join(cells) + "</tr>")
    shown = min(len(rows), MAX_TABLE_ROWS)
    total = len(rows) if total is None else total
    note = f'<p class="note">showing {shown} of {total} rows</p>' if total > shown else ""
    return f'<table class="{css}"><thead><tr>{head}</tr></thead><tbody>{"".join(body)}</tbody></table>{note}'


def _section(section_id: str, title: str, body: str, intro: str = "") -> str:
    intro_html = f'<p class="intro">{intro}</p>' if intro else ""
    return f'<section id="{section_id}"><h2>{escape(title)}</h2>{intro_html}{body}</section>'


# ------------------------------------------------------------------------------------------
# Sections


def render_sections(data: RunData, media: MediaSource, options: ReportOptions, serve: bool = False,
                    index: ShardIndex | None = None) -> str:
    """Every dashboard section for `data` (the whole run, or its filtered view)."""
    index = index or ShardIndex(data.shards_dir)
    parts = [
        _summary(data),
        _funnel(data),
        _metrics(data),
        _talk(data),
        _sources(data),
        _identities(data),
        _timings(data),
        _gallery(data, index, media, options),
        _rejects(data, index, media, options),
        _clip_table(data, serve),
    ]
    return "".join(parts)


def _summary(data: RunData) -> str:
    h = headline(data)
    cards = [
        ("inputs", h["inputs"], f'{h["input_hours"]:.3g} h of video'),
        ("inputs_ok", h["inputs_ok"], f'{h["inputs_filtered"]} filtered, {h["inputs_failed"]} failed'),
        ("clips_kept", h["clips_kept"], f'{h["kept_hours"]:.3g} h kept'),
        ("clips_rejected", h["clips_rejected"], f'{h["rejected_hours"]:.3g} h rejected'),
        ("identities", h["identities"], "in kept clips"),
        ("shards", h["shards"], "WebDataset tars"),
    ]
    titles = {"inputs": "inputs", "inputs_ok": "inputs ok", "clips_kept": "clips kept",
              "clips_rejected": "clips rejected", "identities": "identities", "shards": "shards"}
    html = "".join(f'<div class="card" data-metric="{k}"><div class="v">{v:,}</div>'
                   f'<div class="k">{titles[k]}</div><div class="s">{escape(sub)}</div></div>'
                   for k, v, sub in cards)
    return f'<section id="summary"><div class="cards">{html}</div></section>'


def _funnel(data: RunData) -> str:
    steps = funnel(data)
    status_rows = []
    for title, rows in (("inputs", breakdown(data.sources, "duration_s") if "duration_s" in data.sources else []),
                        ("clips", breakdown(data.clips, "clip_s"))):
        for row in rows:
            _, stage, reason = split_label(row["label"])
            keys = ", ".join(f"{key} = {value}" for key, value in explain_reason(data.config, stage, reason))
            status_rows.append([title, row["label"], row["count"], row["hours"], keys])
    bars = [(f'{r[0]}: {r[1]}', float(r[2]), charts.COLORS.get(r[1].split(":")[0], charts.COLORS["bar"]))
            for r in status_rows if r[1] != "ok"]
    reject_chart = charts.hbars(bars, "inputs and clips not kept, by reason", value_format=lambda v: f"{v:.0f}") \
        if bars else '<p class="note">nothing was filtered or failed</p>'
    table = _table(["level", "status / reason", "count", "hours", "decided by (config key = value)"], status_rows,
                   css="breakdown")
    return _section("funnel", "Funnel: from inputs to clips",
                    f'<div class="row">{charts.funnel(steps)}<div>{reject_chart}</div></div>{table}',
                    "Counts and hours at each step, then per status and reject reason (a reason reads "
                    "status: stage/reason), with the config keys that stage declares for it.")


def _metric_grid(data: RunData, table: str, names: Sequence[str]) -> str:
    frame = data.clips if table == "clips" else data.sources
    ok_mask = frame["status"] == "ok"
    charts_html = []
    for name in names:
        if name not in frame.columns:
            continue
        values = pd.to_numeric(frame[name], errors="coerce").astype(float)
        bounds = data.thresholds(table, name)
        lines = [(pos, b.label) for b in bounds for pos in b.lines()]
        charts_html.append(f'<div class="metric" data-metric="{escape(name)}">'
                           + charts.histogram(values[ok_mask].to_numpy(), values[~ok_mask].to_numpy(), name,
                                              thresholds=lines) + "</div>")
    if not charts_html:
        return '<p class="note">no numeric columns</p>'
    return '<div class="grid">' + "".join(charts_html) + "</div>"


def _metrics(data: RunData) -> str:
    legend = ('<p class="legend"><span class="sw ok"></span>kept <span class="sw filtered"></span>rejected '
              '<span class="sw th"></span>configured threshold (config key = value)</p>')
    bounded = [n for n in data.source_metric_names if data.thresholds("sources", n)]
    facts = [n for n in data.source_metric_names if n not in bounded]
    body = (legend + "<h3>Clips</h3>" + _metric_grid(data, "clips", data.clip_metric_names)
            + "<h3>Inputs: filtered columns</h3>" + _metric_grid(data, "sources", bounded)
            + f"<details><summary>Inputs: {len(facts)} more columns (probe facts, counts, times)</summary>"
            + _metric_grid(data, "sources", facts) + "</details>")
    return _section("metrics", "QC metrics", body,
                    "Every numeric column of the manifests (clip metrics: those a clip has beyond its source's facts; "
                    "clip_s is the clip's own span, shot_s its shot's). Thresholds come from the run's config.yaml.")


def _talk(data: RunData) -> str:
    totals = talk_totals(data)
    if not totals:
        body = ('<p class="note">This run has no talk/listen columns yet (looked for talk_s, listen_s, both_s, '
                'silence_s in clips.parquet). They appear here once the talk/listen stage writes them.</p>')
    else:
        rows = [[cls, seconds, seconds / 3600.0, seconds / max(sum(totals.values()), 1e-12)]
                for cls, seconds in totals.items()]
        body = (charts.stacked_share(totals, "time of kept clips by label")
                + _table(["label", "seconds", "hours", "share"], rows))
    return _section("talk", "Talk / listen time", body)


def _sources(data: RunData) -> str:
    frame = per_source(data)
    rows = [[r.source, r.source_id, r.status, r.duration_s, r.clips_kept, r.clips_rejected, r.kept_s,
             r.identities, r.wall_s, r.rtf, r.message[:200]] for r in frame.itertuples()]
    table = _table(["source", "source_id", "status", "duration s", "clips kept", "clips rejected", "kept s",
                    "identities", "wall s", "RTF", "message"], rows, css="sources")
    return _section("sources", "Per source", table, "RTF: wall seconds of all stages per second of input video.")


def _identities(data: RunData) -> str:
    frame = per_identity(data)
    if not len(frame):
        return _section("identities", "Per identity",
                        '<p class="note">no identities in the kept clips (identities.parquet absent or empty)</p>')
    extra = [c for c in frame.columns if c not in ("identity", "clips", "kept_s", "sources")]
    rows = [[r["identity"], r["clips"], r["kept_s"], r["sources"]] + [r[c] for c in extra]
            for _, r in frame.iterrows()]
    chart = charts.hbars([(r[0], float(r[1]), charts.COLORS["bar"]) for r in rows[:30]],
                         "kept clips per identity (top 30)", value_format=lambda v: f"{v:.0f}")
    return _section("identities", "Per identity",
                    chart + _table(["identity", "clips", "kept s", "sources"] + extra, rows, css="identities"))


def _timings(data: RunData) -> str:
    rows = stage_timings(data)
    if not rows:
        return _section("timings", "Stage timings", '<p class="note">no timings recorded</p>')
    chart = charts.hbars([(r["stage"], r["rtf_wall"], charts.COLORS["bar"]) for r in rows[:-1]],
                         "real-time factor per stage (wall s per input s)")
    table = _table(["stage", "wall s", "CPU s", "input s", "RTF wall", "RTF CPU", "peak MB"],
                   [[r["stage"], r["wall_s"], r["cpu_s"], r["input_s"], r["rtf_wall"], r["rtf_cpu"], r["peak_mb"]]
                    for r in rows],
                   css="timings")
    extra = []
    source_maps = data.map_columns.get("sources", [])
    for table_name, frame in (("sources", data.sources), ("clips", kept(data.clips))):
        for column in data.map_columns.get(table_name, []):
            # Clips inherit their source's maps; only their own (per-step face timings, ...) are new.
            if column in ("wall_s", "cpu_s", "peak_mb") or (table_name == "clips" and column in source_maps):
                continue
            means = map_means(frame, column)
            if means:
                extra.append(f"<div><h3>{escape(column)} (mean over {table_name})</h3>"
                             + _table(["key", "mean"], [[k, v] for k, v in means.items()]) + "</div>")
    extra_html = f'<div class="row">{"".join(extra)}</div>' if extra else ""
    return _section("timings", "Stage timings and real-time factors", chart + table + extra_html,
                    "Summed over the inputs shown; per-step maps of the manifests follow.")


def pick_spread(frame: pd.DataFrame, count: int, group: str) -> pd.DataFrame:
    """Up to `count` rows, taking from each group in turn so one source or reason cannot fill the gallery."""
    if not len(frame) or count <= 0:
        return frame.iloc[0:0]
    ordered = frame.sort_values([group, "key"])
    buckets = [g for _, g in ordered.groupby(group, sort=True)]
    picked: list[int] = []
    depth = 0
    while len(picked) < count and any(depth < len(b) for b in buckets):
        for bucket in buckets:
            if depth < len(bucket) and len(picked) < count:
                picked.append(bucket.index[depth])
        depth += 1
    return frame.loc[picked]


def _player(clip: dict, tracks: list[Track], media: MediaSource, options: ReportOptions) -> str:
    parts = []
    audio_done = 0
    for track in tracks:
        if not track.is_video and audio_done >= options.max_tracks_per_clip:
            parts.append(f'<div class="track">{escape(track.label)}: not embedded (per-clip limit)</div>')
            continue
        src = media(track, clip)
        if src is None:
            parts.append(f'<div class="track">{escape(track.label)}: not embedded (size limit)</div>')
            continue
        if track.is_video:
            parts.append(f'<video controls preload="metadata" muted playsinline src="{escape(src)}" '
                         f'data-key="{escape(clip["key"])}"></video>')
        else:
            audio_done += 1
            parts.append(f'<div class="track"><span>{escape(track.label)}</span>'
                         f'<audio controls preload="none" src="{escape(src)}"></audio></div>')
    if not tracks:
        parts.append('<div class="track">no media (not in a shard, work area cleaned)</div>')
    return "".join(parts)


def _clip_facts(clip: dict, data: RunData) -> str:
    facts = [("source", clip.get("source_name", "")), ("identity", clip.get("identity_id", "") or "-"),
             ("span", f'{clip.get("clip_start_s", 0):.2f}\u2013{clip.get("clip_end_s", 0):.2f} s')]
    for name in data.clip_metric_names[2:8]:
        value = clip.get(name)
        if isinstance(value, (int, float)) and value is not None:
            facts.append((name, charts.fmt(float(value))))
    return "".join(f"<span><b>{escape(k)}</b> {escape(str(v))}</span>" for k, v in facts)


def _gallery(data: RunData, index: ShardIndex, media: MediaSource, options: ReportOptions) -> str:
    ok = kept(data.clips)
    group = "identity_id" if (ok["identity_id"] != "").any() else "source_id"
    chosen = pick_spread(ok, options.gallery_clips, group)
    cards = []
    for clip in chosen.to_dict("records"):
        tracks = sample_tracks(index, clip)
        cards.append(f'<div class="clip" data-key="{escape(clip["key"])}"><div class="key">{escape(clip["key"])}'
                     f'</div>{_player(clip, tracks, media, options)}<div class="facts">{_clip_facts(clip, data)}'
                     f'</div></div>')
    body = "".join(cards) or '<p class="note">no kept clips</p>'
    return _section("gallery", "Sample clips",
                    f'<div class="clips">{body}</div>',
                    f"{len(chosen)} of {len(ok)} kept clips, spread over "
                    f"{'identities' if group == 'identity_id' else 'sources'}: the face video, and every audio "
                    "track the shard holds (mix, self, other, background once the audio stages write them); stems "
                    "marked (work area) are cut from the run's work folder.")


def _rejects(data: RunData, index: ShardIndex, media: MediaSource, options: ReportOptions) -> str:
    rejected = data.clips[data.clips["status"] != "ok"]
    chosen = pick_spread(rejected, options.reject_clips, "label")
    cards = []
    for clip in chosen.to_dict("records"):
        tracks = [t for t in sample_tracks(index, clip) if t.is_video][:1]
        cards.append(f'<div class="clip reject" data-key="{escape(clip["key"])}">'
                     f'<div class="key">{escape(clip["key"])}</div>'
                     f'<div class="reason">{escape(clip["label"])}</div>'
                     f'<div class="msg">{escape(str(clip.get("error_message", ""))[:300])}</div>'
                     f'{_player(clip, tracks, media, options) if tracks else ""}'
                     f'<div class="facts">{_clip_facts(clip, data)}</div></div>')
    failed_sources = data.sources[data.sources["status"] != "ok"]
    source_rows = [[r["source_name"], r["label"], str(r.get("error_message", ""))[:300]]
                   for r in failed_sources.to_dict("records")]
    body = (f'<div class="clips">{"".join(cards)}</div>' if cards else '<p class="note">no rejected clips</p>')
    if source_rows:
        body += "<h3>Inputs not kept</h3>" + _table(["source", "status / reason", "message"], source_rows)
    return _section("rejects", "Rejects and their reasons", body,
                    f"{len(chosen)} of {len(rejected)} rejected clips, one reason at a time; rejected clips are not "
                    "in the shards, so a video shows only while the work area still holds it.")


def _clip_table(data: RunData, serve: bool) -> str:
    clips = data.clips.sort_values(["source_name", "key"])
    metrics = data.clip_metric_names[:6]
    rows = []
    for clip in clips.head(MAX_TABLE_ROWS).to_dict("records"):
        key = escape(clip["key"])
        key_html = (f'<a href="#" class="play" data-key="{key}">{key}</a>'
                    if serve and clip["status"] == "ok" else key)
        rows.append([key_html, clip["label"], clip["source_name"], clip["identity_id"] or "-"]
                    + [clip.get(m) for m in metrics])
    table = _table(["key", "status / reason", "source", "identity"] + metrics, rows, css="clips-table",
                   total=len(clips), raw=("key",))
    player = '<div id="player"></div>' if serve else ""
    return _section("clips", "Clips", player + table,
                    "Click a kept clip's key to play it from its shard." if serve else "")


# ------------------------------------------------------------------------------------------
# Page


STYLE = charts.STYLE + """
body { font: 14px system-ui, sans-serif; margin: 0; color: #222; background: #f6f6f4; }
header { background: #23395b; color: #fff; padding: 14px 24px; }
header h1 { margin: 0; font-size: 20px; } header p { margin: 4px 0 0; opacity: .85; font-size: 12px; }
main { padding: 8px 24px 40px; }
section { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 12px 16px; margin: 12px 0; }
h2 { font-size: 16px; margin: 0 0 8px; } h3 { font-size: 13px; margin: 14px 0 6px; }
.intro, .note { color: #666; font-size: 12px; margin: 4px 0 8px; }
.cards { display: flex; flex-wrap: wrap; gap: 10px; }
.card { flex: 1 1 120px; border-left: 4px solid #3b6ea5; padding: 4px 10px; }
.card .v { font-size: 22px; font-weight: 600; } .card .k { font-weight: 600; } .card .s { color: #666; font-size: 12px; }
.row { display: flex; flex-wrap: wrap; gap: 18px; align-items: flex-start; }
.grid { display: flex; flex-wrap: wrap; gap: 8px; }
table { border-collapse: collapse; font-size: 12px; margin: 6px 0; }
th, td { border-bottom: 1px solid #e5e5e5; padding: 3px 8px; text-align: left; vertical-align: top; }
th { background: #f0f0ee; } td.n { text-align: right; font-variant-numeric: tabular-nums; }
.legend .sw { display: inline-block; width: 10px; height: 10px; margin: 0 4px 0 10px; }
.sw.ok { background: #2f7d4f; } .sw.filtered { background: #d08c1f; } .sw.th { background: #c0392b; }
.clips { display: flex; flex-wrap: wrap; gap: 12px; }
.clip { width: 300px; border: 1px solid #ddd; border-radius: 6px; padding: 8px; background: #fafafa; }
.clip video { width: 100%; max-height: 300px; background: #000; }
.clip .key { font-family: monospace; font-size: 11px; margin-bottom: 4px; word-break: break-all; }
.clip .reason { color: #b23b3b; font-weight: 600; } .clip .msg { font-size: 11px; color: #555; }
.track { font-size: 11px; margin: 3px 0; } .track span { display: block; color: #444; }
.track audio { width: 100%; height: 30px; }
.facts span { display: inline-block; font-size: 11px; margin: 2px 8px 0 0; }
form#filters { background: #fff; border: 1px solid #ddd; border-radius: 6px; padding: 10px 16px; margin: 12px 0;
  display: flex; flex-wrap: wrap; gap: 14px; align-items: flex-end; position: sticky; top: 0; z-index: 2; }
form#filters label { display: flex; flex-direction: column; font-size: 12px; gap: 2px; }
form#filters select { min-width: 140px; } form#filters input[type=number] { width: 90px; }
form#filters .range { display: flex; gap: 6px; align-items: flex-end; margin-bottom: 4px; }
#status-line { font-size: 12px; color: #555; }
#player { margin-bottom: 10px; }
"""

SERVE_SCRIPT = """
const form = document.getElementById('filters');
function query() {
  const p = new URLSearchParams();
  for (const name of ['status', 'reason', 'source', 'identity']) {
    for (const o of form.elements[name].selectedOptions) if (o.value) p.append(name, o.value);
  }
  for (const row of form.querySelectorAll('.range')) {
    const m = row.querySelector('select').value, lo = row.querySelector('.lo').value, hi = row.querySelector('.hi').value;
    if (m && (lo !== '' || hi !== '')) p.append('range', m + ':' + lo + ':' + hi);
  }
  return p.toString();
}
let pending = 0;
async function refresh() {
  const q = query(), mine = ++pending;
  document.getElementById('status-line').textContent = 'filtering\u2026';
  const r = await fetch('api/view?' + q);
  const j = await r.json();
  if (mine !== pending) return;
  document.getElementById('sections').innerHTML = j.html;
  document.getElementById('status-line').textContent =
    j.headline.clips_kept + ' kept of ' + j.headline.clips + ' clips, ' + j.headline.inputs + ' inputs';
  document.body.dataset.filtered = q ? '1' : '0';
  history.replaceState(null, '', q ? '?' + q : location.pathname);
}
form.addEventListener('change', refresh);
form.addEventListener('submit', e => { e.preventDefault(); refresh(); });
document.getElementById('reset').addEventListener('click', () => {
  for (const s of form.querySelectorAll('select')) for (const o of s.options) o.selected = false;
  for (const i of form.querySelectorAll('input[type=number]')) i.value = '';
  refresh();
});
document.getElementById('add-range').addEventListener('click', () => {
  const first = form.querySelector('.range'), copy = first.cloneNode(true);
  for (const i of copy.querySelectorAll('input')) i.value = '';
  first.parentNode.insertBefore(copy, document.getElementById('add-range'));
});
document.addEventListener('click', async e => {
  const a = e.target.closest('a.play');
  if (!a) return;
  e.preventDefault();
  const r = await fetch('api/player?key=' + encodeURIComponent(a.dataset.key));
  document.getElementById('player').innerHTML = (await r.json()).html;
  document.getElementById('player').scrollIntoView({block: 'nearest'});
});
(function restore() {
  const p = new URLSearchParams(location.search);
  if (![...p.keys()].length) return;
  for (const name of ['status', 'reason', 'source', 'identity'])
    for (const o of form.elements[name].options) o.selected = p.getAll(name).includes(o.value);
  const first = p.getAll('range')[0];
  if (first) { const [m, lo, hi] = first.split(':'); const row = form.querySelector('.range');
    row.querySelector('select').value = m; row.querySelector('.lo').value = lo; row.querySelector('.hi').value = hi; }
  refresh();
})();
"""


def _filter_form(options: dict[str, Any]) -> str:
    def select(name: str, items: list[tuple[str, str]], size: int = 4) -> str:
        opts = "".join(f'<option value="{escape(v)}">{escape(t)}</option>' for v, t in items)
        return (f'<label>{name}<select name="{name}" multiple size="{min(max(len(items), 2), size)}">'
                f'{opts}</select></label>')

    metric_opts = '<option value="">metric\u2026</option>' + "".join(
        f'<option value="{escape(m)}">{escape(m)} [{charts.fmt(lo) if lo is not None else "?"}, '
        f'{charts.fmt(hi) if hi is not None else "?"}]</option>'
        for m, (lo, hi) in options["metrics"].items())
    return (
        '<form id="filters">'
        + select("status", [(s, s) for s in options["statuses"]])
        + select("reason", [(r, r) for r in options["reasons"]])
        + select("source", [(s["id"], s["name"]) for s in options["sources"]])
        + select("identity", [(i, i) for i in options["identities"]])
        + '<div><div class="range"><label>metric range<select name="metric">' + metric_opts + '</select></label>'
        '<label>min<input class="lo" type="number" step="any"></label>'
        '<label>max<input class="hi" type="number" step="any"></label></div>'
        '<button type="button" id="add-range">+ range</button></div>'
        '<div><button type="submit">apply</button> <button type="button" id="reset">reset</button>'
        '<div id="status-line"></div></div></form>'
    )


def render_page(data: RunData, sections_html: str, serve: bool = False,
                filter_options: dict[str, Any] | None = None, footer: str = "") -> str:
    from voxhear.pipeline import __version__

    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"voxhear QC \u00b7 {data.run_dir.name}"
    form = _filter_form(filter_options) if serve and filter_options else ""
    script = f"<script>{SERVE_SCRIPT}</script>" if serve else ""
    mode = "live: filters query the Parquet manifests, clips play from the shards" if serve \
        else "self-contained file: charts are inline SVG, media are embedded"
    return (f'<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"><title>{escape(title)}</title>'
            f'<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<style>{STYLE}</style></head><body data-mode="{"serve" if serve else "static"}">'
            f'<header><h1>{escape(title)}</h1><p>{escape(str(data.run_dir))} \u00b7 generated {generated} by voxhear '
            f'{__version__} \u00b7 {mode}</p></header><main>{form}<div id="sections">{sections_html}</div>'
            f'<p class="note">{escape(footer)}</p></main>{script}</body></html>')


def build_report(run_dir: str | Path, options: ReportOptions | None = None) -> tuple[str, EmbeddedMedia]:
    """The self-contained HTML of a run's dashboard, and what its media embedding used."""
    options = options or ReportOptions()
    data = load_run(run_dir)
    media = EmbeddedMedia(ShardIndex(data.shards_dir), int(options.max_media_mb * 1e6))
    sections = render_sections(data, media, options, index=media.index)
    footer = (f"embedded media: {media.used / 1e6:.1f} MB"
              + (f"; {media.skipped} tracks left out (--max-media-mb {options.max_media_mb:g})" if media.skipped else "")
              + ". Live filtering: voxhear qc serve " + str(data.run_dir))
    return render_page(data, sections, footer=footer), media


def write_report(run_dir: str | Path, out: str | Path | None = None, options: ReportOptions | None = None) -> Path:
    """Write the dashboard to `out` (default RUN/qc/report.html) atomically; return its path."""
    html, _ = build_report(run_dir, options)
    path = Path(out) if out else Path(run_dir) / "qc" / "report.html"
    atomic_write_text(path, html)
    return path


def json_ready(value: Any) -> Any:
    """NaN/inf to None and numpy scalars to Python, recursively (JSON has no NaN)."""
    if isinstance(value, dict):
        return {k: json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        return float(value) if math.isfinite(float(value)) else None
    return value


def dumps(value: Any) -> str:
    return json.dumps(json_ready(value))
