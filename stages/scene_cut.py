"""Scene cut: split each normalized source into shots with PySceneDetect."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from voxhear.pipeline.records import STATUS_FILTERED, ShotRecord, SourceRecord, sample_key
from voxhear.pipeline.settings import setting
from voxhear.pipeline.stage import Bound, RejectReason, Stage

# Shorter than this (seconds) and two cuts are one cut; keeps flash frames from making shots.
MIN_CUT_GAP_S = 0.4


@dataclass
class SceneCutConfig:
    """PySceneDetect settings."""

    detector: str = setting("content", choices=("content", "adaptive"))
    # ContentDetector's default; AdaptiveDetector uses adaptive_threshold instead.
    threshold: float = setting(27.0, gt=0)
    adaptive_threshold: float = setting(3.0, gt=0)
    downscale_width: int = setting(320, ge=32)
    min_shot_s: float = setting(1.0, ge=0)


class SceneCutStage(Stage[SourceRecord, ShotRecord]):
    name = "scene_cut"
    input_type = SourceRecord
    output_type = ShotRecord
    config_class = SceneCutConfig
    requires = ("ingest",)
    reasons = (
        RejectReason(
            "shot_too_short",
            ("scene_cut.min_shot_s",),
            "shot shorter than the bound",
            (Bound("scene_cut.min_shot_s", "clips", "shot_s", "min"),),
        ),
    )

    config: SceneCutConfig

    def process(self, row: SourceRecord) -> list[ShotRecord]:
        bounds = detect_shots(row.video_uri, row.norm_width, row.norm_fps, self.config)
        if not bounds:
            bounds = [(0, row.n_frames)]
        shots = []
        for index, (start, end) in enumerate(bounds):
            start_s, end_s = start / row.norm_fps, end / row.norm_fps
            shot = ShotRecord.from_parent(
                row,
                shot_index=index,
                n_shots=len(bounds),
                start_frame=start,
                end_frame=end,
                start_s=start_s,
                end_s=end_s,
                key=sample_key(row.source_id, round(start_s * 1000)),
            )
            if end_s - start_s < self.config.min_shot_s:
                shot.mark(
                    STATUS_FILTERED,
                    self.name,
                    "shot_too_short",
                    message=f"shot of {end_s - start_s:.2f}s < scene_cut.min_shot_s={self.config.min_shot_s}",
                )
            shots.append(shot)
        return shots


def detect_shots(video_path: str, width: int, fps: float, config: SceneCutConfig) -> list[tuple[int, int]]:
    """Return [(start_frame, end_frame_exclusive)] covering the whole video."""
    from scenedetect import AdaptiveDetector, ContentDetector, SceneManager, open_video

    # PySceneDetect logs every video it opens at INFO; a dataset run opens thousands.
    logging.getLogger("pyscenedetect").setLevel(logging.WARNING)
    video = open_video(video_path, backend="opencv")
    min_len = max(1, round(MIN_CUT_GAP_S * fps))
    if config.detector == "adaptive":
        detector = AdaptiveDetector(adaptive_threshold=config.adaptive_threshold, min_scene_len=min_len)
    else:
        detector = ContentDetector(threshold=config.threshold, min_scene_len=min_len)
    manager = SceneManager()
    manager.auto_downscale = False
    manager.downscale = max(1, width // config.downscale_width)
    manager.add_detector(detector)
    manager.detect_scenes(video=video)
    scenes = manager.get_scene_list(start_in_scene=True)
    return [(_frame(start), _frame(end)) for start, end in scenes]


def _frame(timecode) -> int:
    value = timecode.frame_num
    return int(value() if callable(value) else value)
