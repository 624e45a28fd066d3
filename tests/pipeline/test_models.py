import hashlib
import http.server
import subprocess
import sys
import threading
from functools import partial

import pytest

from voxhear.pipeline.models import (ModelFile, ModelHashMismatchError, ModelNotFoundError, ModelSpec, ModelStore,
                            load_registry)
from tests.conftest import SHARED_MODELS, needs_shared, require_shared

PAYLOAD = b"not really weights, but bytes with a known hash\n"


def _registry(url=None):
    digest = hashlib.sha256(PAYLOAD).hexdigest()
    return {"tiny": ModelSpec(name="tiny", licence="CC0-1.0", note="test model",
                              files=(ModelFile("tiny/weights.bin", len(PAYLOAD), digest, url),))}


@pytest.fixture
def store_dir(tmp_path):
    (tmp_path / "store" / "tiny").mkdir(parents=True)
    return tmp_path / "store"


def test_resolves_from_store_dir(store_dir, tmp_path):
    (store_dir / "tiny" / "weights.bin").write_bytes(PAYLOAD)
    store = ModelStore(store_dir=str(store_dir), cache_dir=tmp_path / "cache", registry=_registry())
    resolved = store.resolve("tiny")
    assert resolved.path == store_dir / "tiny" / "weights.bin"
    assert resolved.where == "config models.dir"


def test_hash_mismatch_is_refused_with_model_hash_and_place(store_dir, tmp_path):
    (store_dir / "tiny" / "weights.bin").write_bytes(PAYLOAD + b"tampered")
    store = ModelStore(store_dir=str(store_dir), cache_dir=tmp_path / "cache", registry=_registry())
    with pytest.raises(ModelHashMismatchError) as error:
        store.resolve("tiny")
    message = str(error.value)
    assert "'tiny'" in message and hashlib.sha256(PAYLOAD).hexdigest() in message
    assert str(store_dir / "tiny" / "weights.bin") in message


def test_missing_model_lists_where_it_looked(tmp_path, monkeypatch):
    monkeypatch.setenv("VOXHEAR_MODEL_DIR", str(tmp_path / "envstore"))
    store = ModelStore(store_dir=str(tmp_path / "cfgstore"), cache_dir=tmp_path / "cache", registry=_registry())
    with pytest.raises(ModelNotFoundError) as error:
        store.resolve("tiny")
    message = str(error.value)
    for place in ("cfgstore", "envstore", "cache", "VOXHEAR_MODEL_DIR"):
        assert place in message


def test_explicit_path_wins_over_env(tmp_path, monkeypatch, store_dir):
    (store_dir / "tiny" / "weights.bin").write_bytes(PAYLOAD)
    explicit = tmp_path / "elsewhere.bin"
    explicit.write_bytes(PAYLOAD)
    monkeypatch.setenv("VOXHEAR_MODEL_DIR", str(store_dir))
    store = ModelStore(explicit_paths={"tiny": str(explicit)}, cache_dir=tmp_path / "cache", registry=_registry())
    assert store.resolve("tiny").path == explicit


def test_downloads_into_cache_and_verifies(tmp_path, monkeypatch):
    served = tmp_path / "served"
    served.mkdir()
    (served / "weights.bin").write_bytes(PAYLOAD)
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    handler.log_message = lambda *a, **k: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    monkeypatch.delenv("VOXHEAR_OFFLINE", raising=False)
    monkeypatch.delenv("HF_HUB_OFFLINE", raising=False)
    monkeypatch.delenv("VOXHEAR_MODEL_DIR", raising=False)
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}/weights.bin"
        store = ModelStore(cache_dir=tmp_path / "cache", registry=_registry(url))
        resolved = store.resolve("tiny")
        assert resolved.path.read_bytes() == PAYLOAD
        assert resolved.path.is_relative_to(tmp_path / "cache")
        (served / "weights.bin").write_bytes(b"evil")
        evil = ModelStore(cache_dir=tmp_path / "cache2", registry=_registry(url))
        with pytest.raises(ModelHashMismatchError):
            evil.resolve("tiny")
        assert not (tmp_path / "cache2" / "tiny" / "weights.bin").exists()
    finally:
        server.shutdown()


def test_registry_matches_shared_model_list():
    registry = load_registry()
    files = {f.path: f.sha256 for spec in registry.values() for f in spec.files}
    listed = SHARED_MODELS / "MODELS.tsv"
    require_shared(listed, "the shared model list")
    rows = [line.split("\t") for line in listed.read_text().splitlines()[1:] if line.strip()]
    assert {path: sha for path, _, sha, *_ in rows} == files


@needs_shared(SHARED_MODELS / "MODELS.tsv", "the shared model store")
def test_cli_verifies_the_shared_store(monkeypatch):
    result = subprocess.run([sys.executable, "-m", "voxhear.pipeline.cli", "models", "verify"], capture_output=True,
                            text=True, env={"VOXHEAR_MODEL_DIR": str(SHARED_MODELS), "VOXHEAR_OFFLINE": "1",
                                            "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr
    assert result.stdout.count(" ok ") == len(load_registry())
