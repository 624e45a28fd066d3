"""Light-ASD (Liao et al., CVPR 2023): a lightweight audio-visual active speaker detector.

Written from the paper's description so that the authors' released checkpoint
(`finetuning_TalkSet.model`, about 1 M parameters) loads strictly. The design in short:

- Visual encoder over grayscale 112x112 face crops at 25 fps: three blocks, each two parallel
  branches (3x3 and 5x5) that factor a 3D convolution into a spatial (1,k,k) convolution and a
  temporal (k,1,1) one, summed and mixed by a 1x1x1 convolution; spatial max-pooling between
  blocks; a global spatial max at the end gives 128 features per frame.
- Audio encoder over 13 MFCCs at 100 Hz (four per video frame): the same two-branch blocks
  with 2D convolutions along the cepstral and the time axis; time max-pooling by 2 between
  blocks brings 100 Hz to 25 Hz; the mean over the cepstral axis gives 128 features per frame.
- Fusion by addition and a bidirectional GRU built from two one-directional GRUs (forward, then
  backward over the reversed sequence), each followed by GELU; a linear layer scores each frame
  (the logit of "speaking"; > 0 means speaking).
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

# Normalization of the grayscale input, as the released model was trained with.
PIXEL_MEAN = 0.4161
PIXEL_STD = 0.1688
BN_EPS = 1e-3


def _bn3d(channels: int) -> nn.BatchNorm3d:
    return nn.BatchNorm3d(channels, eps=BN_EPS, momentum=0.01)


def _bn2d(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=0.01)


class VisualBlock(nn.Module):
    """Two factorized (spatial then temporal) 3D-conv branches, summed, then a 1x1x1 mix."""

    def __init__(self, c_in: int, c_out: int, downsample: bool) -> None:
        super().__init__()
        stride = (1, 2, 2) if downsample else (1, 1, 1)
        for k in (3, 5):
            setattr(
                self,
                f"s_{k}",
                nn.Conv3d(c_in, c_out, (1, k, k), stride=stride, padding=(0, k // 2, k // 2), bias=False),
            )
            setattr(self, f"bn_s_{k}", _bn3d(c_out))
            setattr(self, f"t_{k}", nn.Conv3d(c_out, c_out, (k, 1, 1), padding=(k // 2, 0, 0), bias=False))
            setattr(self, f"bn_t_{k}", _bn3d(c_out))
        self.last = nn.Conv3d(c_out, c_out, 1, bias=False)
        self.bn_last = _bn3d(c_out)

    def _branch(self, x: torch.Tensor, k: int) -> torch.Tensor:
        x = torch.relu(getattr(self, f"bn_s_{k}")(_spatial(getattr(self, f"s_{k}"), x)))
        return torch.relu(getattr(self, f"bn_t_{k}")(_temporal(getattr(self, f"t_{k}"), x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn_last(self.last(self._branch(x, 3) + self._branch(x, 5))))


# PyTorch's CPU Conv3d has no fast kernel for these shapes (about 200 ms per frame here); the
# factorized convolutions are exactly 2D convolutions, so they run as such on reshaped tensors.
def _spatial(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A (1,k,k) Conv3d as a Conv2d over every frame: (B,C,T,H,W) -> (B,C',T,H',W')."""
    b, c, t, h, w = x.shape
    frames = x.transpose(1, 2).reshape(b * t, c, h, w)
    out = nn.functional.conv2d(frames, conv.weight.squeeze(2), stride=conv.stride[1:], padding=conv.padding[1:])
    return out.reshape(b, t, *out.shape[1:]).transpose(1, 2)


def _temporal(conv: nn.Conv3d, x: torch.Tensor) -> torch.Tensor:
    """A (k,1,1) Conv3d as a Conv2d with a (k,1) kernel over (time, pixels)."""
    b, c, t, h, w = x.shape
    out = nn.functional.conv2d(x.reshape(b, c, t, h * w), conv.weight.squeeze(-1), padding=(int(conv.padding[0]), 0))
    return out.reshape(b, -1, t, h, w)


class AudioBlock(nn.Module):
    """The audio counterpart: 2D convs along the cepstral axis (m) then the time axis (t)."""

    def __init__(self, c_in: int, c_out: int) -> None:
        super().__init__()
        for k in (3, 5):
            setattr(self, f"m_{k}", nn.Conv2d(c_in, c_out, (k, 1), padding=(k // 2, 0), bias=False))
            setattr(self, f"bn_m_{k}", _bn2d(c_out))
            setattr(self, f"t_{k}", nn.Conv2d(c_out, c_out, (1, k), padding=(0, k // 2), bias=False))
            setattr(self, f"bn_t_{k}", _bn2d(c_out))
        self.last = nn.Conv2d(c_out, c_out, 1, bias=False)
        self.bn_last = _bn2d(c_out)

    def _branch(self, x: torch.Tensor, k: int) -> torch.Tensor:
        x = torch.relu(getattr(self, f"bn_m_{k}")(getattr(self, f"m_{k}")(x)))
        return torch.relu(getattr(self, f"bn_t_{k}")(getattr(self, f"t_{k}")(x)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.relu(self.bn_last(self.last(self._branch(x, 3) + self._branch(x, 5))))


class VisualEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block1 = VisualBlock(1, 32, downsample=True)
        self.block2 = VisualBlock(32, 64, downsample=False)
        self.block3 = VisualBlock(64, 128, downsample=False)
        self.pool = nn.MaxPool3d((1, 3, 3), stride=(1, 2, 2), padding=(0, 1, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, T, H, W) -> (B, T, 128)."""
        x = self.pool(self.block1(x))
        x = self.pool(self.block2(x))
        x = self.block3(x)
        return x.amax(dim=(3, 4)).transpose(1, 2)


class AudioEncoder(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block1 = AudioBlock(1, 32)
        self.block2 = AudioBlock(32, 64)
        self.block3 = AudioBlock(64, 128)
        self.pool = nn.MaxPool2d((1, 3), stride=(1, 2), padding=(0, 1))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(B, 1, 13, 4T) -> (B, T, 128)."""
        x = self.pool(self.block1(x))
        x = self.pool(self.block2(x))
        x = self.block3(x)
        return x.mean(dim=2).transpose(1, 2)


class BidirectionalGRU(nn.Module):
    def __init__(self, channels: int) -> None:
        super().__init__()
        self.gru_forward = nn.GRU(channels, channels, batch_first=True)
        self.gru_backward = nn.GRU(channels, channels, batch_first=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = nn.functional.gelu(self.gru_forward(x)[0])
        x = self.gru_backward(x.flip(1))[0].flip(1)
        return nn.functional.gelu(x)


class LightASDNet(nn.Module):
    """Encoders and temporal backend (the checkpoint's `model.*` keys)."""

    def __init__(self) -> None:
        super().__init__()
        self.visualEncoder = VisualEncoder()
        self.audioEncoder = AudioEncoder()
        self.GRU = BidirectionalGRU(128)


class FrameClassifier(nn.Module):
    """The checkpoint's `lossAV` / `lossV` heads: 128 features -> 2 logits."""

    def __init__(self) -> None:
        super().__init__()
        self.FC = nn.Linear(128, 2)


class LightASD(nn.Module):
    """The whole detector, with parameter names matching the released checkpoint."""

    def __init__(self) -> None:
        super().__init__()
        self.model = LightASDNet()
        self.lossAV = FrameClassifier()
        # The visual-only head is used in training only; kept so the checkpoint loads strictly.
        self.lossV = FrameClassifier()

    def forward(self, mfcc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Per-frame speaking logits.

        Args:
            mfcc: (B, 4T, 13) MFCCs at 100 Hz.
            faces: (B, T, 112, 112) grayscale face crops, 0..255.

        Returns:
            (B, T) logits; > 0 means the face is speaking.
        """
        return self.classify(self.encode(mfcc, faces))

    def encode(self, mfcc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        """Fused per-frame features (B, T, 128), before the temporal backend."""
        frames = faces.shape[1]
        visual = (faces.float() / 255.0 - PIXEL_MEAN) / PIXEL_STD
        visual = self.model.visualEncoder(visual.unsqueeze(1))
        audio = self.model.audioEncoder(mfcc.float().transpose(1, 2).unsqueeze(1))
        return audio[:, :frames] + visual

    def classify(self, fused: torch.Tensor) -> torch.Tensor:
        """Fused features (B, T, 128) -> per-frame logits (B, T)."""
        return self.lossAV.FC(self.model.GRU(fused))[..., 1]


def load_light_asd(path: str | Path, device: str = "cpu") -> LightASD:
    """Build the network and load the released weights strictly (every key, every shape)."""
    model = LightASD()
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)


# --- onnxruntime (stages/onnx_cache.py) ------------------------------------------------------------

# Raise when the export changes in a way the digest of this file would not show.
ONNX_EXPORT_REVISION = 1
# The exported encoders must give the torch module's fused features to this (absolute, on
# features of magnitude ~10) on a fixed input; measured: 2e-6.
ONNX_MAX_ERROR = 1e-3


class _Encoders(nn.Module):
    """What is exported: `LightASD.encode` (both encoders, fused), without the recurrent backend."""

    def __init__(self, model: LightASD) -> None:
        super().__init__()
        self.model = model

    def forward(self, mfcc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        return self.model.encode(mfcc, faces)


class OnnxLightASD(nn.Module):
    """Light-ASD whose encoders (nearly all of its cost: about 17 ms of a CPU per frame on torch)
    run on onnxruntime, 2.2x cheaper here; the small recurrent backend and the heads stay on torch.
    Used like `LightASD` (`encode`, `classify`, called for logits)."""

    def __init__(self, model: LightASD, session) -> None:
        super().__init__()
        self.torch_model = model
        self.session = session

    def encode(self, mfcc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        out = self.session.run(
            mfcc=mfcc.detach().to("cpu", torch.float32).contiguous().numpy(),
            faces=faces.detach().to("cpu", torch.uint8).contiguous().numpy(),
        )[0]
        return torch.from_numpy(out)

    def classify(self, fused: torch.Tensor) -> torch.Tensor:
        return self.torch_model.classify(fused)

    def forward(self, mfcc: torch.Tensor, faces: torch.Tensor) -> torch.Tensor:
        return self.classify(self.encode(mfcc, faces))


def _example_inputs(frames: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    mfcc = torch.randn(1, 4 * frames, 13, generator=generator) * 10
    faces = torch.randint(0, 256, (1, frames, 112, 112), generator=generator, dtype=torch.uint8)
    return mfcc, faces


def _onnx_error(model: LightASD, session) -> float:
    """Largest absolute difference of the fused features on fixed inputs of two lengths."""
    worst = 0.0
    for frames in (29, 7):
        mfcc, faces = _example_inputs(frames)
        with torch.inference_mode():
            expected = model.encode(mfcc, faces)
        got = session.run(mfcc=mfcc.numpy(), faces=faces.numpy())[0]
        worst = max(worst, float((torch.from_numpy(got) - expected).abs().max()))
    return worst


def light_asd_onnx(model: LightASD, checkpoint_sha256: str, cache_dir: str | Path | None, threads: int = 1):
    """`model` (CPU, eval mode) with its encoders on onnxruntime, exported once into `cache_dir`
    and checked against `model` on every load. Raises when a fresh export fails or disagrees: the
    caller then keeps the torch module."""
    from voxhear.stages import onnx_cache

    key = onnx_cache.export_key(__file__, ONNX_EXPORT_REVISION)
    session = onnx_cache.cached_export(
        "light-asd",
        checkpoint_sha256,
        key,
        cache_dir,
        export=lambda: onnx_cache.export_graph(
            _Encoders(model).eval(),
            _example_inputs(29),
            input_names=["mfcc", "faces"],
            output_names=["fused"],
            dynamic_axes={"mfcc": {1: "mfcc_frames"}, "faces": {1: "frames"}, "fused": {1: "frames"}},
            properties={"checkpoint_sha256": checkpoint_sha256, "export_key": key},
        ),
        load=lambda graph: onnx_cache.OnnxSession(graph, threads),
        agrees=lambda candidate: _onnx_error(model, candidate) <= ONNX_MAX_ERROR,
    )
    return OnnxLightASD(model, session)
