"""Config section of the face stage (docs/benchmarks/faces.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from voxhear.pipeline.settings import require, setting
from voxhear.stages.media import X264_PRESETS


@dataclass
class FaceConfig:
    """Face stage: detection, tracking, landmarks, crop video and identity (docs/benchmarks/faces.md)."""

    # The talk stage bounds a 90th percentile of |yaw|; this one bounds the median.
    RENAMED: ClassVar[dict[str, str]] = {"max_abs_yaw": "max_median_abs_yaw"}

    # "yunet" (MIT) or "insightface" (SCRFD det_500m; non-commercial research licence).
    detector: str = setting("yunet", choices=("yunet", "insightface"))
    # Run the detector on every k-th frame (and the shot's last); tracks interpolate in between.
    # 5 lost nothing against 1 on the tuning benchmark (docs/benchmarks/faces.md); fast motion may want 2-3.
    detect_every: int = setting(5, ge=1)
    # Frames are shrunk so their longer side is at most this before detection.
    detect_max_side: int = setting(640, ge=64)
    # Detections above score_threshold extend tracks; only those above new_track_score start one.
    score_threshold: float = setting(0.5, gt=0, le=1)
    new_track_score: float = setting(0.7, gt=0, le=1)
    nms_threshold: float = setting(0.3, gt=0, lt=1)
    track_iou: float = setting(0.3, gt=0, lt=1)
    # Gaps up to this long are bridged (interpolated); longer ones end the track.
    max_gap_s: float = setting(0.5, ge=0)
    # Tracks shorter than this are dropped (reason track_too_short).
    min_track_s: float = setting(1.0, ge=0)
    # Tracks whose median face height is below this are dropped (reason face_too_small).
    min_face_px: float = setting(48.0, ge=0)
    # Tracks whose median |yaw| exceeds this are dropped (reason profile_view).
    max_median_abs_yaw: float = setting(60.0, gt=0, le=180)
    # Tracks with landmarks on fewer than this share of frames are dropped (reason landmarks_lost).
    min_landmark_fraction: float = setting(0.5, ge=0, le=1)
    crop_size: int = setting(512, ge=64, even=True)
    # Crop side as a multiple of the face box's larger side; the centre is smoothed over crop_smooth_s.
    crop_scale: float = setting(1.6, ge=1)
    crop_smooth_s: float = setting(0.2, ge=0)
    crop_crf: int = setting(20, ge=0, le=51)
    crop_preset: str = setting("veryfast", choices=X264_PRESETS)
    # A keyframe every this many seconds of the crop video, and only there: the talk stage cuts
    # clip samples from the crop on that grid without re-encoding them. 0: the encoder's choice
    # (clips are then re-encoded). Measured on a 60 s track at crf 20: 1 s makes the crop 42%
    # larger than the encoder's own keyframes, 2 s 18%, 5 s 4%.
    crop_keyframe_s: float = setting(5.0, ge=0)
    # "dlib" (128-d) or "arcface" (needs an insightface-arcface model in the store).
    embedder: str = setting("dlib", choices=("dlib", "arcface"))
    # Embeddings per track (best-detected frame of each part); their spread flags identity switches.
    embed_samples: int = setting(3, ge=1)
    # Clusters of tracks merge while their average embedding distance is below this (dlib,
    # tuned between same-person and different-person track distances on the tuning seeds).
    identity_threshold: float = setting(0.47, gt=0)
    # onnxruntime threads of the detector per worker (and the CPUs the worker asks for).
    threads: int = setting(1, ge=1)
    # GPUs per face worker on a cluster (0: CPU). Above 0 the worker asks Ray for that share of
    # a GPU and SCRFD runs on onnxruntime's CUDA provider when onnxruntime-gpu is installed.
    gpus: float = setting(0.0, ge=0)
    # Memory one worker of this stage holds, declared to Ray so that a node gets no more workers than
    # fit (a worker's peak was 538 MB on `voxhear bench interview-60s`; it does not grow with the
    # input's length). 0 declares nothing.
    memory_gb: float = setting(1.0, ge=0)

    def check(self) -> None:
        require(
            self.score_threshold <= self.new_track_score,
            "faces.score_threshold",
            "must not exceed faces.new_track_score",
        )
