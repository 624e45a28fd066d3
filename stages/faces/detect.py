"""Face detectors behind one interface: YuNet (default, MIT) and SCRFD (insightface).

Both return `Detections` in frame pixels, with the box already moved onto the dataset's box
convention (`BOX_CALIBRATION`): detectors disagree on where a face box ends (YuNet's box starts
at the eyebrows, SCRFD's is taller), and the per-frame boxes we publish should mean the same
thing whichever detector made them.

YuNet runs on onnxruntime rather than `cv2.FaceDetectorYN`: OpenCV 5's new DNN engine takes
about 40 ms of CPU for one 640x360 frame, onnxruntime about 16 ms for the same network. The
ONNX file declares a fixed 640x640 input; its graph reshapes with -1 and resizes by scale, so
the input dims are relaxed in memory (after the model store has verified the file's hash) and
frames are only padded to a multiple of 32 instead of to a square.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import cv2
import numpy as np

# Dataset box convention (that of the synth ground truth, close to WIDER FACE): left and right at
# the outer cheeks, top at the hairline, bottom at the chin. Each detector's raw box is mapped
# onto it by moving its edges by these shares of the raw width (x1, x2) and height (y1, y2).
# Fitted on composed videos of seeds 101-103 only (docs/benchmarks/faces.md), never on the
# reported seeds: the median of (true edge - raw edge) / raw size over matched detections.
BOX_CALIBRATION: dict[str, tuple[float, float, float, float]] = {
    "yunet": (0.012, -0.016, -0.014, -0.046),
    "insightface": (-0.012, 0.001, -0.009, -0.045),
}


@dataclass(slots=True)
class Detections:
    """Faces found in one frame.

    Attributes:
        boxes: (N, 4) float32 x1, y1, x2, y2 in frame pixels (calibrated convention).
        scores: (N,) float32 detector confidence.
        kps: (N, 5, 2) float32 five points (eyes, nose tip, mouth corners) in frame pixels.
    """

    boxes: np.ndarray
    scores: np.ndarray
    kps: np.ndarray

    @classmethod
    def empty(cls) -> Detections:
        return cls(np.zeros((0, 4), np.float32), np.zeros((0,), np.float32), np.zeros((0, 5, 2), np.float32))

    def __len__(self) -> int:
        return int(self.scores.shape[0])


class FaceDetector(Protocol):
    name: str

    def detect(self, frame_bgr: np.ndarray) -> Detections: ...


def calibrate(boxes: np.ndarray, adjust: tuple[float, float, float, float]) -> np.ndarray:
    """Move each box's edges by shares of its own width (x) and height (y)."""
    if len(boxes) == 0 or not any(adjust):
        return boxes.astype(np.float32, copy=False)
    w = boxes[:, 2] - boxes[:, 0]
    h = boxes[:, 3] - boxes[:, 1]
    out = boxes.astype(np.float32, copy=True)
    out[:, 0] += adjust[0] * w
    out[:, 1] += adjust[1] * h
    out[:, 2] += adjust[2] * w
    out[:, 3] += adjust[3] * h
    return out


def _session_options(threads: int):
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = max(1, threads)
    options.inter_op_num_threads = 1
    options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    options.log_severity_level = 3  # the relaxed output shapes would warn on every call
    return options


def _providers(use_gpu: bool) -> list[str]:
    import onnxruntime as ort

    available = ort.get_available_providers()
    if use_gpu and "CUDAExecutionProvider" in available:
        return ["CUDAExecutionProvider", "CPUExecutionProvider"]
    return ["CPUExecutionProvider"]


def _scale_to(frame: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """The frame shrunk so that its longer side is at most `max_side`, and the factor used."""
    h, w = frame.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale >= 1.0:
        return frame, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return cv2.resize(frame, size, interpolation=cv2.INTER_AREA), scale


class YuNetDetector:
    """OpenCV Zoo's YuNet (2023mar) on onnxruntime, decoded as `cv2.FaceDetectorYN` does."""

    name = "yunet"
    STRIDES = (8, 16, 32)

    def __init__(
        self,
        model_path: Path,
        score_threshold: float = 0.6,
        nms_threshold: float = 0.3,
        max_side: int = 640,
        threads: int = 1,
        use_gpu: bool = False,
        adjust: tuple[float, float, float, float] | None = None,
    ) -> None:
        import onnx
        import onnxruntime as ort

        model = onnx.load(str(model_path))
        dims = model.graph.input[0].type.tensor_type.shape.dim
        dims[2].dim_param, dims[3].dim_param = "height", "width"
        for output in model.graph.output:
            output.type.tensor_type.shape.dim[1].dim_param = "anchors"
        self.session = ort.InferenceSession(
            model.SerializeToString(), _session_options(threads), providers=_providers(use_gpu)
        )
        self.input_name = self.session.get_inputs()[0].name
        self.score_threshold = score_threshold
        self.nms_threshold = nms_threshold
        self.max_side = max_side
        self.adjust = BOX_CALIBRATION[self.name] if adjust is None else adjust

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        image, scale = _scale_to(frame_bgr, self.max_side)
        h, w = image.shape[:2]
        pad_h, pad_w = -(-h // 32) * 32, -(-w // 32) * 32
        blob = np.zeros((1, 3, pad_h, pad_w), np.float32)
        blob[0, :, :h, :w] = image.transpose(2, 0, 1)
        outputs = self.session.run(None, {self.input_name: blob})
        boxes, scores, kps = [], [], []
        n = len(self.STRIDES)
        for i, stride in enumerate(self.STRIDES):
            cls, obj = outputs[i][0, :, 0], outputs[i + n][0, :, 0]
            score = np.sqrt(np.clip(cls, 0, 1) * np.clip(obj, 0, 1))
            keep = np.nonzero(score >= self.score_threshold)[0]
            if keep.size == 0:
                continue
            cols = pad_w // stride
            r, c = (keep // cols).astype(np.float32), (keep % cols).astype(np.float32)
            bbox = outputs[i + 2 * n][0, keep]
            cx, cy = (c + bbox[:, 0]) * stride, (r + bbox[:, 1]) * stride
            bw, bh = np.exp(bbox[:, 2]) * stride, np.exp(bbox[:, 3]) * stride
            boxes.append(np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], axis=1))
            k = outputs[i + 3 * n][0, keep].reshape(-1, 5, 2)
            kps.append(np.stack([(k[:, :, 0] + c[:, None]) * stride, (k[:, :, 1] + r[:, None]) * stride], axis=2))
            scores.append(score[keep])
        if not boxes:
            return Detections.empty()
        all_boxes = np.concatenate(boxes) / scale
        all_scores = np.concatenate(scores)
        all_kps = np.concatenate(kps) / scale
        keep = nms(all_boxes, all_scores, self.nms_threshold)
        return Detections(
            calibrate(all_boxes[keep], self.adjust),
            all_scores[keep].astype(np.float32),
            all_kps[keep].astype(np.float32),
        )


class ScrfdDetector:
    """insightface's SCRFD (det_500m from buffalo_sc), loaded with `model_zoo.get_model(path)`."""

    name = "insightface"

    def __init__(
        self,
        model_path: Path,
        score_threshold: float = 0.5,
        nms_threshold: float = 0.4,
        max_side: int = 640,
        threads: int = 1,
        use_gpu: bool = False,
        adjust: tuple[float, float, float, float] | None = None,
    ) -> None:
        from insightface.model_zoo import get_model

        providers = _providers(use_gpu)
        self.model = get_model(str(model_path), providers=providers, sess_options=_session_options(threads))
        if self.model is None:
            raise ImportError(f"insightface could not build a model from {model_path}")
        self.model.prepare(
            ctx_id=0 if providers[0].startswith("CUDA") else -1, det_thresh=score_threshold, nms_thresh=nms_threshold
        )
        self.max_side = max_side
        self.adjust = BOX_CALIBRATION[self.name] if adjust is None else adjust

    def detect(self, frame_bgr: np.ndarray) -> Detections:
        h, w = frame_bgr.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        # SCRFD letterboxes into input_size itself; give it the frame's aspect on a 32 grid.
        size = (max(32, round(w * scale / 32) * 32), max(32, round(h * scale / 32) * 32))
        det, kpss = self.model.detect(frame_bgr, input_size=size)
        if det is None or len(det) == 0:
            return Detections.empty()
        kps = kpss.astype(np.float32) if kpss is not None else np.full((len(det), 5, 2), np.nan, np.float32)
        return Detections(calibrate(det[:, :4], self.adjust), det[:, 4].astype(np.float32), kps)


def nms(boxes: np.ndarray, scores: np.ndarray, threshold: float) -> np.ndarray:
    """Indices kept by greedy non-maximum suppression, best score first."""
    order = np.argsort(-scores, kind="stable")
    keep: list[int] = []
    areas = np.maximum(0, boxes[:, 2] - boxes[:, 0]) * np.maximum(0, boxes[:, 3] - boxes[:, 1])
    while order.size:
        i = int(order[0])
        keep.append(i)
        rest = order[1:]
        xx1 = np.maximum(boxes[i, 0], boxes[rest, 0])
        yy1 = np.maximum(boxes[i, 1], boxes[rest, 1])
        xx2 = np.minimum(boxes[i, 2], boxes[rest, 2])
        yy2 = np.minimum(boxes[i, 3], boxes[rest, 3])
        inter = np.maximum(0, xx2 - xx1) * np.maximum(0, yy2 - yy1)
        iou = inter / np.maximum(areas[i] + areas[rest] - inter, 1e-9)
        order = rest[iou <= threshold]
    return np.asarray(keep, dtype=np.int64)


def make_detector(
    backend: str,
    model_store,
    score_threshold: float,
    nms_threshold: float,
    max_side: int,
    threads: int = 1,
    use_gpu: bool = False,
    adjust: tuple[float, float, float, float] | None = None,
) -> FaceDetector:
    """Build the configured detector from the model store (a missing model stops the run)."""
    if backend == "yunet":
        path = model_store.resolve("yunet").path
        return YuNetDetector(path, score_threshold, nms_threshold, max_side, threads, use_gpu, adjust)
    if backend == "insightface":
        path = model_store.resolve("insightface-scrfd").path
        return ScrfdDetector(path, score_threshold, nms_threshold, max_side, threads, use_gpu, adjust)
    raise ValueError(f"unknown face detector {backend!r}")
