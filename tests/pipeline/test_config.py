import pytest

from voxhear.pipeline.config import ConfigError, load_config


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
    with pytest.raises(
        ConfigError, match="unknown config key 'scene_cut.treshold'.*did you mean 'scene_cut.threshold'"
    ):
        load_config(path)


@pytest.mark.parametrize(
    "override, message",
    [
        ("shards.max_samples=many", "must be an integer"),
        ("shards.max_samples=0", "must be >= 1"),
        ("runner=spark", "must be one of 'ray', 'local'"),
        ("ingest.keep_original_audio=3", "must be true or false"),
        ("scene_cut.detector=histogram", "one of 'content', 'adaptive'"),
        ("diarization.embedding_backend=tensorrt", "one of 'onnx', 'torch'"),
        ("faces.crop_size=513", "must be even"),
        ("talk.max_clip_s=3", "at least twice min_clip_s"),
        ("faces.max_abs_yaw=30", "renamed to 'faces.max_median_abs_yaw'"),
        ("talk.max_abs_yaw=30", "renamed to 'talk.max_p90_abs_yaw'"),
        ("asr.clip_s=4", "renamed to 'asr.piece_s'"),
        ("inputs=[]", "needs at least 1 item"),
        ("separation.backend=spleeter", "must be one of 'deepfilternet_onnx'"),
        ("nonsense", "not of the form key=value"),
    ],
)
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


def test_a_stage_without_what_it_requires_is_refused_at_load():
    with pytest.raises(ConfigError, match=r"lacks \['separation', 'diarization'\], which stage 'talk' requires"):
        load_config(None, ["stages=[ingest, scene_cut, shot_media, faces, talk]"])
    with pytest.raises(ConfigError, match=r"lacks \['diarization'\], which stage 'asr' requires"):
        load_config(None, ["stages=[ingest, separation, asr, scene_cut, shot_media]"])


def test_saved_config_round_trips(tmp_path):
    from voxhear.pipeline.config import config_to_dict, save_config

    config = load_config(None, ["talk.min_face_px=70", "shards.max_samples=3"])
    save_config(config, tmp_path / "config.yaml")
    again = load_config(tmp_path / "config.yaml")
    assert config_to_dict(again) == config_to_dict(config)
    assert again.talk.min_face_px == 70.0 and again.shards.max_samples == 3


def test_exponent_numbers_on_the_command_line_are_numbers():
    config = load_config(None, ["diarization.threshold=6e-1"])
    assert config.diarization.threshold == 0.6


def test_a_run_dir_url_needs_a_filesystem_for_its_scheme():
    # s3:// comes with the package (s3fs); a scheme nothing implements is refused at load, naming it,
    # rather than becoming a local folder ./nosuch:/bucket/run.
    assert load_config(None, ["inputs=[a.mp4]", "run_dir=s3://bucket/run"]).run_dir == "s3://bucket/run"
    with pytest.raises(ConfigError, match=r"run_dir nosuch://bucket/run: no filesystem for 'nosuch://'"):
        load_config(None, ["inputs=[a.mp4]", "run_dir=nosuch://bucket/run"])
    assert load_config(None, ["inputs=[a.mp4]", "run_dir=/tmp/somewhere"]).run_dir == "/tmp/somewhere"


def test_a_run_directory_from_before_a_new_setting_resumes_but_not_with_other_settings(tmp_path):
    """A key added since the directory was made counts as its default; memory_gb (what a worker may
    hold) is not a processing setting; any other difference is refused."""
    import yaml

    from voxhear.pipeline.config import save_config
    from voxhear.pipeline.runner import check_resume_compatible

    config = load_config(None, ["inputs=[a.mp4]", f"run_dir={tmp_path}"])
    save_config(config, tmp_path / "config.yaml")
    saved = yaml.safe_load((tmp_path / "config.yaml").read_text())
    del saved["scene_cut"]["max_shot_s"]  # as written before the key existed
    saved["faces"]["memory_gb"] = 8.0
    (tmp_path / "config.yaml").write_text(yaml.safe_dump(saved))
    check_resume_compatible(config, tmp_path)
    other = load_config(None, ["inputs=[a.mp4]", f"run_dir={tmp_path}", "scene_cut.max_shot_s=60"])
    with pytest.raises(ConfigError, match="different 'scene_cut' settings"):
        check_resume_compatible(other, tmp_path)
