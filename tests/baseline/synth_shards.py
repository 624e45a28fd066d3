"""Synthetic VoxHear shards for the baseline's tests (not real data; named as such).

Each clip alternates turns of the on-screen person and of someone else. The self track carries a
tone whose loudness follows a syllable envelope, and `jawOpen` follows the same envelope, so
lip sync is learnable; while the other party speaks the person nods (pitch) and raises the inner
brows, so listening has a learnable reaction. Identities differ in voice (f0) and in resting yaw and smile.
Members follow docs/shard-format.md; the mp4 is a tiny test pattern (the baseline reads no video).
"""

from __future__ import annotations

import functools
import io
import json
import subprocess
import tarfile
import tempfile
from pathlib import Path

import numpy as np
import soundfile as sf

from voxhear.baseline.data import BLENDSHAPE_NAMES as BASELINE_BLENDSHAPE_NAMES

SR, FPS, HOP = 16000, 25, 640
# The shards record MediaPipe's order, the same one the baseline expects.
BLENDSHAPE_NAMES = list(BASELINE_BLENDSHAPE_NAMES)
BS = {n: i for i, n in enumerate(BLENDSHAPE_NAMES)}
# identity -> split: identity-disjoint, like the pipeline's assignment.
SPLITS = {"id0": "train", "id1": "train", "id2": "train", "id3": "val", "id4": "test"}


def _flac(x: np.ndarray) -> bytes:
    buf = io.BytesIO()
    sf.write(buf, x, SR, format="FLAC", subtype="PCM_24")
    return buf.getvalue()


@functools.cache
def _tiny_mp4(n_frames: int) -> bytes:
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "crop.mp4"
        subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", "-f", "lavfi", "-i",
                        f"testsrc=size=32x32:rate={FPS}", "-frames:v", str(n_frames), "-c:v", "libx264",
                        "-preset", "ultrafast", "-pix_fmt", "yuv420p", str(path)], check=True)
        return path.read_bytes()


def _turns(rng: np.random.Generator, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per-frame booleans: self speaks, other speaks (alternating turns, short overlaps and gaps)."""
    speaks_self, speaks_other = np.zeros(n, bool), np.zeros(n, bool)
    t, who = 0, int(rng.integers(2))
    while t < n:
        length = int(rng.integers(15, 45))
        (speaks_self if who == 0 else speaks_other)[t:t + length] = True
        t += length + int(rng.integers(-4, 8))
        who = 1 - who
    return speaks_self, speaks_other


def synth_clip(rng: np.random.Generator, n_frames: int, identity: int) -> dict[str, np.ndarray]:
    """Audio tracks (float, T*640 samples) and per-frame arrays of one synthetic clip."""
    speaks_self, speaks_other = _turns(rng, n_frames)
    t_audio = np.arange(n_frames * HOP) / SR
    # Syllable envelope at ~4 Hz with random phase, held per frame for the face.
    env_frames = np.clip(np.sin(2 * np.pi * rng.uniform(3, 5) * np.arange(n_frames) / FPS + rng.uniform(0, 6)), 0, 1)
    env_self = env_frames * speaks_self
    env_audio = np.repeat(env_self, HOP)
    f0 = 120 + 40 * identity
    self_wave = 0.3 * env_audio * sum(np.sin(2 * np.pi * f0 * k * t_audio) / k for k in (1, 2, 3))
    other_env = np.repeat(speaks_other.astype(float), HOP) * (0.6 + 0.4 * np.sin(2 * np.pi * 3 * t_audio))
    other_wave = 0.2 * other_env * rng.standard_normal(len(t_audio)) * np.sin(2 * np.pi * 200 * t_audio)
    background = 0.01 * rng.standard_normal(len(t_audio))

    blend = np.full((n_frames, 52), 0.02, np.float32)
    blend[:, BS["jawOpen"]] = 0.05 + 0.6 * env_self
    blend[:, BS["mouthLowerDownLeft"]] = blend[:, BS["mouthLowerDownRight"]] = 0.4 * env_self
    style = identity % 3  # held-out identities share a trained one's resting face, not its voice
    blend[:, BS["mouthSmileLeft"]] = blend[:, BS["mouthSmileRight"]] = 0.1 + 0.1 * style
    listen_frames = speaks_other & ~speaks_self
    # Nods start with each listening stretch, so their phase is predictable from the other's turn.
    since = np.zeros(n_frames)
    for t in range(1, n_frames):
        since[t] = since[t - 1] + 1 if listen_frames[t - 1] else 0
    nod = np.sin(2 * np.pi * 1.2 * since / FPS) * listen_frames
    blend[:, BS["browInnerUp"]] = 0.1 + 0.3 * listen_frames
    blink = (rng.random(n_frames) < 0.05).astype(np.float32)
    blend[:, BS["eyeBlinkLeft"]] = blend[:, BS["eyeBlinkRight"]] = 0.05 + 0.8 * blink
    pose = np.zeros((n_frames, 6), np.float32)
    pose[:, 0] = -10 + 5 * style + rng.normal(0, 0.5, n_frames)  # yaw
    pose[:, 1] = 6 * nod  # pitch: nodding while listening
    pose[:, 2] = rng.normal(0, 0.5, n_frames)
    pose[:, 5] = -50 + rng.normal(0, 0.3, n_frames)
    has = rng.random(n_frames) > 0.03
    blend[~has], pose[~has] = np.nan, np.nan
    state = np.where(speaks_self & speaks_other, 3, np.where(speaks_self, 1, np.where(speaks_other, 2, 0)))
    return {"self": self_wave, "other": other_wave, "background": background, "blendshapes": blend, "pose": pose,
            "has_landmarks": has, "state": state.astype(np.uint8)}


def write_synthetic_shards(folder: Path, clips_per_identity: int = 2, n_frames: int = 150, seed: int = 0,
                           identities: dict[str, str] | None = None) -> list[Path]:
    """Write one shard per identity; return their paths."""
    identities = identities or SPLITS
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for number, (identity, split) in enumerate(identities.items()):
        path = folder / f"{number:06d}.tar"
        with tarfile.open(path, "w") as tar:
            for c in range(clips_per_identity):
                clip = synth_clip(rng, n_frames, number)
                key = f"synth{number:02d}{c:02d}deadbeef-face0-{c * 10000:08d}"
                # Integer-domain mixing, as the pipeline guarantees: mix == self + other + background.
                ints = {k: np.round(clip[k] * 2 ** 23).astype(np.int64) for k in ("self", "other", "background")}
                ints["mix"] = ints["self"] + ints["other"] + ints["background"]
                members = {"mp4": _tiny_mp4(n_frames)}
                members |= {f"{k}.flac": _flac((v / 2 ** 23).astype(np.float64)) for k, v in ints.items()}
                frames = io.BytesIO()
                t = n_frames
                np.savez_compressed(
                    frames, frame=np.arange(t, dtype=np.int32) + c * 250, state=clip["state"],
                    state_names=np.array(["silence", "talk", "listen", "both"]),
                    asd=np.where(np.isin(clip["state"], (1, 3)), 1.0, -1.0).astype(np.float32),
                    landmarks=np.zeros((t, 478, 3), np.float32), blendshapes=clip["blendshapes"],
                    blendshape_names=np.array(BLENDSHAPE_NAMES), pose=clip["pose"],
                    has_landmarks=clip["has_landmarks"], landmark_confidence=clip["has_landmarks"].astype(np.float32),
                    box=np.tile(np.float32([10, 10, 110, 110]), (t, 1)),
                    crop_box=np.tile(np.float32([0, 0, 120, 120]), (t, 1)))
                members["frames.npz"] = frames.getvalue()
                members["words.json"] = b"[]"
                meta = {"key": key, "source_id": key.split("-")[0], "identity_id": identity, "split": split,
                        "fps": FPS, "clip_start_frame": c * 250, "clip_end_frame": c * 250 + t,
                        "clip_start_s": c * 10.0, "clip_end_s": c * 10.0 + t / FPS, "synthetic": True}
                members["json"] = json.dumps(meta).encode()
                for ext, data in members.items():
                    info = tarfile.TarInfo(f"{key}.{ext}")
                    info.size = len(data)
                    tar.addfile(info, io.BytesIO(data))
        paths.append(path)
    return paths
