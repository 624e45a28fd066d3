"""Audio metrics: separation SI-SDR, diarization DER, ASR WER and the audio stages' speed.

- `separation`: SI-SDR (zero-mean, torchmetrics) of the run's speech stem against the sum of the
  truth's person stems and of its background stem against `stems/background.flac`, each also as
  improvement over the truth mix taken as the estimate. Compared at 16 kHz over the common length.
  Pooled: means over the videos that have stems.
- `diarization`: DER with pyannote.metrics (overlapped speech scored: `skip_overlap=False`, so
  two true speakers at once are two speaker-seconds per second and a hypothesis with one
  speaker there misses one) of the run's RTTM against `turns.rttm`, over [0, duration], at each
  collar of `EvalSettings.der_collars` (default 0 s, the headline `der`, and 0.25 s: `der_c0.25`;
  pyannote's collar, half on each side of every reference boundary). `missed_overlap`: the share
  of the reference's overlapped time (two or more true speakers) where the hypothesis does not
  have two or more speakers (`overlap_s`: that time). Pooled: seconds summed over videos. A
  video without a run RTTM scores all its speech as missed.
- `asr`: WER (torchmetrics) of the run's words against `words.parquet`, both normalised (lower
  case, no punctuation, digits spelled out, letter-digit tokens split: "F2." -> "f two"). Truth
  words exist only for speakers with a transcript; run words whose middle lies in speech of a
  person without one (and of nobody with one) are left out, so they count neither way. Summary:
  errors over reference words of all videos (micro).
- `audio_speed`: each audio stage's real-time factor as the run recorded it: wall (`audio_rtf`)
  and CPU (`cpu_s`) seconds per audio second.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import soundfile as sf

from voxhear.benchmarks.evaluation.base import EvalSettings, MetricResult, not_available
from voxhear.benchmarks.evaluation.bootstrap import HIGHER, LOWER, attach_figures, sum_arrays
from voxhear.benchmarks.evaluation.data import RunView, TruthSet, read_columns

AUDIO_STAGES = ("separation", "diarization", "asr")


def _sources(run: RunView, columns: list[str]) -> dict[str, dict]:
    """Per source_id the wanted columns of the run's sources.parquet (those that exist)."""
    table = read_columns(run.run_dir / "manifests" / "sources.parquet", ["source_id", *columns])
    return {str(r["source_id"]): r for r in table.to_pylist()}


def _read(path: Path | str) -> np.ndarray:
    audio, _ = sf.read(str(path), dtype="float64", always_2d=True)
    return audio.mean(axis=1)


def si_sdr(estimate: np.ndarray, reference: np.ndarray) -> float:
    """Scale-invariant SDR in dB (zero-mean) over the common length."""
    import torch
    from torchmetrics.functional.audio import scale_invariant_signal_distortion_ratio

    n = min(len(estimate), len(reference))
    value = scale_invariant_signal_distortion_ratio(torch.from_numpy(np.asarray(estimate[:n], dtype=np.float64)),
                                                    torch.from_numpy(np.asarray(reference[:n], dtype=np.float64)),
                                                    zero_mean=True)
    return round(float(value), 3)


def truth_speech(truth: TruthSet, video: str, folder: str = "stems") -> np.ndarray:
    stems = sorted(p for p in truth.path(video, folder).glob("*.flac") if p.stem != "background")
    return sum(_read(p) for p in stems)


def _mean(values: list[float]) -> float | None:
    values = [v for v in values if v is not None and np.isfinite(v)]
    return round(float(np.mean(values)), 3) if values else None


class SeparationMetric:
    """SI-SDR of the speech and background stems, and its improvement over the mix."""

    name = "separation"
    COLUMNS = ["speech_si_sdr", "speech_si_sdri", "background_si_sdr", "background_si_sdri"]

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings

    def evaluate(self, run: RunView, truth: TruthSet) -> MetricResult:
        rows = _sources(run, ["speech_uri", "background_uri", "separation_backend"])
        if not any(r.get("speech_uri") for r in rows.values()):
            return not_available(self.name, "the run has no separated stems (speech_uri)")
        per_video: dict[str, dict] = {}
        backends = set()
        for video in truth.video_ids:
            row = rows.get(run.source_of_video.get(video, ""), {})
            if not row.get("speech_uri") or not Path(row["speech_uri"]).is_file():
                per_video[video] = {"missing": True}
                continue
            backends.add(row.get("separation_backend") or "")
            speech_ref = truth_speech(truth, video, self.settings.speech_reference)
            background_ref = _read(truth.path(video, "stems/background.flac"))
            mix = _read(truth.path(video, "mix.flac"))
            speech, background = _read(row["speech_uri"]), _read(row["background_uri"])
            s, b = si_sdr(speech, speech_ref), si_sdr(background, background_ref)
            per_video[video] = {"missing": False, "speech_si_sdr": s, "speech_si_sdri": round(s - si_sdr(mix, speech_ref), 3),
                                "background_si_sdr": b,
                                "background_si_sdri": round(b - si_sdr(mix, background_ref), 3),
                                "snr_db": truth.meta(video).get("snr_db")}
        scored = {video: {c: v[c] for c in self.COLUMNS} for video, v in per_video.items() if not v["missing"]}
        result = MetricResult(self.name, True, per_video=per_video, columns=self.COLUMNS)
        attach_figures(result, scored, self.pool, {c: HIGHER for c in self.COLUMNS}, self.settings)
        result.summary.update({"videos": len(per_video), "missing_videos": len(per_video) - len(scored),
                               "backend": ",".join(sorted(backends)), "average": "mean over videos"})
        return result

    def pool(self, parts: list[dict]) -> dict:
        """The mean over videos of each SI-SDR (a video: its own values)."""
        return {c: _mean([p[c] for p in parts]) for c in self.COLUMNS}


def _annotation(turns: list[tuple[float, float, str]]):
    from pyannote.core import Annotation, Segment

    annotation = Annotation()
    for i, (start, end, speaker) in enumerate(turns):
        if end > start:
            annotation[Segment(start, end), i] = speaker
    return annotation


def read_rttm(path: Path | str) -> list[tuple[float, float, str]]:
    turns = []
    for line in Path(path).read_text().splitlines():
        parts = line.split()
        if len(parts) >= 8 and parts[0] == "SPEAKER":
            start, duration = float(parts[3]), float(parts[4])
            turns.append((start, start + duration, parts[7]))
    return turns


def collar_suffix(collar: float, primary: float) -> str:
    """'' for the headline collar, else ``_c<collar>`` (``_c0.25``)."""
    return "" if collar == primary else f"_c{collar:g}"


def active_counts(turns: list[tuple[float, float, str]], points: np.ndarray) -> np.ndarray:
    """How many distinct speakers of `turns` are active at each time of `points` (start <= t < end)."""
    if not turns or not len(points):
        return np.zeros(len(points), dtype=np.int64)
    labels = sorted({t[2] for t in turns})
    starts = np.array([t[0] for t in turns])
    ends = np.array([t[1] for t in turns])
    active = (starts[None, :] <= points[:, None]) & (points[:, None] < ends[None, :])
    by_speaker = np.stack([active[:, [i for i, t in enumerate(turns) if t[2] == label]].any(axis=1)
                           for label in labels], axis=1)
    return by_speaker.sum(axis=1)


def overlap_seconds(reference: list[tuple[float, float, str]], hypothesis: list[tuple[float, float, str]],
                    start: float, end: float) -> tuple[float, float]:
    """(seconds of [start, end] where the reference has two or more speakers, of which seconds
    the hypothesis also has two or more). Exact: counted on the pieces between all turn boundaries."""
    edges = {start, end} | {t for s, e, _ in reference + hypothesis for t in (s, e) if start < t < end}
    edges = np.array(sorted(edges))
    if len(edges) < 2:
        return 0.0, 0.0
    lengths, mids = np.diff(edges), 0.5 * (edges[:-1] + edges[1:])
    ref_overlap = active_counts(reference, mids) >= 2
    hyp_overlap = active_counts(hypothesis, mids) >= 2
    return float(lengths[ref_overlap].sum()), float(lengths[ref_overlap & hyp_overlap].sum())


class DiarizationMetric:
    """DER (pyannote.metrics, overlapped speech scored) of the run's RTTM against the truth turns,
    at each collar of the settings, and the share of overlapped speech the run misses."""

    name = "diarization"
    PARTS = ("total", "confusion", "missed detection", "false alarm")

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings
        self.collars = tuple(dict.fromkeys(float(c) for c in settings.der_collars)) or (0.0,)
        primary = self.collars[0]
        self.suffixes = [collar_suffix(c, primary) for c in self.collars]
        self.better = {f"{k}{x}": LOWER for x in self.suffixes for k in ("der", "confusion", "missed", "false_alarm")}
        self.better["missed_overlap"] = LOWER
        self.COLUMNS = (["der", "confusion", "missed", "false_alarm"] + [f"der{x}" for x in self.suffixes[1:]]
                        + ["overlap_s", "missed_overlap", "n_speakers_true", "n_speakers_found"])

    def evaluate(self, run: RunView, truth: TruthSet) -> MetricResult:
        from pyannote.core import Segment, Timeline
        from pyannote.metrics.diarization import DiarizationErrorRate

        rows = _sources(run, ["rttm_uri"])
        if not any(r.get("rttm_uri") for r in rows.values()):
            return not_available(self.name, "the run has no diarization output (rttm_uri)")
        metrics = [DiarizationErrorRate(collar=c, skip_overlap=False) for c in self.collars]
        per_video: dict[str, dict] = {}
        stats: dict[str, np.ndarray] = {}
        for video in truth.video_ids:
            ref_turns = read_rttm(truth.path(video, "turns.rttm"))
            row = rows.get(run.source_of_video.get(video, ""), {})
            missing = not row.get("rttm_uri") or not Path(row["rttm_uri"]).is_file()
            hyp_turns = [] if missing else read_rttm(row["rttm_uri"])
            duration = float(truth.meta(video)["duration_s"])
            uem = Timeline([Segment(0.0, duration)])
            reference, hypothesis = _annotation(ref_turns), _annotation(hyp_turns)
            parts = [metric(reference, hypothesis, uem=uem, detailed=True) for metric in metrics]
            overlap, detected = overlap_seconds(ref_turns, hyp_turns, 0.0, duration)
            stats[video] = np.array([float(p.get(k, 0.0)) for p in parts for k in self.PARTS] + [overlap, detected])
            per_video[video] = {"missing": missing, "n_speakers_true": len({t[2] for t in ref_turns}),
                                "n_speakers_found": len({t[2] for t in hyp_turns})}
        result = MetricResult(self.name, True, per_video=per_video, columns=self.COLUMNS)
        attach_figures(result, stats, self.pool, self.better, self.settings)
        result.summary.update({
            "n_speakers_true": sum(v["n_speakers_true"] for v in per_video.values()),
            "n_speakers_found": sum(v["n_speakers_found"] for v in per_video.values()),
            "collar_s": self.collars[0], "collars_s": list(self.collars), "overlap": "scored",
            "videos": len(per_video),
            "speaker_count_correct": sum(v["n_speakers_true"] == v["n_speakers_found"] for v in per_video.values()),
            "missing_videos": sum(v["missing"] for v in per_video.values())})
        return result

    def pool(self, parts: list[np.ndarray]) -> dict:
        """DER and its parts per collar, and the missed overlap, of the summed seconds of `parts`."""
        sums = sum_arrays(parts, 4 * len(self.collars) + 2)
        out: dict = {}
        for i, suffix in enumerate(self.suffixes):
            total, confusion, missed, false_alarm = sums[4 * i:4 * i + 4]
            errors = confusion + missed + false_alarm
            # pyannote's convention when there is no reference speech: 0 without errors, else 1.
            der = errors / total if total else (0.0 if errors == 0 else 1.0)
            out.update({f"der{suffix}": _ratio(der),
                        **{f"{name}{suffix}": _ratio(value / total if total else 0.0)
                           for name, value in (("confusion", confusion), ("missed", missed),
                                               ("false_alarm", false_alarm))}})
        overlap, detected = sums[-2:]
        out["overlap_s"] = round(float(overlap), 3)
        out["missed_overlap"] = _ratio(1.0 - detected / overlap) if overlap > 0 else None
        return out


def _ratio(value: float) -> float:
    return round(float(value), 4)


_ONES = ["zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
         "twelve", "thirteen", "fourteen", "fifteen", "sixteen", "seventeen", "eighteen", "nineteen"]
_TENS = ["", "", "twenty", "thirty", "forty", "fifty", "sixty", "seventy", "eighty", "ninety"]


def _spell(number: str) -> list[str]:
    n = int(number)
    if n < 20:
        return [_ONES[n]]
    if n < 100:
        return [_TENS[n // 10]] + ([_ONES[n % 10]] if n % 10 else [])
    return [_ONES[int(d)] for d in number]  # longer numbers digit by digit


def normalize_words(words: list[str]) -> list[str]:
    """Lower case, punctuation removed, letter-digit tokens split and digits spelled out."""
    out: list[str] = []
    for word in words:
        token = re.sub(r"[^a-z0-9' ]", " ", word.lower().replace("-", " "))
        for piece in re.sub(r"(?<=[a-z])(?=\d)|(?<=\d)(?=[a-z])", " ", token).split():
            piece = piece.strip("'")
            if not piece:
                continue
            out.extend(_spell(piece) if piece.isdigit() else [piece])
    return out


def word_errors(reference: list[str], hypothesis: list[str]) -> tuple[float, int]:
    """(errors, reference words) of normalised word lists (torchmetrics' WER times the length)."""
    from torchmetrics.functional.text import word_error_rate

    if not reference:
        return float(len(hypothesis)), 0
    rate = float(word_error_rate(" ".join(hypothesis), " ".join(reference)))
    return round(rate * len(reference)), len(reference)


class WordErrorMetric:
    """WER of the run's words against the truth words (speakers with transcripts only)."""

    name = "asr"
    COLUMNS = ["wer", "errors", "ref_words", "hyp_words", "hyp_words_excluded"]

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings

    def evaluate(self, run: RunView, truth: TruthSet) -> MetricResult:
        import pyarrow.parquet as pq

        rows = _sources(run, ["words_uri"])
        if not any(r.get("words_uri") for r in rows.values()):
            return not_available(self.name, "the run has no ASR output (words_uri)")
        per_video: dict[str, dict] = {}
        for video in truth.video_ids:
            ref_table = truth.table(video, "words.parquet").to_pylist()
            ref_rows = sorted(ref_table, key=lambda r: (r["segment_start_s"], r["utterance_index"], r["word_index"]))
            reference = normalize_words([r["word"] for r in ref_rows])
            transcribed = {r["person_id"] for r in ref_table}
            silent_turns = [(s, e) for s, e, p in read_rttm(truth.path(video, "turns.rttm")) if p not in transcribed]
            scored_turns = [(s, e) for s, e, p in read_rttm(truth.path(video, "turns.rttm")) if p in transcribed]
            row = rows.get(run.source_of_video.get(video, ""), {})
            missing = not row.get("words_uri") or not Path(row["words_uri"]).is_file()
            hyp_rows = [] if missing else sorted(pq.read_table(row["words_uri"]).to_pylist(), key=lambda r: r["start_s"])
            kept, excluded = [], 0
            for w in hyp_rows:
                mid = 0.5 * (w["start_s"] + w["end_s"])
                if _inside(mid, silent_turns) and not _inside(mid, scored_turns):
                    excluded += 1
                else:
                    kept.append(w["word"])
            hypothesis = normalize_words(kept)
            errors, n_ref = word_errors(reference, hypothesis)
            per_video[video] = {"missing": missing, "wer": round(errors / n_ref, 4) if n_ref else None,
                                "errors": errors, "ref_words": n_ref, "hyp_words": len(hypothesis),
                                "hyp_words_excluded": excluded,
                                "reference": " ".join(reference), "hypothesis": " ".join(hypothesis)}
        errors = sum(v["errors"] for v in per_video.values())
        n_ref = sum(v["ref_words"] for v in per_video.values())
        summary = {"wer": None, "errors": errors, "ref_words": n_ref,
                   "hyp_words": sum(v["hyp_words"] for v in per_video.values()),
                   "hyp_words_excluded": sum(v["hyp_words_excluded"] for v in per_video.values()),
                   "videos": len(per_video), "missing_videos": sum(v["missing"] for v in per_video.values())}
        result = MetricResult(self.name, True, summary=summary, per_video=per_video, columns=self.COLUMNS)
        stats = {video: np.array([v["errors"], v["ref_words"]], dtype=np.float64) for video, v in per_video.items()}
        attach_figures(result, stats, _wer_pool, {"wer": LOWER}, self.settings)
        return result


def _wer_pool(parts: list[np.ndarray]) -> dict:
    errors, n_ref = sum_arrays(parts, 2)
    return {"wer": round(float(errors / n_ref), 4) if n_ref else None}


def _inside(t: float, spans: list[tuple[float, float]]) -> bool:
    return any(s <= t < e for s, e in spans)


class AudioSpeedMetric:
    """Real-time factor of each audio stage as the run measured it.

    `<stage>_rtf`: wall seconds of the stage per audio second (`audio_rtf`, measured inside the
    stage); `<stage>_cpu_rtf`: CPU seconds per audio second (the runner's `cpu_s`), which a busy
    shared machine inflates less.
    """

    name = "audio_speed"
    COLUMNS = [f"{s}_rtf" for s in AUDIO_STAGES] + [f"{s}_cpu_rtf" for s in AUDIO_STAGES]

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings

    def evaluate(self, run: RunView, truth: TruthSet) -> MetricResult:
        rows = _sources(run, ["audio_rtf", "cpu_s", "duration_s"])
        if not any(r.get("audio_rtf") for r in rows.values()):
            return not_available(self.name, "the run recorded no audio stage timings (audio_rtf)")
        per_video: dict[str, dict] = {}
        seconds = {c: 0.0 for c in self.COLUMNS}
        duration = {c: 0.0 for c in self.COLUMNS}
        for video in truth.video_ids:
            row = rows.get(run.source_of_video.get(video, ""), {})
            rtf = dict(row.get("audio_rtf") or [])
            cpu = dict(row.get("cpu_s") or [])
            length = float(row.get("duration_s") or 0.0)
            values = {f"{s}_rtf": rtf.get(s) for s in AUDIO_STAGES}
            values.update({f"{s}_cpu_rtf": round(cpu[s] / length, 4) if s in cpu and s in rtf and length else None
                           for s in AUDIO_STAGES})
            per_video[video] = {"missing": not rtf, **values}
            for column, value in values.items():
                if value is not None and length:
                    seconds[column] += value * length
                    duration[column] += length
        summary = {c: round(seconds[c] / duration[c], 4) if duration[c] else None for c in self.COLUMNS}
        summary["average"] = "total stage seconds / total audio seconds"
        return MetricResult(self.name, True, summary=summary, per_video=per_video, columns=self.COLUMNS)
