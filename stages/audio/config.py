"""Config sections of the audio stages (separation, diarization, asr); see docs/benchmarks/audio.md."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from voxhear.pipeline.settings import require, setting

SEPARATION_BACKENDS = ("deepfilternet_onnx", "deepfilternet", "demucs")


@dataclass
class SeparationConfig:
    """Speech/background separation (docs/benchmarks/audio.md)."""

    # "deepfilternet_onnx" (default): DeepFilterNet3's ONNX graphs through onnxruntime over many
    # frames per call, CPU; "deepfilternet": the same model streamed frame by frame through libDF's
    # C runtime (same output within 1e-5, about 7x slower); "demucs" (htdemucs family; needs its
    # weights in the model store).
    backend: str = setting("deepfilternet_onnx", choices=SEPARATION_BACKENDS)
    # DeepFilterNet (both runtimes): attenuation limit in dB (100: none) and post-filter strength (0: off).
    # The limit keeps 10^(-atten_lim_db/20) of the mix in the speech (12 dB: a quarter of its
    # amplitude): the separated speech scores 1.9-2.1 dB higher on the realistic sets and GRID's
    # labels improve, but the held-out realistic set's labels do not (docs/design/
    # real-people-labels.md, item 26), so it is off by default.
    atten_lim_db: float = setting(100.0, gt=0)
    post_filter_beta: float = setting(0.0, ge=0, le=1)
    # Demucs: model name in the store, chunk overlap, chunk length in s (0: the model's own).
    demucs_model: str = "htdemucs"
    demucs_overlap: float = setting(0.25, ge=0, lt=1)
    demucs_segment_s: float = setting(0.0, ge=0)
    # The separator's residue returned to the speech (stages/audio/residue.py): the part of the
    # background that the speech's current and residue_taps - 1 earlier STFT frames (16 ms apart)
    # predict, by least squares with a ridge of residue_ridge. 0: off (the separator's speech as it is).
    residue_taps: int = setting(16, ge=0)
    residue_ridge: float = setting(1e-3, gt=0)
    # Threads per worker (torch for Demucs, onnxruntime for deepfilternet_onnx; more than the
    # worker's CPUs thrash); GPUs per worker on a cluster (Demucs only; 0: CPU).
    threads: int = setting(1, ge=1)
    gpus: float = setting(0.0, ge=0)
    # Memory one worker of this stage holds, declared to Ray so that a node gets no more workers than
    # fit (a worker's peak was 424 MB on `voxhear bench interview-60s`; it does not grow with the
    # input's length). 0 declares nothing.
    memory_gb: float = setting(1.0, ge=0)


@dataclass
class DiarizationConfig:
    """pyannote diarization of the separated speech (docs/benchmarks/audio.md)."""

    # "campplus": pyannote SpeakerDiarization with the store's CAM++ embedding; "official": the
    # store's pyannote-speaker-diarization-3.1 pipeline unchanged (needs its WeSpeaker model).
    pipeline: str = setting("campplus", choices=("campplus", "official"))
    # What is diarized: "speech" (the separated speech when the separation stage ran, else the
    # mix), "mix" (always the normalized mix; the separator removes soft speech) or "both" (speech
    # found and segmented in the mix, voices embedded from the separated speech). Measured on
    # composed GRID and real-people sets in the README ("Real people"): speech is best on GRID,
    # mix on real people, both in between on each.
    input: str = setting("speech", choices=("speech", "mix", "both"))
    # With input mix or both: each turn keeps only its runs where the separated speech's power is
    # within this many dB of the mix's (stages/audio/speech_gate.py: music read as speech is
    # dropped, soft speech the separator only weakens is kept). None: off.
    speech_gate_db: float | None = None
    # Step between 10 s segmentation windows, as a share of the window.
    segmentation_step: float = setting(0.5, gt=0, le=1)
    # Agglomerative clustering (centroid linkage, cosine distance) of the CAM++ embeddings.
    threshold: float = setting(0.6, gt=0, lt=2)
    min_cluster_size: int = setting(2, ge=1)
    min_duration_off: float = setting(0.0, ge=0)
    # Each (window, speaker) embedding uses at most this much of the speaker's active audio.
    embedding_max_s: float = setting(4.0, ge=0.5)
    # CAM++ runtime on CPU: "onnx" (exported once into the cache and checked against torch at
    # setup; about 2x cheaper, same embeddings to 1e-6) or "torch". A GPU always uses torch.
    embedding_backend: str = setting("onnx", choices=("onnx", "torch"))
    # Turns re-labelled by their own embedding (k-means from pyannote's labels, this many rounds;
    # 0: off); turns shorter than refine_min_s keep their label.
    refine_iterations: int = setting(3, ge=0)
    refine_min_s: float = setting(0.5, ge=0.1)
    # Turns of at least two windows of this many seconds are cut where the speaker of their
    # sliding windows changes (0: off; Diarizer._resegment, design doc item 31). Off: it lowers
    # DER on the audio-only sets and the realistic tuning set, not on the realistic reporting set.
    resegment_window_s: float = setting(0.0, ge=0)
    # After refinement, speakers whose whole-turn embedding centroids are closer than this
    # (cosine distance) are one person split by the window-level clustering and are merged
    # (0: off; see stages/audio/diarization.merge_close_speakers).
    merge_threshold: float = setting(0.4, ge=0, lt=2)
    # Inputs longer than 1.5 windows are diarized window by window (0: always whole): pyannote's
    # clustering keeps every pair of its embeddings, memory growing with the length squared.
    # Each window's speakers are joined across windows while their whole-turn centroids are
    # closer than link_threshold (cosine distance; two speakers of one window are never joined).
    window_s: float = setting(600.0, ge=0)
    link_threshold: float = setting(0.4, gt=0, lt=2)
    # Known speaker count bounds (0: unknown).
    min_speakers: int = setting(0, ge=0)
    max_speakers: int = setting(0, ge=0)
    # Also find where two or more voices talk at once in the mix (pyannote's segmentation and
    # speaker count only, about 0.045 CPU s per audio s), whatever `input` is: on the separated
    # speech diarization finds 16-28% of the overlapped time of the realistic sets, the mix's
    # segmentation 38-57% (README, "Real people"). Written to overlap.rttm; the talk stage gives
    # each region to the party its turns lack there (talk.heard_overlap_logit).
    mix_overlap: bool = True
    # How that overlap is heard: the segmentation's 10 s chunks step by overlap_step of their
    # length, and a frame is overlapped where the mean number of local speakers over the chunks
    # covering it is at least overlap_min_count (0.5 and 1.5 are the count pyannote's diarization
    # rounds at the default segmentation_step; 0.1 and 1.2 hear 62% of the realistic tuning set's
    # overlap instead of 52%, at a precision of 0.77 instead of 0.81, for 0.045 instead of 0.008
    # CPU s per audio second). Independent of segmentation_step and of the pipeline.
    overlap_step: float = setting(0.1, gt=0, le=1)
    overlap_min_count: float = setting(1.2, gt=1, le=2)
    # Each overlap region heard in the mix where the turns hold one speaker gets a turn of the
    # speaker of the nearest other turn, at most this many seconds away, so that turns.rttm is
    # overlap-aware (diarization.with_overlap_turns). None: overlap.rttm only. Needs mix_overlap.
    overlap_neighbour_s: float | None = setting(2.0, ge=0)
    # Turns shorter than this are dropped; sources with less speech than min_speech_s are filtered.
    min_turn_s: float = setting(0.1, ge=0)
    min_speech_s: float = setting(0.5, ge=0)
    # torch threads per worker, and onnxruntime threads of CAM++ on CPU: one per CPU the worker
    # asks for (oversubscribed OpenMP thrashes).
    threads: int = setting(1, ge=1)
    gpus: float = setting(0.0, ge=0)
    # Memory one worker of this stage holds, declared to Ray so that a node gets no more workers than
    # fit (a worker's peak was 1212 MB on `voxhear bench interview-60s`; it does not grow with the
    # input's length). 0 declares nothing.
    memory_gb: float = setting(2.0, ge=0)

    def check(self) -> None:
        require(
            not (self.min_speakers and self.max_speakers) or self.min_speakers <= self.max_speakers,
            "diarization.max_speakers",
            "must be >= min_speakers",
        )
        # Shorter windows than a few of pyannote's 10 s chunks leave too little audio to cluster.
        require(self.window_s == 0 or self.window_s >= 30, "diarization.window_s", "must be 0 (off) or at least 30")
        # The separated speech is rarely louder than the mix: a positive bound would drop nearly all speech.
        require(
            self.speech_gate_db is None or self.speech_gate_db <= 0,
            "diarization.speech_gate_db",
            "must be null (off) or at most 0 (dB of the mix's power)",
        )


@dataclass
class AsrConfig:
    """whisperx/faster-whisper speech recognition (docs/benchmarks/audio.md)."""

    # "clip" names the output samples elsewhere; the ASR's decoding unit is a piece.
    RENAMED: ClassVar[dict[str, str]] = {"clip_s": "piece_s"}

    model: str = "faster-whisper-tiny.en"
    compute_type: str = setting("int8", choices=("int8", "int8_float16", "float16", "float32", "default"))
    batch_size: int = setting(8, ge=1)
    beam_size: int = setting(5, ge=1)
    # Seconds of context added around every diarized turn before decoding.
    pad_s: float = setting(0.2, ge=0)
    # Neighbouring turns are decoded together while their piece stays this short (at most 30 s).
    piece_s: float = setting(5.0, gt=0, le=30)
    # "auto": whisperx forced alignment when its model is cached locally, else faster-whisper's word
    # timings; "off": always faster-whisper's.
    align: str = setting("auto", choices=("auto", "off"))
    # Sources per call of the stage on the Ray runner (its batch of rows; the in-process runner
    # takes one source at a time); their pieces share whisper's batches of `batch_size`. Worth
    # more than 1 on a GPU, where a batch costs about what one piece does and a short source alone
    # leaves most of it empty; on CPU the cost is per piece either way. Each call holds its
    # sources on one worker until all are done, so keep it near the sources a worker should share.
    rows_per_call: int = setting(1, ge=1)
    threads: int = setting(1, ge=1)
    gpus: float = setting(0.0, ge=0)
    # Memory one worker of this stage holds, declared to Ray so that a node gets no more workers than
    # fit (a worker's peak was 1679 MB on `voxhear bench interview-60s`; it does not grow with the
    # input's length). 0 declares nothing.
    memory_gb: float = setting(2.5, ge=0)
