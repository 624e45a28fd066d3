"""The stage registry is the one list of stages: what each stage declares must match what it does.

The reject-reason test reads the stages' source (no models, no media): every reason a stage can
filter a row for must be declared by that stage, with config keys that exist, so the QC page and
the datasheet can explain every reject.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import pkgutil
import sys
from pathlib import Path

import pytest

from voxhear.pipeline import registry
from voxhear.pipeline.config import ConfigError, config_to_dict, load_config

ORDER = ["ingest", "separation", "diarization", "asr", "scene_cut", "shot_media", "faces", "talk"]
DEFAULT_MODELS = [
    "deepfilternet3",
    "pyannote-segmentation-3.0",
    "campplus",
    "faster-whisper-tiny.en",
    "yunet",
    "mediapipe-face-landmarker",
    "dlib-shape-predictor-5",
    "dlib-face-recognition",
    "light-asd",
]
# The engine's own reason (pipeline/stage.py: a stage returned no rows for an input).
ENGINE_REASONS = {"no_output"}
# Properties of the input that no setting changes: the only reasons declared without keys.
KEYLESS_REASONS = {"no_video_stream", "no_audio_stream", "silent_audio"}
_MISSING = object()


def _default_config():
    # inputs given so that an installed voxhear (no bundled sample) loads the defaults too.
    return load_config(None, ["inputs=[unused.mp4]"])


def _lookup(data: dict, dotted: str):
    node = data
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            return _MISSING
        node = node[part]
    return node


def _name(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _string(node: ast.AST) -> str | None:
    return node.value if isinstance(node, ast.Constant) and isinstance(node.value, str) else None


def emitted_reasons(tree: ast.AST) -> set[str]:
    """Reasons a piece of source filters rows for: `FilteredError("reason", ...)`,
    `.mark(STATUS_FILTERED, self.name, "reason", ...)` and check tables of
    `("reason", <condition>, <message>)` tuples (the talk stage's)."""
    found: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            func = _name(node.func)
            if func == "FilteredError" and node.args and _string(node.args[0]):
                found.add(_string(node.args[0]))
            elif (
                func == "mark"
                and len(node.args) >= 3
                and _name(node.args[0]) == "STATUS_FILTERED"
                and _string(node.args[2])
            ):
                found.add(_string(node.args[2]))
        elif (
            isinstance(node, ast.Tuple)
            and len(node.elts) == 3
            and _string(node.elts[0])
            and isinstance(node.elts[1], (ast.Compare, ast.BoolOp, ast.UnaryOp))
            and isinstance(node.elts[2], (ast.JoinedStr, ast.Constant))
        ):
            found.add(_string(node.elts[0]))
    return found


def _home(cls: type) -> str:
    """Where a stage's code lives: its subpackage of voxhear.stages (audio, faces, talk), else its module."""
    package = sys.modules[cls.__module__].__package__ or ""
    return package if package != "voxhear.stages" else cls.__module__


def _home_modules(home: str) -> list[str]:
    spec = importlib.util.find_spec(home)
    if spec.submodule_search_locations is None:
        return [home]
    return [f"{home}.{info.name}" for info in pkgutil.iter_modules(spec.submodule_search_locations)]


def _scan() -> tuple[dict[str, set[str]], dict[str, set[str]]]:
    """Per stage: the reasons emitted inside its class, and those emitted by the code beside it (module-level
    functions and the other modules of its package), which any stage living there may raise. Source is
    parsed, not imported."""
    classes = registry.stage_classes()
    registered = {(c.__module__, c.__name__) for c in classes}
    own = {c.name: emitted_reasons(ast.parse(inspect.getsource(c))) for c in classes}
    helpers: dict[str, set[str]] = {}
    for cls in classes:
        found: set[str] = set()
        for name in _home_modules(_home(cls)):
            tree = ast.parse(Path(importlib.util.find_spec(name).origin).read_text())
            for node in tree.body:
                if not (isinstance(node, ast.ClassDef) and (name, node.name) in registered):
                    found |= emitted_reasons(node)
        helpers[cls.name] = found
    return own, helpers


def test_every_emitted_reject_reason_is_declared_with_existing_config_keys():
    own, helpers = _scan()
    # The scan must see the stages' rejects at all (a scanner that finds nothing proves nothing).
    assert {"too_short", "no_audio_stream"} <= own["ingest"]
    assert "no_speech" in own["diarization"] and "shot_too_short" in own["scene_cut"]
    assert {"no_face", "profile_view", "no_embedding"} <= own["faces"]
    assert {"face_too_small", "ambiguous_speaker", "overlap_too_high", "track_too_short"} <= own["talk"]

    defaults = config_to_dict(_default_config())
    classes = registry.stage_classes()
    for cls in classes:
        declared = {reason.name for reason in cls.reasons}
        undeclared = own[cls.name] - declared - ENGINE_REASONS
        assert not undeclared, f"stage {cls.name} filters rows for {sorted(undeclared)} but does not declare them"
        # A helper's reason may belong to any stage of its package.
        siblings = {r.name for c in classes if _home(c) == _home(cls) for r in c.reasons}
        undeclared = helpers[cls.name] - declared - siblings - ENGINE_REASONS
        assert not undeclared, f"helpers of stage {cls.name} filter rows for undeclared {sorted(undeclared)}"
        dead = declared - own[cls.name] - helpers[cls.name]
        assert not dead, f"stage {cls.name} declares {sorted(dead)} but nothing filters for them"
        for reason in cls.reasons:
            if not reason.keys:
                assert reason.name in KEYLESS_REASONS, f"{cls.name}/{reason.name} names no config key"
            for key in reason.keys:
                assert _lookup(defaults, key) is not _MISSING, f"{cls.name}/{reason.name}: no config key {key!r}"
            for bound in reason.bounds:
                assert bound.key in reason.keys, f"{cls.name}/{reason.name}: bound {bound.key} not among its keys"
                assert bound.kind in ("min", "max", "abs_max") and bound.table in ("sources", "clips")


def test_bounds_name_manifest_columns():
    from voxhear.manifests import SourceManifestRow, clip_row_type
    from voxhear.qc.data import DERIVED_CLIP_METRICS

    columns = {
        "sources": {c.name for c in SourceManifestRow.schema()},
        "clips": {c.name for c in clip_row_type(registry.stage_classes()[-1].output_type).schema()}
        | set(DERIVED_CLIP_METRICS),
    }
    for bound in registry.bounds():
        assert bound.column in columns[bound.table], f"{bound.key} bounds unknown column {bound.table}.{bound.column}"


def test_registry_names_are_unique_and_in_pipeline_order():
    names = registry.stage_names()
    assert names == ORDER and len(set(names)) == len(names)
    for index, cls in enumerate(registry.stage_classes()):
        assert set(cls.requires) <= set(names[:index]), f"{cls.name} requires a later stage"
    assert list(registry.section_classes()) == [c.name for c in registry.stage_classes() if c.config_class]
    assert registry.stage_class("talk").name == "talk"
    with pytest.raises(ConfigError, match="unknown stage 'lipsync'"):
        registry.stage_class("lipsync")


def test_a_stage_listed_twice_is_refused(monkeypatch):
    monkeypatch.setattr(registry, "STAGES", registry.STAGES + (registry.STAGES[0],))
    with pytest.raises(ConfigError, match=r"lists \['ingest'\] more than once"):
        registry.stage_classes()


def test_models_in_use_of_the_default_config():
    from voxhear.qc.datasheet import model_registry

    config = _default_config()
    assert registry.models_in_use(config) == DEFAULT_MODELS
    assert set(DEFAULT_MODELS) <= set(model_registry())
    demucs = load_config(None, ["inputs=[unused.mp4]", "separation.backend=demucs", "faces.embedder=arcface"])
    used = registry.models_in_use(demucs)
    assert used[0] == "htdemucs" and "insightface-arcface" in used and "dlib-face-recognition" not in used
    assert "htdemucs" in model_registry()  # from stages/audio/models.tsv, found as a package resource
    early = load_config(None, ["inputs=[unused.mp4]", "stages=[ingest, scene_cut, shot_media]"])
    assert registry.models_in_use(early) == []


def test_qc_reason_table_and_thresholds_come_from_the_stages():
    from voxhear.qc import data as qc_data

    keys = qc_data.reason_keys()
    assert keys[("talk", "face_too_small")] == ("talk.min_face_px",)
    assert keys[("faces", "face_too_small")] == ("faces.min_face_px",)
    assert keys[("talk", "ambiguous_speaker")] and keys[("talk", "overlap_too_high")] == ("talk.max_overlap_share",)
    assert qc_data.REASON_KEYS == keys  # the former name still answers
    assert set(keys) == set(registry.reject_reasons())
    bounds = {(b.table, b.column, b.key, b.kind) for b in qc_data.thresholds()}
    assert ("clips", "yaw_deg", "faces.max_median_abs_yaw", "abs_max") in bounds
    assert ("clips", "face_height_px", "faces.min_face_px", "min") in bounds
    assert not any(key.endswith("max_abs_yaw") for _, _, key, _ in bounds)
    config = {"talk": {"min_face_px": 64.0}, "faces": {"min_face_px": 48.0}}
    assert qc_data.explain_reason(config, "talk", "face_too_small") == [("talk.min_face_px", 64.0)]
    assert qc_data.explain_reason(config, "faces", "face_too_small") == [("faces.min_face_px", 48.0)]
    assert qc_data.split_label("filtered: talk/face_too_small") == ("filtered", "talk", "face_too_small")


def test_config_command_prints_every_section_and_explains(capsys):
    import yaml

    from voxhear.pipeline.cli import main

    assert main(["config", "inputs=[unused.mp4]"]) == 0
    printed = yaml.safe_load(capsys.readouterr().out)
    assert [k for k in printed if k in ORDER] == ORDER and printed["talk"]["min_face_px"] > 0
    assert main(["config", "--explain", "inputs=[unused.mp4]"]) == 0
    out = capsys.readouterr().out
    assert "max_median_abs_yaw = 60.0    [> 0, <= 180]" in out
    assert "# stage (runs); requires: faces, separation, diarization; models: light-asd" in out
    assert "# rejects face_too_small (talk.min_face_px):" in out
    assert "\nshot_media:\n" in out
