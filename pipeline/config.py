"""Run configuration: one YAML, validated into typed objects before any work starts.

A typo in a key must stop the run at once (config-key drift silently ignored is how a
long run ends up with default thresholds), so unknown keys are errors with a suggestion.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_SAMPLE = REPO_ROOT / "sample" / "videos"


# Every stage of the pipeline, in the order they run (see runner.build_stages).
STAGE_NAMES = ("ingest", "separation", "diarization", "asr", "scene_cut", "shot_media", "faces", "talk")
SEPARATION_BACKENDS = ("deepfilternet_onnx", "deepfilternet", "demucs")


class ConfigError(ValueError):
    """The configuration is invalid; the message says which key and why."""


@dataclass
class IngestConfig:
    """Probing and normalization of every input."""

    fps: int = 25
    sample_rate: int = 16000
    # Larger frames are scaled down once here so every later stage decodes less.
    max_height: int = 720
    # Frames above this many pixels are rejected before decoding (a 16k video would OOM a worker).
    max_pixels: int = 4096 * 2304
    min_duration_s: float = 1.0
    max_duration_s: float = 6 * 3600.0
    # Container frame rates outside this range are treated as broken metadata.
    min_fps: float = 5.0
    max_fps: float = 240.0
    keep_original_audio: bool = True
    video_crf: int = 18
    x264_preset: str = "veryfast"

    def validate(self) -> None:
        _require(self.fps > 0, "ingest.fps", "must be positive")
        _require(self.sample_rate in (8000, 16000, 22050, 24000, 44100, 48000),
                 "ingest.sample_rate", "must be a standard rate such as 16000")
        _require(self.max_height >= 64, "ingest.max_height", "must be at least 64")
        _require(self.min_duration_s >= 0, "ingest.min_duration_s", "must be >= 0")
        _require(self.max_duration_s > self.min_duration_s, "ingest.max_duration_s",
                 "must exceed min_duration_s")
        _require(0 < self.min_fps < self.max_fps, "ingest.min_fps", "must be in (0, max_fps)")
        _require(0 <= self.video_crf <= 51, "ingest.video_crf", "must be in [0, 51]")


@dataclass
class SceneCutConfig:
    """PySceneDetect settings."""

    detector: str = "content"
    # ContentDetector's default; AdaptiveDetector uses adaptive_threshold instead.
    threshold: float = 27.0
    adaptive_threshold: float = 3.0
    downscale_width: int = 320
    min_shot_s: float = 1.0

    def validate(self) -> None:
        _require(self.detector in ("content", "adaptive"), "scene_cut.detector",
                 "must be 'content' or 'adaptive'")
        _require(self.threshold > 0, "scene_cut.threshold", "must be positive")
        _require(self.downscale_width >= 32, "scene_cut.downscale_width", "must be >= 32")
        _require(self.min_shot_s >= 0, "scene_cut.min_shot_s", "must be >= 0")


@dataclass
class ShardConfig:
    """WebDataset shard limits; a shard is closed when either is reached."""

    max_samples: int = 1000
    max_megabytes: float = 1024.0
    # Commit at least this often (closing a shard early) so a killed run loses little work.
    commit_every_s: float = 120.0
    # Identity-disjoint splits (voxhear.splits): target shares of clip time for val and test
    # (train gets the rest), and the seed that orders identities.
    val_share: float = 0.1
    test_share: float = 0.1
    split_seed: int = 0

    def validate(self) -> None:
        _require(self.max_samples >= 1, "shards.max_samples", "must be >= 1")
        _require(self.val_share >= 0 and self.test_share >= 0 and self.val_share + self.test_share < 1,
                 "shards.val_share", "and test_share must be >= 0 and leave a share for train")
        _require(self.max_megabytes > 0, "shards.max_megabytes", "must be positive")
        _require(self.commit_every_s > 0, "shards.commit_every_s", "must be positive")


@dataclass
class RayConfig:
    """Where and how the Ray runner executes."""

    # None starts a local Ray; "auto" or "ray://host:10001" joins a cluster. RAY_ADDRESS also works.
    address: str | None = None
    # Only for a local Ray: cap the CPUs it may use.
    num_cpus: int | None = None
    # Upper bound of each actor pool (stages that load models); None lets Ray size it.
    max_actors_per_stage: int | None = None

    def validate(self) -> None:
        _require(self.num_cpus is None or self.num_cpus >= 1, "ray.num_cpus", "must be >= 1")


@dataclass
class ModelsConfig:
    """Model store: explicit paths win over `dir`, which wins over VOXHEAR_MODEL_DIR."""

    dir: str | None = None
    paths: dict[str, str] = field(default_factory=dict)
    allow_download: bool = True

    def validate(self) -> None:
        return None


@dataclass
class FaceConfig:
    """Face stage: detection, tracking, landmarks, crop video and identity (docs/benchmarks/faces.md)."""

    # "yunet" (MIT) or "insightface" (SCRFD det_500m; non-commercial research licence).
    detector: str = "yunet"
    # Run the detector on every k-th frame (and the shot's last); tracks interpolate in between.
    # 5 lost nothing against 1 on the tuning benchmark (docs/benchmarks/faces.md); fast motion may want 2-3.
    detect_every: int = 5
    # Frames are shrunk so their longer side is at most this before detection.
    detect_max_side: int = 640
    # Detections above score_threshold extend tracks; only those above new_track_score start one.
    score_threshold: float = 0.5
    new_track_score: float = 0.7
    nms_threshold: float = 0.3
    track_iou: float = 0.3
    # Gaps up to this long are bridged (interpolated); longer ones end the track.
    max_gap_s: float = 0.5
    # Tracks shorter than this are dropped (reason track_too_short).
    min_track_s: float = 1.0
    # Tracks whose median face height is below this are dropped (reason face_too_small).
    min_face_px: float = 48.0
    # Tracks whose median |yaw| exceeds this are dropped (reason profile_view).
    max_abs_yaw: float = 60.0
    # Tracks with landmarks on fewer than this share of frames are dropped (reason landmarks_lost).
    min_landmark_fraction: float = 0.5
    crop_size: int = 512
    # Crop side as a multiple of the face box's larger side; the centre is smoothed over crop_smooth_s.
    crop_scale: float = 1.6
    crop_smooth_s: float = 0.2
    crop_crf: int = 20
    crop_preset: str = "veryfast"
    # "dlib" (128-d) or "arcface" (needs an insightface-arcface model in the store).
    embedder: str = "dlib"
    # Embeddings per track (best-detected frame of each part); their spread flags identity switches.
    embed_samples: int = 3
    # Clusters of tracks merge while their average embedding distance is below this (dlib,
    # tuned between same-person and different-person track distances on the tuning seeds).
    identity_threshold: float = 0.47
    # onnxruntime threads of the detector per worker.
    threads: int = 1
    # GPUs per face worker on a cluster (0: CPU). Above 0 the worker asks Ray for that share of
    # a GPU and SCRFD runs on onnxruntime's CUDA provider when onnxruntime-gpu is installed.
    gpus: float = 0.0

    def validate(self) -> None:
        _require(self.detector in ("yunet", "insightface"), "faces.detector", "must be 'yunet' or 'insightface'")
        _require(self.detect_every >= 1, "faces.detect_every", "must be >= 1")
        _require(self.detect_max_side >= 64, "faces.detect_max_side", "must be >= 64")
        _require(0 < self.score_threshold <= self.new_track_score <= 1, "faces.score_threshold",
                 "must satisfy 0 < score_threshold <= new_track_score <= 1")
        _require(0 < self.nms_threshold < 1, "faces.nms_threshold", "must be in (0, 1)")
        _require(0 < self.track_iou < 1, "faces.track_iou", "must be in (0, 1)")
        _require(self.max_gap_s >= 0, "faces.max_gap_s", "must be >= 0")
        _require(self.min_track_s >= 0, "faces.min_track_s", "must be >= 0")
        _require(self.min_face_px >= 0, "faces.min_face_px", "must be >= 0")
        _require(0 < self.max_abs_yaw <= 180, "faces.max_abs_yaw", "must be in (0, 180]")
        _require(0 <= self.min_landmark_fraction <= 1, "faces.min_landmark_fraction", "must be in [0, 1]")
        _require(self.crop_size >= 64 and self.crop_size % 2 == 0, "faces.crop_size", "must be even and >= 64")
        _require(self.crop_scale >= 1.0, "faces.crop_scale", "must be >= 1")
        _require(self.crop_smooth_s >= 0, "faces.crop_smooth_s", "must be >= 0")
        _require(0 <= self.crop_crf <= 51, "faces.crop_crf", "must be in [0, 51]")
        _require(self.embedder in ("dlib", "arcface"), "faces.embedder", "must be 'dlib' or 'arcface'")
        _require(self.embed_samples >= 1, "faces.embed_samples", "must be >= 1")
        _require(self.identity_threshold > 0, "faces.identity_threshold", "must be positive")
        _require(self.threads >= 1, "faces.threads", "must be >= 1")
        _require(self.gpus >= 0, "faces.gpus", "must be >= 0")


@dataclass
class SeparationConfig:
    """Speech/background separation (docs/benchmarks/audio.md)."""

    # "deepfilternet_onnx" (default): DeepFilterNet3's ONNX graphs through onnxruntime over many
    # frames per call, CPU; "deepfilternet": the same model streamed frame by frame through libDF's
    # C runtime (same output within 1e-5, about 7x slower); "demucs" (htdemucs family; needs its
    # weights in the model store).
    backend: str = "deepfilternet_onnx"
    # DeepFilterNet (both runtimes): attenuation limit in dB (100: none) and post-filter strength (0: off).
    atten_lim_db: float = 100.0
    post_filter_beta: float = 0.0
    # Demucs: model name in the store, chunk overlap, chunk length in s (0: the model's own).
    demucs_model: str = "htdemucs"
    demucs_overlap: float = 0.25
    demucs_segment_s: float = 0.0
    # Threads per worker (torch for Demucs, onnxruntime for deepfilternet_onnx; more than the
    # worker's CPUs thrash); GPUs per worker on a cluster (Demucs only; 0: CPU).
    threads: int = 1
    gpus: float = 0.0

    def validate(self) -> None:
        _require(self.backend in SEPARATION_BACKENDS, "separation.backend",
                 "must be one of " + ", ".join(f"'{b}'" for b in SEPARATION_BACKENDS))
        _require(self.atten_lim_db > 0, "separation.atten_lim_db", "must be positive")
        _require(0 <= self.post_filter_beta <= 1, "separation.post_filter_beta", "must be in [0, 1]")
        _require(0 <= self.demucs_overlap < 1, "separation.demucs_overlap", "must be in [0, 1)")
        _require(self.demucs_segment_s >= 0, "separation.demucs_segment_s", "must be >= 0")
        _require(self.threads >= 1, "separation.threads", "must be >= 1")
        _require(self.gpus >= 0, "separation.gpus", "must be >= 0")


@dataclass
class DiarizationConfig:
    """pyannote diarization of the separated speech (docs/benchmarks/audio.md)."""

    # "campplus": pyannote SpeakerDiarization with the store's CAM++ embedding; "official": the
    # store's pyannote-speaker-diarization-3.1 pipeline unchanged (needs its WeSpeaker model).
    pipeline: str = "campplus"
    # Step between 10 s segmentation windows, as a share of the window.
    segmentation_step: float = 0.5
    # Agglomerative clustering (centroid linkage, cosine distance) of the CAM++ embeddings.
    threshold: float = 0.6
    min_cluster_size: int = 2
    min_duration_off: float = 0.0
    # Each (window, speaker) embedding uses at most this much of the speaker's active audio.
    embedding_max_s: float = 4.0
    # CAM++ runtime on CPU: "onnx" (exported once into the cache and checked against torch at
    # setup; about 2x cheaper, same embeddings to 1e-6) or "torch". A GPU always uses torch.
    embedding_backend: str = "onnx"
    # Turns re-labelled by their own embedding (k-means from pyannote's labels, this many rounds;
    # 0: off); turns shorter than refine_min_s keep their label.
    refine_iterations: int = 3
    refine_min_s: float = 0.5
    # Known speaker count bounds (0: unknown).
    min_speakers: int = 0
    max_speakers: int = 0
    # Turns shorter than this are dropped; sources with less speech than min_speech_s are filtered.
    min_turn_s: float = 0.1
    min_speech_s: float = 0.5
    # torch threads per worker, and onnxruntime threads of CAM++ on CPU: one per CPU the worker
    # asks for (oversubscribed OpenMP thrashes).
    threads: int = 1
    gpus: float = 0.0

    def validate(self) -> None:
        _require(self.pipeline in ("campplus", "official"), "diarization.pipeline", "must be 'campplus' or 'official'")
        _require(0 < self.segmentation_step <= 1, "diarization.segmentation_step", "must be in (0, 1]")
        _require(0 < self.threshold < 2, "diarization.threshold", "must be in (0, 2)")
        _require(self.min_cluster_size >= 1, "diarization.min_cluster_size", "must be >= 1")
        _require(self.min_duration_off >= 0, "diarization.min_duration_off", "must be >= 0")
        _require(self.embedding_max_s >= 0.5, "diarization.embedding_max_s", "must be >= 0.5")
        _require(self.embedding_backend in ("onnx", "torch"), "diarization.embedding_backend",
                 "must be 'onnx' or 'torch'")
        _require(self.refine_iterations >= 0, "diarization.refine_iterations", "must be >= 0")
        _require(self.refine_min_s >= 0.1, "diarization.refine_min_s", "must be >= 0.1")
        _require(self.min_speakers >= 0 and self.max_speakers >= 0, "diarization.min_speakers", "must be >= 0")
        _require(not (self.min_speakers and self.max_speakers) or self.min_speakers <= self.max_speakers,
                 "diarization.max_speakers", "must be >= min_speakers")
        _require(self.min_turn_s >= 0 and self.min_speech_s >= 0, "diarization.min_speech_s", "must be >= 0")
        _require(self.threads >= 1, "diarization.threads", "must be >= 1")
        _require(self.gpus >= 0, "diarization.gpus", "must be >= 0")


@dataclass
class AsrConfig:
    """whisperx/faster-whisper speech recognition (docs/benchmarks/audio.md)."""

    model: str = "faster-whisper-tiny.en"
    compute_type: str = "int8"
    batch_size: int = 8
    beam_size: int = 5
    # Seconds of context added around every diarized turn before decoding.
    pad_s: float = 0.2
    # Neighbouring turns are decoded together while their clip stays this short (at most 30 s).
    clip_s: float = 5.0
    # "auto": whisperx forced alignment when its model is cached locally, else faster-whisper's word
    # timings; "off": always faster-whisper's.
    align: str = "auto"
    threads: int = 1
    gpus: float = 0.0

    def validate(self) -> None:
        _require(self.compute_type in ("int8", "int8_float16", "float16", "float32", "default"),
                 "asr.compute_type", "must be int8, int8_float16, float16, float32 or default")
        _require(self.batch_size >= 1, "asr.batch_size", "must be >= 1")
        _require(self.beam_size >= 1, "asr.beam_size", "must be >= 1")
        _require(self.pad_s >= 0, "asr.pad_s", "must be >= 0")
        _require(0 < self.clip_s <= 30, "asr.clip_s", "must be in (0, 30]")
        _require(self.align in ("auto", "off"), "asr.align", "must be 'auto' or 'off'")
        _require(self.threads >= 1, "asr.threads", "must be >= 1")
        _require(self.gpus >= 0, "asr.gpus", "must be >= 0")


@dataclass
class TalkConfig:
    """Talk/listen stage: active speaker, attribution, self/other/background tracks, clips and the
    quality filter (docs/benchmarks/talk.md). Every threshold below names the reject reason it sets."""

    # Clips are windows of one face track: tracks shorter than min_clip_s give no clip; longer
    # than max_clip_s are cut into equal windows.
    min_clip_s: float = 2.0
    max_clip_s: float = 20.0
    # Attribution (stages/talk/attribution.py): a diarized speaker is the on-screen person when
    # the face's mean Light-ASD logit over that speaker's solo speech reaches asd_threshold; a
    # mean within asd_band of the threshold, or a runner-up speaker within asd_runner_up_margin
    # of the best, makes the track `ambiguous_speaker`.
    asd_threshold: float = 1.5
    asd_band: float = 0.75
    asd_runner_up_margin: float = 1.0
    # Evidence needs at least this much of a speaker's solo speech inside the track.
    min_evidence_s: float = 0.4
    # Turns are widened by this much on each side before they become frame states and audio
    # masks (diarization clips word onsets), with raised-cosine edges of mask_ramp_s.
    turn_pad_s: float = 0.1
    mask_ramp_s: float = 0.02
    # Quality filter (reasons in parentheses).
    min_face_px: float = 64.0            # face_too_small: median face box height in source pixels
    max_abs_yaw: float = 45.0            # pose_not_frontal: 90th percentile |yaw| in degrees
    max_abs_pitch: float = 35.0          # pose_not_frontal: median |pitch|
    min_blur_var: float = 8.0            # blurry: variance of Laplacian of the 256 px crop
    min_landmark_confidence: float = 0.5  # low_landmark_confidence: mean per-frame mesh/box IoU
    min_landmark_fraction: float = 0.8   # low_landmark_confidence: share of frames with a mesh
    min_speech_share: float = 0.3        # too_little_speech: share of frames with anyone talking
    require_listening: bool = False      # no_listening: clips must contain listening
    min_listen_s: float = 1.0
    max_overlap_share: float = 0.3       # overlap_too_high: overlapped share of speech frames
    max_background_excess_db: float = 10.0  # separation_leakage: see ClipRecord.background_excess_db
    max_embedding_spread: float = 0.6    # identity_switch: largest distance between a track's embeddings
    # torch threads per worker; GPUs per worker on a cluster (Light-ASD).
    threads: int = 1
    gpus: float = 0.0

    def validate(self) -> None:
        _require(0 < self.min_clip_s, "talk.min_clip_s", "must be positive")
        _require(self.max_clip_s >= 2 * self.min_clip_s, "talk.max_clip_s",
                 "must be at least twice min_clip_s (so long tracks split into windows within range)")
        _require(self.asd_band >= 0 and self.asd_runner_up_margin >= 0, "talk.asd_band",
                 "and asd_runner_up_margin must be >= 0")
        _require(self.min_evidence_s > 0, "talk.min_evidence_s", "must be positive")
        _require(self.turn_pad_s >= 0 and self.mask_ramp_s >= 0, "talk.turn_pad_s", "must be >= 0")
        for key in ("min_speech_share", "max_overlap_share", "min_landmark_fraction", "min_landmark_confidence"):
            _require(0 <= getattr(self, key) <= 1, f"talk.{key}", "must be in [0, 1]")
        _require(0 < self.max_abs_yaw <= 180 and 0 < self.max_abs_pitch <= 180, "talk.max_abs_yaw",
                 "and max_abs_pitch must be in (0, 180]")
        _require(self.threads >= 1, "talk.threads", "must be >= 1")
        _require(self.gpus >= 0, "talk.gpus", "must be >= 0")


@dataclass
class RunConfig:
    """Everything one run needs; saved resolved into the run directory."""

    inputs: list[str] = field(default_factory=lambda: [str(BUNDLED_SAMPLE)])
    # Which stages run, in pipeline order; leaving out later stages stops the pipeline early
    # (e.g. [ingest, scene_cut, shot_media] writes one sample per shot).
    stages: list[str] = field(default_factory=lambda: list(STAGE_NAMES))
    run_dir: str = "runs/default"
    runner: str = "ray"
    # Retry inputs that failed in an earlier attempt of this run directory.
    retry_failed: bool = False
    # Stop the run when more than this share of inputs fail (after at least min_inputs_for_failure_rate).
    max_failure_rate: float = 0.5
    min_inputs_for_failure_rate: int = 10
    ingest: IngestConfig = field(default_factory=IngestConfig)
    scene_cut: SceneCutConfig = field(default_factory=SceneCutConfig)
    separation: SeparationConfig = field(default_factory=SeparationConfig)
    diarization: DiarizationConfig = field(default_factory=DiarizationConfig)
    asr: AsrConfig = field(default_factory=AsrConfig)
    faces: FaceConfig = field(default_factory=FaceConfig)
    talk: TalkConfig = field(default_factory=TalkConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)

    def validate(self) -> None:
        _require(len(self.inputs) > 0, "inputs", "needs at least one path, glob, directory or list file")
        _require(self.runner in ("ray", "local"), "runner", "must be 'ray' or 'local'")
        _require(0 < self.max_failure_rate <= 1, "max_failure_rate", "must be in (0, 1]")
        unknown = [name for name in self.stages if name not in STAGE_NAMES]
        _require(not unknown, "stages", f"has unknown stages {unknown}; known, in order: {list(STAGE_NAMES)}")
        _require(list(self.stages) == [n for n in STAGE_NAMES if n in self.stages], "stages",
                 f"must list stages once each in pipeline order {list(STAGE_NAMES)}")
        _require(self.stages[:1] == ["ingest"], "stages", "must start with 'ingest'")
        _require("shot_media" in self.stages, "stages", "must include 'shot_media' (it writes the samples)")
        for section in (self.ingest, self.separation, self.diarization, self.asr, self.scene_cut, self.faces,
                        self.talk, self.shards, self.ray, self.models):
            section.validate()

    def processing_sections(self) -> dict[str, Any]:
        """The parts of the config that change what a run produces (resume must not mix them)."""
        sections = {name: dataclasses.asdict(getattr(self, name))
                    for name in ("ingest", "separation", "diarization", "asr", "scene_cut", "faces", "talk")}
        return {"stages": list(self.stages), **sections}


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"config key '{key}' {message}")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Load YAML (or the embedded defaults), apply `key=value` overrides and validate.

    Args:
        path: YAML file; None means the embedded defaults.
        overrides: dotted `key=value` strings; values are parsed as YAML scalars or lists.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        data = loaded or {}
    for item in overrides:
        _apply_override(data, item)
    config = _build(RunConfig, data, "")
    config.validate()
    return config


def _apply_override(data: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{item}': '{part}' is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.') or '<top>'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}; known: {', '.join(names)}")
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, key)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, f"{key}.")
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list")
        (item_type,) = typing.get_args(tp)
        return [_coerce(item_type, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping")
        _, item_type = typing.get_args(tp)
        return {str(k): _coerce(item_type, v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if value is None or isinstance(value, (dict, list)):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return str(value)
    raise ConfigError(f"config key '{key}' has an unsupported type {tp}")


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: RunConfig, path: Path) -> None:
    from voxhear.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
