"""Speech recognition: whisperx over the store's faster-whisper model, words attached to speakers.

Decoding is batched (faster-whisper's batched pipeline, CPU int8 by default) over the speech
regions found by diarization, merged into pieces of at most `piece_s` (<= 30 s) the way whisperx
merges its VAD segments. Word times come from whisperx's forced alignment when its alignment model
is present locally (torch hub cache), otherwise from faster-whisper's own cross-attention word
timings. Each word then gets the diarized speaker it overlaps most (`whisperx.assign_word_speakers`).

Memory does not grow with the input (issue 15): the speech is a `Signal` read a piece at a time
(`SpeechFile`: seek and read in the file, resampled per piece when it is not 16 kHz), and the
pipeline is given `batch_size` pieces per call, so that it holds one batch's samples and log-mel
features, never the whole signal's.
"""

from __future__ import annotations

import bisect
import logging
import math
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from voxhear.pipeline.models import ModelStore
from voxhear.stages.audio.diarization import Turn

log = logging.getLogger(__name__)

SAMPLE_RATE = 16000
# whisperx's English alignment model (torchaudio WAV2VEC2_ASR_BASE_960H) as the torch hub caches it.
ALIGN_CHECKPOINT = "wav2vec2_fairseq_base_ls960_asr_ls960.pth"


@dataclass(slots=True)
class Word:
    word: str
    start: float
    end: float
    speaker: str
    probability: float


class Speech(Protocol):
    """Mono 16 kHz speech of `length` samples, read in spans (`separation.Signal`)."""

    length: int

    def read(self, start: int, stop: int) -> np.ndarray:
        """Samples [start, stop) as float32."""
        ...


class SpeechFile:
    """An audio file as mono 16 kHz speech read a span at a time: the samples of
    `resample(*read_mono(path), 16000)` without holding them. Each span is read from the file with
    soundfile (seek and read of its frames, channels averaged); a file at another rate is resampled
    span by span with enough context that the samples equal the whole file's resampling."""

    def __init__(self, path: str | Path) -> None:
        from voxhear.stages.audio.separation import FileSignal, ResampledSignal, Signal

        file = FileSignal(path)
        self.rate = file.rate
        # Seconds of audio in the file (its own rate), for the real-time factor.
        self.duration = file.length / file.rate if file.rate else 0.0
        signal: Signal = file if file.rate == SAMPLE_RATE else ResampledSignal(file, file.rate, SAMPLE_RATE)
        self._signal = signal
        self.length = signal.length

    def read(self, start: int, stop: int) -> np.ndarray:
        return self._signal.read(start, stop)


class _ArraySpeech:
    """A 16 kHz waveform in memory as `Speech`."""

    def __init__(self, audio: np.ndarray) -> None:
        self.audio = np.asarray(audio, dtype=np.float32)
        self.length = len(self.audio)

    def read(self, start: int, stop: int) -> np.ndarray:
        return self.audio[start:stop]


class _SpanAudio(np.ndarray):
    """`speech` to faster-whisper as a 1-D float32 array of its length whose samples are read only
    where it is sliced (`audio[start:stop]`, the one thing the batched pipeline does with the audio
    once it has clip timestamps). Its own buffer is a single NaN, broadcast: anything else that
    reads it gets NaNs, never made-up silence."""

    speech: Speech

    def __getitem__(self, key):
        if not isinstance(key, slice) or key.step not in (None, 1):
            raise TypeError(f"the speech is read as spans [start:stop], not [{key!r}]")
        start, stop, _ = key.indices(self.shape[0])
        return self.speech.read(start, max(start, stop))


def _span_audio(speech: Speech) -> np.ndarray:
    audio = np.broadcast_to(np.float32(np.nan), (speech.length,)).view(_SpanAudio)
    audio.speech = speech
    return audio


class _JoinedSpeech:
    """Several `Speech`es read as one: each starts on a whole second (its times are shifted by
    a whole number of seconds), with a second of silence or more before the next. A span
    gets each part's samples where it covers one and zeros in the gaps."""

    def __init__(self, parts: list[Speech]) -> None:
        self.parts = parts
        self.starts: list[int] = []
        at = 0
        for part in parts:
            self.starts.append(at)
            at += (math.ceil(part.length / SAMPLE_RATE) + 1) * SAMPLE_RATE
        self.starts_s = [start / SAMPLE_RATE for start in self.starts]
        self.length = self.starts[-1] + parts[-1].length if parts else 0

    def part_at(self, seconds: float) -> int:
        """The part whose time `seconds` (on the joined clock) falls in or after."""
        return max(0, bisect.bisect_right(self.starts_s, seconds + 1e-6) - 1)

    def read(self, start: int, stop: int) -> np.ndarray:
        if len(self.parts) == 1:
            return self.parts[0].read(start, stop)
        out = np.zeros(max(0, stop - start), np.float32)
        for part, offset in zip(self.parts, self.starts):
            a, b = max(start, offset), min(stop, offset + part.length)
            if b > a:
                out[a - start : b - start] = part.read(a - offset, b - offset)
        return out


@dataclass(frozen=True, slots=True)
class _Segment:
    # The shape whisperx's merge_chunks expects of a VAD segment.
    start: float
    end: float
    speaker: str | None = None


class Transcriber:
    """faster-whisper (loaded through whisperx) with word timings and speaker attribution."""

    def __init__(
        self,
        store: ModelStore,
        model_name: str = "faster-whisper-tiny.en",
        device: str | None = None,
        compute_type: str = "int8",
        batch_size: int = 8,
        beam_size: int = 5,
        threads: int = 2,
        chunk_s: float = 30.0,
        pad_s: float = 0.2,
        align: str = "auto",
    ) -> None:
        import torch
        import whisperx

        self.device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        model_dir = store.resolve(model_name).path
        # whisperx builds the WhisperModel; its own VAD is not used (the diarized turns gate the audio).
        pipeline = whisperx.load_model(
            str(model_dir),
            self.device,
            compute_type=compute_type,
            language="en",
            vad_model=_NoVad(),
            threads=threads,
            local_files_only=True,
        )
        self.model = pipeline.model
        self.batched = _carrying_pipeline(self.model)
        self.batch_size, self.beam_size = batch_size, beam_size
        self.chunk_s, self.pad_s = chunk_s, pad_s
        self.align_model = None
        self.word_timing = "faster-whisper"
        if align != "off" and _alignment_available():
            try:
                self.align_model, self.align_meta = whisperx.load_align_model("en", self.device)
                self.word_timing = "whisperx-align"
            except Exception as error:  # alignment is an optional refinement
                log.warning("whisperx alignment model unavailable (%s); using faster-whisper word timings", error)

    def __call__(self, audio: np.ndarray | Speech, turns: list[Turn]) -> tuple[list[Word], str]:
        """Words of `audio` (mono 16 kHz: an array, or `Speech` read a piece at a time) inside the
        speech of `turns`, with speakers; and the text."""
        return self.transcribe_many([(audio, turns)])[0]

    def transcribe_many(self, items: list[tuple[np.ndarray | Speech, list[Turn]]]) -> list[tuple[list[Word], str]]:
        """`__call__` of several sources, their pieces decoded in shared batches.

        The sources are read as one signal (`_JoinedSpeech`: each from a whole second, a second of
        silence or more between them), so that whisper's batches fill across them: on a GPU a
        batch of `batch_size` pieces costs about what one piece does, and short sources alone
        leave most of it empty. Each source's words come back on its own clock. What can differ
        from one source at a time, by small amounts: faster-whisper cuts a piece at
        int(start * 16000) and offsets its times by whole 10 ms frames, and on the joined clock
        those round down differently for some starts (a sample of audio, 10 ms of time); its word
        timing carries the last speech time from piece to piece, so the first word of a later
        source may be trimmed differently after a pause; and the batch around a piece changes its
        numbers by float rounding. One source per call is exactly the old path."""
        speeches = [_ArraySpeech(audio) if isinstance(audio, np.ndarray) else audio for audio, _ in items]
        joined = _JoinedSpeech(speeches)
        clips: list[dict] = []
        for speech, (_, turns), start in zip(speeches, items, joined.starts_s):
            clips += [
                {"start": c["start"] + start, "end": c["end"] + start}
                for c in self.clips(turns, speech.length / SAMPLE_RATE)
            ]
        per_source: list[list[dict]] = [[] for _ in items]
        for seg in self._segments(joined, clips) if clips else []:
            i = joined.part_at(seg["start"])
            per_source[i].append(_shifted(seg, -joined.starts_s[i]))
        return [
            self._words(speech, turns, segments) for speech, (_, turns), segments in zip(speeches, items, per_source)
        ]

    def _words(self, speech: Speech, turns: list[Turn], segments: list[dict]) -> tuple[list[Word], str]:
        """One source's decoded segments -> its words (aligned where the model is there, each
        given the speaker whose turn it overlaps most) and its text."""
        import whisperx

        if not segments:
            return [], ""
        result: dict[str, Any] = {"segments": segments, "language": "en"}
        if self.align_model is not None:
            result = self._align(speech, segments)
        result = whisperx.assign_word_speakers(_turns_frame(turns), result)
        words: list[Word] = []
        for seg in result["segments"]:
            for w in seg.get("words", []):
                if "start" not in w or not str(w.get("word", "")).strip():
                    continue  # whisperx leaves numbers it cannot align without times
                words.append(
                    Word(
                        str(w["word"]).strip(),
                        round(float(w["start"]), 3),
                        round(float(w["end"]), 3),
                        str(w.get("speaker") or _nearest_speaker(turns, float(w["start"]))),
                        round(float(w.get("score", 0.0)), 4),
                    )
                )
        text = " ".join(seg["text"].strip() for seg in result["segments"]).strip()
        return words, text

    def _segments(self, speech: Speech, clips: list[dict]) -> list[dict]:
        """faster-whisper's segments (with word timings) of the pieces `clips`, decoded
        `batch_size` pieces per call of the batched pipeline: one call over all of them would
        read every piece and compute every piece's 30 s log-mel features (about 1 MB each) first.
        The batches are the ones that call would make, and the last speech time its word timing
        carries from batch to batch is carried across the calls (`_carrying_pipeline`), so the
        words are the same."""
        audio = _span_audio(speech)
        self.batched.carried = 0.0
        segments: list[dict] = []
        for i in range(0, len(clips), self.batch_size):
            batch, _ = self.batched.transcribe(
                audio,
                language="en",
                clip_timestamps=clips[i : i + self.batch_size],
                word_timestamps=True,
                batch_size=self.batch_size,
                beam_size=self.beam_size,
                without_timestamps=True,
                vad_filter=False,
                condition_on_previous_text=False,
            )
            segments += [_segment_dict(seg) for seg in batch]
        return segments

    def _align(self, speech: Speech, segments: list[dict]) -> dict[str, Any]:
        """whisperx forced alignment of `segments`, each against its own span of the speech.

        whisperx aligns every segment on its own, slicing [start, end) out of the audio it is
        given; here that audio is the segment's span from the whole second at or before its start
        (so the shifted times are exact differences) to just past its end, and the times come
        back shifted by that second. They may differ from aligning against the whole signal by
        float rounding of the shift (a sample, a millisecond), not more."""
        import torch
        import whisperx

        aligned: list[dict] = []
        for seg in segments:
            origin = float(int(seg["start"]))
            first = int(origin) * SAMPLE_RATE
            stop = min(speech.length, int(seg["end"] * SAMPLE_RATE) + 2)
            window = torch.from_numpy(np.ascontiguousarray(speech.read(first, max(first, stop))))
            shifted = {**seg, "start": seg["start"] - origin, "end": seg["end"] - origin}
            out = whisperx.align(
                [shifted], self.align_model, self.align_meta, window, self.device, return_char_alignments=False
            )
            for piece in out["segments"]:
                aligned.append(_shifted(piece, origin))
        return {"segments": aligned, "word_segments": [w for seg in aligned for w in seg.get("words", [])]}

    def clips(self, turns: list[Turn], duration: float) -> list[dict]:
        """Speech regions (padded, merged) cut into chunks of at most `chunk_s` seconds."""
        from whisperx.vads.vad import Vad

        spans = sorted((max(0.0, t.start - self.pad_s), min(duration, t.end + self.pad_s)) for t in turns)
        merged: list[_Segment] = []
        for start, end in spans:
            if merged and start <= merged[-1].end:
                merged[-1] = _Segment(merged[-1].start, max(end, merged[-1].end))
            else:
                merged.append(_Segment(start, end))
        # A single region longer than a chunk is cut into pieces first (merge_chunks only joins).
        pieces = []
        for seg in merged:
            t = seg.start
            while seg.end - t > self.chunk_s:
                pieces.append(_Segment(t, t + self.chunk_s))
                t += self.chunk_s
            pieces.append(_Segment(t, seg.end))
        if not pieces:
            return []
        chunks = Vad.merge_chunks(pieces, self.chunk_s, onset=0.5, offset=None)
        # Rounding must not carry an end past the last sample: faster-whisper logs the audio left
        # out as duration - sum(clip lengths) through format_timestamp, which asserts it is >= 0,
        # so speech from the first sample to a last one 0.5 ms or less short of the next ms crashed.
        clips = [{"start": round(c["start"], 3), "end": min(duration, round(c["end"], 3))} for c in chunks]
        return [c for c in clips if c["end"] > c["start"]]


def _carrying_pipeline(model):
    """faster-whisper's batched pipeline over `model`, carrying its word timing's last speech time
    from one transcribe call to the next (from `carried`; one call resets it to 0 at its end)."""
    from faster_whisper import BatchedInferencePipeline

    class CarryingPipeline(BatchedInferencePipeline):
        carried = 0.0

        def forward(self, features, tokenizer, chunks_metadata, options):
            self.last_speech_timestamp = self.carried
            outputs = super().forward(features, tokenizer, chunks_metadata, options)
            self.carried = self.last_speech_timestamp
            return outputs

    return CarryingPipeline(model)


def _segment_dict(seg) -> dict:
    """A faster-whisper segment as whisperx's transcript segment."""
    words = [
        {"word": w.word.strip(), "start": float(w.start), "end": float(w.end), "score": float(w.probability)}
        for w in (seg.words or [])
        if w.word.strip()
    ]
    return {"start": float(seg.start), "end": float(seg.end), "text": seg.text.strip(), "words": words}


def _shifted(segment: dict, seconds: float) -> dict:
    """An aligned segment with its times (and its words' and characters') later by `seconds`."""

    def later(item: dict) -> dict:
        # Rounded to the microsecond: whole-second shifts must not leave float noise (2.9999999).
        return {k: round(v + seconds, 6) if k in ("start", "end") and v is not None else v for k, v in item.items()}

    out = later(segment)
    for key in ("words", "chars"):
        if isinstance(segment.get(key), list):
            out[key] = [later(item) for item in segment[key]]
    return out


class _NoVad:
    """Stands in for whisperx's VAD model (never called: clips come from the diarized turns)."""

    def __call__(self, *args, **kwargs):  # pragma: no cover - never used
        raise RuntimeError("the ASR stage gates audio with the diarized turns, not a VAD model")


def _alignment_available() -> bool:
    import torch

    return (Path(torch.hub.get_dir()) / "checkpoints" / ALIGN_CHECKPOINT).is_file() or bool(
        os.environ.get("VOXHEAR_WHISPERX_ALIGN")
    )


def _turns_frame(turns: list[Turn]):
    import pandas as pd

    return pd.DataFrame(
        [{"start": t.start, "end": t.end, "speaker": t.speaker} for t in turns], columns=["start", "end", "speaker"]
    )


def _nearest_speaker(turns: list[Turn], time: float) -> str:
    if not turns:
        return ""
    return min(
        turns, key=lambda t: 0.0 if t.start <= time <= t.end else min(abs(t.start - time), abs(t.end - time))
    ).speaker
