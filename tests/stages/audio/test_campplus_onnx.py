"""CAM++ on onnxruntime: the same embeddings as the torch module, exported once into a keyed cache."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from tests.stages.audio.conftest import RATE, SPEECH, load_speech, needs_media, needs_store
from voxhear.pipeline.models import ModelStore
from voxhear.stages.audio import campplus as cp
from voxhear.stages.audio import diarization


@pytest.fixture(scope="module")
def checkpoint(store):
    torch.set_num_threads(1)
    resolved = store.resolve("campplus")
    return cp.load_campplus(resolved.file()), resolved.spec.files[0].sha256


@pytest.fixture(scope="module")
def exported(store, checkpoint, tmp_path_factory):
    """The one real export of this module (about 4 CPU s), made as the diarizer makes it: with a
    store whose download cache is ROOT/models, so that it lands in ROOT/onnx."""
    root = tmp_path_factory.mktemp("cache")
    local = ModelStore(explicit_paths=store.explicit_paths, store_dir=store.store_dir, allow_download=False,
                       cache_dir=root / "models")
    return root, diarization._campplus(local, "onnx", threads=1)


def test_segment_mask_equals_frame_mask():
    # The CAM layer predicts its mask once per 100-frame segment; the paper's form predicts it for
    # every frame from the repeated segment context. Both must give the same output.
    torch.manual_seed(0)
    layer = cp.ContextAwareMask(64, 32, 3, 2).eval()
    x = torch.randn(2, 64, 257)
    with torch.inference_mode():
        segments = F.avg_pool1d(x, 100, 100, ceil_mode=True).repeat_interleave(100, dim=-1)[..., :257]
        context = x.mean(dim=-1, keepdim=True) + segments
        expected = layer.linear_local(x) * torch.sigmoid(layer.linear2(F.relu(layer.linear1(context))))
        assert torch.allclose(layer(x), expected, atol=1e-6)


@needs_store
@needs_media
def test_onnx_embeddings_match_torch_on_speech(checkpoint, exported):
    model, _ = checkpoint
    onnx_model = exported[1]
    names = ["cmu_arctic_us_aew_a0001.wav", "cmu_arctic_us_axb_a0004.wav", "jfk.flac", "2412-153948-0000.flac"]
    cosines = []
    for name in names:
        if not (SPEECH / name).exists():
            continue
        audio = torch.from_numpy(load_speech(name))
        for seconds in (0.5, 1.3, 2.5, 4.0):
            if len(audio) < seconds * RATE:
                continue
            feats = cp.fbank(audio[:int(seconds * RATE)])[None]
            with torch.inference_mode():
                cosines.append(float(F.cosine_similarity(model(feats), onnx_model(feats))[0]))
    assert len(cosines) >= 10
    # float32 rounding only (measured: >= 0.9999998); a wrong graph scores far lower.
    assert min(cosines) >= 0.9999, cosines
    # A batch of equal lengths, as pyannote could pass, row by row like single runs.
    feats = torch.stack([cp.fbank(torch.from_numpy(load_speech(n))[:RATE]) for n in names[:2]])
    with torch.inference_mode():
        assert F.cosine_similarity(model(feats), onnx_model(feats)).min() >= 0.9999


@needs_store
def test_export_is_cached_keyed_and_replaced_when_damaged(checkpoint, exported, tmp_path, monkeypatch):
    import onnx

    model, sha = checkpoint
    root, first = exported
    path = cp.onnx_cache_path(root / "onnx", sha)
    assert isinstance(first, cp.OnnxCAMPPlus) and [p.name for p in (root / "onnx").iterdir()] == [path.name]
    assert first.metadata == {"checkpoint_sha256": sha, "export_key": cp.onnx_export_key()}
    good = path.read_bytes()
    exports: list[str] = []

    def relabelled_export(model, checkpoint_sha256=""):
        # Stands in for a fresh export (4 CPU s each): the good graph, labelled for the checkpoint
        # asked for.
        exports.append(checkpoint_sha256)
        graph = onnx.load_from_string(good)
        del graph.metadata_props[:]
        onnx.helper.set_model_props(graph, {"checkpoint_sha256": checkpoint_sha256,
                                            "export_key": cp.onnx_export_key()})
        return graph.SerializeToString()

    monkeypatch.setattr(cp, "export_onnx", relabelled_export)
    cache = tmp_path / "onnx"
    cache.mkdir()
    mine = cp.onnx_cache_path(cache, sha)
    mine.write_bytes(good)
    # Reused: a cached export of this checkpoint by this exporter loads without exporting.
    assert cp.campplus_onnx(model, sha, cache).metadata["checkpoint_sha256"] == sha and exports == []
    assert mine.read_bytes() == good

    # Keyed: another checkpoint or another exporter looks for another file.
    assert cp.onnx_cache_path(cache, "0" * 64) != mine
    key = cp.onnx_export_key()
    with monkeypatch.context() as patch:
        patch.setattr(cp, "ONNX_EXPORT_REVISION", cp.ONNX_EXPORT_REVISION + 1)
        assert cp.onnx_export_key() != key and cp.onnx_cache_path(cache, sha) != mine
        patch.setattr(cp, "ONNX_EXPORT_REVISION", cp.ONNX_EXPORT_REVISION - 1)
        patch.setattr(torch, "__version__", "0.0.0")
        assert cp.onnx_export_key() != key

    # A file of another checkpoint under this one's name is exported again and replaced.
    other = cp.onnx_cache_path(cache, "f" * 64)
    other.write_bytes(good)
    assert cp.campplus_onnx(model, "f" * 64, cache).metadata["checkpoint_sha256"] == "f" * 64
    assert exports == ["f" * 64] and other.read_bytes() != good
    # A truncated file too; exports of this checkpoint under other keys go, as does any temporary file.
    stale = cache / f"campplus-{sha[:16]}-0000000000000000.onnx"
    stale.write_bytes(good)
    mine.write_bytes(good[:1000])
    assert cp.campplus_onnx(model, sha, cache).metadata["checkpoint_sha256"] == sha
    assert exports == ["f" * 64, sha] and mine.stat().st_size == len(good)
    assert sorted(p.name for p in cache.iterdir()) == sorted([mine.name, other.name])


@needs_store
def test_torch_backend_and_failed_export_keep_the_module(store, monkeypatch):
    assert isinstance(diarization._campplus(store, "torch", threads=1), cp.CAMPPlus)

    def broken(*args, **kwargs):
        raise RuntimeError("no exporter here")

    monkeypatch.setattr(diarization, "campplus_onnx", broken)
    assert isinstance(diarization._campplus(store, "onnx", threads=1), cp.CAMPPlus)
    with pytest.raises(ValueError, match="embedding_backend"):
        diarization.Diarizer(store, embedding_backend="tensorrt")
