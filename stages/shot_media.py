"""Shot media: cut each shot's video and audio out of the normalized source.

Segments are re-encoded rather than stream-copied because a copy can only cut on keyframes,
which would put frames of the neighbouring shot into this one.
"""

from __future__ import annotations

from dataclasses import dataclass

import soundfile as sf

from voxhear.pipeline.io import atomic_path
from voxhear.pipeline.records import ShotRecord
from voxhear.pipeline.settings import setting
from voxhear.pipeline.stage import Stage
from voxhear.stages.media import X264_PRESETS, h264_cut, last_lines, run_tool, tool_timeout


@dataclass
class ShotMediaConfig:
    """Encoding of each shot's video segment (re-encoded: a stream copy cuts only on keyframes)."""

    video_crf: int = setting(18, ge=0, le=51)
    x264_preset: str = setting("veryfast", choices=X264_PRESETS)


class ShotMediaStage(Stage[ShotRecord, ShotRecord]):
    name = "shot_media"
    input_type = ShotRecord
    output_type = ShotRecord
    config_class = ShotMediaConfig
    requires = ("scene_cut",)

    config: ShotMediaConfig

    def process(self, row: ShotRecord) -> list[ShotRecord]:
        shot_dir = self.context.source_work_dir(row.source_id) / "shots"
        video_out, audio_out = shot_dir / f"{row.key}.mp4", shot_dir / f"{row.key}.flac"
        n_frames = row.end_frame - row.start_frame
        with atomic_path(video_out) as tmp:
            command = h264_cut(
                row.video_uri, row.start_s, n_frames, tmp, self.config.video_crf, self.config.x264_preset, threads=1
            )
            result = run_tool(command, tool_timeout(row.end_s - row.start_s), row.source_uri)
            if result.returncode != 0:
                raise RuntimeError(f"ffmpeg could not cut shot {row.key}: {last_lines(result.stderr)}")
        info = sf.info(row.audio_uri)
        start = round(row.start_s * info.samplerate)
        stop = round(row.end_s * info.samplerate)
        audio, rate = sf.read(row.audio_uri, start=start, stop=min(stop, info.frames), dtype="int16")
        with atomic_path(audio_out) as tmp:
            sf.write(tmp, audio, rate, format="FLAC", subtype="PCM_16")
        row.segment_video_uri, row.segment_audio_uri = str(video_out), str(audio_out)
        return [row]
