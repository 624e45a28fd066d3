"""Speaker diarization with pyannote.audio 4.x: its segmentation, its clustering, our embedding.

The official pipelines (speaker-diarization-3.1, community-1) need a WeSpeaker embedding that the
offline store does not hold. `campplus` plugs the store's CAM++ embedding into pyannote's own
`SpeakerDiarization` (segmentation-3.0 from the store, agglomerative clustering on cosine
distance); on CPU that embedding runs on onnxruntime (`embedding_backend`). `official` runs the
store's `pyannote-speaker-diarization-3.1` pipeline unchanged, for machines where pyannote can
load its WeSpeaker model.
"""

from __future__ import annotations

import bisect
import logging
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf
import torch
import torch.nn.functional as F

from voxhear.pipeline.models import ModelStore, ModelStoreError
from voxhear.stages.audio.campplus import EMBED_DIM, SAMPLE_RATE, campplus_onnx, fbank, load_campplus
from voxhear.stages.runs import runs_of

log = logging.getLogger(__name__)


# A stretch of audio to diarize: the signal, or (signal, the same stretch's voices alone).
Piece = np.ndarray | tuple[np.ndarray, np.ndarray]


@dataclass(frozen=True, slots=True)
class Turn:
    """One stretch of one speaker's speech, in seconds."""

    start: float
    end: float
    speaker: str


def _embedding_model_class():
    """A pyannote `Model` around CAM++, built lazily so that importing this module stays cheap."""
    from pyannote.audio import Model

    class CamPlusPlusEmbedding(Model):
        """CAM++ as a pyannote embedding model: waveforms (+ frame weights) -> 192-d embeddings.

        pyannote passes each (chunk, local speaker) as the whole chunk and a per-frame activity
        weight. Only the samples where the speaker is active are embedded (CAM++ pools over time,
        so this is what the speaker sounds like alone), cropped to `max_s` around their middle to
        bound the cost; fewer than `min_s` of them give NaN, which pyannote's clustering skips.
        """

        def __init__(self, campplus, max_s: float = 4.0, min_s: float = 0.4) -> None:
            super().__init__(sample_rate=SAMPLE_RATE, num_channels=1)
            self.campplus = campplus
            self.max_samples = int(max_s * SAMPLE_RATE)
            self.min_samples = int(min_s * SAMPLE_RATE)

        @property
        def dimension(self) -> int:
            return EMBED_DIM

        # pyannote's base declares forward(waveforms, **kwargs) for every model; its own embedding
        # models take `weights` alone too.
        def forward(  # type: ignore[override]
            self, waveforms: torch.Tensor, weights: torch.Tensor | None = None
        ) -> torch.Tensor:
            batch, _, n = waveforms.shape
            out = torch.full((batch, EMBED_DIM), float("nan"))
            keep = torch.ones(batch, n, dtype=torch.bool)
            if weights is not None:
                if weights.shape[-1] != n:  # pyannote's frame weights; `refine` passes sample weights
                    weights = F.interpolate(weights[:, None].float(), size=n, mode="nearest")[:, 0]
                keep = weights > 0.5
            for i in range(batch):
                active = waveforms[i, 0][keep[i]]
                if active.numel() < self.min_samples:
                    if weights is None:
                        raise ValueError(f"{active.numel()} samples are too few for a CAM++ embedding")
                    continue
                if active.numel() > self.max_samples:
                    start = (active.numel() - self.max_samples) // 2
                    active = active[start : start + self.max_samples]
                out[i] = self.campplus(fbank(active.cpu())[None].to(waveforms.device))[0].cpu()
            return out

    return CamPlusPlusEmbedding


class Diarizer:
    """pyannote `SpeakerDiarization` with CAM++ embeddings (or the official pipeline)."""

    def __init__(
        self,
        store: ModelStore,
        pipeline: str = "campplus",
        segmentation_step: float = 0.5,
        threshold: float = 0.6,
        min_cluster_size: int = 2,
        min_duration_off: float = 0.0,
        embedding_max_s: float = 4.0,
        min_speakers: int | None = None,
        max_speakers: int | None = None,
        refine_iterations: int = 3,
        refine_min_s: float = 0.5,
        resegment_window_s: float = 0.0,
        merge_threshold: float = 0.0,
        window_s: float = 0.0,
        link_threshold: float = 0.4,
        overlap_step: float = 0.1,
        overlap_min_count: float = 1.2,
        device: str | None = None,
        embedding_backend: str = "onnx",
        threads: int | None = None,
    ) -> None:
        """Build the pipeline; `embedding_backend` "onnx" runs CAM++ on onnxruntime with `threads`
        intra-op threads (None: torch's thread count, which the stage sets) when the device is the
        CPU, and keeps the torch module on a GPU or when the export fails."""
        if embedding_backend not in ("onnx", "torch"):
            raise ValueError(f"embedding_backend must be 'onnx' or 'torch', not {embedding_backend!r}")
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.min_speakers, self.max_speakers = min_speakers, max_speakers
        self.refine_iterations, self.refine_min_s = refine_iterations, refine_min_s
        self.resegment_window_s = resegment_window_s
        self.merge_threshold = merge_threshold
        self.window_s, self.link_threshold = window_s, link_threshold
        self.overlap_step, self.overlap_min_count = overlap_step, overlap_min_count
        self._overlap_inference: Any = None  # the segmentation at overlap_step, built on first use
        self.embed: torch.nn.Module | None = None
        if pipeline == "official":
            self.pipeline = _official_pipeline(store)
        else:
            campplus = _campplus(
                store, embedding_backend if self.device.type == "cpu" else "torch", threads or torch.get_num_threads()
            )
            self.pipeline = _campplus_pipeline(
                store, campplus, segmentation_step, threshold, min_cluster_size, min_duration_off, embedding_max_s
            )
            self.embed = self.pipeline._embedding.model_
        self.pipeline.to(self.device)

    def __call__(self, audio: np.ndarray, rate: int, voices: np.ndarray | None = None) -> list[Turn]:
        """Speaker turns of mono `audio`, sorted by start (speaker labels `SPEAKER_00`, ...).

        `voices`, when given, is the same time line with the voices alone (the separated speech):
        speech is found and segmented in `audio`, speakers are told apart by embedding `voices`.
        """
        audio = np.asarray(audio, dtype=np.float32)
        if voices is None:
            return self._diarize(lambda a, b: audio[a:b], len(audio), rate)
        voices = np.asarray(voices, dtype=np.float32)
        return self._diarize(lambda a, b: _aligned(audio[a:b], voices[a:b]), len(audio), rate)

    def diarize_file(self, path: str | Path, voices_path: str | Path | None = None) -> tuple[list[Turn], float]:
        """Speaker turns of an audio file (channels averaged) and its duration in seconds; a long
        file is read one window at a time, so memory does not grow with its length. With
        `voices_path` (the separated speech of the same recording), speech is segmented in `path`
        and embedded from `voices_path`, as in `__call__`."""
        with sf.SoundFile(str(path)) as handle:
            read = _file_reader(handle)
            if voices_path is None:
                return self._diarize(read, handle.frames, handle.samplerate), handle.frames / handle.samplerate
            with sf.SoundFile(str(voices_path)) as voices:
                if voices.samplerate != handle.samplerate:
                    raise ValueError(
                        f"{voices_path} is {voices.samplerate} Hz and {path} {handle.samplerate} Hz: "
                        "the two inputs of one diarization must share a rate"
                    )
                read_voices = _file_reader(voices)

                def read_both(a: int, b: int) -> tuple[np.ndarray, np.ndarray]:
                    return _aligned(read(a, b), read_voices(a, b))

                return self._diarize(read_both, handle.frames, handle.samplerate), handle.frames / handle.samplerate

    def overlap_file(self, path: str | Path, min_s: float = 0.1) -> list[tuple[float, float]]:
        """[start, end) seconds where pyannote's segmentation hears two or more voices at once in
        an audio file (channels averaged: `_overlap_window`), regions shorter than `min_s`
        dropped. Segmentation only, no embeddings; read `OVERLAP_WINDOW_S` at a time, so memory
        does not grow with the file's length. Frames within 10 s of a window's edge (as of the
        file's) are covered by fewer chunks than the rest, so there the bound counts fewer votes."""
        regions: list[tuple[float, float]] = []
        with sf.SoundFile(str(path)) as handle:
            read, rate, n = _file_reader(handle), handle.samplerate, handle.frames
            step = int(OVERLAP_WINDOW_S * rate)
            for a in range(0, n, step):
                offset = a / rate
                regions += [(s + offset, e + offset) for s, e in self._overlap_window(read(a, min(n, a + step)), rate)]
        joined: list[tuple[float, float]] = []
        for s, e in regions:  # a region cut by a window edge is one region again
            if joined and s - joined[-1][1] < 1e-3:
                joined[-1] = (joined[-1][0], e)
            else:
                joined.append((s, e))
        return [(round(s, 3), round(e, 3)) for s, e in joined if e - s >= min_s]

    def _overlap_window(self, audio: np.ndarray, rate: int) -> list[tuple[float, float]]:
        """Regions of one window where the mean number of local speakers over the 10 s chunks
        that cover a frame (pyannote's binarized segmentation, chunks every `overlap_step` of
        their length) is at least `overlap_min_count`.

        pyannote's own speaker count rounds that mean; with its chunks every 5 s (our diarization's
        default step) each frame has two chunks, so one chunk hearing two voices marked overlap
        (mean 1.5). Chunks every 1 s give a frame ten votes (fewer within 10 s of the window's
        edges), and a lower bound hears more of the overlap (realistic tuning set: 52% of it at a
        precision of 0.81, against 62% at 0.77 at 1.2 with step 0.1; README, "Real people").
        `overlap_step=0.5, overlap_min_count=1.5` is the count the campplus diarization rounds at
        its default `segmentation_step` (tested). The pass no longer follows `segmentation_step`
        or the pipeline's own step (the official pipeline's is 0.1, so its overlap was 0.1 / 1.5).
        """
        from pyannote.audio import Inference

        if len(audio) < rate // 10:
            return []
        segmentation = self._overlap_segmentation()
        waveform = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))[None]
        segmentations = segmentation({"waveform": waveform, "sample_rate": rate})
        trimmed = Inference.trim(segmentations, warm_up=(0.0, 0.0))
        count = Inference.aggregate(
            np.sum(trimmed, axis=-1, keepdims=True),
            segmentation.model.receptive_field,
            hamming=False,
            missing=0.0,
            skip_average=False,
        )
        frames = count.sliding_window
        many = np.asarray(count.data).reshape(-1) >= self.overlap_min_count
        duration = len(audio) / rate
        return [
            (max(0.0, frames[i].middle), min(duration, frames[j - 1].middle + frames.step)) for i, j in runs_of(many)
        ]

    def _overlap_segmentation(self) -> Any:
        """pyannote's segmentation model as an inference whose 10 s chunks step by
        `overlap_step` of their length (the diarization's own steps by `segmentation_step`)."""
        if self._overlap_inference is None:
            from pyannote.audio import Inference

            model = self.pipeline._segmentation.model
            duration = model.specifications.duration
            self._overlap_inference = Inference(
                model,
                duration=duration,
                step=self.overlap_step * duration,
                skip_aggregation=True,
                batch_size=self.pipeline._segmentation.batch_size,
                device=self.device,
            )
        return self._overlap_inference

    def _diarize(self, read: Callable[[int, int], Piece], n: int, rate: int) -> list[Turn]:
        """Whole input in one pyannote call when it is short; else windows joined by speaker.

        pyannote's clustering holds the distances between every pair of (10 s chunk, local
        speaker) embeddings of its input, so its memory grows with the square of the length.
        Windows bound it; their speakers are joined afterwards by whole-turn embeddings
        (`link_window_speakers`). The official pipeline has no embedding of ours to join them
        with, so it always gets the whole input.
        """
        bounds = [(0, n)]
        if self.embed is not None:
            bounds = window_bounds(lambda a, b: _first(read(a, b)), n, rate, self.window_s)
        if len(bounds) == 1:
            turns, _ = self._diarize_window(read(0, n), rate, self.min_speakers, False)
            return turns
        turns, vectors = [], {}
        for k, (a, b) in enumerate(bounds):
            # min_speakers bounds the whole input, not each window (one may hold a monologue).
            local, local_vectors = self._diarize_window(read(a, b), rate, None, True)
            base, offset = len(turns), a / rate
            turns += [Turn(round(t.start + offset, 3), round(t.end + offset, 3), f"{k}:{t.speaker}") for t in local]
            vectors.update({base + i: v for i, v in local_vectors.items()})
        renamed = link_window_speakers(
            vectors,
            {i: t.speaker for i, t in enumerate(turns)},
            {i: turns[i].end - turns[i].start for i in vectors},
            self.link_threshold,
            min_speakers=self.min_speakers or 1,
            max_speakers=self.max_speakers,
        )
        return _name_speakers(_merge_touching([Turn(t.start, t.end, renamed[t.speaker]) for t in turns]))

    def _diarize_window(
        self, audio: Piece, rate: int, min_speakers: int | None, need_vectors: bool
    ) -> tuple[list[Turn], dict[int, np.ndarray]]:
        """pyannote's turns of one window (the mix, or a (mix, voices) pair), refined; with
        `need_vectors`, the turns are left unmerged and come with their embeddings (turn index
        -> unit vector)."""
        mix, voices = audio if isinstance(audio, tuple) else (audio, None)
        waveform = torch.from_numpy(np.ascontiguousarray(mix, dtype=np.float32))[None]
        file: dict = {"waveform": waveform, "sample_rate": rate}
        # Refinement embeds what pyannote's embeddings read: the voices when there are any.
        embedded = waveform[0]
        if voices is not None:
            file[VOICES_KEY] = torch.from_numpy(np.ascontiguousarray(voices, dtype=np.float32))[None]
            embedded = file[VOICES_KEY][0]
        kwargs = {k: v for k, v in (("min_speakers", min_speakers), ("max_speakers", self.max_speakers)) if v}
        output = self.pipeline(file, **kwargs)
        annotation = getattr(output, "speaker_diarization", output)
        turns = [
            Turn(round(seg.start, 3), round(seg.end, 3), str(label))
            for seg, _, label in annotation.itertracks(yield_label=True)
        ]
        turns = sorted(turns, key=lambda t: (t.start, t.end, t.speaker))
        vectors: dict[int, np.ndarray] = {}
        refine = (self.refine_iterations or self.merge_threshold) and len({t.speaker for t in turns}) > 1
        if self.embed is not None and refine:
            turns, vectors = self._relabel(embedded, rate, turns)
            if not need_vectors:
                turns = _merge_touching(turns)
        elif self.embed is not None and need_vectors:
            vectors = self._turn_vectors(embedded, rate, turns)
        return turns, vectors

    def _turn_vectors(
        self,
        waveform: torch.Tensor,
        rate: int,
        turns: list[Turn],
        known: dict[tuple[float, float], np.ndarray] | None = None,
    ) -> dict[int, np.ndarray]:
        """Turn index -> unit CAM++ embedding of the turn without the parts other turns overlap;
        a turn whose span is in `known` (span -> embedding, from the same recording and the
        same turns' union) keeps that embedding instead of being embedded again."""
        if rate != SAMPLE_RATE:
            raise ValueError(f"refinement expects {SAMPLE_RATE} Hz audio, got {rate}")
        if self.embed is None:
            raise ValueError("refinement needs the CAM++ embedding (pipeline 'campplus')")
        vectors: dict[int, np.ndarray] = {}
        for i, piece, keep in _turn_pieces(waveform, rate, turns, self.refine_min_s):
            span = (turns[i].start, turns[i].end)
            if known is not None and span in known:
                vectors[i] = known[span]
                continue
            with torch.inference_mode():
                e = self.embed(piece[None, None, :].to(self.device), weights=keep[None].float().to(self.device))[0]
            if torch.isfinite(e).all():
                vectors[i] = F.normalize(e, dim=0).cpu().numpy()
        return vectors

    def refine(self, waveform: torch.Tensor, rate: int, turns: list[Turn]) -> list[Turn]:
        """Re-label whole turns by their own embedding (k-means from pyannote's labels).

        pyannote's segmentation model sometimes gives two people one local label inside a 10 s
        window, and clustering cannot undo that. Turns are separated by pauses, so one embedding
        per turn (without the parts where another turn overlaps it) moved to the nearest speaker
        centroid fixes those windows; the speakers themselves stay pyannote's.
        """
        return _merge_touching(self._relabel(waveform, rate, turns)[0])

    def _relabel(
        self, waveform: torch.Tensor, rate: int, turns: list[Turn]
    ) -> tuple[list[Turn], dict[int, np.ndarray]]:
        """`refine` before touching turns are joined: the turns in their order, and the turn
        embeddings it used (turn index -> unit vector)."""
        vectors = self._turn_vectors(waveform, rate, turns)
        labels = self._kmeans(turns, vectors)
        if self.resegment_window_s > 0 and len(set(labels.values())) > 1:
            # Cutting a turn leaves the time the turns cover, so an uncut turn's overlap mask,
            # and its embedding, stay as they were: only the cut pieces are embedded again.
            known = {(turns[i].start, turns[i].end): v for i, v in vectors.items()}
            turns = self._resegment(
                waveform, rate, [Turn(t.start, t.end, labels.get(i, t.speaker)) for i, t in enumerate(turns)]
            )
            vectors = self._turn_vectors(waveform, rate, turns, known)
            labels = self._kmeans(turns, vectors)
        refined = [Turn(t.start, t.end, labels.get(i, t.speaker)) for i, t in enumerate(turns)]
        if self.merge_threshold > 0:
            durations = {i: turns[i].end - turns[i].start for i in vectors}
            renamed = merge_close_speakers(
                vectors,
                {i: refined[i].speaker for i in vectors},
                durations,
                self.merge_threshold,
                min_speakers=self.min_speakers or 1,
            )
            refined = [Turn(t.start, t.end, renamed.get(t.speaker, t.speaker)) for t in refined]
        return refined, vectors

    def _kmeans(self, turns: list[Turn], vectors: dict[int, np.ndarray]) -> dict[int, str]:
        """Turn index -> speaker after k-means rounds over whole-turn embeddings (centroids
        weighted by turn length), starting from the turns' own speakers."""
        if not vectors:
            return {}
        index = list(vectors)
        said = seeded_kmeans(
            np.stack([vectors[i] for i in index]),
            [turns[i].speaker for i in index],
            self.refine_iterations,
            weights=np.array([turns[i].end - turns[i].start for i in index]),
        )
        return dict(zip(index, said, strict=True))

    def _resegment(self, waveform: torch.Tensor, rate: int, turns: list[Turn]) -> list[Turn]:
        """Turns cut where the speaker of their sliding windows changes (design doc item 31).

        pyannote's segmentation can give one local speaker to two people who follow each other
        after a short pause inside a 10 s chunk (a four-person talk with 0.3 s gaps); whole-turn
        refinement can only move such a turn whole. Each turn's solo speech (no other turn over
        it) is embedded in windows of `resegment_window_s` (hop: half a window; a turn shorter
        than two windows is one window), the windows of the whole input go through k-means
        rounds that start from their turns' speakers (`seeded_kmeans`: the speakers and
        their count stay pyannote's), and each turn is cut between runs of one speaker
        (`cut_at_speaker_changes`).
        """
        assert self.embed is not None
        window = self.resegment_window_s
        n = waveform.shape[-1]
        plans: dict[int, np.ndarray] = {}  # turn index -> its window starts (s)
        vectors: list[np.ndarray] = []
        owners: list[tuple[int, int]] = []  # (turn index, window index) of each vector
        for i, samples, keep in _turn_pieces(waveform, rate, turns, self.refine_min_s):
            turn = turns[i]
            starts, span = window_starts(turn.start, turn.end, window)
            plans[i] = starts
            offset = int(turn.start * rate)
            for k, start in enumerate(starts):
                a, b = int(start * rate) - offset, min(int((start + span) * rate), n) - offset
                mask = keep[a:b]
                if int(mask.sum()) < int(self.refine_min_s * rate):
                    continue
                with torch.inference_mode():
                    e = self.embed(
                        samples[a:b][None, None, :].to(self.device), weights=mask[None].float().to(self.device)
                    )[0]
                if torch.isfinite(e).all():
                    vectors.append(F.normalize(e, dim=0).cpu().numpy())
                    owners.append((i, k))
        if len(vectors) < 2:
            return turns
        said = seeded_kmeans(np.stack(vectors), [turns[i].speaker for i, _ in owners], self.refine_iterations or 3)
        by_turn: dict[int, dict[int, str]] = {}
        for (i, k), speaker in zip(owners, said, strict=True):
            by_turn.setdefault(i, {})[k] = speaker
        out: list[Turn] = []
        for i, turn in enumerate(turns):
            if i in by_turn:
                out += cut_at_speaker_changes(turn, plans[i], by_turn[i], window)
            else:
                out.append(turn)
        return sorted(out, key=lambda t: (t.start, t.end, t.speaker))


def window_starts(start: float, end: float, window: float) -> tuple[np.ndarray, float]:
    """Start times of the sliding windows over [start, end) (hop: half a window) and their
    length; a turn shorter than two windows is one window, its whole length."""
    if end - start < 2 * window:
        return np.array([start]), end - start
    return np.arange(start, end - window + 1e-6, window / 2), window


def cut_at_speaker_changes(turn: Turn, starts: np.ndarray, said: dict[int, str], window: float) -> list[Turn]:
    """`turn` cut into runs of one speaker, from the speakers `said` of its windows (window
    index -> speaker; windows without an embedding, mostly overlapped ones, take the nearest
    said window's speaker). A run shorter than a window joins the run before it (the first run,
    the one after it): one window's vote is too little to cut a turn. Each cut falls halfway
    between the centres of the last window of one run and the first of the next."""
    if not said:
        return [turn]
    steps = [said[min(said, key=lambda j: (abs(j - k), j))] for k in range(len(starts))]
    runs: list[list] = []  # [speaker, first window, last window]
    for k, speaker in enumerate(steps):
        if runs and runs[-1][0] == speaker:
            runs[-1][2] = k
        else:
            runs.append([speaker, k, k])
    hop = window / 2

    def short(run: list) -> bool:
        return (run[2] - run[1] + 1) * hop < window

    kept: list[list] = []
    for run in runs:
        if kept and (short(run) or kept[-1][0] == run[0]):
            kept[-1][2] = run[2]
        else:
            kept.append(run)
    if len(kept) > 1 and short(kept[0]):
        kept[1][1] = kept[0][1]
        kept.pop(0)
    if len(kept) == 1:
        return [Turn(turn.start, turn.end, kept[0][0])]
    edges = [turn.start] + [round(float(starts[r[1]]) + hop / 2, 3) for r in kept[1:]] + [turn.end]
    return [Turn(edges[k], edges[k + 1], kept[k][0]) for k in range(len(kept))]


def seeded_kmeans(vectors: np.ndarray, seeds: list[str], rounds: int, weights: np.ndarray | None = None) -> list[str]:
    """Speaker of each unit vector (a whole turn's, or a window's) after k-means rounds that
    start from `seeds` (the speaker of its turn), centroids weighted by `weights` (turn lengths;
    None: equal): the speakers and at most their count stay the turns' ones, only which vectors
    they hold changes. For windows, a threshold over the windows themselves decides the count
    badly: their distances depend on the recording (reverberant composed videos split into up to
    13 speakers where clean ones did not; design doc item 31)."""
    labels = list(seeds)
    weighted = vectors if weights is None else vectors * weights[:, None]
    for _ in range(rounds):
        names = sorted(set(labels))
        centroids = np.stack([weighted[[label == s for label in labels]].sum(axis=0) for s in names])
        norms = np.linalg.norm(centroids, axis=1, keepdims=True)
        centroids /= np.where(norms == 0, 1.0, norms)
        new = [names[int(np.argmax(centroids @ v))] for v in vectors]
        if new == labels:
            break
        labels = new
    return labels


# The file-dict key under which a window's separated speech travels through pyannote's pipeline.
VOICES_KEY = "voxhear_voices"


def _file_reader(handle: sf.SoundFile) -> Callable[[int, int], np.ndarray]:
    def read(a: int, b: int) -> np.ndarray:
        handle.seek(a)
        return handle.read(b - a, dtype="float32", always_2d=True).mean(axis=1)

    return read


def _aligned(mix: np.ndarray, voices: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """`mix` and `voices` cut or zero-padded to the mix's length: a codec can leave the separated
    speech a few samples shorter or longer than the mix it came from."""
    return mix, np.pad(voices, (0, max(len(mix) - len(voices), 0)))[: len(mix)]


def _first(piece: Piece) -> np.ndarray:
    return piece[0] if isinstance(piece, tuple) else piece


def _turn_pieces(
    waveform: torch.Tensor, rate: int, turns: list[Turn], min_s: float
) -> Iterator[tuple[int, torch.Tensor, torch.Tensor]]:
    """(turn index, the turn's samples, which of them no other turn overlaps) for every turn of
    at least `min_s`.

    Only the turn's own span is sliced and masked, so the cost is the turns' total length rather
    than the recording's length per turn (a 3-hour podcast has thousands of turns). Turns are
    sorted by start, so the overlapping ones are found by a window over the list, not all pairs.
    """
    n = waveform.shape[-1]
    order = sorted(range(len(turns)), key=lambda k: turns[k].start)
    longest = max((t.end - t.start for t in turns), default=0.0)
    starts = [turns[k].start for k in order]
    for i, turn in enumerate(turns):
        if turn.end - turn.start < min_s:
            continue
        a, b = int(turn.start * rate), min(int(turn.end * rate), n)
        keep = torch.ones(max(b - a, 0), dtype=torch.bool)
        # Any overlapping turn starts after turn.start - longest and before turn.end.
        first = bisect.bisect_left(starts, turn.start - longest)
        last = bisect.bisect_left(starts, turn.end)
        for k in order[first:last]:
            other = turns[k]
            if k != i and other.end > turn.start and other.start < turn.end:
                keep[max(int(other.start * rate) - a, 0) : max(int(other.end * rate) - a, 0)] = False
        yield i, waveform[a:b], keep


# The speaker label of the regions `Diarizer.overlap_file` finds, in overlap.rttm.
OVERLAP_SPEAKER = "overlap"
# Overlap detection reads this much audio at a time (its memory: the window's samples and its
# chunks' segmentations).
OVERLAP_WINDOW_S = 300.0

# Each window boundary moves to the quietest 100 ms within this many seconds of where it falls,
# so that a cut rarely splits a word (a split turn is joined again only if both halves link).
CUT_SEARCH_S = 5.0
CUT_FRAME_S = 0.1


def window_bounds(read: Callable[[int, int], np.ndarray], n: int, rate: int, window_s: float) -> list[tuple[int, int]]:
    """[start, end) samples of the windows a long input is diarized in (one window when
    `window_s` is 0 or the input is shorter than 1.5 windows; the last window takes the rest)."""
    window = int(window_s * rate)
    if window <= 0 or n < 1.5 * window:
        return [(0, n)]
    radius, frame = int(min(CUT_SEARCH_S, window_s / 4) * rate), int(CUT_FRAME_S * rate)
    cuts = [0]
    for nominal in range(window, n - window // 2, window):
        a, b = max(nominal - radius, cuts[-1] + frame), min(nominal + radius, n)
        piece = read(a, b)
        frames = len(piece) // frame
        if frames < 1:
            cuts.append(nominal)
            continue
        energy = np.square(piece[: frames * frame].reshape(frames, frame)).mean(axis=1)
        cuts.append(a + int(np.argmin(energy)) * frame + frame // 2)
    return list(zip(cuts, [*cuts[1:], n], strict=True))


def link_window_speakers(
    vectors: dict[int, np.ndarray],
    labels: dict[int, str],
    durations: dict[int, float],
    threshold: float,
    min_speakers: int = 1,
    max_speakers: int | None = None,
) -> dict[str, str]:
    """Window speaker ("k:LABEL") -> the speaker it is joined into across windows.

    The two closest groups (cosine distance of their turn-embedding centroids, weighted by turn
    length) are joined while closer than `threshold`, or while there are more than
    `max_speakers`; never two groups that share a window, since pyannote told those apart from
    the window's own audio. Speakers without an embedded turn (only turns shorter than
    refinement's minimum) stay apart.
    """
    return _join_closest(
        vectors, labels, durations, threshold, min_speakers, max_speakers, window=lambda s: s.split(":", 1)[0]
    )


def _join_closest(
    vectors: dict[int, np.ndarray],
    labels: dict[int, str],
    durations: dict[int, float],
    threshold: float,
    min_speakers: int,
    max_speakers: int | None = None,
    window: Callable[[str], str] | None = None,
) -> dict[str, str]:
    """Speaker -> the speaker it is joined into: the two closest speakers (cosine distance of
    their duration-weighted turn-embedding centroids) while closer than `threshold` or more than
    `max_speakers`, down to `min_speakers`; with `window`, never two whose windows meet."""
    renamed = {s: s for s in set(labels.values())}
    sums: dict[str, np.ndarray] = {}
    for i, vector in vectors.items():
        sums[labels[i]] = sums.get(labels[i], np.zeros_like(vector)) + vector * durations[i]
    windows = {s: {window(s)} if window else set() for s in sums}
    while len(sums) > max(min_speakers, 1):
        names = sorted(sums)
        unit = {s: v / (np.linalg.norm(v) or 1.0) for s, v in sums.items()}
        pairs = [
            (1.0 - float(unit[a] @ unit[b]), a, b)
            for k, a in enumerate(names)
            for b in names[k + 1 :]
            if not windows[a] & windows[b]
        ]
        if not pairs:
            break
        distance, keep, gone = min(pairs)
        if distance >= threshold and not (max_speakers and len(sums) > max_speakers):
            break
        sums[keep] = sums[keep] + sums.pop(gone)
        windows[keep] |= windows.pop(gone)
        for source, target in renamed.items():
            if target == gone:
                renamed[source] = keep
    return renamed


def _name_speakers(turns: list[Turn]) -> list[Turn]:
    """SPEAKER_00, SPEAKER_01, ... in the order the speakers first talk."""
    names: dict[str, str] = {}
    for t in sorted(turns, key=lambda t: t.start):
        names.setdefault(t.speaker, f"SPEAKER_{len(names):02d}")
    return [Turn(t.start, t.end, names[t.speaker]) for t in turns]


def merge_close_speakers(
    vectors: dict[int, np.ndarray],
    labels: dict[int, str],
    durations: dict[int, float],
    threshold: float,
    min_speakers: int = 1,
) -> dict[str, str]:
    """Speaker -> the speaker it merges into, joining the two closest speakers while the cosine
    distance of their turn-embedding centroids (weighted by turn length) is below `threshold`.

    pyannote clusters embeddings of 10 s windows' local speakers, and on real recordings (one
    voice through one channel that drifts: room, distance, music under it) it splits one person
    into two or three speakers whose whole-turn centroids are far closer than two people's:
    0.24-0.32 apart on faces-wild's single-person recordings against 0.52-0.87 for distinct
    people of the composed tuning set (docs/benchmarks/audio.md).
    """
    return _join_closest(vectors, labels, durations, threshold, min_speakers)


def _campplus(store: ModelStore, backend: str, threads: int):
    """The store's CAM++: the torch module, or (backend "onnx") its onnxruntime export, cached
    next to the store's download cache."""
    resolved = store.resolve("campplus")
    model = load_campplus(resolved.file())
    if backend == "torch":
        return model
    cache_dir = store.cache_dir.parent / "onnx"
    try:
        return campplus_onnx(model, resolved.spec.files[0].sha256, cache_dir, threads=threads)
    except Exception as error:  # any export failure leaves the (slower, same) torch module
        log.warning("CAM++ runs on torch: its ONNX export failed (%s: %s)", type(error).__name__, error)
        return model


def _campplus_pipeline(
    store: ModelStore,
    campplus,
    segmentation_step: float,
    threshold: float,
    min_cluster_size: int,
    min_duration_off: float,
    embedding_max_s: float,
):
    from pyannote.audio import Model

    segmentation = Model.from_pretrained(str(store.resolve("pyannote-segmentation-3.0").path))
    if segmentation is None:  # pyannote logs why and returns None
        raise ModelStoreError("pyannote could not load the store's pyannote-segmentation-3.0")
    embedding = _embedding_model_class()(campplus, max_s=embedding_max_s)
    # Agglomerative clustering needs no PLDA; an empty dict stands for "none" without a hub lookup.
    pipeline = _voices_pipeline_class()(
        segmentation=segmentation,
        segmentation_step=segmentation_step,
        embedding=embedding,
        embedding_exclude_overlap=True,
        clustering="AgglomerativeClustering",
        plda=_NoPlda(),
        embedding_batch_size=8,
        segmentation_batch_size=8,
    )
    pipeline.instantiate(
        {
            "segmentation": {"min_duration_off": min_duration_off},
            "clustering": {"method": "centroid", "min_cluster_size": min_cluster_size, "threshold": threshold},
        }
    )
    return pipeline


def _voices_pipeline_class():
    """pyannote's `SpeakerDiarization` that embeds the file's separated speech when it has one
    (`diarization.input=both`): segmentation reads `waveform` (the mix, where the separator has
    not removed soft speech), the embeddings read `VOICES_KEY`, the same time line without the
    music and noise under the voices. Which input wins is measured, per set, in the README."""
    from pyannote.audio.pipelines import SpeakerDiarization

    class VoicesSpeakerDiarization(SpeakerDiarization):
        def get_embeddings(self, file, *args, **kwargs):
            if VOICES_KEY in file:
                file = {"waveform": file[VOICES_KEY], "sample_rate": file["sample_rate"], "uri": file.get("uri")}
            return super().get_embeddings(file, *args, **kwargs)

    return VoicesSpeakerDiarization


def _official_pipeline(store: ModelStore):
    from pyannote.audio import Pipeline

    folder = store.resolve("pyannote-speaker-diarization-3.1").path
    try:
        return Pipeline.from_pretrained(str(folder))
    except Exception as error:  # any failure here means the models are not there
        raise ModelStoreError(
            f"the official pyannote pipeline ({folder}/config.yaml) could not load its models "
            f"(pyannote/wespeaker-voxceleb-resnet34-LM and segmentation-3.0 through pyannote's cache or "
            f"HF_TOKEN): {type(error).__name__}: {error}. Use diarization.pipeline=campplus."
        ) from None


def _merge_touching(turns: list[Turn], gap: float = 1e-3) -> list[Turn]:
    """Join consecutive turns of one speaker that touch (re-labelling can make them neighbours)."""
    out: list[Turn] = []
    for t in sorted(turns, key=lambda t: (t.speaker, t.start)):
        if out and out[-1].speaker == t.speaker and t.start <= out[-1].end + gap:
            out[-1] = Turn(out[-1].start, max(out[-1].end, t.end), t.speaker)
        else:
            out.append(t)
    return sorted(out, key=lambda t: (t.start, t.end, t.speaker))


def with_overlap_turns(turns: list[Turn], regions: list[tuple[float, float]], max_gap_s: float) -> list[Turn]:
    """`turns` plus, for each heard overlap region where exactly one speaker has a turn, a turn
    over the region for the speaker of the nearest other turn (at most `max_gap_s` from it).

    The second voice of an overlap is most often the speaker of the turn just before or after:
    a turn taken early, a backchannel to the speaker who is talking or has just spoken. Regions
    with no diarized speaker (nobody to take a turn from) or with two already are left alone,
    as is a region with no other speaker near it.
    """
    added: list[Turn] = []
    for start, end in regions:
        active = {t.speaker for t in turns if t.start < end and start < t.end}
        if len(active) != 1:
            continue
        nearest: tuple[float, str] | None = None
        for t in turns:
            if t.speaker in active:
                continue
            gap = max(0.0, t.start - end, start - t.end)
            if gap <= max_gap_s and (nearest is None or gap < nearest[0]):
                nearest = (gap, t.speaker)
        if nearest is not None:
            added.append(Turn(round(start, 3), round(end, 3), nearest[1]))
    if not added:
        return list(turns)
    return _merge_touching([*turns, *added])


def _NoPlda():
    """A PLDA placeholder: pyannote 4 loads one for every clustering, but only VBx uses it."""
    from pyannote.audio.core.plda import PLDA

    return PLDA.__new__(PLDA)


def speech_seconds(turns: list[Turn]) -> float:
    """Seconds during which at least one speaker talks."""
    total, end = 0.0, -math.inf
    for t in sorted(turns, key=lambda t: t.start):
        if t.end <= end:
            continue
        total += t.end - max(t.start, end)
        end = t.end
    return total


def rttm_text(uri: str, turns: list[Turn]) -> str:
    """NIST RTTM lines for `turns`."""
    return "".join(
        f"SPEAKER {uri} 1 {t.start:.3f} {t.end - t.start:.3f} <NA> <NA> {t.speaker} <NA> <NA>\n" for t in turns
    )


def read_rttm(path) -> list[Turn]:
    turns = []
    with open(path) as handle:
        for line in handle:
            parts = line.split()
            if len(parts) >= 8 and parts[0] == "SPEAKER":
                start, dur = float(parts[3]), float(parts[4])
                turns.append(Turn(start, start + dur, parts[7]))
    return turns
