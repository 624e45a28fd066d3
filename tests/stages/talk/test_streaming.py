"""The talk stage reads a track a window at a time: the same results as whole-track reads, with
memory bounded by the window (issue 15)."""

import numpy as np
import pytest
import torch

from tests.conftest import SHARED_MODELS, needs_shared
from voxhear.stages.talk import asd
from voxhear.stages.talk.frame_arrays import FrameArrays

CHECKPOINT = SHARED_MODELS / "light-asd" / "finetuning_TalkSet.model"


def _arrays(tmp_path, n=137):
    rng = np.random.default_rng(0)
    arrays = {
        "frame": np.arange(1000, 1000 + n, dtype=np.int32),
        "box": rng.random((n, 4)).astype(np.float32),
        "landmarks": rng.random((n, 478, 3)).astype(np.float32),
        "has_landmarks": rng.random(n) > 0.2,
        "blendshape_names": np.array(["a", "bb", "ccc"]),
        "embedding": rng.random(8).astype(np.float32),
    }
    path = tmp_path / "track.npz"
    with open(path, "wb") as handle:
        np.savez_compressed(handle, **arrays)
    return path, arrays


def test_frame_arrays_give_the_same_rows_as_np_load_in_any_order(tmp_path):
    path, arrays = _arrays(tmp_path)
    with FrameArrays(path) as lazy:
        assert "landmarks" in lazy and "nothing" not in lazy
        np.testing.assert_array_equal(lazy["blendshape_names"], arrays["blendshape_names"])
        np.testing.assert_array_equal(lazy.get("embedding"), arrays["embedding"])
        assert lazy.get("embeddings") is None
        # In order, the same window twice, a sub-window, a window back (reopens), past the end.
        for a, b in [(0, 40), (40, 90), (40, 90), (50, 60), (90, 137), (10, 30), (30, 31), (120, 200)]:
            for name in ("frame", "landmarks", "has_landmarks", "box"):
                got = lazy.rows(name, a, b)
                np.testing.assert_array_equal(got, arrays[name][a:b], err_msg=f"{name}[{a}:{b}]")
                assert got.dtype == arrays[name].dtype
        with pytest.raises(KeyError):
            lazy.rows("nothing", 0, 1)


def test_frame_arrays_stream_a_member_once_when_windows_come_in_order(tmp_path, monkeypatch):
    path, arrays = _arrays(tmp_path)
    opened = []
    from voxhear.stages.talk import frame_arrays

    original = frame_arrays._Member.__init__

    def counting(self, archive, name):
        opened.append(name)
        original(self, archive, name)

    monkeypatch.setattr(frame_arrays._Member, "__init__", counting)
    with FrameArrays(path) as lazy:
        for a in range(0, 137, 20):
            lazy.rows("landmarks", a, a + 20)
            lazy.rows("landmarks", a, a + 20)  # a second reader of the same clip window
    assert opened == ["landmarks"]


@pytest.mark.parametrize("n_samples", [1, 399, 400, 401, 16000 * 3 - 400, 16000 * 3 + 77])
def test_mfcc_rows_of_a_span_equal_the_whole_signals(n_samples):
    audio = (np.random.default_rng(n_samples).standard_normal(n_samples) * 3000).astype(np.int16)
    whole = asd.mfcc_features(audio)
    assert len(whole) == asd.mfcc_count(n_samples)
    for first, stop in [(0, 4), (4, 48), (1, 2), (37, len(whole)), (0, len(whole))]:
        if first >= stop or stop > len(whole):
            continue
        got = asd.mfcc_rows(lambda a, b: audio[a:b], n_samples, first, stop)
        np.testing.assert_allclose(got, whole[first:stop], rtol=1e-9, atol=1e-9)


def test_encode_windows_cover_every_frame_once_with_context():
    for frames in (1, 249, 250, 251, 1000, 1234):
        spans = asd.encode_windows(frames)
        kept = np.concatenate([np.arange(a, b) for _, a, b, _ in spans])
        np.testing.assert_array_equal(kept, np.arange(frames))
        for lo, a, b, hi in spans:
            assert lo == max(0, a - asd.ENCODE_CONTEXT_FRAMES) and hi == min(frames, b + asd.ENCODE_CONTEXT_FRAMES)
            assert hi - lo <= asd.ENCODE_WINDOW_FRAMES + 2 * asd.ENCODE_CONTEXT_FRAMES


def test_crop_stream_decodes_each_frame_once_front_to_back():
    frames = [np.full((60, 60, 3), i, np.uint8) for i in range(30)]
    pulled = []

    def source():
        for i, frame in enumerate(frames):
            pulled.append(i)
            yield frame

    geometry = np.tile([20.0, 30.0, 30.0], (40, 1))
    stream = asd.CropStream(source(), geometry)
    whole = np.stack([asd.face_crop(f, g) for f, g in zip(frames, geometry)])
    np.testing.assert_array_equal(stream(0, 12), whole[0:12])
    np.testing.assert_array_equal(stream(8, 20), whole[8:20])
    np.testing.assert_array_equal(stream(25, 28), whole[25:28])  # frames 20..24 skipped over
    past = stream(26, 40)  # past the video's end: the last crop again
    np.testing.assert_array_equal(past[:4], whole[26:30])
    assert (past[4:] == whole[29]).all()
    assert pulled == list(range(30))
    with pytest.raises(ValueError):
        stream(10, 12)


@needs_shared(CHECKPOINT, "the shared Light-ASD checkpoint")
def test_windowed_scores_equal_whole_track_scores_and_bound_the_encoder_input(monkeypatch):
    """Over many encoder windows: the scores of one whole-track encoder run, to float rounding,
    with no encoder run longer than a window plus its context."""
    torch.set_num_threads(1)
    model = asd_model()
    rng = np.random.default_rng(1)
    n = 230
    crops = rng.integers(0, 256, (n, 112, 112), dtype=np.uint8)
    audio = (rng.standard_normal(n * 640 - 300) * 4000).astype(np.int16)
    features = asd.mfcc_features(audio)
    frames = min(n, len(features) // 4)
    with torch.no_grad():
        fused = model.encode(
            torch.from_numpy(features[: frames * 4]).float()[None], torch.from_numpy(crops[:frames])[None]
        )[0]
        whole = (
            torch.stack(
                [
                    torch.cat([model.classify(fused[s : s + sec * 25][None])[0] for s in range(0, frames, sec * 25)])
                    for sec in asd.WINDOW_SECONDS
                ]
            )
            .mean(0)
            .numpy()
        )
    monkeypatch.setattr(asd, "ENCODE_WINDOW_FRAMES", 40)
    monkeypatch.setattr(asd, "ENCODE_CONTEXT_FRAMES", 10)
    lengths = []
    encode = model.encode

    def counting(mfcc, faces):
        lengths.append(faces.shape[1])
        return encode(mfcc, faces)

    monkeypatch.setattr(model, "encode", counting)
    scores = asd.speaking_scores(model, crops, audio)
    assert scores.shape == (n,) and max(lengths) <= 60 and len(lengths) == -(-frames // 40)
    np.testing.assert_allclose(scores[:frames], whole, atol=1e-5)
    assert (scores[frames:] == scores[frames - 1]).all()


def asd_model():
    from voxhear.stages.talk.light_asd import load_light_asd

    return load_light_asd(CHECKPOINT)


@needs_shared(CHECKPOINT, "the shared Light-ASD checkpoint")
@pytest.mark.parametrize("frames", [25, 60, 137])
def test_windowed_logits_batch_the_windows_of_one_length(monkeypatch, frames):
    """The backend restarted every `step` frames gives each window's own logits, with every whole
    window in one call and the shorter last one in another."""
    torch.set_num_threads(1)
    model = asd_model()
    fused = torch.from_numpy(np.random.default_rng(frames).standard_normal((frames, 128)).astype(np.float32))
    step = 25
    with torch.no_grad():
        one_by_one = torch.cat([model.classify(fused[s : s + step][None])[0] for s in range(0, frames, step)])
        calls = []
        classify = model.classify

        def counting(x):
            calls.append(tuple(x.shape))
            return classify(x)

        monkeypatch.setattr(model, "classify", counting)
        batched = asd.windowed_logits(model, fused, step)
    np.testing.assert_allclose(batched.numpy(), one_by_one.numpy(), rtol=1e-4, atol=5e-5)  # float rounding
    assert calls[0] == (frames // step, step, 128)
    assert len(calls) == (1 if frames % step == 0 else 2)
