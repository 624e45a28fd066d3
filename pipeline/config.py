"""Run configuration: one YAML, validated into typed objects before any work starts.

A typo in a key must stop the run at once (config-key drift silently ignored is how a
long run ends up with default thresholds), so unknown keys are errors with a suggestion.
"""

from __future__ import annotations

import dataclasses
import difflib
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_SAMPLE = REPO_ROOT / "sample" / "videos"


class ConfigError(ValueError):
    """The configuration is invalid; the message says which key and why."""


@dataclass
class IngestConfig:
    """Probing and normalization of every input."""

    fps: int = 25
    sample_rate: int = 16000
    # Larger frames are scaled down once here so every later stage decodes less.
    max_height: int = 720
    # Frames above this many pixels are rejected before decoding (a 16k video would OOM a worker).
    max_pixels: int = 4096 * 2304
    min_duration_s: float = 1.0
    max_duration_s: float = 6 * 3600.0
    # Container frame rates outside this range are treated as broken metadata.
    min_fps: float = 5.0
    max_fps: float = 240.0
    keep_original_audio: bool = True
    video_crf: int = 18
    x264_preset: str = "veryfast"

    def validate(self) -> None:
        _require(self.fps > 0, "ingest.fps", "must be positive")
        _require(self.sample_rate in (8000, 16000, 22050, 24000, 44100, 48000),
                 "ingest.sample_rate", "must be a standard rate such as 16000")
        _require(self.max_height >= 64, "ingest.max_height", "must be at least 64")
        _require(self.min_duration_s >= 0, "ingest.min_duration_s", "must be >= 0")
        _require(self.max_duration_s > self.min_duration_s, "ingest.max_duration_s",
                 "must exceed min_duration_s")
        _require(0 < self.min_fps < self.max_fps, "ingest.min_fps", "must be in (0, max_fps)")
        _require(0 <= self.video_crf <= 51, "ingest.video_crf", "must be in [0, 51]")


@dataclass
class SceneCutConfig:
    """PySceneDetect settings."""

    detector: str = "content"
    # ContentDetector's default; AdaptiveDetector uses adaptive_threshold instead.
    threshold: float = 27.0
    adaptive_threshold: float = 3.0
    downscale_width: int = 320
    min_shot_s: float = 1.0

    def validate(self) -> None:
        _require(self.detector in ("content", "adaptive"), "scene_cut.detector",
                 "must be 'content' or 'adaptive'")
        _require(self.threshold > 0, "scene_cut.threshold", "must be positive")
        _require(self.downscale_width >= 32, "scene_cut.downscale_width", "must be >= 32")
        _require(self.min_shot_s >= 0, "scene_cut.min_shot_s", "must be >= 0")


@dataclass
class ShardConfig:
    """WebDataset shard limits; a shard is closed when either is reached."""

    max_samples: int = 1000
    max_megabytes: float = 1024.0
    # Commit at least this often (closing a shard early) so a killed run loses little work.
    commit_every_s: float = 120.0

    def validate(self) -> None:
        _require(self.max_samples >= 1, "shards.max_samples", "must be >= 1")
        _require(self.max_megabytes > 0, "shards.max_megabytes", "must be positive")
        _require(self.commit_every_s > 0, "shards.commit_every_s", "must be positive")


@dataclass
class RayConfig:
    """Where and how the Ray runner executes."""

    # None starts a local Ray; "auto" or "ray://host:10001" joins a cluster. RAY_ADDRESS also works.
    address: str | None = None
    # Only for a local Ray: cap the CPUs it may use.
    num_cpus: int | None = None
    # Upper bound of each actor pool (stages that load models); None lets Ray size it.
    max_actors_per_stage: int | None = None

    def validate(self) -> None:
        _require(self.num_cpus is None or self.num_cpus >= 1, "ray.num_cpus", "must be >= 1")


@dataclass
class ModelsConfig:
    """Model store: explicit paths win over `dir`, which wins over VOXHEAR_MODEL_DIR."""

    dir: str | None = None
    paths: dict[str, str] = field(default_factory=dict)
    allow_download: bool = True

    def validate(self) -> None:
        return None


@dataclass
class RunConfig:
    """Everything one run needs; saved resolved into the run directory."""

    inputs: list[str] = field(default_factory=lambda: [str(BUNDLED_SAMPLE)])
    run_dir: str = "runs/default"
    runner: str = "ray"
    # Retry inputs that failed in an earlier attempt of this run directory.
    retry_failed: bool = False
    # Stop the run when more than this share of inputs fail (after at least min_inputs_for_failure_rate).
    max_failure_rate: float = 0.5
    min_inputs_for_failure_rate: int = 10
    ingest: IngestConfig = field(default_factory=IngestConfig)
    scene_cut: SceneCutConfig = field(default_factory=SceneCutConfig)
    shards: ShardConfig = field(default_factory=ShardConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)

    def validate(self) -> None:
        _require(len(self.inputs) > 0, "inputs", "needs at least one path, glob, directory or list file")
        _require(self.runner in ("ray", "local"), "runner", "must be 'ray' or 'local'")
        _require(0 < self.max_failure_rate <= 1, "max_failure_rate", "must be in (0, 1]")
        for section in (self.ingest, self.scene_cut, self.shards, self.ray, self.models):
            section.validate()

    def processing_sections(self) -> dict[str, Any]:
        """The parts of the config that change what a run produces (resume must not mix them)."""
        return {name: dataclasses.asdict(getattr(self, name))
                for name in ("ingest", "scene_cut")}


def _require(condition: bool, key: str, message: str) -> None:
    if not condition:
        raise ConfigError(f"config key '{key}' {message}")


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunConfig:
    """Load YAML (or the embedded defaults), apply `key=value` overrides and validate.

    Args:
        path: YAML file; None means the embedded defaults.
        overrides: dotted `key=value` strings; values are parsed as YAML scalars or lists.
    """
    data: dict[str, Any] = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        loaded = yaml.safe_load(path.read_text())
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path} must hold a mapping at the top level")
        data = loaded or {}
    for item in overrides:
        _apply_override(data, item)
    config = _build(RunConfig, data, "")
    config.validate()
    return config


def _apply_override(data: dict[str, Any], item: str) -> None:
    if "=" not in item:
        raise ConfigError(f"override '{item}' is not of the form key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"override '{item}': '{part}' is not a section")
    node[parts[-1]] = yaml.safe_load(raw) if raw.strip() else None


def _build(cls: type, data: Any, prefix: str) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"config key '{prefix.rstrip('.') or '<top>'}' must be a mapping")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs = {}
    for key, value in data.items():
        if key not in names:
            close = difflib.get_close_matches(key, names, n=1)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"unknown config key '{prefix}{key}'{hint}; known: {', '.join(names)}")
        kwargs[key] = _coerce(hints[key], value, f"{prefix}{key}")
    return cls(**kwargs)


def _coerce(tp: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        if value is None:
            return None
        return _coerce(args[0], value, key)
    if dataclasses.is_dataclass(tp):
        return _build(tp, value if value is not None else {}, f"{key}.")
    if origin is list:
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, list):
            raise ConfigError(f"config key '{key}' must be a list")
        (item_type,) = typing.get_args(tp)
        return [_coerce(item_type, v, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a mapping")
        _, item_type = typing.get_args(tp)
        return {str(k): _coerce(item_type, v, f"{key}.{k}") for k, v in value.items()}
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"config key '{key}' must be true or false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"config key '{key}' must be an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"config key '{key}' must be a number, got {value!r}")
        return float(value)
    if tp is str:
        if value is None or isinstance(value, (dict, list)):
            raise ConfigError(f"config key '{key}' must be a string, got {value!r}")
        return str(value)
    raise ConfigError(f"config key '{key}' has an unsupported type {tp}")


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    return dataclasses.asdict(config)


def save_config(config: RunConfig, path: Path) -> None:
    from voxhear.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
