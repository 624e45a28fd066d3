"""Face identity embeddings made at the face stage: dlib's 128-d ResNet descriptor by default, or
ArcFace through insightface where the store has it. Clustering them into identity ids needs every
track of the run, so it is a run-wide pass: voxhear.passes.identities.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np


class DlibEmbedder:
    """dlib's face descriptor (ResNet, 128-d) on a 5-point aligned 150 px chip.

    About 0.3 s of CPU per face on these machines (dlib-bin has no BLAS), hence few samples
    per track.
    """

    name = "dlib"

    def __init__(self, shape_predictor_path: Path, recognition_path: Path) -> None:
        import dlib

        self._dlib = dlib
        self.shape_predictor = dlib.shape_predictor(str(shape_predictor_path))
        self.recognizer = dlib.face_recognition_model_v1(str(recognition_path))

    def embed(self, frame_rgb: np.ndarray, box: np.ndarray, kps: np.ndarray | None = None) -> np.ndarray:
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        shape = self.shape_predictor(frame_rgb, self._dlib.rectangle(x1, y1, x2, y2))
        chip = self._dlib.get_face_chip(frame_rgb, shape, size=150, padding=0.25)
        return np.asarray(self.recognizer.compute_face_descriptor(chip), np.float32)


class ArcFaceEmbedder:
    """insightface's ArcFace recognizer on the detector's five points (512-d, L2-normalized).

    Needs a registered `insightface-arcface` model (buffalo's w600k_mbf.onnx) in the store.
    """

    name = "arcface"

    def __init__(self, model_path: Path) -> None:
        from insightface.model_zoo import get_model

        self.model = get_model(str(model_path), providers=["CPUExecutionProvider"])
        self.model.prepare(ctx_id=-1)

    def embed(self, frame_rgb: np.ndarray, box: np.ndarray, kps: np.ndarray | None = None) -> np.ndarray:
        from insightface.utils import face_align

        if kps is None or not np.all(np.isfinite(kps)):
            raise ValueError("ArcFace needs the detector's five points")
        aligned = face_align.norm_crop(frame_rgb[:, :, ::-1], landmark=np.asarray(kps, np.float32))
        feat = np.asarray(self.model.get_feat(aligned), np.float32).reshape(-1)
        return feat / max(float(np.linalg.norm(feat)), 1e-9)


def make_embedder(kind: str, model_store):
    if kind == "dlib":
        return DlibEmbedder(
            model_store.resolve("dlib-shape-predictor-5").path, model_store.resolve("dlib-face-recognition").path
        )
    if kind == "arcface":
        return ArcFaceEmbedder(model_store.resolve("insightface-arcface").path)
    raise ValueError(f"unknown face embedder {kind!r}")


# ---------------------------------------------------------------------------------------------
# Clustering
