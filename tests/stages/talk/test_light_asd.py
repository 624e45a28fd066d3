"""Light-ASD, written in the project, loads the released weights strictly and hears real speech."""

import json
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch

from tests.conftest import SHARED_MODELS, needs_shared
from voxhear.stages.talk.asd import face_crops, speaking_scores, smooth
from voxhear.stages.talk.light_asd import LightASD, load_light_asd

CHECKPOINT = SHARED_MODELS / "light-asd" / "finetuning_TalkSet.model"
GRID = SHARED_MODELS.parent / "media" / "faces-grid"
BOXES = json.loads((Path(__file__).parents[3] / "benchmarks" / "synth" / "grid_face_boxes.json").read_text())["boxes"]
pytestmark = [needs_shared(CHECKPOINT, "the shared Light-ASD checkpoint"),
              needs_shared(GRID, "the shared GRID face clips")]


@pytest.fixture(scope="module")
def model():
    return load_light_asd(CHECKPOINT)


def _clip(name):
    path = GRID / f"{name}.mpg"
    capture = cv2.VideoCapture(str(path))
    frames = []
    while (ok := capture.read())[0]:
        frames.append(ok[1])
    audio = subprocess.run(["ffmpeg", "-loglevel", "error", "-i", str(path), "-ac", "1", "-ar", "16000",
                            "-f", "s16le", "-"], capture_output=True, check=True).stdout
    return np.array(frames), np.frombuffer(audio, np.int16)


def test_checkpoint_loads_strictly_with_every_parameter(model):
    state = torch.load(CHECKPOINT, map_location="cpu", weights_only=True)
    assert set(state) == set(LightASD().state_dict())
    assert 0.9e6 < sum(p.numel() for p in model.parameters()) < 1.2e6  # "about 1 M parameters"


def test_own_speech_scores_higher_than_silence_and_than_the_silent_ends(model):
    """Over real GRID talkers: speaking frames with their own voice score above the same frames
    with the audio muted, and above the clip's silent first/last frames."""
    speech_own, speech_muted, still = [], [], []
    for name in sorted(BOXES)[:4]:
        frames, audio = _clip(name)
        crops = face_crops(frames, np.tile(np.array(BOXES[name], float), (len(frames), 1)))
        own = smooth(speaking_scores(model, crops, audio))
        muted = smooth(speaking_scores(model, crops, np.zeros_like(audio)))
        speech_own.append(own[25:60].mean())
        speech_muted.append(muted[25:60].mean())
        still.append(np.r_[own[:8], own[-8:]].mean())
    assert np.mean(speech_own) > np.mean(speech_muted) + 0.3
    assert np.mean(speech_own) > np.mean(still) + 1.0


def test_scores_cover_every_frame_even_when_audio_is_short(model):
    crops = np.full((30, 112, 112), 128, np.uint8)
    scores = speaking_scores(model, crops, np.zeros(16000 * 30 // 25 - 400, np.int16))
    assert scores.shape == (30,) and np.isfinite(scores).all()


def test_onnx_encoders_give_the_torch_scores_and_are_exported_once(model, tmp_path, monkeypatch):
    """The onnxruntime backend scores real talkers as torch does (float rounding), is cached by
    checkpoint and exporter, reused without a second export, and re-exported when damaged."""
    from voxhear.stages import onnx_cache
    from voxhear.stages.talk import light_asd

    sha = "ab" * 32
    onnx_model = light_asd.light_asd_onnx(model, sha, tmp_path, threads=1)
    [cached] = tmp_path.iterdir()
    assert cached.name.startswith("light-asd-abababababababab-") and cached.suffix == ".onnx"
    for name in sorted(BOXES)[:2]:
        frames, audio = _clip(name)
        crops = face_crops(frames, np.tile(np.array(BOXES[name], float), (len(frames), 1)))
        expected, got = speaking_scores(model, crops, audio), speaking_scores(onnx_model, crops, audio)
        assert np.abs(expected - got).max() < 1e-3, np.abs(expected - got).max()

    exports = []
    real_export = onnx_cache.export_graph
    monkeypatch.setattr(onnx_cache, "export_graph", lambda *a, **k: exports.append(1) or real_export(*a, **k))
    light_asd.light_asd_onnx(model, sha, tmp_path)
    assert exports == []  # loaded from the cache
    cached.write_bytes(b"not a graph")
    light_asd.light_asd_onnx(model, sha, tmp_path)
    assert exports == [1] and cached.read_bytes() != b"not a graph"


def test_talk_stage_uses_onnx_on_cpu_and_torch_when_told_or_when_the_export_fails(monkeypatch, tmp_path):
    from voxhear.pipeline.models import ModelStore
    from voxhear.pipeline.stage import RunContext
    from voxhear.stages.talk import stage as talk_stage
    from voxhear.stages.talk.config import TalkConfig
    from voxhear.stages.talk.light_asd import OnnxLightASD

    store = ModelStore(store_dir=str(SHARED_MODELS), allow_download=False, cache_dir=tmp_path / "models")

    def model_of(config: TalkConfig):
        stage = talk_stage.TalkStage(config, RunContext(tmp_path, model_store=store))
        stage.setup()
        return stage.model

    assert isinstance(model_of(TalkConfig()), OnnxLightASD)
    assert (tmp_path / "onnx").is_dir()  # exported beside the store's download cache
    assert type(model_of(TalkConfig(asd_backend="torch"))) is LightASD

    def broken(*args, **kwargs):
        raise RuntimeError("no exporter here")

    monkeypatch.setattr(talk_stage, "light_asd_onnx", broken)
    assert type(model_of(TalkConfig())) is LightASD
