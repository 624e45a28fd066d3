"""Run configuration: one YAML, validated into typed objects before any work starts.

The engine's own keys live here (inputs, stages, runner, shards, ray, models); every stage's
section is declared by the stage itself (its `config_class`) and found through the registry, so
adding a stage adds its section without touching this file. A typo in a key stops the run at
once with a suggestion (config-key drift silently ignored is how a long run ends up with default
thresholds); see voxhear.pipeline.settings for the mechanism.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from voxhear.pipeline import registry
from voxhear.pipeline.remote_run import is_remote, open_filesystem
from voxhear.pipeline.settings import (
    ConfigError,
    apply_override,
    build_config,
    check_config,
    did_you_mean,
    require,
    setting,
)

__all__ = [
    "ConfigError",
    "RunConfig",
    "ShardConfig",
    "RayConfig",
    "ModelsConfig",
    "load_config",
    "config_from_dict",
    "config_to_dict",
    "save_config",
    "bundled_sample",
]


def bundled_sample() -> Path:
    """The bundled sample's videos: in a source checkout only (the wheel does not ship 13 MB of video)."""
    return Path(__file__).resolve().parent.parent / "sample" / "videos"


def _default_inputs() -> list[str]:
    sample = bundled_sample()
    return [str(sample)] if sample.is_dir() else []


@dataclass
class ShardConfig:
    """WebDataset shard limits; a shard is closed when either is reached."""

    max_samples: int = setting(1000, ge=1)
    max_megabytes: float = setting(1024.0, gt=0)
    # Commit at least this often (closing a shard early) so a killed run loses little work.
    commit_every_s: float = setting(120.0, gt=0)
    # Identity-disjoint splits (voxhear.passes.splits): target shares of clip time for val and test
    # (train gets the rest), and the seed that orders identities.
    val_share: float = setting(0.1, ge=0, lt=1)
    test_share: float = setting(0.1, ge=0, lt=1)
    split_seed: int = 0

    def check(self) -> None:
        require(self.val_share + self.test_share < 1, "shards.val_share", "and test_share must leave a share for train")


@dataclass
class RayConfig:
    """Where and how the Ray runner executes."""

    # None starts a local Ray; "auto" or "ray://host:10001" joins a cluster. RAY_ADDRESS also works.
    address: str | None = None
    # Only for a local Ray: cap the CPUs it may use.
    num_cpus: int | None = setting(None, ge=1)
    # Upper bound of each actor pool (stages that load models); None lets Ray size it.
    max_actors_per_stage: int | None = setting(None, ge=1)
    # The CPUs an autoscaling cluster can grow to (its worker groups' maxReplicas x CPUs). The stages'
    # CPU requests are scaled down only when they cannot fit in this many; None: the CPUs the cluster
    # has when the run starts, which would shrink every request for good on a cluster that starts small.
    max_cluster_cpus: int | None = setting(None, ge=1)


@dataclass
class ModelsConfig:
    """Model store: explicit paths win over `dir`, which wins over VOXHEAR_MODEL_DIR."""

    dir: str | None = None
    paths: dict[str, str] = field(default_factory=dict)
    allow_download: bool = True


@dataclass
class RunConfig:
    """Everything one run needs; saved resolved into the run directory.

    Stage sections are reached as attributes (`config.talk`) or with `section(name)`.
    """

    inputs: list[str] = setting(default_factory=_default_inputs, min_items=1)
    # Which stages run, in pipeline order; leaving out later stages stops the pipeline early
    # (e.g. [ingest, scene_cut, shot_media] writes one sample per shot).
    stages: list[str] = field(default_factory=lambda: registry.stage_names())
    # A local path, or a URL on object storage (s3://bucket/run; see pipeline/remote_run.py), which
    # the driver runs in a local staging copy (staging_dir) and publishes commit by commit.
    run_dir: str = "runs/default"
    # Where a run_dir on object storage is staged: its work area, and its shards until the end-of-run
    # passes. Empty: ~/.cache/voxhear/staging/<name>-<hash of run_dir>.
    staging_dir: str = ""
    runner: str = setting("ray", choices=("ray", "local"))
    # Retry inputs that failed in an earlier attempt of this run directory.
    retry_failed: bool = False
    # Stop the run when more than this share of inputs fail (after at least min_inputs_for_failure_rate).
    max_failure_rate: float = setting(0.5, gt=0, le=1)
    min_inputs_for_failure_rate: int = setting(10, ge=1)
    # Keep every input's intermediates in run_dir/work (GBs per input hour) after its samples are
    # committed, and what killed attempts left there. Off: they are deleted right after each
    # input's commit and at the start of a run (see voxhear.pipeline.workarea). Set it for
    # debugging, for the QC page's previews of rejected clips, and for `voxhear eval` and the
    # benchmarks, which score clips from their work files.
    keep_work: bool = False
    shards: ShardConfig = field(default_factory=ShardConfig)
    ray: RayConfig = field(default_factory=RayConfig)
    models: ModelsConfig = field(default_factory=ModelsConfig)
    # One section per registered stage that has one, keyed by stage name (filled by load_config).
    sections: dict[str, Any] = field(
        default_factory=lambda: {name: cls() for name, cls in registry.section_classes().items()}, repr=False
    )

    def __getattr__(self, name: str) -> Any:
        # Only called for names that are not fields: the stage sections.
        sections = self.__dict__.get("sections")
        if sections is not None and name in sections:
            return sections[name]
        raise AttributeError(f"RunConfig has no attribute or stage section {name!r}")

    def section(self, stage: str) -> Any:
        """The config section of `stage` (None for a stage without one)."""
        return self.sections.get(stage)

    def validate(self) -> None:
        check_config(self)
        for name, section in self.sections.items():
            check_config(section, f"{name}.")
        _check_stages(self.stages)
        if is_remote(self.run_dir):
            # Resolved now, so that a missing filesystem package fails at load, not after the stages ran.
            open_filesystem(self.run_dir)

    def processing_sections(self) -> dict[str, Any]:
        """The parts of the config that change what a run produces (resume must not mix them)."""
        return {
            "stages": list(self.stages),
            **{name: dataclasses.asdict(section) for name, section in self.sections.items()},
        }


def _check_stages(stages: list[str]) -> None:
    known = registry.stage_names()
    unknown = [name for name in stages if name not in known]
    require(not unknown, "stages", f"has unknown stages {unknown}; known, in order: {known}")
    require(
        list(stages) == [n for n in known if n in stages],
        "stages",
        f"must list stages once each in pipeline order {known}",
    )
    require(stages[:1] == ["ingest"], "stages", "must start with 'ingest'")
    require("shot_media" in stages, "stages", "must include 'shot_media' (it writes the samples)")
    for name in stages:
        missing = [r for r in registry.stage_class(name).requires if r not in stages]
        require(not missing, "stages", f"lacks {missing}, which stage '{name}' requires")


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
        apply_override(data, item)
    config = config_from_dict(data)
    config.validate()
    return config


def engine_keys() -> list[str]:
    """The engine's top-level keys; every other top-level key is a stage's section."""
    return [f.name for f in dataclasses.fields(RunConfig) if f.name != "sections"]


def top_level_keys() -> list[str]:
    """Every key a config may have at its top level: the engine's, then one per stage section."""
    return engine_keys() + list(registry.section_classes())


def config_from_dict(data: dict[str, Any]) -> RunConfig:
    """Build (not yet validate) a RunConfig from plain data: engine keys plus stage sections."""
    section_types = registry.section_classes()
    engine_names = engine_keys()
    engine: dict[str, Any] = {}
    sections: dict[str, Any] = {}
    for key, value in data.items():
        if key in section_types:
            sections[key] = build_config(section_types[key], value if value is not None else {}, f"{key}.")
        elif key in engine_names:
            engine[key] = value
        else:
            known = top_level_keys()
            hint = did_you_mean(key, known)
            raise ConfigError(f"unknown config key '{key}'{hint}; known: {', '.join(known)}")
    config = build_config(RunConfig, engine)  # every section at its defaults
    config.sections.update(sections)
    return config


def config_to_dict(config: RunConfig) -> dict[str, Any]:
    """The config as it is written to YAML: engine keys, then one mapping per stage section."""
    out = {}
    for name in engine_keys():
        value = getattr(config, name)
        out[name] = (
            dataclasses.asdict(value) if dataclasses.is_dataclass(value) and not isinstance(value, type) else value
        )
    out.update({name: dataclasses.asdict(section) for name, section in config.sections.items()})
    return out


def save_config(config: RunConfig, path: Path) -> None:
    from voxhear.pipeline.io import atomic_write_text

    atomic_write_text(path, yaml.safe_dump(config_to_dict(config), sort_keys=False))
