"""Helpers shared by the synth tests (a module name unique across tests/, imported by name)."""

from __future__ import annotations

from pathlib import Path

from tests.conftest import needs_shared
from voxhear.benchmarks.synth import SynthOptions
from voxhear.benchmarks.synth.options import default_media_dir

MEDIA = default_media_dir()
needs_media = needs_shared(MEDIA / "faces-grid", "the shared GRID face clips (VOXHEAR_MEDIA sets the media folder)")

# Small but with every feature in play: several shots, a two-shot, overlaps, a third voice.
SMALL = dict(videos=1, duration_s=12.0, width=320, height=180, people=3, shots=4, min_shot_s=1.0,
             two_shot_prob=0.5, overlap_prob=0.5, seed=11)


def small_options(out_dir: Path, **changes) -> SynthOptions:
    return SynthOptions(out_dir=out_dir, media_dir=MEDIA, **{**SMALL, **changes})
