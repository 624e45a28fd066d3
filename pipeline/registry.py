"""The stage registry: the one list of the pipeline's stages, in the order they run.

Everything that depends on which stages exist is read from the stage classes listed here: the
config sections and their validation (voxhear.pipeline.config), the stage factories and model
provenance (voxhear.pipeline.runner), the reject-reason table and thresholds of the QC page
(voxhear.qc.data) and the datasheet's model and settings lists (voxhear.qc.datasheet).

A new stage is one module with one `Stage` subclass plus one line in `STAGES`. Reading the
registry imports the stage modules: model runtimes (whisperx, pyannote, onnxruntime, MediaPipe)
load inside `setup()`, but torch, scipy and OpenCV are imported with the talk and face stages
(about 3 s, once per process).
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from voxhear.pipeline.settings import ConfigError

if TYPE_CHECKING:
    from voxhear.pipeline.stage import Bound, RejectReason, Stage

# "module:Class" of every stage, in pipeline order.
STAGES: tuple[str, ...] = (
    "voxhear.stages.ingest:IngestStage",
    "voxhear.stages.audio.stages:SeparationStage",
    "voxhear.stages.audio.stages:DiarizationStage",
    "voxhear.stages.audio.stages:AsrStage",
    "voxhear.stages.scene_cut:SceneCutStage",
    "voxhear.stages.shot_media:ShotMediaStage",
    "voxhear.stages.faces.stage:FaceStage",
    "voxhear.stages.talk.stage:TalkStage",
)


def stage_classes() -> list[type[Stage]]:
    """The registered stage classes, in pipeline order (read from `STAGES` at each call)."""
    classes = []
    for entry in STAGES:
        module_name, _, class_name = entry.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), class_name)
        except (ImportError, AttributeError) as error:
            raise ImportError(f"stage registry entry {entry!r} cannot be imported: {error}") from error
        classes.append(cls)
    names = [cls.name for cls in classes]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise ConfigError(f"stage registry lists {duplicates} more than once")
    return classes


def stage_names() -> list[str]:
    return [cls.name for cls in stage_classes()]


def stage_class(name: str) -> type[Stage]:
    for cls in stage_classes():
        if cls.name == name:
            return cls
    raise ConfigError(f"unknown stage {name!r}; known, in order: {stage_names()}")


def section_classes() -> dict[str, type]:
    """Config section name -> its class, for every stage that has a section."""
    return {cls.name: cls.config_class for cls in stage_classes() if cls.config_class is not None}


def models_in_use(config: Any) -> list[str]:
    """Model store names the configured stages load, in stage order, each once."""
    names: list[str] = []
    for cls in stage_classes():
        if cls.name in config.stages:
            names += [m for m in cls.models(config.section(cls.name)) if m not in names]
    return names


def reject_reasons() -> dict[tuple[str, str], RejectReason]:
    """(stage, reason) -> the declared reason, for every registered stage."""
    return {(cls.name, reason.name): reason for cls in stage_classes() for reason in cls.reasons}


def bounds() -> list[Bound]:
    """Every config key that bounds a manifest column, in stage order."""
    return [bound for cls in stage_classes() for reason in cls.reasons for bound in reason.bounds]
