"""CAM++: the store's checkpoint loads strictly into the project's architecture and tells speakers apart."""

from __future__ import annotations

import pytest
import torch

from tests.stages.audio.conftest import RATE, arctic, load_speech, needs_media, needs_store
from voxhear.stages.audio.campplus import CAMPPlus, fbank, load_campplus


@needs_store
def test_checkpoint_loads_strictly(store):
    state = torch.load(str(store.resolve("campplus").file()), map_location="cpu", weights_only=True)
    model = CAMPPlus()
    # Every key and shape of the released state dict matches, none missing, none left over.
    assert set(model.state_dict()) == set(state)
    assert all(model.state_dict()[k].shape == v.shape for k, v in state.items())
    model.load_state_dict(state, strict=True)
    assert sum(p.numel() for p in model.parameters()) == pytest.approx(7.2e6, rel=0.05)  # the paper's 7.2 M


@needs_store
@needs_media
def test_same_speaker_is_closer_than_different_speakers(store):
    model = load_campplus(store.resolve("campplus").file())
    embeddings = {}
    with torch.inference_mode():
        for speaker in ("aew", "axb"):
            for path in arctic(speaker):
                wav = torch.from_numpy(load_speech(path.name))
                embeddings[(speaker, path.stem)] = torch.nn.functional.normalize(model(fbank(wav)[None])[0], dim=0)
    assert len(embeddings) == 6 and next(iter(embeddings.values())).shape == (192,)
    keys = list(embeddings)
    same = [float(embeddings[a] @ embeddings[b]) for i, a in enumerate(keys) for b in keys[i + 1:] if a[0] == b[0]]
    different = [float(embeddings[a] @ embeddings[b]) for a in keys for b in keys if a[0] < b[0]]
    assert len(same) == 6 and len(different) == 9
    # Every same-speaker pair beats every different-speaker pair, by a margin.
    assert min(same) > max(different) + 0.3, (same, different)


def test_feature_shape():
    feats = fbank(torch.zeros(RATE) + 1e-3 * torch.randn(RATE))
    assert feats.shape == (98, 80) and torch.allclose(feats.mean(0), torch.zeros(80), atol=1e-4)
