"""Compose a whole benchmark: videos, their ground truth, ATTRIBUTION.md and manifest.json."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from voxhear.benchmarks.synth.audio import build_soundtrack
from voxhear.benchmarks.synth.options import SynthOptions
from voxhear.benchmarks.synth.people import MediaLibrary
from voxhear.benchmarks.synth.render import render_video
from voxhear.benchmarks.synth.script import VideoPlan, plan_video
from voxhear.benchmarks.synth.sources import BACKGROUND_FILES, SPEECH_FILES, credit_of, licence_of, media_relative
from voxhear.benchmarks.synth.truth import write_truth
from voxhear.pipeline.io import atomic_path, atomic_write_text

log = logging.getLogger(__name__)

MANIFEST_VERSION = 1
WILD_ONLY_OPTIONS = ("people_source", "wild_people", "backchannel_rate", "audio_only")

_Plan = TypeVar("_Plan")


def compose_dataset(options: SynthOptions) -> list[Path]:
    """Compose `options.videos` videos with their ground truth into `options.out_dir`.

    Returns:
        The paths of the written mp4 files, in video order.
    """
    media_dir = options.media_dir
    if options.audio_only:
        from voxhear.benchmarks.synth.diar import compose_audio_dataset

        return compose_audio_dataset(options)
    if options.people_source == "wild":
        return _compose_wild_dataset(options)
    if not (media_dir / "faces-grid").is_dir():
        raise FileNotFoundError(f"no faces-grid/ under {media_dir}; pass --media or set VOXHEAR_MEDIA")
    library = MediaLibrary(media_dir, SPEECH_FILES, BACKGROUND_FILES)
    return _compose_videos(options, lambda index: plan_video(options, index, library),
                           lambda plan: compose_video(plan, options.out_dir, media_dir, options.crf))


def _compose_videos(options: SynthOptions, plan_at: Callable[[int], _Plan],
                    compose_one: Callable[[_Plan], Path]) -> list[Path]:
    """Plan (`plan_at(index)`) and compose (`compose_one(plan)`, returning its mp4) every video in
    order, then write ATTRIBUTION.md and manifest.json; returns the mp4 paths (both video modes)."""
    plans: list = []
    paths: list[Path] = []
    for index in range(options.first_index, options.first_index + options.videos):
        plan = plan_at(index)
        paths.append(compose_one(plan))
        plans.append(plan)
        log.info("composed %s", paths[-1])
    atomic_write_text(options.out_dir / "ATTRIBUTION.md", attribution_text(plans, options.media_dir))
    atomic_write_text(options.out_dir / "manifest.json", json.dumps(manifest(options, plans), indent=2) + "\n")
    return paths


def _compose_wild_dataset(options: SynthOptions) -> list[Path]:
    """The realistic mode: real people of faces-wild/ (docs/synth-format.md, "Realistic mode")."""
    from voxhear.benchmarks.synth.wild import WILD_DIR
    from voxhear.benchmarks.synth.wild_audio import build_wild_soundtrack
    from voxhear.benchmarks.synth.wild_render import render_wild_video
    from voxhear.benchmarks.synth.wild_script import WildLibrary, plan_wild_video, work_max_side
    from voxhear.benchmarks.synth.wild_truth import write_wild_truth

    media_dir = options.media_dir
    if not (media_dir / WILD_DIR).is_dir():
        raise FileNotFoundError(f"no {WILD_DIR}/ under {media_dir}; pass --media or set VOXHEAR_MEDIA")
    library = WildLibrary(media_dir, options.wild_people, work_max_side(options), SPEECH_FILES, BACKGROUND_FILES)

    def compose_one(plan) -> Path:
        truth_dir = options.out_dir / "truth" / plan.video_id
        track, dry = build_wild_soundtrack(plan)
        write_wild_truth(plan, track, dry, truth_dir, media_dir)
        return write_video(plan, options.out_dir, media_dir, render_wild_video, options.crf)

    return _compose_videos(options, lambda index: plan_wild_video(options, index, library), compose_one)


def compose_video(plan: VideoPlan, out_dir: Path, media_dir: Path, crf: int) -> Path:
    """Write one video's truth (audio first, the mp4 muxes `mix.flac`) and its mp4."""
    truth_dir = out_dir / "truth" / plan.video_id
    track = build_soundtrack(plan)
    write_truth(plan, track, truth_dir, media_dir)
    return write_video(plan, out_dir, media_dir, render_video, crf)


def write_video(plan, out_dir: Path, media_dir: Path, render: Callable[..., None], crf: int) -> Path:
    """Render `videos/<id>.mp4` (`render(plan, path, audio, crf)`, muxing the truth's `mix.flac`,
    so the truth is written first) and its licence sidecar `videos/<id>.json` (either mode)."""
    video_path = out_dir / "videos" / f"{plan.video_id}.mp4"
    with atomic_path(video_path) as tmp:
        render(plan, tmp, out_dir / "truth" / plan.video_id / "mix.flac", crf)
    # The sidecar the pipeline copies into every sample's provenance (docs/shard-format.md).
    atomic_write_text(video_path.with_suffix(".json"), json.dumps(sidecar(plan, media_dir), indent=2) + "\n")
    return video_path


def recordings_of(plan: VideoPlan) -> list[tuple[str, Path]]:
    """(role, path) of every recording a video is made of: A, B, C where there is an off-screen
    voice, and the background."""
    parts = [("A", plan.clips["A"].path), ("B", plan.clips["B"].path)]
    if plan.offscreen is not None:
        parts.append(("C", plan.offscreen.path))
    parts.append(("background", plan.background.path))
    return parts


def sidecar(plan: VideoPlan, media_dir: Path) -> dict:
    """Licence and attribution of one composed video, from the licences of what it is made of."""
    parts = recordings_of(plan)
    licences = sorted({licence_of(path).licence for _, path in parts})
    credits = [f"{role}: {media_relative(path, media_dir)} ({licence_of(path).corpus}, {licence_of(path).licence})"
               for role, path in parts]
    return {"licence": "; ".join(licences), "attribution": "composed by voxhear synth from " + "; ".join(credits)}


def attribution_text(plans: list[VideoPlan], media_dir: Path) -> str:
    """Which original recordings each video uses, with their licences (SOURCES.md)."""
    lines = ["# Attribution", "",
             "The videos in this folder were composed by `voxhear synth` from the recordings below.",
             "Each is used under its licence; the composition adds framing, background fill and mixing.",
             ""]
    used: dict[str, Path] = {}
    where = {"A": "A (on screen)", "B": "B (on screen)", "C": "C (off screen)"}
    for plan in plans:
        lines.append(f"## {plan.video_id}")
        lines.append("")
        for role, path in recordings_of(plan):
            lic = licence_of(path)
            name = media_relative(path, media_dir)
            used[name] = path
            lines.append(f"- {where.get(role, role)}: `{name}`, {lic.corpus}, {lic.licence}")
        lines.append("")
    lines += ["## Sources", ""]
    for name in sorted(used):
        lic = licence_of(used[name])
        credit = credit_of(used[name])
        lines.append(f"- `{name}`: {lic.corpus}; licence {lic.licence}; {lic.origin}"
                     + (f"; credit: {credit}" if credit else ""))
    return "\n".join(lines) + "\n"


def manifest(options: SynthOptions, plans: list[VideoPlan]) -> dict:
    opts = options.to_json()
    # Where the output and the media were is not part of what was composed; keep the manifest
    # byte-identical across output folders.
    opts.pop("out_dir")
    opts.pop("media_dir")
    if options.people_source == "grid" and not options.audio_only:
        # Options of the realistic mode only: a GRID manifest stays as it was before they existed.
        for key in WILD_ONLY_OPTIONS:
            opts.pop(key)
    return {"manifest_version": MANIFEST_VERSION, "tool": "voxhear synth", "options": opts,
            "videos": [{"video_id": p.video_id, "seed": p.seed, "video": f"videos/{p.video_id}.mp4",
                        "truth": f"truth/{p.video_id}"} for p in plans]}


