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
    # A shot longer than this is cut into equal pieces of at most this length, each its own row, so
    # that a single-shot podcast spreads over many workers (issue 15). Each piece is a shot to the
    # later stages: a face track ends at the seam and a clip never crosses one, which costs at most
    # the clip windows a seam cuts (one every 5 minutes by default); identities are joined across
    # pieces by the end-of-run clustering. Seams are marked (`seam`) and are not scene cuts.
    max_shot_s: float = setting(300.0, gt=0)


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
        scenes = detect_shots(row.video_uri, row.norm_width, row.norm_fps, self.config)
        if not scenes:
            scenes = [(0, row.n_frames)]
        bounds = split_long_shots(scenes, max(1, round(self.config.max_shot_s * row.norm_fps)))
        shots = []
        for index, (start, end, seam) in enumerate(bounds):
            start_s, end_s = start / row.norm_fps, end / row.norm_fps
            shot = ShotRecord.from_parent(
                row,
                shot_index=index,
                n_shots=len(bounds),
                start_frame=start,
                end_frame=end,
                start_s=start_s,
                end_s=end_s,
                seam=seam,
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


def split_long_shots(scenes: list[tuple[int, int]], max_frames: int) -> list[tuple[int, int, bool]]:
    """(start, end, seam) of every shot, those longer than `max_frames` cut into the fewest equal
    pieces that fit (equal, so that no piece is a sliver); `seam` marks a piece that starts where
    its shot was cut rather than at a scene cut."""
    out = []
    for start, end in scenes:
        pieces = max(1, -(-(end - start) // max_frames))
        edges = [start + round(i * (end - start) / pieces) for i in range(pieces + 1)]
        out += [(a, b, i > 0) for i, (a, b) in enumerate(zip(edges, edges[1:]))]
    return out


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
