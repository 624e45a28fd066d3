"""Speech recognition: whisperx over the store's faster-whisper model, words attached to speakers.

Decoding is batched (faster-whisper's batched pipeline, CPU int8 by default) over the speech
regions found by diarization, merged into chunks of at most 30 s the way whisperx merges its VAD
segments. Word times come from whisperx's forced alignment when its alignment model is present
locally (torch hub cache), otherwise from faster-whisper's own cross-attention word timings. Each
word then gets the diarized speaker it overlaps most (`whisperx.assign_word_speakers`).
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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
        from faster_whisper import BatchedInferencePipeline

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
        self.batched = BatchedInferencePipeline(self.model)
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

    def __call__(self, audio: np.ndarray, turns: list[Turn]) -> tuple[list[Word], str]:
        """Words of `audio` (mono 16 kHz) inside the speech of `turns`, with speakers; and the text."""
        import whisperx

        clips = self.clips(turns, len(audio) / SAMPLE_RATE)
        if not clips:
            return [], ""
        segments, _ = self.batched.transcribe(
            audio.astype(np.float32),
            language="en",
            clip_timestamps=clips,
            word_timestamps=True,
            batch_size=self.batch_size,
            beam_size=self.beam_size,
            without_timestamps=True,
            vad_filter=False,
            condition_on_previous_text=False,
        )
        result: dict[str, Any] = {"segments": [], "language": "en"}
        for seg in segments:
            seg_words = [
                {"word": w.word.strip(), "start": float(w.start), "end": float(w.end), "score": float(w.probability)}
                for w in (seg.words or [])
                if w.word.strip()
            ]
            result["segments"].append(
                {"start": float(seg.start), "end": float(seg.end), "text": seg.text.strip(), "words": seg_words}
            )
        if self.align_model is not None and result["segments"]:
            result = whisperx.align(
                result["segments"], self.align_model, self.align_meta, audio, self.device, return_char_alignments=False
            )
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
