"""Self, other and background tracks that add up to the mix exactly.

All arithmetic is on integers at 24-bit scale: the mix (16-bit WAV from ingest) and the
separated speech (24-bit FLAC) are read as int32 and shifted to 24-bit units, self and other
are the speech under the two time masks rounded to integers, and the background is what is
left of the mix. Written as 24-bit FLAC, the identity self + other + background == mix then
holds sample for sample, not only to rounding.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from voxhear.pipeline.io import atomic_path

LIMIT = 2**23  # 24-bit full scale


def read_int24(path: str | Path, start: int, stop: int) -> np.ndarray:
    """Samples [start, stop) of a mono 16- or 24-bit file in 24-bit integer units, zero-padded past its end."""
    data, _ = sf.read(str(path), start=start, stop=stop, dtype="int32", always_2d=True)
    values = data[:, 0].astype(np.int64) >> 8
    if len(values) < stop - start:
        values = np.concatenate([values, np.zeros(stop - start - len(values), np.int64)])
    return values


def split_tracks(
    mix: np.ndarray,
    speech: np.ndarray,
    self_mask: np.ndarray,
    other_mask: np.ndarray,
    moved: np.ndarray | None = None,
) -> dict[str, np.ndarray]:
    """Integer self/other/background tracks with self + other + background == mix.

    `moved` (optional, float samples): speech under the self mask that is the other party's,
    the other voice of an overlap (voice_split.py); it goes from the self track to the other."""
    self_speech, other_speech = speech * self_mask, speech * other_mask
    if moved is not None:
        self_speech, other_speech = self_speech - moved, other_speech + moved
    self_track = np.rint(self_speech).astype(np.int64)
    other_track = np.rint(other_speech).astype(np.int64)
    background = mix - self_track - other_track
    peak = int(np.abs(background).max(initial=0))
    if peak >= LIMIT:
        # Only possible when the separated speech is far louder than, and opposite to, the mix.
        raise ValueError(f"background track would clip ({peak} >= {LIMIT}); the speech stem does not match the mix")
    return {"mix": mix, "self": self_track, "other": other_track, "background": background}


def write_int24(path: Path, values: np.ndarray, rate: int) -> None:
    with atomic_path(path) as tmp:
        sf.write(tmp, (values.astype(np.int64) << 8).astype(np.int32), rate, format="FLAC", subtype="PCM_24")


def energy_db(values: np.ndarray) -> float:
    if values.size == 0:
        return float("nan")
    return float(10 * np.log10(np.mean(np.square(values / LIMIT, dtype=np.float64)) + 1e-12))


def background_leak_db(background: np.ndarray, mix: np.ndarray, talking: np.ndarray) -> float:
    """Background power gained while anyone talks, over the mix's power then (dB; NaN without both
    talking and pause samples).

    The background's power in pauses is the recording's own floor (noise, room tone, a music bed);
    what it gains during speech is speech the separator left in it. Taken relative to the speech-time
    mix, the figure is the share of the speech that leaked (0 dB: all of it) and no longer depends on
    the floor: measured against the floor, the separator's usual residual, some 30 dB under the
    speech, came out as a large "excess" on every quiet, clean recording.
    """
    if not (talking.any() and (~talking).any()):
        return float("nan")
    gained = 10 ** (energy_db(background[talking]) / 10) - 10 ** (energy_db(background[~talking]) / 10)
    return float(10 * np.log10(max(gained, 0.0) + 1e-12) - energy_db(mix[talking]))
