"""DeepFilterNet3 offline: the official ONNX graphs run by onnxruntime over many frames per call.

The `deepfilternet` backend streams the model through libDF's C runtime one 10 ms hop at a time
(tract running every graph for a single frame, plus a ctypes call per hop). The three exported
graphs (`enc.onnx`, `erb_dec.onnx`, `df_dec.onnx`) accept a dynamic time axis and are causal (their
convolutions pad the past with zeros; their GRUs start from zeros), so one call over thousands of
frames gives the streamed result while onnxruntime batches every convolution and projection over
time. Around the graphs this module does in numpy what libDF does around them (learnt from
DeepFilterNet's libDF and Python sources and its papers, Schröter et al. 2022/2023):

- analysis: frames of `fft_size` samples every `hop_size`, Vorbis window, real FFT scaled by
  `2 * hop_size / fft_size**2`; synthesis: unscaled inverse FFT, the same window, overlap-add;
- ERB features: mean power per ERB band (`erb_widths`) in dB, minus an exponential running mean
  (decay `norm_alpha`, derived from `norm_tau`), divided by 40;
- complex features: the lowest `nb_df` bins divided by the square root of an exponential running
  mean of their magnitude;
- the network's estimates for frame f come from graph step f + `conv_lookahead` (the model sees
  that many frames ahead); the ERB gains scale every bin of their band; the deep filter replaces
  the lowest `nb_df` bins by a complex FIR over the noisy frames f - (df_order - 1 - df_lookahead)
  .. f + df_lookahead, with coefficients from the same step;
- libDF's runtime stages by local SNR, its post-filter and attenuation limit.

Every size comes from the archive's `config.ini`. The output is aligned with the input: the
lookahead and the window overlap that the streaming backend has to remove as a 1440-sample lag
never arise offline. Long signals run in pieces that carry every state (see `speech`).
"""

from __future__ import annotations

import configparser
import functools
import math
import tarfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from scipy import fft as sfft
from scipy.signal import lfilter

from voxhear.pipeline.models import ModelStoreError

# reader(start, stop): samples [start, stop) of a signal, zeros outside it.
Reader = Callable[[int, int], np.ndarray]

if TYPE_CHECKING:
    import onnxruntime as ort

# libDF's initial states of the two running normalisations (first and last band, linear in between).
MEAN_NORM_INIT = (-60.0, -90.0)
UNIT_NORM_INIT = (0.001, 0.0001)
# The thresholds on the local SNR estimate (dB) that libDF's C API (`df_create`) sets: below the
# first a frame is silenced, above the second left as it is, above the third given gains only (no
# deep filter). The model's estimate lies strictly inside [lsnr_min, lsnr_max] = [-15, 35]
# (config.ini), so with these values every frame gets both stages; kept for parity with libDF.
MIN_DB_THRESH = -15.0
MAX_DB_ERB_THRESH = 35.0
MAX_DB_DF_THRESH = 35.0
GRAPHS = ("enc.onnx", "erb_dec.onnx", "df_dec.onnx")


@dataclass(frozen=True)
class DfConfig:
    """The `[df]` and `[deepfilternet]` values of a DeepFilterNet export's config.ini."""

    sr: int
    fft_size: int
    hop_size: int
    nb_erb: int
    nb_df: int
    min_nb_erb_freqs: int
    df_order: int
    df_lookahead: int
    conv_lookahead: int
    norm_alpha: float
    model: str

    @classmethod
    def from_ini(cls, text: str) -> DfConfig:
        ini = configparser.ConfigParser()
        ini.read_string(text)
        df, net = ini["df"], ini["deepfilternet"]

        def value(key: str) -> str:
            # libDF reads df_order / df_lookahead from [df] and falls back to [deepfilternet].
            return df[key] if key in df else net[key]

        sr, hop = int(df["sr"]), int(df["hop_size"])
        alpha = float(df["norm_alpha"]) if "norm_alpha" in df else norm_alpha(sr, hop, float(df["norm_tau"]))
        return cls(
            sr=sr,
            fft_size=int(df["fft_size"]),
            hop_size=hop,
            nb_erb=int(df["nb_erb"]),
            nb_df=int(df["nb_df"]),
            min_nb_erb_freqs=int(df["min_nb_erb_freqs"]),
            df_order=int(value("df_order")),
            df_lookahead=int(value("df_lookahead")),
            conv_lookahead=int(net["conv_lookahead"]),
            norm_alpha=alpha,
            model=ini.get("train", "model", fallback="deepfilternet3"),
        )

    @property
    def n_freqs(self) -> int:
        return self.fft_size // 2 + 1

    @property
    def lookahead(self) -> int:
        """Frames after frame f that its estimate needs (network and deep filter)."""
        return max(self.conv_lookahead, self.df_lookahead)


def norm_alpha(sr: int, hop_size: int, tau: float) -> float:
    """Decay of the running normalisations for time constant `tau` s, rounded as libDF rounds it."""
    alpha = math.exp(-hop_size / sr / tau)
    # libDF keeps the fewest decimals (at least 3) that do not round alpha up to 1 (halves away from 0).
    precision = 3
    while True:
        rounded = math.floor(alpha * 10**precision + 0.5) / 10**precision
        if rounded < 1.0:
            return rounded
        precision += 1


def _freq2erb(hz: float) -> float:
    return 9.265 * math.log1p(hz / (24.7 * 9.265))


def _erb2freq(erb: float) -> float:
    return 24.7 * 9.265 * (math.exp(erb / 9.265) - 1.0)


def erb_widths(sr: int, fft_size: int, nb_bands: int, min_nb_freqs: int) -> np.ndarray:
    """FFT bins per ERB band: equal steps on the ERB scale, at least `min_nb_freqs` bins each."""
    freq_width = sr / fft_size
    step = (_freq2erb(sr / 2) - _freq2erb(0.0)) / nb_bands
    widths = np.zeros(nb_bands, dtype=np.int64)
    prev_bin, borrowed = 0, 0
    for i in range(1, nb_bands + 1):
        upper_bin = math.floor(_erb2freq(_freq2erb(0.0) + i * step) / freq_width + 0.5)
        width = upper_bin - prev_bin - borrowed
        # Narrow low bands take extra bins; the bands after give them back.
        borrowed = max(0, min_nb_freqs - width)
        widths[i - 1] = max(width, min_nb_freqs)
        prev_bin = upper_bin
    widths[-1] += 1  # the Nyquist bin
    widths[-1] -= max(0, int(widths.sum()) - (fft_size // 2 + 1))
    if int(widths.sum()) != fft_size // 2 + 1:
        raise ValueError(f"ERB bands cover {widths.sum()} bins, expected {fft_size // 2 + 1}")
    return widths


def vorbis_window(fft_size: int) -> np.ndarray:
    """sin(pi/2 sin^2(pi (n + 1/2) / fft_size)): its squares overlap-add to 1 at half-window hops."""
    half = fft_size // 2
    inner = np.sin(0.5 * np.pi * (np.arange(fft_size) + 0.5) / half)
    return np.sin(0.5 * np.pi * inner**2).astype(np.float32)


def _running_mean(x: np.ndarray, start: np.ndarray, alpha: float) -> np.ndarray:
    """s[t] = (1 - alpha) x[t] + alpha s[t-1] along axis 0, with s[-1] = start."""
    s, _ = lfilter([1.0 - alpha], [1.0, -alpha], x, axis=0, zi=(alpha * start)[None, :])
    return s


def _zero_padded(audio: np.ndarray, start: int, stop: int) -> np.ndarray:
    """audio[start:stop] with zeros where the range leaves the signal."""
    out = np.zeros(stop - start, dtype=np.float32)
    lo, hi = max(0, start), min(len(audio), stop)
    if hi > lo:
        out[lo - start : hi - start] = audio[lo:hi]
    return out


def load_archive(path: str | Path) -> tuple[DfConfig, dict[str, bytes]]:
    """Config and graph bytes of a DeepFilterNet ONNX export (`*.tar.gz`), read in memory.

    The archive is small (8 MB) and the store has already verified its sha256, so the graphs go
    from it straight to onnxruntime: no extracted copy can go stale or be half written.
    """
    graphs: dict[str, bytes] = {}
    ini = None
    with tarfile.open(path, "r:gz") as tar:
        for member in tar.getmembers():
            name = member.name.rsplit("/", 1)[-1]
            extracted = tar.extractfile(member) if member.isfile() else None
            if extracted is not None and (name in GRAPHS or name == "config.ini"):
                data = extracted.read()
                if name == "config.ini":
                    ini = data.decode("utf-8")
                else:
                    graphs[name] = data
    missing = [name for name in GRAPHS if name not in graphs] + ([] if ini else ["config.ini"])
    if missing or ini is None:
        raise ModelStoreError(f"DeepFilterNet archive {path} lacks {', '.join(missing)}")
    return DfConfig.from_ini(ini), graphs


@dataclass
class _Graph:
    """One exported graph, rewritten to run a stream in consecutive pieces (see `_carry_state`)."""

    session: ort.InferenceSession
    outputs: list[str]
    # Frames each padded input needs in front of a piece: its causal convolution's reach.
    context: dict[str, int]
    # (input, output) names of each GRU's hidden state, and its size.
    states: list[tuple[str, str]]
    hidden: list[int]


def _carry_state(data: bytes) -> tuple[bytes, dict[str, int], list[tuple[str, str]], list[int]]:
    """Rewrite an exported graph so that a long stream can run through it piece by piece, exactly.

    The export pads the time axis of its inputs with zeros for its causal convolutions and starts
    every GRU from zeros, so a second run would forget the first. Here the time padding is dropped
    (the caller puts the previous piece's last frames, or the zeros, in front) and every GRU's
    initial state becomes an input and its final state an output.
    """
    import onnx
    import onnxruntime as ort
    from onnx import TensorProto, helper

    model = onnx.load_from_string(data)
    graph = model.graph
    inputs = {i.name: i for i in graph.input}
    pads = [node for node in graph.node if node.op_type == "Pad"]
    # The pad amounts and values are computed in the graph from constants: evaluate them once.
    probe = onnx.load_from_string(data)
    for node in pads:
        probe.graph.output.append(helper.make_tensor_value_info(node.input[1], TensorProto.INT64, None))
        if len(node.input) > 2 and node.input[2]:
            probe.graph.output.append(helper.make_tensor_value_info(node.input[2], TensorProto.FLOAT, None))
    feeds = {
        name: np.zeros([d.dim_value or 8 for d in i.type.tensor_type.shape.dim], np.float32)
        for name, i in inputs.items()
    }
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(probe.SerializeToString(), options, providers=["CPUExecutionProvider"])
    values = dict(zip([o.name for o in session.get_outputs()], session.run(None, feeds)))
    context = {}
    for node in pads:
        amount = np.asarray(values[node.input[1]]).reshape(-1)
        fill = float(np.asarray(values[node.input[2]]).reshape(-1)[0]) if len(node.input) > 2 and node.input[2] else 0.0
        mode = next((a.s for a in node.attribute if a.name == "mode"), b"constant")
        expected = np.zeros_like(amount)
        expected[2] = amount[2]
        # Only a zero pad of a 4-d graph input at the start of its time axis (axis 2) is understood.
        if (
            node.input[0] not in inputs
            or mode != b"constant"
            or fill != 0.0
            or len(amount) != 8
            or not np.array_equal(amount, expected)
        ):
            raise ModelStoreError(
                f"unexpected Pad {node.name} (pads {amount.tolist()}, value {fill}) in the DeepFilterNet export"
            )
        context[node.input[0]] = int(amount[2])
        # The input now arrives with its context frames in front: its own frame count.
        inputs[node.input[0]].type.tensor_type.shape.dim[2].dim_param = f"{node.input[0]}_frames"
        for other in graph.node:
            for k, name in enumerate(other.input):
                if name == node.output[0]:
                    other.input[k] = node.input[0]
        graph.node.remove(node)
    states, hidden = [], []
    for k, node in enumerate(n for n in graph.node if n.op_type == "GRU"):
        size = next(a.i for a in node.attribute if a.name == "hidden_size")
        if any(a.name == "direction" and a.s != b"forward" for a in node.attribute):
            raise ModelStoreError(f"unexpected bidirectional GRU {node.name} in the DeepFilterNet export")
        h_in = f"gru{k}_h0"
        while len(node.input) < 6:
            node.input.append("")
        node.input[5] = h_in
        while len(node.output) < 2:
            node.output.append("")
        if not node.output[1]:
            node.output[1] = f"gru{k}_hn"
        graph.input.append(helper.make_tensor_value_info(h_in, TensorProto.FLOAT, [1, 1, size]))
        graph.output.append(helper.make_tensor_value_info(node.output[1], TensorProto.FLOAT, [1, 1, size]))
        states.append((h_in, node.output[1]))
        hidden.append(size)
    _drop_unused(graph)
    return model.SerializeToString(), context, states, hidden


def _drop_unused(graph) -> None:
    """Remove the nodes and initializers nothing reads any more (the pads' and zero states' makers)."""
    while True:
        needed = {o.name for o in graph.output} | {name for node in graph.node for name in node.input}
        dead = [node for node in graph.node if not any(o and o in needed for o in node.output)]
        if not dead:
            break
        for node in dead:
            graph.node.remove(node)
    for init in [i for i in graph.initializer if i.name not in needed]:
        graph.initializer.remove(init)


class DeepFilterNetOnnxBackend:
    """DeepFilterNet3 over whole stretches of audio with onnxruntime (`separation.backend=deepfilternet_onnx`)."""

    name = "deepfilternet_onnx"

    def __init__(
        self,
        model_path: str | Path,
        atten_lim_db: float = 100.0,
        post_filter_beta: float = 0.0,
        threads: int = 1,
        chunk_s: float = 2.0,
    ) -> None:
        """Load the archive's graphs into onnxruntime sessions.

        Args:
            model_path: DeepFilterNet3_onnx.tar.gz (the store's `deepfilternet3`).
            atten_lim_db: Attenuation limit in dB (100 or more: none), as libDF.
            post_filter_beta: libDF's post-filter strength (0: off).
            threads: onnxruntime threads (one per worker CPU).
            chunk_s: Seconds of audio per network run. It bounds the memory (about 25 MB per
                second of audio in onnxruntime's buffers) and leaves the result unchanged, since
                every state carries over between runs. Measured on one core, 1 to 5 s ran fastest
                (0.029-0.031 CPU s per audio s; 20 s: 0.039, 60 s: 0.047, as caches overflow).
        """
        import onnxruntime as ort

        self.cfg, graphs = load_archive(model_path)
        cfg = self.cfg
        if cfg.model != "deepfilternet3":
            raise ModelStoreError(f"{model_path}: model type {cfg.model!r}, this backend runs deepfilternet3")
        if cfg.fft_size % cfg.hop_size:
            raise ModelStoreError(f"{model_path}: fft_size {cfg.fft_size} is not a multiple of hop_size {cfg.hop_size}")
        if not 0 <= cfg.df_lookahead < cfg.df_order:
            raise ModelStoreError(f"{model_path}: df_lookahead {cfg.df_lookahead} outside [0, df_order {cfg.df_order})")
        self.sample_rate = cfg.sr
        self.window = vorbis_window(cfg.fft_size)
        self.wnorm = np.float32(2 * cfg.hop_size / cfg.fft_size**2)
        self.widths = erb_widths(cfg.sr, cfg.fft_size, cfg.nb_erb, cfg.min_nb_erb_freqs)
        self.band_starts = np.concatenate([[0], np.cumsum(self.widths)[:-1]])
        lim = abs(atten_lim_db)
        # As libDF: 100 dB and more means no limit.
        self.atten_lim = None if lim >= 100 else float(10 ** (-lim / 20))
        self.post_filter_beta = float(post_filter_beta)
        self.chunk_frames = max(1, int(round(chunk_s * cfg.sr / cfg.hop_size)))
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        self.graphs = {}
        for name, data in graphs.items():
            rewritten, context, states, hidden = _carry_state(data)
            session = ort.InferenceSession(rewritten, options, providers=["CPUExecutionProvider"])
            outputs = [o.name for o in session.get_outputs()]
            self.graphs[name.removesuffix(".onnx")] = _Graph(session, outputs, context, states, hidden)

    # --- signal processing -------------------------------------------------------------------

    def analysis(self, audio: np.ndarray | Reader, first: int, stop: int) -> np.ndarray:
        """Spectra [stop - first, n_freqs] (complex64) of frames `first..stop-1` of `audio`.

        Frame t covers samples [t*hop - (fft_size - hop), t*hop + hop); samples outside the signal
        are zeros (as libDF's analysis memory starts, and as the zeros that flush its lookahead).
        `audio` is the signal or a reader: `audio(start, stop)` gives samples [start, stop), zeros
        outside the signal.
        """
        cfg = self.cfg
        hop, overlap = cfg.hop_size, cfg.fft_size - cfg.hop_size
        read = audio if callable(audio) else functools.partial(_zero_padded, audio)
        segment = read(first * hop - overlap, stop * hop)
        frames = np.lib.stride_tricks.sliding_window_view(segment, cfg.fft_size)[::hop]
        spec = sfft.rfft(frames * self.window, axis=1)
        spec *= self.wnorm
        return spec.astype(np.complex64, copy=False)

    def synthesis(self, spec: np.ndarray) -> np.ndarray:
        """Overlap-add of the windowed inverse FFTs of consecutive frames, from the first frame's first sample."""
        cfg = self.cfg
        hop, k = cfg.hop_size, cfg.fft_size // cfg.hop_size
        frames = sfft.irfft(spec, n=cfg.fft_size, axis=1).astype(np.float32, copy=False)
        frames *= self.window * np.float32(cfg.fft_size)  # libDF's inverse FFT is unscaled
        out = np.zeros((len(spec) + k - 1) * hop, dtype=np.float32)
        for j in range(k):
            out[j * hop : (j + len(spec)) * hop] += frames[:, j * hop : (j + 1) * hop].reshape(-1)
        return out

    def features(self, spec: np.ndarray, state: _Stream) -> tuple[np.ndarray, np.ndarray]:
        """Network inputs feat_erb [1, 1, T, nb_erb] and feat_spec [1, 2, T, nb_df] of consecutive frames."""
        cfg = self.cfg
        power = spec.real**2 + spec.imag**2
        bands = np.add.reduceat(power, self.band_starts, axis=1) / self.widths
        erb_db = 10.0 * np.log10(bands.astype(np.float64) + 1e-10)
        mean = _running_mean(erb_db, state.mean_norm, cfg.norm_alpha)
        feat_erb = ((erb_db - mean) / 40.0).astype(np.float32)
        low = spec[:, : cfg.nb_df]
        unit = _running_mean(np.abs(low).astype(np.float64), state.unit_norm, cfg.norm_alpha)
        feat_cplx = low / np.sqrt(unit).astype(np.float32)
        feat_spec = np.stack([feat_cplx.real, feat_cplx.imag]).astype(np.float32)
        if len(spec):
            state.mean_norm, state.unit_norm = mean[-1], unit[-1]
        return feat_erb[None, None], feat_spec[None]

    def _run(self, name: str, feeds: dict[str, np.ndarray], state: _Stream) -> dict[str, np.ndarray]:
        """One graph over the next frames of the stream, continuing its convolutions and GRUs."""
        graph = self.graphs[name]
        feeds = dict(feeds)
        for key, frames in graph.context.items():
            # The frames before this piece along the time axis (2): the previous piece's last ones.
            history = state.context.get((name, key))
            if history is None:
                shape = list(feeds[key].shape)
                shape[2] = frames
                history = np.zeros(shape, np.float32)
            joined = np.concatenate([history, feeds[key]], axis=2)
            state.context[(name, key)] = joined[:, :, joined.shape[2] - frames :]
            feeds[key] = joined
        for (h_in, _), size in zip(graph.states, graph.hidden):
            feeds[h_in] = state.hidden.get((name, h_in), np.zeros((1, 1, size), np.float32))
        outputs = dict(zip(graph.outputs, graph.session.run(None, feeds)))
        for h_in, h_out in graph.states:
            state.hidden[(name, h_in)] = outputs[h_out]
        return outputs

    def network(
        self, feat_erb: np.ndarray, feat_spec: np.ndarray, state: _Stream
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """ERB gains [T, nb_erb], deep-filter coefficients [T, nb_df, df_order] (complex) and local SNR [T]."""
        cfg = self.cfg
        enc = self._run("enc", {"feat_erb": feat_erb, "feat_spec": feat_spec}, state)
        emb = enc["emb"]
        gains = self._run("erb_dec", {"emb": emb, **{k: enc[k] for k in ("e3", "e2", "e1", "e0")}}, state)["m"]
        coefs = self._run("df_dec", {"emb": emb, "c0": enc["c0"]}, state)["coefs"]
        coefs = coefs.reshape(-1, cfg.nb_df, cfg.df_order, 2)
        return gains[0, 0], (coefs[..., 0] + 1j * coefs[..., 1]).astype(np.complex64), enc["lsnr"].reshape(-1)

    def enhance(self, spec: np.ndarray, gains: np.ndarray, coefs: np.ndarray, lsnr: np.ndarray) -> np.ndarray:
        """Enhanced spectra of n consecutive frames, given the network's estimates for them (n rows each).

        Args:
            spec: Noisy spectra of the same frames with `df_order - 1 - df_lookahead` frames before
                and `df_lookahead` frames after them (the deep filter's span).
        """
        cfg = self.cfg
        n, past = len(gains), cfg.df_order - 1 - cfg.df_lookahead
        noisy = spec[past : past + n]
        out = noisy * np.repeat(gains, self.widths, axis=1)
        filtered = np.zeros((n, cfg.nb_df), dtype=np.complex64)
        for k in range(cfg.df_order):
            filtered += coefs[:, :, k] * spec[k : k + n, : cfg.nb_df]
        # libDF's stages by local SNR: noise only, clean, little noise (gains only), noisy (both).
        silent = lsnr < MIN_DB_THRESH
        clean = ~silent & (lsnr > MAX_DB_ERB_THRESH)
        use_df = ~silent & ~clean & (lsnr <= MAX_DB_DF_THRESH)
        out[use_df, : cfg.nb_df] = filtered[use_df]
        if self.post_filter_beta > 0:
            gained = ~silent & ~clean
            # libDF's post-filter works on bins in groups of 4 and leaves the rest (Nyquist) alone.
            m = (cfg.n_freqs // 4) * 4
            out[gained, :m] = _post_filter(noisy[gained, :m], out[gained, :m], self.post_filter_beta)
        out[silent] = 0
        out[clean] = noisy[clean]
        if self.atten_lim is not None:
            out = out * np.float32(1 - self.atten_lim) + noisy * np.float32(self.atten_lim)
        return out

    # --- whole signals --------------------------------------------------------------------------

    def speech(self, audio: np.ndarray) -> np.ndarray:
        """Speech estimate of `audio` (mono float32 at 48 kHz), same length, no lag (`speech_pieces`
        joined)."""
        audio = np.asarray(audio, dtype=np.float32)
        out = np.zeros(len(audio), dtype=np.float32)
        done = 0
        for piece in self.speech_pieces(functools.partial(_zero_padded, audio), len(audio)):
            out[done : done + len(piece)] = piece
            done += len(piece)
        return out

    def speech_pieces(self, read: Reader, n: int) -> Iterator[np.ndarray]:
        """Speech estimate of an `n`-sample signal (mono float32 at 48 kHz), no lag, as consecutive
        pieces from its first sample to its last.

        `read(start, stop)` gives samples [start, stop) of the signal, zeros outside it; it is asked
        for spans that move forward only (each starts a little before the previous one ends).
        The signal goes through in pieces of `chunk_frames` frames, because onnxruntime's buffers
        grow by about 25 MB per second of audio in one run (an hour at once would need some 90 GB)
        and short runs are no slower. Every state (normalisation means, convolution history, GRU
        states, the deep filter's past frames, the overlap-add) carries from one piece to the
        next, so the pieces leave the result unchanged, and memory stays bounded by the piece
        however long the signal.
        """
        cfg = self.cfg
        hop = cfg.hop_size
        overlap = cfg.fft_size - hop
        if n == 0:
            return
        # Output frames f = 0..n_frames-1 touch samples [f*hop - overlap, f*hop + hop) of the signal;
        # network step t estimates frame t - conv_lookahead.
        n_frames = -(-(n + overlap) // hop)
        past, la = cfg.df_order - 1 - cfg.df_lookahead, cfg.conv_lookahead
        state = _Stream(cfg)
        step = 0  # network steps done
        # The overlap-add not yet final: samples [pending_start, pending_start + len(pending)).
        pending_start, pending = -overlap, np.zeros(0, dtype=np.float32)
        for a in range(0, n_frames, self.chunk_frames):
            b = min(n_frames, a + self.chunk_frames)
            first, stop = min(step, a - past), b + cfg.lookahead
            spec = self.analysis(read, first, stop)
            feat_erb, feat_spec = self.features(spec[step - first : b + la - first], state)
            gains, coefs, lsnr = self.network(feat_erb, feat_spec, state)
            # The first piece's first conv_lookahead steps estimate frames before the signal.
            used = slice(a + la - step, b + la - step)
            step = b + la
            enhanced = self.enhance(
                spec[a - past - first : b + cfg.df_lookahead - first], gains[used], coefs[used], lsnr[used]
            )
            y = self.synthesis(enhanced)
            start = a * hop - overlap
            end = start + len(y)
            if end > pending_start + len(pending):
                pending = np.concatenate([pending, np.zeros(end - pending_start - len(pending), np.float32)])
            pending[start - pending_start : end - pending_start] += y
            # Samples before the next piece's first are final.
            final = b * hop - overlap if b < n_frames else end
            lo, hi = max(0, pending_start), min(n, final)
            if hi > lo:
                yield pending[lo - pending_start : hi - pending_start].copy()
            pending, pending_start = pending[final - pending_start :], final


class _Stream:
    """What one signal carries from one piece to the next."""

    def __init__(self, cfg: DfConfig) -> None:
        # libDF's initial running means: linear from the first band's value to the last's.
        self.mean_norm = np.linspace(*MEAN_NORM_INIT, cfg.nb_erb)
        self.unit_norm = np.linspace(*UNIT_NORM_INIT, cfg.nb_df)
        self.context: dict[tuple[str, str], np.ndarray] = {}
        self.hidden: dict[tuple[str, str], np.ndarray] = {}


def _post_filter(noisy: np.ndarray, enhanced: np.ndarray, beta: float) -> np.ndarray:
    """libDF's post-filter (after Valin et al., PercepNet): sharpen the effective gain per bin."""
    eps = 1e-12
    g = np.clip(np.abs(enhanced) / (np.abs(noisy) + eps), eps, 1.0)
    g_sin = g * np.sin(g * np.pi / 2)
    pf = ((1 + beta) * g / (1 + beta * (g / g_sin) ** 2)) / g
    return enhanced * pf.astype(np.float32)
