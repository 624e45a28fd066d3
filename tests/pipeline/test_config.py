import pytest

from voxhear.config import ConfigError, load_config


def test_defaults_point_at_bundled_sample_and_validate():
    config = load_config()
    assert config.runner == "ray"
    assert config.inputs[0].endswith("sample/videos")
    assert config.ingest.fps == 25 and config.ingest.sample_rate == 16000


def test_overrides_are_typed(tmp_path):
    config = load_config(None, ["shards.max_samples=7", "scene_cut.threshold=30", "inputs=[a.mp4, b.mp4]"])
    assert config.shards.max_samples == 7
    assert config.scene_cut.threshold == 30.0 and isinstance(config.scene_cut.threshold, float)
    assert config.inputs == ["a.mp4", "b.mp4"]


def test_yaml_file_and_unknown_key_suggestion(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text("scene_cut:\n  treshold: 20\n")
    with pytest.raises(ConfigError, match="unknown config key 'scene_cut.treshold'.*did you mean 'scene_cut.threshold'"):
        load_config(path)


@pytest.mark.parametrize("override, message", [
    ("shards.max_samples=many", "must be an integer"),
    ("shards.max_samples=0", "must be >= 1"),
    ("runner=spark", "must be 'ray' or 'local'"),
    ("ingest.keep_original_audio=3", "must be true or false"),
    ("scene_cut.detector=histogram", "'content' or 'adaptive'"),
    ("diarization.embedding_backend=tensorrt", "'onnx' or 'torch'"),
    ("separation.backend=spleeter", "must be one of 'deepfilternet_onnx'"),
    ("nonsense", "not of the form key=value"),
])
def test_invalid_values_are_refused(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, [override])


def test_stage_selection_is_validated():
    assert load_config(None, ["stages=[ingest, scene_cut, shot_media]"]).stages == ["ingest", "scene_cut", "shot_media"]
    with pytest.raises(ConfigError, match="unknown stages"):
        load_config(None, ["stages=[ingest, shot_media, lipsync]"])
    with pytest.raises(ConfigError, match="pipeline order"):
        load_config(None, ["stages=[ingest, shot_media, scene_cut]"])
    with pytest.raises(ConfigError, match="must include 'shot_media'"):
        load_config(None, ["stages=[ingest, scene_cut]"])
