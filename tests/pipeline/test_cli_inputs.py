"""`voxhear run` arguments: a KEY=VALUE that names an existing file (or glob matches) and whose key
is no config key is an input; an unknown key that names nothing gets the did-you-mean error."""

import pytest

from voxhear.pipeline import runner
from voxhear.pipeline.cli import main


@pytest.fixture
def captured(monkeypatch, tmp_path):
    """Runs `voxhear run` with run_pipeline replaced: the config it was given is captured."""
    configs = []

    class Summary:
        def format(self):
            return "done"

    def fake_run(config, show_progress=True):
        configs.append(config)
        return Summary()

    monkeypatch.setattr(runner, "run_pipeline", fake_run)
    monkeypatch.chdir(tmp_path)
    return configs


def test_an_existing_file_named_like_an_override_is_an_input(captured, tmp_path):
    (tmp_path / "take=2.mp4").write_bytes(b"video")
    (tmp_path / "take=3.mp4").write_bytes(b"video")
    assert main(["run", "take=2.mp4", "runner=local", "--run-dir", str(tmp_path / "run")]) == 0
    assert captured[-1].inputs == ["take=2.mp4"] and captured[-1].runner == "local"
    assert main(["run", "take=*.mp4", "shards.max_samples=7"]) == 0  # a glob that matches
    assert captured[-1].inputs == ["take=*.mp4"] and captured[-1].shards.max_samples == 7


@pytest.mark.parametrize(("arg", "message"), [
    ("runer=local", "unknown config key 'runer' (did you mean 'runner'?)"),
    ("take=2.mp4", "unknown config key 'take'"),  # no such file: still a (bad) override
    ("shards.max_sampels=3", "unknown config key 'shards.max_sampels' (did you mean 'shards.max_samples'?)"),
])
def test_an_unknown_key_that_names_no_file_gets_the_did_you_mean_error(captured, capsys, arg, message):
    assert main(["run", "a.mp4", arg]) == 2
    assert message in capsys.readouterr().err and captured == []
