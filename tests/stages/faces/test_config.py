"""The `faces` config section: overrides, validation and resume safety."""

from __future__ import annotations

import pytest

from voxhear.pipeline.config import ConfigError, load_config
from voxhear.pipeline.runner import build_stages
from voxhear.pipeline.stage import RunContext


def test_face_overrides_are_typed_and_validated():
    config = load_config(None, ["faces.detect_every=3", "faces.detector=insightface"])
    assert config.faces.detect_every == 3 and config.faces.detector == "insightface"
    assert "faces" in config.processing_sections()
    with pytest.raises(ConfigError, match="faces.detector"):
        load_config(None, ["faces.detector=haar"])
    with pytest.raises(ConfigError, match="faces.detect_every"):
        load_config(None, ["faces.detect_every=0"])
    with pytest.raises(ConfigError, match="did you mean 'faces.detect_every'"):
        load_config(None, ["faces.detect_evry=2"])


def test_gpu_setting_becomes_the_stage_resource_request(tmp_path, model_store):
    stages = {s.name: s for s in build_stages(load_config(None, ["faces.gpus=0.25"]),
                                               RunContext(tmp_path, model_store))}
    assert stages["faces"].resources.gpus == 0.25
    assert stages["faces"].uses_models
    cpu_only = {s.name: s for s in build_stages(load_config(None, []), RunContext(tmp_path, model_store))}
    assert cpu_only["faces"].resources.gpus == 0.0
