"""Adding a stage takes one class and one registry line: a toy stage, defined here, end to end.

The toy filters every `keep_every`-th shot out (a declared reject reason) and labels the others;
its output record adds two fields, which must reach clips.parquet and the samples' json.
"""

from __future__ import annotations

import json
import tarfile
from dataclasses import dataclass

import pyarrow.parquet as pq
import pytest

from tests.conftest import make_video
from voxhear.pipeline import registry
from voxhear.pipeline.config import ConfigError, load_config
from voxhear.pipeline.records import ShotRecord
from voxhear.pipeline.settings import setting
from voxhear.pipeline.stage import FilteredError, RejectReason, Resources, Stage

TOY_ENTRY = "tests.pipeline.test_toy_stage:ToyStage"
TOY_STAGES = "stages=[ingest, scene_cut, shot_media, toy]"


@dataclass(slots=True)
class ToyRecord(ShotRecord):
    toy_label: str = ""
    toy_frames: int = 0

    def sample_metadata(self):
        meta = ShotRecord.sample_metadata(self)  # slots=True dataclasses break zero-argument super()
        meta["toy"] = {"label": self.toy_label, "frames": self.toy_frames}
        return meta


@dataclass
class ToyConfig:
    """The toy's section: `toy.*` keys."""

    # Keep shots whose index is a multiple of this; filter the others with reason `toy_skipped`.
    keep_every: int = setting(1, ge=1)
    label: str = setting("plain", choices=("plain", "fancy"))
    threads: int = setting(1, ge=1)


class ToyStage(Stage[ShotRecord, ToyRecord]):
    name = "toy"
    input_type = ShotRecord
    output_type = ToyRecord
    config_class = ToyConfig
    requires = ("shot_media",)
    reasons = (
        RejectReason("toy_skipped", ("toy.keep_every",), "shot index not a multiple of keep_every"),
    )

    config: ToyConfig

    def process(self, row: ShotRecord) -> list[ToyRecord]:
        if row.shot_index % self.config.keep_every:
            raise FilteredError("toy_skipped", f"shot {row.shot_index} skipped (keep_every={self.config.keep_every})")
        return [ToyRecord.from_parent(row, toy_label=self.config.label, toy_frames=row.end_frame - row.start_frame)]


@pytest.fixture(autouse=True)
def toy_registered(monkeypatch):
    # The one registry line.
    monkeypatch.setattr(registry, "STAGES", registry.STAGES + ("tests.pipeline.test_toy_stage:ToyStage",))


def toy_class():
    # The registry imports this module by its dotted name; under pytest that is this very module.
    return registry.stage_class("toy")


# ---------------------------------------------------------------- registry and config


def test_the_registry_lists_the_toy_last_with_its_declarations():
    assert registry.stage_names()[-1] == "toy"
    assert toy_class().__name__ == "ToyStage" and toy_class().__module__ == "tests.pipeline.test_toy_stage"
    assert registry.section_classes()["toy"].__name__ == "ToyConfig"
    reason = registry.reject_reasons()[("toy", "toy_skipped")]
    assert reason.keys == ("toy.keep_every",)
    assert reason.doc and "toy.keep_every" not in [b.key for b in registry.bounds()]


def test_without_the_registry_line_there_is_no_toy(monkeypatch):
    monkeypatch.setattr(registry, "STAGES", tuple(e for e in registry.STAGES if e != TOY_ENTRY))
    with pytest.raises(ConfigError, match="unknown config key 'toy'"):
        load_config(None, ["toy.keep_every=2"])


def test_load_config_builds_and_validates_the_toy_section():
    config = load_config(None, [TOY_STAGES, "toy.keep_every=2", "toy.label=fancy"])
    assert config.stages == ["ingest", "scene_cut", "shot_media", "toy"]
    assert config.toy.keep_every == 2 and config.toy.label == "fancy"
    assert config.section("toy") is config.toy
    # Defaults when the section is not given, also when the stage is not run.
    assert load_config(None, [TOY_STAGES]).toy == toy_class().config_class()
    assert load_config(None, ["stages=[ingest, scene_cut, shot_media]"]).toy.keep_every == 1
    # The section is part of what a run directory must not mix.
    assert config.processing_sections()["toy"] == {"keep_every": 2, "label": "fancy", "threads": 1}


def test_the_toy_section_from_yaml(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("stages: [ingest, scene_cut, shot_media, toy]\ntoy:\n  keep_every: 3\n")
    assert load_config(path).toy.keep_every == 3


@pytest.mark.parametrize("override, message", [
    ("toy.keep_every=0", r"config key 'toy.keep_every' must be >= 1 \(got 0\)"),
    ("toy.keep_every=two", "config key 'toy.keep_every' must be an integer"),
    ("toy.label=gaudy", "config key 'toy.label' must be one of 'plain', 'fancy'"),
    ("toy.keep_evry=2", "unknown config key 'toy.keep_evry' .*did you mean 'toy.keep_every'"),
    ("tyo.keep_every=2", "unknown config key 'tyo' .*did you mean 'toy'"),
])
def test_bad_toy_keys_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [TOY_STAGES, override])


def test_the_toy_without_what_it_requires_is_refused():
    with pytest.raises(ConfigError, match="must include 'shot_media'"):
        load_config(None, ["stages=[ingest, scene_cut, toy]"])
    with pytest.raises(ConfigError, match="pipeline order"):
        load_config(None, ["stages=[ingest, scene_cut, toy, shot_media]"])


def test_the_requirement_check_reads_the_toys_declaration(monkeypatch):
    # shot_media is mandatory anyway, so require an optional stage to reach the generic check.
    monkeypatch.setattr(toy_class(), "requires", ("shot_media", "faces"))
    with pytest.raises(ConfigError, match=r"lacks \['faces'\], which stage 'toy' requires"):
        load_config(None, [TOY_STAGES])


def test_build_stages_builds_the_toy_with_its_section(tmp_path):
    from voxhear.pipeline.models import ModelStore
    from voxhear.pipeline.runner import build_stages
    from voxhear.pipeline.stage import RunContext

    config = load_config(None, [TOY_STAGES, "toy.keep_every=2", "toy.threads=3"])
    context = RunContext(run_dir=tmp_path, model_store=ModelStore.from_config(config.models))
    stages = build_stages(config, context)
    assert [s.name for s in stages] == ["ingest", "scene_cut", "shot_media", "toy"]
    toy = stages[-1]
    assert type(toy) is toy_class() and toy.config is config.toy and toy.context is context
    assert toy.resources == Resources(cpus=3.0)
    assert registry.models_in_use(config) == registry.models_in_use(load_config(None, ["stages=[ingest, scene_cut, "
                                                                                        "shot_media]"]))


def test_build_stages_refuses_a_toy_fed_the_wrong_record_type(tmp_path, monkeypatch):
    from voxhear.pipeline.models import ModelStore
    from voxhear.pipeline.runner import build_stages
    from voxhear.pipeline.stage import RunContext

    monkeypatch.setattr(toy_class(), "input_type", ToyRecord)  # shot_media emits ShotRecord
    config = load_config(None, [TOY_STAGES])
    with pytest.raises(ConfigError, match="stage toy takes ToyRecord rows but shot_media emits ShotRecord"):
        build_stages(config, RunContext(run_dir=tmp_path, model_store=ModelStore.from_config(config.models)))


# ---------------------------------------------------------------- a real in-process run


@pytest.fixture
def toy_run(tmp_path):
    from voxhear.pipeline.runner import run_pipeline

    video = make_video(tmp_path / "in" / "two_cuts.mp4", seconds=3.0, cuts=2)
    run_dir = tmp_path / "run"
    config = load_config(None, [f"inputs=['{video}']", f"run_dir={run_dir}", "runner=local", TOY_STAGES,
                                "toy.keep_every=2", "toy.label=fancy"])
    summary = run_pipeline(config, show_progress=False)
    return run_dir, summary


def test_a_local_run_with_the_toy_writes_its_output_to_manifests_and_shards(toy_run):
    run_dir, summary = toy_run
    assert summary.status_counts == {"ok": 1}
    clips = pq.read_table(run_dir / "manifests" / "clips.parquet")
    assert {"toy_label", "toy_frames", "shard"} <= set(clips.column_names)
    rows = sorted(clips.to_pylist(), key=lambda r: r["shot_index"])
    assert [r["shot_index"] for r in rows] == [0, 1]
    kept, skipped = rows
    assert (kept["status"], kept["toy_label"], kept["shard"]) == ("ok", "fancy", "000000.tar")
    assert kept["toy_frames"] == kept["end_frame"] - kept["start_frame"] > 0
    assert (skipped["status"], skipped["stage"], skipped["reason"]) == ("filtered", "toy", "toy_skipped")
    assert skipped["error_message"] == "shot 1 skipped (keep_every=2)" and skipped["shard"] == ""

    (source,) = pq.read_table(run_dir / "manifests" / "sources.parquet").to_pylist()
    assert (source["status"], source["n_shots"], source["n_clips_ok"], source["n_clips_filtered"]) == ("ok", 2, 1, 1)
    assert {"ingest", "scene_cut", "shot_media", "toy"} <= dict(source["wall_s"]).keys()

    with tarfile.open(run_dir / "shards" / "000000.tar") as tar:
        meta = json.loads(tar.extractfile(f"{kept['key']}.json").read())
        names = tar.getnames()
    assert meta["toy"] == {"label": "fancy", "frames": kept["toy_frames"]}
    assert names == [f"{kept['key']}.json", f"{kept['key']}.mp4", f"{kept['key']}.flac"]

    saved = (run_dir / "config.yaml").read_text()
    assert "toy:\n  keep_every: 2\n  label: fancy\n" in saved
