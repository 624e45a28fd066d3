"""Options of `voxhear synth`, validated before any work starts."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path

# GRID clips are 25 fps; the conversation is planned on this clock (one slot = 40 ms = 640
# samples at 16 kHz) and output frames at another fps are mapped onto it.
PLAN_FPS = 25
SAMPLE_RATE = 16000
SAMPLES_PER_SLOT = SAMPLE_RATE // PLAN_FPS
MEDIA_ENV = "VOXHEAR_MEDIA"


@dataclass(frozen=True, slots=True)
class SynthOptions:
    """Everything that determines a composed dataset; written to `manifest.json`.

    Attributes:
        out_dir: Output folder (videos/, truth/, ATTRIBUTION.md, manifest.json go in it).
        media_dir: The shared real-media folder (faces-grid/, speech/, background/).
        videos: Number of videos to compose.
        duration_s: Length of each video in seconds.
        width: Canvas width in pixels (even).
        height: Canvas height in pixels (even).
        fps: Output frame rate.
        seed: Seed of the whole dataset; video i uses a generator derived from (seed, i).
        snr_db_min: Lower end of the speech-to-background ratio drawn per video.
        snr_db_max: Upper end of that range.
        people: 2 (A and B on screen) or 3 (plus an off-screen voice C from speech/).
        shots: Shots per video; 0 derives it from `mean_shot_s`.
        mean_shot_s: Mean shot length used when `shots` is 0.
        min_shot_s: No shot is shorter than this.
        two_shot_prob: Probability that a shot shows both people.
        overlap_prob: Probability that a turn starts before the previous one has ended.
        offscreen_share: Share of turns given to the off-screen voice when `people` is 3.
        crf: x264 quality of the mp4 (lower is better and larger).
        first_index: Index of the first video (video ids are `synth-{index:04d}`).
    """

    out_dir: Path
    media_dir: Path
    videos: int = 3
    duration_s: float = 20.0
    width: int = 640
    height: int = 360
    fps: float = 25.0
    seed: int = 0
    snr_db_min: float = 5.0
    snr_db_max: float = 20.0
    people: int = 2
    shots: int = 0
    mean_shot_s: float = 4.0
    min_shot_s: float = 1.5
    two_shot_prob: float = 0.25
    overlap_prob: float = 0.15
    offscreen_share: float = 0.2
    crf: int = 26
    first_index: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        object.__setattr__(self, "media_dir", Path(self.media_dir))
        problems = []
        if self.videos < 1:
            problems.append(f"videos={self.videos} must be >= 1")
        if not 2.0 <= self.duration_s <= 3600:
            problems.append(f"duration_s={self.duration_s} must lie in [2, 3600]")
        if self.width % 2 or self.height % 2 or self.width < 128 or self.height < 96:
            problems.append(f"resolution {self.width}x{self.height} must be even and at least 128x96")
        if not 1.0 <= self.fps <= 60.0:
            problems.append(f"fps={self.fps} must lie in [1, 60]")
        if self.snr_db_min > self.snr_db_max:
            problems.append(f"snr range [{self.snr_db_min}, {self.snr_db_max}] is empty")
        if self.people not in (2, 3):
            problems.append(f"people={self.people} must be 2 or 3 (the third is off screen)")
        if self.shots < 0:
            problems.append(f"shots={self.shots} must be >= 0 (0: derive from mean_shot_s)")
        if self.mean_shot_s <= 0 or self.min_shot_s <= 0:
            problems.append("mean_shot_s and min_shot_s must be positive")
        for name in ("two_shot_prob", "overlap_prob", "offscreen_share"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                problems.append(f"{name}={getattr(self, name)} must lie in [0, 1]")
        if not 0 <= self.crf <= 51:
            problems.append(f"crf={self.crf} must lie in [0, 51]")
        if self.first_index < 0:
            problems.append(f"first_index={self.first_index} must be >= 0")
        if problems:
            raise ValueError("invalid synth options: " + "; ".join(problems))

    def to_json(self) -> dict:
        """Options as JSON values (paths as strings)."""
        out = dataclasses.asdict(self)
        out["out_dir"] = str(self.out_dir)
        out["media_dir"] = str(self.media_dir)
        return out


def default_media_dir() -> Path:
    """Where the shared media is: $VOXHEAR_MEDIA, else `shared/media` beside the repository."""
    env = os.environ.get(MEDIA_ENV)
    if env:
        return Path(env)
    repo = Path(__file__).resolve().parents[2]
    for candidate in (repo.parent / "shared" / "media", repo / "shared" / "media",
                      Path.cwd().parent / "shared" / "media"):
        if (candidate / "faces-grid").is_dir():
            return candidate
    return repo.parent / "shared" / "media"
