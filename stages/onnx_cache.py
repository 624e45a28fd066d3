"""Torch modules on onnxruntime's CPU provider, exported once per checkpoint into a keyed cache.

On CPU, onnxruntime runs the small convolutional networks of this pipeline 2-2.5x cheaper than
torch (CAM++ for diarization, Light-ASD's encoders for the talk stage), with the same outputs to
float32 rounding. A model's export is cached next to the model store's download cache, keyed by
the checkpoint's sha256 and by `export_key` (the architecture's source, torch's version, the
opset and a revision); every load is checked against the torch module on a fixed input, and a
cache file that does not load, belongs to something else or disagrees is exported again.
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

log = logging.getLogger(__name__)

ONNX_OPSET = 17


def export_key(architecture_source: str | Path, revision: int) -> str:
    """Digest of what shapes an exported graph besides the weights: the file that defines the
    architecture, torch's version (the exporter), the opset and the caller's export revision."""
    digest = hashlib.sha256(Path(architecture_source).read_bytes())
    digest.update(f"|torch={torch.__version__}|opset={ONNX_OPSET}|rev={revision}".encode())
    return digest.hexdigest()[:16]


def cache_path(cache_dir: str | Path, name: str, checkpoint_sha256: str, key: str) -> Path:
    """Where the export of `name`'s checkpoint with `checkpoint_sha256` by exporter `key` lives."""
    return Path(cache_dir) / f"{name}-{checkpoint_sha256[:16]}-{key}.onnx"


def export_graph(
    module: torch.nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    input_names: list[str],
    output_names: list[str],
    dynamic_axes: dict[str, dict[int, str]],
    properties: dict[str, str],
) -> bytes:
    """The (CPU, eval-mode) module as an ONNX graph whose metadata holds `properties`.

    The legacy TorchScript exporter: it needs no onnxscript and traces the module's arithmetic as
    written.
    """
    import onnx

    buffer = io.BytesIO()
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            module,
            example_inputs,
            # torch types `f` as a path only; the legacy (dynamo=False) exporter writes file objects too.
            buffer,  # type: ignore[arg-type]
            input_names=input_names,
            output_names=output_names,
            opset_version=ONNX_OPSET,
            dynamo=False,
            dynamic_axes=dynamic_axes,
        )
    graph = onnx.load_from_string(buffer.getvalue())
    onnx.helper.set_model_props(graph, properties)
    return graph.SerializeToString()


class OnnxSession:
    """One graph on onnxruntime's CPU provider, single-threaded unless told otherwise."""

    def __init__(self, graph: bytes | str | Path, threads: int = 1) -> None:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = max(1, threads)
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        source = graph if isinstance(graph, bytes) else str(graph)
        self.session = ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])
        self.metadata = dict(self.session.get_modelmeta().custom_metadata_map)

    def run(self, **inputs: np.ndarray) -> list[np.ndarray]:
        return self.session.run(None, inputs)


def cached_export(
    name: str,
    checkpoint_sha256: str,
    key: str,
    cache_dir: str | Path | None,
    export: Callable[[], bytes],
    load: Callable[[bytes | Path], OnnxSession],
    agrees: Callable[[OnnxSession], bool],
) -> OnnxSession:
    """The cached export of `name` when it is this checkpoint's, by this exporter, and `agrees`
    with the torch module; else a fresh `export()` (cached atomically; older exports of the
    checkpoint removed). Raises when a fresh export disagrees: the caller keeps the torch module."""
    from voxhear.pipeline.io import atomic_write_bytes

    path = cache_path(cache_dir, name, checkpoint_sha256, key) if cache_dir is not None else None
    expected = {"checkpoint_sha256": checkpoint_sha256, "export_key": key}
    if path is not None and path.is_file():
        try:
            cached = load(path)
            if all(cached.metadata.get(k) == v for k, v in expected.items()) and agrees(cached):
                return cached
            log.warning("%s ONNX cache %s does not match its checkpoint; exporting again", name, path)
        except Exception as error:  # a damaged cache file is replaced, whatever the damage
            kind = type(error).__name__
            log.warning("%s ONNX cache %s does not load (%s: %s); exporting again", name, path, kind, error)
    graph = export()
    fresh = load(graph)
    if not agrees(fresh):
        raise RuntimeError(f"the ONNX export of {name} disagrees with the torch module")
    if path is not None:
        try:
            atomic_write_bytes(path, graph)
            # Exports of this checkpoint by earlier code or torch versions are never read again.
            for stale in path.parent.glob(f"{name}-{checkpoint_sha256[:16]}-*.onnx"):
                if stale != path:
                    stale.unlink(missing_ok=True)
        except OSError as error:  # a read-only cache costs an export per process, nothing else
            log.warning("%s ONNX export not cached at %s: %s", name, path, error)
    return fresh
