"""Options of `voxhear synth`, validated before any work starts."""

from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from voxhear.pipeline.settings import ConfigError, build_config, check_config, require, setting

# GRID clips are 25 fps; the conversation is planned on this clock (one slot = 40 ms = 640
# samples at 16 kHz) and output frames at another fps are mapped onto it.
PLAN_FPS = 25
SAMPLE_RATE = 16000
SAMPLES_PER_SLOT = SAMPLE_RATE // PLAN_FPS
MEDIA_ENV = "VOXHEAR_MEDIA"


class SynthOptionsError(ConfigError):
    """Invalid options of `voxhear synth` (a ConfigError, and so a ValueError); the message names the key."""

    def __str__(self) -> str:
        return f"invalid synth options: {super().__str__()}"


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
        people_source: ``grid`` (GRID talking faces) or ``wild`` (the real single-person
            recordings of faces-wild/, with backchannels, reverberation and microphone noise;
            docs/synth-format.md, "Realistic mode").
        wild_people: With ``wild``: comma-separated faces-wild file stems to draw people from
            (empty: every usable single-person recording).
        backchannel_rate: With ``wild``: backchannels per second of the other person's turn.
        audio_only: Compose audio-only conversations of 2-4 real voices for diarization instead
            of videos (`videos` of them; benchmarks/synth/diar.py).
    """

    out_dir: Path
    media_dir: Path
    videos: int = setting(3, ge=1)
    duration_s: float = setting(20.0, ge=2, le=3600)
    # Even and at least 128x96 (checked together, as the resolution, in check()).
    width: int = 640
    height: int = 360
    fps: float = setting(25.0, ge=1, le=60)
    # numpy seeds are non-negative.
    seed: int = setting(0, ge=0)
    snr_db_min: float = setting(5.0)
    snr_db_max: float = setting(20.0)
    # The third person is an off-screen voice.
    people: int = setting(2, choices=(2, 3))
    # 0: derive from mean_shot_s.
    shots: int = setting(0, ge=0)
    mean_shot_s: float = setting(4.0, gt=0)
    min_shot_s: float = setting(1.5, gt=0)
    two_shot_prob: float = setting(0.25, ge=0, le=1)
    overlap_prob: float = setting(0.15, ge=0, le=1)
    offscreen_share: float = setting(0.2, ge=0, le=1)
    crf: int = setting(26, ge=0, le=51)
    first_index: int = setting(0, ge=0)
    # Realistic mode (benchmarks/synth/wild.py) and the audio-only diarization set (diar.py).
    people_source: str = setting("grid", choices=("grid", "wild"))
    wild_people: str = ""
    backchannel_rate: float = setting(0.15, ge=0, le=2)
    audio_only: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "out_dir", Path(self.out_dir))
        object.__setattr__(self, "media_dir", Path(self.media_dir))
        check_config(self, error=SynthOptionsError)

    def check(self) -> None:
        """The rules that tie fields together (field bounds are checked before this)."""
        require(self.width % 2 == 0 and self.height % 2 == 0 and self.width >= 128 and self.height >= 96,
                "resolution", f"{self.width}x{self.height} must be even and at least 128x96 (width x height)",
                SynthOptionsError)
        require(self.snr_db_min <= self.snr_db_max, "snr_db_min",
                f"must not exceed snr_db_max (the snr range [{self.snr_db_min}, {self.snr_db_max}] is empty)",
                SynthOptionsError)

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SynthOptions:
        """Options from plain data (e.g. a manifest's `options`): strict keys and types, with a did-you-mean."""
        return build_config(cls, values, error=SynthOptionsError)

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
    # In a source checkout, shared/ lies beside it (as in CI); an installed package has no such
    # place (parents[2] is site-packages/voxhear there), so only the working directory's is looked at.
    repo = Path(__file__).resolve().parents[2]
    in_checkout = (repo / "pyproject.toml").is_file()
    beside = [repo.parent / "shared" / "media", repo / "shared" / "media"] if in_checkout else []
    candidates = [*beside, Path.cwd().parent / "shared" / "media"]
    for candidate in candidates:
        if (candidate / "faces-grid").is_dir():
            return candidate
    return candidates[0]
