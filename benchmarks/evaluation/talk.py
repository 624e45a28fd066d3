"""The talk stage's clips against the synth truth: talk/listen labels, attribution, self/other audio.

Predictions are the clip rows of `manifests/clips.parquet` (`clip_index >= 0`) whose work files
exist, whatever their status (ok or filtered); every score is also given for the ok clips alone
(`ok_` keys). Rows without their files are counted (`missing_files`), not scored.

The true person P of a clip frame is the truth face matched to the clip's box on that frame
(`frames.npz` `box`, source pixels, which are the truth's canvas pixels) by IoU >= 0.5, as the
`faces` metric matches; the clip's frame clock is moved onto the truth's when their fps differ.
Frames without a match are `unmatched_frames`: reported, not scored. Who speaks at a truth frame
follows the talking rule: `speaking.parquet` for visible people, the `turns.rttm` segment holding
the frame's midpoint for the others (the off-screen voice included). P's true state: talk (P
speaks, nobody else), listen (someone else speaks, P does not), both, silence.

- `talk_listen`: per-class precision, recall and F1 of the predicted `state` over the scored
  frames, macro-F1 over the classes present in the truth, accuracy, the confusion matrix
  (``confusion[true][predicted]`` in frames); summary micro over all clips of all videos.
- `attribution`: over the scored frames where anyone speaks, the share whose predicted set of
  active parties ({self}, {other}, {self, other}, {} for talk, listen, both, silence) is the
  true one; the rest split into missed (nobody predicted), swapped (self and other exchanged)
  and partial (one party right, one wrong or missing).
- `self_other`: SI-SDR (dB, zero-mean) of the clip's `self` track against P's stem over the
  clip window (P: the person matched on most of its frames) and of its `other` track against
  the sum of every other person's stem (speech only, no background), each also with the clip's
  `mix` as the estimate and the improvement over it. A reference with less power than
  `MIN_REFERENCE_DBFS` (P never speaks in the clip) skips that track for the clip (`*_skipped`).
  Per-clip mean and median, and the total: one SI-SDR over all scored clips concatenated.
  Clips with no frame matched to a truth face are `unmatched_clips` (not scored);
  `no_self_speaker` counts scored clips with an empty `self_speaker` although P speaks in them.
  `mix_max_abs_error`: the largest |self + other + background - mix| of any clip, in the int32
  units soundfile reads 24-bit FLAC as (256 per 24-bit step; 0 when the stage keeps its promise);
  `bad_length_clips`: clips whose four tracks are not all `T * 640` samples long.

Each metric's F1s, accuracy, shares and SI-SDRs (all clips and `ok_`) are given per video, pooled
(frames, counts or clip signals of all videos together) and with a bootstrap interval over videos
and the worst video (`voxhear.benchmarks.evaluation.bootstrap`).
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import soundfile as sf

from voxhear.benchmarks.evaluation.audio import _read, read_rttm, si_sdr
from voxhear.benchmarks.evaluation.base import EvalSettings, MetricResult, not_available
from voxhear.benchmarks.evaluation.bootstrap import HIGHER, LOWER, attach_figures, sum_arrays
from voxhear.benchmarks.evaluation.data import DEFAULT_RUN_FPS, RunView, TruthSet, read_columns
from voxhear.benchmarks.evaluation.faces import IOU_MATCH, match_boxes
from voxhear.benchmarks.evaluation.matching import Counts
from voxhear.pipeline.records import STATE_BOTH, STATE_LISTEN, STATE_NAMES, STATE_SILENCE, STATE_TALK

RATE = 16000
# Below this mean power over the clip window (dB re full scale) a reference holds no speech worth
# scoring: GRID's room noise in a placed piece's lip margins sits around -55 dBFS, one spoken
# frame in a 20 s clip at -53 dBFS, speech itself at -26 dBFS active level.
MIN_REFERENCE_DBFS = -50.0
CLIP_COLUMNS = ["source_id", "key", "status", "clip_index", "clip_start_frame", "clip_end_frame", "norm_fps",
                "clip_frames_uri", "mix_uri", "self_uri", "other_uri", "background_clip_uri", "self_speaker"]
AUDIO_URIS = ("self_uri", "other_uri", "background_clip_uri", "mix_uri")
INVALID = len(STATE_NAMES)  # predicted codes outside 0..3 land in this confusion column
TRACKS = ("self", "other")


# ---- what the clips are and what the truth says about their frames ----------------------------


def _clip_rows(run: RunView, name: str, uris: tuple[str, ...]) -> tuple[dict[str, list[dict]], Counter] | MetricResult:
    """Clip rows per truth video with the files `uris` present, and the counts of rows without.

    Returns a not-available result when the run has no talk-stage clips.
    """
    path = run.run_dir / "manifests" / "clips.parquet"
    if run.clips is None or not path.is_file():
        return not_available(name, "the run has no manifests/clips.parquet")
    if not {"clip_index", "clip_frames_uri"} <= set(pq.read_schema(path).names):
        return not_available(name, "clips.parquet has no clips (no clip_index/clip_frames_uri: no talk stage)")
    rows = [r for r in read_columns(path, CLIP_COLUMNS).to_pylist()
            if r.get("clip_index") is not None and r["clip_index"] >= 0]
    if not rows:
        return not_available(name, "clips.parquet has no clip rows (clip_index >= 0)")
    video_of_source = {s: v for v, s in run.source_of_video.items()}
    by_video: dict[str, list[dict]] = {v: [] for v in run.source_of_video}
    missing: Counter = Counter()
    for row in sorted(rows, key=lambda r: (str(r["source_id"]), str(r.get("key") or ""))):
        video = video_of_source.get(row["source_id"])
        if video is None:
            continue
        if all(row.get(u) and Path(row[u]).is_file() for u in ("clip_frames_uri", *uris)):
            row["fps"] = float(row.get("norm_fps") or run.fps_of_source.get(row["source_id"], DEFAULT_RUN_FPS))
            by_video[video].append(row)
        else:
            missing[row["status"]] += 1
    return by_video, missing


@dataclass(slots=True)
class VideoTruth:
    """Who is where and who speaks, per frame of one truth video.

    Attributes:
        fps: The truth's frame rate.
        people: Person ids; indices into `speaking`.
        speaking: (people, frames) bool: the talking rule per person and frame.
        faces: Truth frame -> (person indices, (N, 4) boxes) of the visible people.
    """

    fps: float
    people: list[str]
    speaking: np.ndarray
    faces: dict[int, tuple[list[int], np.ndarray]]

    @classmethod
    def load(cls, truth: TruthSet, video: str) -> VideoTruth:
        meta = truth.meta(video)
        fps = float(meta["fps"])
        faces = truth.table(video, "faces.parquet").to_pylist()
        spoken = truth.table(video, "speaking.parquet").to_pylist()
        turns = read_rttm(truth.path(video, "turns.rttm"))
        people = sorted(set(meta.get("people") or {}) | {f["person_id"] for f in faces}
                        | {s["person_id"] for s in spoken} | {t[2] for t in turns})
        n_frames = int(meta.get("n_frames") or math.ceil(float(meta.get("duration_s") or 0.0) * fps))
        n_frames = max([n_frames] + [int(r["frame"]) + 1 for r in faces + spoken])
        index = {p: i for i, p in enumerate(people)}
        speaking = np.zeros((len(people), n_frames), dtype=bool)
        mids = (np.arange(n_frames) + 0.5) / fps
        for start, end, person in turns:
            speaking[index[person]] |= (mids >= start) & (mids < end)
        # speaking.parquet is the rule itself for visible people (the RTTM's times are rounded to 1 ms).
        for row in spoken:
            speaking[index[row["person_id"]], int(row["frame"])] = bool(row["speaking"])
        by_frame: dict[int, list[dict]] = {}
        for face in faces:
            by_frame.setdefault(int(face["frame"]), []).append(face)
        boxes = {k: ([index[f["person_id"]] for f in fs], np.array([[f["x1"], f["y1"], f["x2"], f["y2"]] for f in fs]))
                 for k, fs in by_frame.items()}
        return cls(fps=fps, people=people, speaking=speaking, faces=boxes)

    def truth_frame(self, frame: int, run_fps: float) -> int:
        """The truth frame showing run frame `frame` (the faces metric's mapping)."""
        if abs(run_fps - self.fps) < 1e-9:
            return int(frame)
        return int(np.floor(frame / run_fps * self.fps + 0.5))

    def label(self, frames: np.ndarray, boxes: np.ndarray, run_fps: float) -> tuple[np.ndarray, np.ndarray]:
        """Per clip frame the matched true person's index and true state; -1 where no face matched."""
        person = np.full(len(frames), -1, dtype=np.int64)
        state = np.full(len(frames), -1, dtype=np.int64)
        for i, (frame, box) in enumerate(zip(frames, boxes)):
            k = self.truth_frame(int(frame), run_fps)
            if k not in self.faces or not 0 <= k < self.speaking.shape[1]:
                continue
            ids, truth_boxes = self.faces[k]
            pairs = match_boxes(np.asarray(box, np.float64).reshape(1, 4), truth_boxes, IOU_MATCH)
            if not pairs:
                continue
            p = ids[pairs[0][1]]
            own = bool(self.speaking[p, k])
            others = bool(self.speaking[:, k].sum() - own > 0)
            person[i] = p
            state[i] = (STATE_BOTH if own and others else STATE_TALK if own else STATE_LISTEN if others
                        else STATE_SILENCE)
        return person, state


@dataclass(slots=True)
class ClipLabels:
    """One clip's frames: predicted state, true state (-1 unmatched) and matched person (-1)."""

    row: dict
    predicted: np.ndarray
    true: np.ndarray
    person: np.ndarray

    @property
    def ok(self) -> bool:
        return self.row["status"] == "ok"


def _labelled_clips(rows: list[dict], truth_video: VideoTruth) -> tuple[list[ClipLabels], int]:
    """The clips' frame labels, and how many clips were left out for inconsistent arrays."""
    out, bad = [], 0
    for row in rows:
        with np.load(row["clip_frames_uri"]) as data:
            frames, states, boxes = np.asarray(data["frame"]), np.asarray(data["state"]), np.asarray(data["box"])
        if not len(frames) == len(states) == len(boxes):
            bad += 1
            continue
        person, true = truth_video.label(frames, boxes.reshape(-1, 4), row["fps"])
        predicted = np.where((states >= 0) & (states < INVALID), states, INVALID).astype(np.int64)
        out.append(ClipLabels(row=row, predicted=predicted, true=true, person=person))
    return out, bad


def _scoped(figures: dict[str, str]) -> dict[str, str]:
    """`figures` over all clips, then the same over the ok clips (``ok_`` keys)."""
    return {**figures, **{f"ok_{k}": v for k, v in figures.items()}}


def _round(value: float | None, digits: int = 6) -> float | None:
    return None if value is None else round(float(value), digits)


# ---- talk_listen --------------------------------------------------------------------------------


def confusion_matrix(clips: list[ClipLabels]) -> np.ndarray:
    """(4 true, 5 predicted) frame counts over the matched frames; column 4: invalid codes."""
    matrix = np.zeros((len(STATE_NAMES), INVALID + 1), dtype=np.int64)
    for clip in clips:
        scored = clip.true >= 0
        np.add.at(matrix, (clip.true[scored], clip.predicted[scored]), 1)
    return matrix


def state_scores(matrix: np.ndarray) -> dict:
    """Per-class F1 etc., macro-F1 over the classes in the truth, accuracy and the confusion."""
    per_class = {}
    present = []
    for c, name in enumerate(STATE_NAMES):
        tp = int(matrix[c, c])
        counts = Counts(tp=tp, fp=int(matrix[:, c].sum()) - tp, fn=int(matrix[c, :].sum()) - tp)
        support = int(matrix[c, :].sum())
        if support:
            present.append(name)
        per_class[name] = {**counts.to_json(), "support": support} if support or counts.fp else None
    frames = int(matrix.sum())
    macro = float(np.mean([per_class[n]["f1"] for n in present])) if present else None
    confusion = {t: {p: int(matrix[i, j]) for j, p in enumerate(STATE_NAMES)} for i, t in enumerate(STATE_NAMES)}
    if matrix[:, INVALID].any():
        for i, t in enumerate(STATE_NAMES):
            confusion[t]["invalid"] = int(matrix[i, INVALID])
    return {
        "frames": frames,
        **{f"{n}_f1": per_class[n]["f1"] if per_class[n] else None for n in STATE_NAMES},
        "macro_f1": _round(macro),
        "accuracy": _round(np.trace(matrix[:, :INVALID]) / frames) if frames else None,
        "classes": present,
        "per_class": per_class,
        "confusion": confusion,
    }


def _labelled_by_video(run: RunView, truth: TruthSet, metric: str):
    """The run's clips of each truth video with their true and predicted states, or the
    MetricResult that says why the metric does not apply; with the rows whose files are missing."""
    found = _clip_rows(run, metric, ())
    if isinstance(found, MetricResult):
        return found
    rows_by_video, missing = found
    labelled = {video: _labelled_clips(rows_by_video[video], VideoTruth.load(truth, video))
                for video in truth.video_ids if video in rows_by_video}
    return labelled, missing


@dataclass(slots=True)
class _FrameLabelScores:
    """What `_score_labelled_videos` found, for a metric on the clips' frame labels."""

    per_video: dict[str, dict]
    # Per scored video: the (all clips, ok clips) stack its pooled figures and bootstrap add up.
    stats: dict[str, np.ndarray]
    all_clips: list[ClipLabels]
    bad_clips: int
    missing_files: dict


def _score_labelled_videos(run: RunView, truth: TruthSet, metric: str,
                           scores: Callable[[list[ClipLabels]], dict],
                           counts: Callable[[list[ClipLabels]], np.ndarray],
                           bad_clips_per_video: bool) -> _FrameLabelScores | MetricResult:
    """Score every truth video's labelled clips (talk_listen and attribution alike).

    Per video: `scores(clips)` (with `bad_clips` where `bad_clips_per_video`), or ``missing``
    when the run has no clips of it; `counts` of its clips and of its ok clips are stacked for
    pooling. Returns the MetricResult that says why the metric does not apply instead, if so.
    """
    found = _labelled_by_video(run, truth, metric)
    if isinstance(found, MetricResult):
        return found
    labelled, missing = found
    per_video: dict[str, dict] = {}
    stats: dict[str, np.ndarray] = {}
    all_clips: list[ClipLabels] = []
    bad = 0
    for video in truth.video_ids:
        if video not in labelled:
            per_video[video] = {"source_id": None, "missing": True}
            continue
        clips, bad_here = labelled[video]
        bad += bad_here
        all_clips += clips
        per_video[video] = {"source_id": run.source_of_video[video], "missing": False, **scores(clips)}
        if bad_clips_per_video:
            per_video[video]["bad_clips"] = bad_here
        stats[video] = np.stack([counts(clips), counts([c for c in clips if c.ok])])
    return _FrameLabelScores(per_video, stats, all_clips, bad, dict(missing))


def _video_counts(per_video: dict[str, dict]) -> dict:
    """How many truth videos there are and how many of them the run lacks."""
    return {"videos": len(per_video), "missing_videos": sum(v["missing"] for v in per_video.values())}


def _pooled_scopes(parts: list[np.ndarray], empty: np.ndarray, scores: Callable[[np.ndarray], dict],
                   keys) -> dict:
    """The `keys` of `scores` of the summed (all clips, ok clips) stacks of `parts` (``ok_`` keys
    for the second); `empty` is that sum when there are no parts."""
    summed = sum_arrays(parts, 0) if parts else empty
    out = {}
    for prefix, part in zip(("", "ok_"), summed):
        figures = scores(part)
        out.update({f"{prefix}{k}": figures[k] for k in keys})
    return out


class TalkListenMetric:
    """Frame-level F1 of the clip's talk/listen/both/silence state against the truth."""

    name = "talk_listen"
    COLUMNS = ["clips", "frames", "unmatched_frames"] + [f"{n}_f1" for n in STATE_NAMES] + [
        "macro_f1", "ok_clips", "ok_macro_f1"]
    STATE_FIGURES = ["macro_f1"] + [f"{n}_f1" for n in STATE_NAMES] + ["accuracy"]
    FIGURES = _scoped({k: HIGHER for k in STATE_FIGURES})

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings

    def evaluate(self, run: RunView, truth: TruthSet) -> MetricResult:
        found = _score_labelled_videos(run, truth, self.name, self._scores, confusion_matrix, bad_clips_per_video=True)
        if isinstance(found, MetricResult):
            return found
        summary = self._scores(found.all_clips)
        summary.update({"iou_threshold": IOU_MATCH, **_video_counts(found.per_video), "bad_clips": found.bad_clips,
                        "missing_files": found.missing_files})
        result = MetricResult(self.name, True, summary=summary, per_video=found.per_video, columns=self.COLUMNS)
        attach_figures(result, found.stats, self.pool, self.FIGURES, self.settings)
        return result

    @classmethod
    def pool(cls, parts: list[np.ndarray]) -> dict:
        """The figures of the summed (all clips, ok clips) confusion matrices of `parts`."""
        empty = np.zeros((2, len(STATE_NAMES), INVALID + 1), np.int64)
        return _pooled_scopes(parts, empty, state_scores, cls.STATE_FIGURES)

    @staticmethod
    def _scores(clips: list[ClipLabels]) -> dict:
        ok = [c for c in clips if c.ok]
        scores = state_scores(confusion_matrix(clips))
        ok_scores = state_scores(confusion_matrix(ok))
        return {"clips": len(clips), **scores,
                "unmatched_frames": sum(int((c.true < 0).sum()) for c in clips),
                "ok_clips": len(ok), **{f"ok_{k}": v for k, v in ok_scores.items() if k != "per_class"},
                "ok_unmatched_frames": sum(int((c.true < 0).sum()) for c in ok)}


# ---- attribution --------------------------------------------------------------------------------

# The parties a state says are speaking: bit 0 self, bit 1 other.
_PARTIES = np.array([0b00, 0b01, 0b10, 0b11, -1])


def attribution_counts(clips: list[ClipLabels]) -> np.ndarray:
    """(speech frames, correct, missed, swapped, speech seconds) over the scored frames of `clips`."""
    speech = correct = missed = swapped = 0
    seconds = 0.0
    for clip in clips:
        scored = (clip.true >= 0) & (clip.true != STATE_SILENCE)
        true, predicted = _PARTIES[clip.true[scored]], _PARTIES[clip.predicted[scored]]
        speech += int(scored.sum())
        seconds += float(scored.sum()) / clip.row["fps"]
        correct += int((true == predicted).sum())
        missed += int((predicted == 0).sum())
        swapped += int((((true == 0b01) & (predicted == 0b10)) | ((true == 0b10) & (predicted == 0b01))).sum())
    return np.array([speech, correct, missed, swapped, seconds], dtype=np.float64)


def attribution_from_counts(counts: np.ndarray) -> dict:
    """The shares of `attribution_counts` (summed over any clips)."""
    speech, correct, missed, swapped, seconds = (float(x) for x in counts)

    def share(n: float) -> float | None:
        return round(n / speech, 6) if speech else None

    return {"speech_frames": int(speech), "speech_s": round(seconds, 3), "attribution": share(correct),
            "missed_share": share(missed), "swapped_share": share(swapped),
            "partial_share": share(speech - correct - missed - swapped)}


def attribution_scores(clips: list[ClipLabels]) -> dict:
    """Share of true speech frames whose predicted parties equal the true ones, and the errors."""
    return attribution_from_counts(attribution_counts(clips))


class AttributionMetric:
    """Share of true speech time whose speaking party (self, other, both) the clip gets right."""

    name = "attribution"
    COLUMNS = ["clips", "speech_s", "attribution", "missed_share", "swapped_share", "partial_share",
               "ok_clips", "ok_attribution"]
    SHARES = ("attribution", "missed_share", "swapped_share", "partial_share")
    FIGURES = _scoped({k: HIGHER if k == "attribution" else LOWER for k in SHARES})

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings

    def evaluate(self, run: RunView, truth: TruthSet) -> MetricResult:
        # Without talk_listen's per-video bad_clips: both metrics read the same clips, and it reports them.
        found = _score_labelled_videos(run, truth, self.name, self._scores, attribution_counts,
                                       bad_clips_per_video=False)
        if isinstance(found, MetricResult):
            return found
        summary = self._scores(found.all_clips)
        summary.update({"unmatched_frames": sum(int((c.true < 0).sum()) for c in found.all_clips),
                        **_video_counts(found.per_video), "missing_files": found.missing_files})
        result = MetricResult(self.name, True, summary=summary, per_video=found.per_video, columns=self.COLUMNS)
        attach_figures(result, found.stats, self.pool, self.FIGURES, self.settings)
        return result

    @classmethod
    def pool(cls, parts: list[np.ndarray]) -> dict:
        """The shares of the summed (all clips, ok clips) counts of `parts`."""
        return _pooled_scopes(parts, np.zeros((2, 5)), attribution_from_counts, cls.SHARES)

    @staticmethod
    def _scores(clips: list[ClipLabels]) -> dict:
        ok = [c for c in clips if c.ok]
        return {"clips": len(clips), **attribution_scores(clips), "ok_clips": len(ok),
                **{f"ok_{k}": v for k, v in attribution_scores(ok).items()}}


# ---- self_other ---------------------------------------------------------------------------------


@dataclass(slots=True)
class PooledSiSdr:
    """SI-SDR (zero-mean) of many estimate/reference pairs concatenated, from running sums.

    Equal to `si_sdr(concatenate(estimates), concatenate(references))` without holding the audio.
    """

    n: int = 0
    e: float = 0.0
    r: float = 0.0
    ee: float = 0.0
    rr: float = 0.0
    er: float = 0.0

    def add(self, estimate: np.ndarray, reference: np.ndarray) -> None:
        n = min(len(estimate), len(reference))
        e, r = np.asarray(estimate[:n], np.float64), np.asarray(reference[:n], np.float64)
        self.n += n
        self.e += float(e.sum())
        self.r += float(r.sum())
        self.ee += float(e.dot(e))
        self.rr += float(r.dot(r))
        self.er += float(e.dot(r))

    def merge(self, other: PooledSiSdr) -> None:
        """Add `other`'s pairs (as if they had been added here)."""
        self.n += other.n
        self.e += other.e
        self.r += other.r
        self.ee += other.ee
        self.rr += other.rr
        self.er += other.er

    def value(self) -> float | None:
        if not self.n:
            return None
        eps = float(np.finfo(np.float64).eps)
        er = self.er - self.e * self.r / self.n
        rr = self.rr - self.r * self.r / self.n
        ee = self.ee - self.e * self.e / self.n
        alpha = (er + eps) / (rr + eps)
        target = alpha * alpha * rr
        noise = max(ee - 2 * alpha * er + target, 0.0)
        return round(10 * math.log10((target + eps) / (noise + eps)), 3)


def _read_16k(path: Path | str) -> np.ndarray:
    """Mono float64 at 16 kHz (resampled when the file has another rate)."""
    audio = _read(path)
    rate = sf.info(str(path)).samplerate
    if rate != RATE:
        from scipy.signal import resample_poly

        g = math.gcd(RATE, rate)
        audio = resample_poly(audio, RATE // g, rate // g)
    return audio


def _window(audio: np.ndarray, start: int, n: int) -> np.ndarray:
    out = np.zeros(n)
    piece = audio[max(start, 0):max(start + n, 0)]
    offset = max(-start, 0)
    out[offset:offset + len(piece)] = piece[:n - offset]
    return out


def _dbfs(audio: np.ndarray) -> float:
    power = float(np.mean(np.square(audio))) if len(audio) else 0.0
    return 10 * math.log10(power) if power > 0 else -math.inf


def _int_samples(path: str) -> np.ndarray:
    audio = sf.read(path, dtype="int32", always_2d=True)[0]
    return audio[:, 0].astype(np.int64)


class _Tally:
    """Per-clip SI-SDRs and pooled sums of one track (self or other) over a set of clips."""

    def __init__(self) -> None:
        self.values: list[float] = []
        self.baseline: list[float] = []
        self.pooled = PooledSiSdr()
        self.pooled_mix = PooledSiSdr()
        self.skipped = 0

    @classmethod
    def merge(cls, tallies: list[_Tally]) -> _Tally:
        """One tally of all clips of `tallies` (in order; the pooled sums added)."""
        out = cls()
        for tally in tallies:
            out.values += tally.values
            out.baseline += tally.baseline
            out.skipped += tally.skipped
            for mine, theirs in ((out.pooled, tally.pooled), (out.pooled_mix, tally.pooled_mix)):
                mine.merge(theirs)
        return out

    def scores(self, track: str) -> dict:
        values, baseline = np.asarray(self.values, np.float64), np.asarray(self.baseline, np.float64)
        gains = values - baseline
        total, total_mix = self.pooled.value(), self.pooled_mix.value()

        def stat(values: np.ndarray, fn) -> float | None:
            return round(float(fn(values)), 3) if len(values) else None

        return {f"{track}_clips": len(self.values), f"{track}_skipped": self.skipped,
                f"{track}_si_sdr_mean": stat(values, np.mean),
                f"{track}_si_sdr_median": stat(values, np.median), f"{track}_si_sdr_total": total,
                f"{track}_mix_si_sdr_mean": stat(baseline, np.mean), f"{track}_mix_si_sdr_total": total_mix,
                f"{track}_si_sdri_mean": stat(gains, np.mean), f"{track}_si_sdri_median": stat(gains, np.median),
                f"{track}_si_sdri_total": round(total - total_mix, 3) if total is not None else None}


class SelfOtherMetric:
    """SI-SDR of each clip's self and other tracks against the true person's and the others' stems."""

    name = "self_other"
    COLUMNS = ["clips", "self_si_sdr_mean", "self_si_sdr_median", "self_si_sdr_total", "self_si_sdri_mean",
               "other_si_sdr_mean", "other_si_sdr_median", "other_si_sdr_total", "other_si_sdri_mean",
               "self_skipped", "other_skipped", "mix_max_abs_error", "ok_self_si_sdr_mean", "ok_other_si_sdr_mean"]
    FIGURES = _scoped({f"{t}_{k}": HIGHER for t in TRACKS for k in ("si_sdr_total", "si_sdr_median", "si_sdr_mean",
                                                                     "si_sdri_total", "si_sdri_median")})

    def __init__(self, settings: EvalSettings) -> None:
        self.settings = settings

    def evaluate(self, run: RunView, truth: TruthSet) -> MetricResult:
        found = _clip_rows(run, self.name, AUDIO_URIS)
        if isinstance(found, MetricResult):
            return found
        rows_by_video, missing = found
        per_video: dict[str, dict] = {}
        stats: dict[str, dict[str, dict[str, _Tally]]] = {}
        totals = Counter()
        max_error = None
        for video in truth.video_ids:
            if video not in rows_by_video:
                per_video[video] = {"source_id": None, "missing": True}
                continue
            here = {scope: {t: _Tally() for t in TRACKS} for scope in ("all", "ok")}
            counts, error = self._video(truth, video, rows_by_video[video], [here])
            totals.update(counts)
            if error is not None:
                max_error = error if max_error is None else max(max_error, error)
            stats[video] = here
            per_video[video] = {"source_id": run.source_of_video[video], "missing": False, **counts,
                                "mix_max_abs_error": error}
        summary = {**dict(totals), "mix_max_abs_error": max_error}
        result = MetricResult(self.name, True, summary=summary, per_video=per_video, columns=self.COLUMNS)
        attach_figures(result, stats, self.pool, self.FIGURES, self.settings)
        result.summary.update({"min_reference_dbfs": MIN_REFERENCE_DBFS, **_video_counts(per_video),
                               "missing_files": dict(missing),
                               "average": "mean/median over clips; total: all scored clips concatenated"})
        return result

    @staticmethod
    def pool(parts: list[dict[str, dict[str, _Tally]]]) -> dict:
        """Every score of the merged tallies of `parts` (clips of all their videos together)."""
        tallies = {scope: {t: _Tally.merge([p[scope][t] for p in parts]) for t in TRACKS} for scope in ("all", "ok")}
        out: dict = {}
        for t in TRACKS:
            out.update(tallies["all"][t].scores(t))
        for t in TRACKS:
            out.update({f"ok_{k}": v for k, v in tallies["ok"][t].scores(t).items()})
        return out

    def _video(self, truth: TruthSet, video: str, rows: list[dict],
               sinks: list[dict[str, dict[str, _Tally]]]) -> tuple[Counter, int | None]:
        """Score one video's clips into every tally of `sinks`; returns counts and the largest mix error."""
        truth_video = VideoTruth.load(truth, video)
        folder = self.settings.speech_reference
        stems = {p: _read_16k(truth.path(video, f"{folder}/{p}.flac")) for p in truth_video.people
                 if truth.path(video, f"{folder}/{p}.flac").is_file()}
        silent = np.zeros(max((len(a) for a in stems.values()), default=0))
        counts = Counter(clips=0, unmatched_clips=0, bad_clips=0, bad_length_clips=0, no_self_speaker=0)
        max_error = None
        clips, bad = _labelled_clips(rows, truth_video)
        counts["bad_clips"] += bad
        for clip in clips:
            row = clip.row
            ints = [_int_samples(row[u]) for u in AUDIO_URIS]
            expected = round((row["clip_end_frame"] - row["clip_start_frame"]) * RATE / row["fps"])
            counts["bad_length_clips"] += any(len(a) != expected for a in ints)
            n = min(len(a) for a in ints)
            error = int(np.abs(ints[0][:n] + ints[1][:n] + ints[2][:n] - ints[3][:n]).max()) if n else 0
            max_error = error if max_error is None else max(max_error, error)
            matched = clip.person[clip.person >= 0]
            if not len(matched):
                counts["unmatched_clips"] += 1
                continue
            counts["clips"] += 1
            person = truth_video.people[int(np.bincount(matched).argmax())]
            estimates = {"self": _read_16k(row["self_uri"]), "other": _read_16k(row["other_uri"])}
            mix = _read_16k(row["mix_uri"])
            start = round(row["clip_start_frame"] * RATE / row["fps"])
            length = len(estimates["self"])
            others = silent.copy()
            for p, audio in stems.items():
                if p != person:
                    others[:len(audio)] += audio
            references = {"self": _window(stems.get(person, silent), start, length),
                          "other": _window(others, start, length)}
            if not row.get("self_speaker") and _dbfs(references["self"]) >= MIN_REFERENCE_DBFS:
                counts["no_self_speaker"] += 1
            for track in TRACKS:
                reference = references[track]
                scopes = ["all", "ok"] if clip.ok else ["all"]
                if _dbfs(reference) < MIN_REFERENCE_DBFS:
                    for sink in sinks:
                        for scope in scopes:
                            sink[scope][track].skipped += 1
                    continue
                value, baseline = si_sdr(estimates[track], reference), si_sdr(mix, reference)
                for sink in sinks:
                    for scope in scopes:
                        tally = sink[scope][track]
                        tally.values.append(value)
                        tally.baseline.append(baseline)
                        tally.pooled.add(estimates[track], reference)
                        tally.pooled_mix.add(mix, reference)
        return counts, max_error
