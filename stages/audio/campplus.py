"""CAM++ speaker embedding (Wang et al., "CAM++: A Fast and Efficient Network for Speaker
Verification Using Context-Aware Masking", Interspeech 2023), written from the paper.

The module names follow the released 3D-Speaker checkpoints so that their plain state dicts load
strictly. Shape of the network:

- front-end convolution module (FCM): a small 2-D ResNet over (frequency, time) that downsamples
  frequency by 8 and keeps time, flattened to 320 channels;
- a TDNN layer (kernel 5, time stride 2) to 128 channels;
- three densely connected TDNN blocks (12, 24, 16 layers; dilation 1, 2, 2; growth 32), each
  layer a bottleneck followed by a context-aware masking (CAM) layer, with transition layers
  halving the channels in between;
- statistics pooling (mean and standard deviation over time) and a 192-d affine embedding.

Input: 80-dim Kaldi log-mel filterbanks at 16 kHz with per-utterance mean normalisation.

On CPU the same module runs on onnxruntime (`campplus_onnx`): exported once per checkpoint and
exporter into a cache, about twice as fast as eager torch on one thread, embeddings equal to
float32 rounding (docs/benchmarks/audio.md).
"""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from voxhear.stages import onnx_cache

SAMPLE_RATE = 16000
FEAT_DIM = 80
EMBED_DIM = 192


class _BnRelu(nn.Sequential):
    """The "batchnorm-relu" nonlinearity of every TDNN-style layer (state-dict name: batchnorm)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.batchnorm = nn.BatchNorm1d(channels)
        self.relu = nn.ReLU(inplace=True)


class _ResBlock2d(nn.Module):
    """Basic 2-D residual block; strides only along frequency."""

    def __init__(self, channels: int, stride: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, stride=(stride, 1), padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=1, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.shortcut = nn.Sequential()
        if stride != 1:
            self.shortcut = nn.Sequential(
                nn.Conv2d(channels, channels, 1, stride=(stride, 1), bias=False), nn.BatchNorm2d(channels)
            )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x)))
        y = self.bn2(self.conv2(y))
        return F.relu(y + self.shortcut(x))


class FrontEnd(nn.Module):
    """FCM: (batch, freq, time) filterbanks -> (batch, channels * freq / 8, time)."""

    def __init__(self, feat_dim: int = FEAT_DIM, channels: int = 32) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(1, channels, 3, stride=1, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(channels)
        self.layer1 = nn.Sequential(_ResBlock2d(channels, 2), _ResBlock2d(channels, 1))
        self.layer2 = nn.Sequential(_ResBlock2d(channels, 2), _ResBlock2d(channels, 1))
        self.conv2 = nn.Conv2d(channels, channels, 3, stride=(2, 1), padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(channels)
        self.out_channels = channels * (feat_dim // 8)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.relu(self.bn1(self.conv1(x.unsqueeze(1))))
        y = self.layer2(self.layer1(y))
        y = F.relu(self.bn2(self.conv2(y)))
        return y.flatten(1, 2)


class _Tdnn(nn.Module):
    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1) -> None:
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, kernel, stride=stride, padding=kernel // 2, bias=False)
        self.nonlinear = _BnRelu(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x))


class ContextAwareMask(nn.Module):
    """CAM layer: a local TDNN output scaled by a sigmoid mask predicted from utterance-level and
    segment-level (100-frame) context."""

    SEGMENT = 100

    def __init__(self, cin: int, cout: int, kernel: int, dilation: int, reduction: int = 2) -> None:
        super().__init__()
        self.linear_local = nn.Conv1d(
            cin, cout, kernel, padding=(kernel - 1) // 2 * dilation, dilation=dilation, bias=False
        )
        self.linear1 = nn.Conv1d(cin, cin // reduction, 1)
        self.linear2 = nn.Conv1d(cin // reduction, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        local = self.linear_local(x)
        frames = x.shape[-1]
        segments = F.avg_pool1d(x, self.SEGMENT, self.SEGMENT, ceil_mode=True)
        context = x.mean(dim=-1, keepdim=True) + segments
        # The context is constant within a segment and the mask network works frame by frame
        # (1x1 convolutions), so the mask is predicted once per segment and then repeated: the
        # same values as predicting it for every frame, from 1/100 of the frames.
        mask = torch.sigmoid(self.linear2(F.relu(self.linear1(context))))
        return local * mask.repeat_interleave(self.SEGMENT, dim=-1)[..., :frames]


class _DenseLayer(nn.Module):
    def __init__(self, cin: int, growth: int, bottleneck: int, kernel: int, dilation: int) -> None:
        super().__init__()
        self.nonlinear1 = _BnRelu(cin)
        self.linear1 = nn.Conv1d(cin, bottleneck, 1, bias=False)
        self.nonlinear2 = _BnRelu(bottleneck)
        self.cam_layer = ContextAwareMask(bottleneck, growth, kernel, dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cam_layer(self.nonlinear2(self.linear1(self.nonlinear1(x))))


class _DenseBlock(nn.ModuleDict):
    """D-TDNN block: every layer sees the concatenation of the input and all earlier outputs."""

    def __init__(self, n_layers: int, cin: int, growth: int, bottleneck: int, kernel: int, dilation: int) -> None:
        super().__init__(
            {
                f"tdnnd{i + 1}": _DenseLayer(cin + i * growth, growth, bottleneck, kernel, dilation)
                for i in range(n_layers)
            }
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for layer in self.values():
            x = torch.cat([x, layer(x)], dim=1)
        return x


class _Transit(nn.Module):
    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.nonlinear = _BnRelu(cin)
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear(self.nonlinear(x))


class _Embedding(nn.Module):
    """Affine projection of the pooled statistics followed by a batch norm without scale/shift."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.linear = nn.Conv1d(cin, cout, 1, bias=False)
        self.nonlinear = nn.Sequential()
        self.nonlinear.add_module("batchnorm", nn.BatchNorm1d(cout, affine=False))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.nonlinear(self.linear(x.unsqueeze(-1)).squeeze(-1))


class _StatsPool(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        # (batch, channels, time) -> (batch, 2 * channels). A positive concat axis: the legacy ONNX
        # exporter resolves -1 against the wrong rank after `std`.
        return torch.cat([x.mean(dim=-1), x.std(dim=-1, unbiased=True)], dim=1)


class CAMPPlus(nn.Module):
    """CAM++ over filterbanks: (batch, frames, 80) -> (batch, 192)."""

    def __init__(
        self,
        feat_dim: int = FEAT_DIM,
        embed_dim: int = EMBED_DIM,
        growth: int = 32,
        bottleneck_factor: int = 4,
        init_channels: int = 128,
        layers: tuple[int, int, int] = (12, 24, 16),
        dilations: tuple[int, int, int] = (1, 2, 2),
    ) -> None:
        super().__init__()
        self.head = FrontEnd(feat_dim)
        self.xvector = nn.Sequential()
        self.xvector.add_module("tdnn", _Tdnn(self.head.out_channels, init_channels, 5, stride=2))
        channels = init_channels
        for i, (n_layers, dilation) in enumerate(zip(layers, dilations), start=1):
            block = _DenseBlock(n_layers, channels, growth, bottleneck_factor * growth, 3, dilation)
            self.xvector.add_module(f"block{i}", block)
            channels += n_layers * growth
            self.xvector.add_module(f"transit{i}", _Transit(channels, channels // 2))
            channels //= 2
        self.xvector.add_module("out_nonlinear", _BnRelu(channels))
        self.xvector.add_module("stats", _StatsPool())
        self.xvector.add_module("dense", _Embedding(channels * 2, embed_dim))

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return self.xvector(self.head(feats.transpose(1, 2)))


def fbank(waveform: torch.Tensor) -> torch.Tensor:
    """80-dim Kaldi log-mel filterbanks of a mono 16 kHz waveform, mean-normalised over time."""
    import torchaudio.compliance.kaldi as kaldi

    feats = kaldi.fbank(
        waveform.reshape(1, -1).float(), num_mel_bins=FEAT_DIM, sample_frequency=SAMPLE_RATE, dither=0.0
    )
    return feats - feats.mean(dim=0, keepdim=True)


def load_campplus(path, device: str | torch.device = "cpu") -> CAMPPlus:
    """Load a 3D-Speaker CAM++ state dict strictly (every key and shape must match)."""
    model = CAMPPlus()
    state = torch.load(str(path), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model.eval().to(device)


# --- onnxruntime (stages/onnx_cache.py) ------------------------------------------------------------

# Raise when the export changes in a way the digest of this file would not show.
ONNX_EXPORT_REVISION = 1
# The exported graph must give the torch module's embeddings (cosine) on a fixed input.
ONNX_MIN_COSINE = 0.999


def onnx_export_key() -> str:
    """Digest of this module's source (the architecture), the exporter and the export revision."""
    return onnx_cache.export_key(__file__, ONNX_EXPORT_REVISION)


def onnx_cache_path(cache_dir: str | Path, checkpoint_sha256: str) -> Path:
    """Where the export of the checkpoint with `checkpoint_sha256` by this exporter is cached."""
    return onnx_cache.cache_path(cache_dir, "campplus", checkpoint_sha256, onnx_export_key())


def export_onnx(model: CAMPPlus, checkpoint_sha256: str = "") -> bytes:
    """The (CPU, eval-mode) module as an ONNX graph with dynamic batch and time axes; its metadata
    names the checkpoint and `onnx_export_key()`."""
    return onnx_cache.export_graph(
        model,
        # 301 frames: the time axis is odd and spans two 100-frame CAM segments after the stride.
        (torch.zeros(1, 301, FEAT_DIM),),
        input_names=["feats"],
        output_names=["embedding"],
        dynamic_axes={"feats": {0: "batch", 1: "frames"}, "embedding": {0: "batch"}},
        properties={"checkpoint_sha256": checkpoint_sha256, "export_key": onnx_export_key()},
    )


class OnnxCAMPPlus(onnx_cache.OnnxSession):
    """CAM++ on onnxruntime's CPU provider; called like the module in inference:
    (batch, frames, 80) filterbanks -> (batch, 192) embeddings."""

    def __call__(self, feats: torch.Tensor) -> torch.Tensor:
        x = feats.detach().to("cpu", torch.float32).contiguous().numpy()
        return torch.from_numpy(self.run(feats=x)[0])


def _agrees(model: CAMPPlus, onnx_model: OnnxCAMPPlus) -> float:
    """Lowest cosine between the two on a fixed input of several lengths."""
    generator = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 301, FEAT_DIM, generator=generator)
    with torch.inference_mode():
        cosines = [F.cosine_similarity(model(x), onnx_model(x), dim=-1).min() for x in (feats, feats[:1, :57])]
    return float(min(cosines))


def campplus_onnx(
    model: CAMPPlus, checkpoint_sha256: str, cache_dir: str | Path | None, threads: int = 1
) -> OnnxCAMPPlus:
    """`model` (on CPU, in eval mode) on onnxruntime, exported once into `cache_dir` (None: no
    cache) and checked on every load against `model` (onnx_cache.cached_export). Raises when a
    fresh export fails or disagrees: the caller then keeps the torch module."""
    session = onnx_cache.cached_export(
        "campplus",
        checkpoint_sha256,
        onnx_export_key(),
        cache_dir,
        export=lambda: export_onnx(model, checkpoint_sha256),
        load=lambda graph: OnnxCAMPPlus(graph, threads),
        agrees=lambda candidate: _agrees(model, candidate) >= ONNX_MIN_COSINE,  # type: ignore[arg-type]
    )
    assert isinstance(session, OnnxCAMPPlus)
    return session
