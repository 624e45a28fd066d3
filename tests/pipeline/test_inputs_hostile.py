"""Inputs that would hurt the run as files or as URLs: a folder with a symlink loop and duplicate
names for one video, and remote inputs that are too large, stall, vanish or whose store fails."""

from __future__ import annotations

import http.server
import os
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import fsspec
import pytest

from voxhear.pipeline.inputs import (
    RemoteTimeout,
    RemoteTooLarge,
    RemoteUnavailable,
    copy_remote,
    expand_inputs,
)
from voxhear.pipeline.stage import InputError, SystemFault

# ------------------------------------------------------------------ symlinks


@pytest.fixture
def looped(tmp_path) -> tuple[Path, list[Path]]:
    """in/a.mp4, in/sub/b.mp4, and names that lead back to them: a loop, a link, a hard link."""
    folder = tmp_path / "in"
    (folder / "sub").mkdir(parents=True)
    videos = [folder / "a.mp4", folder / "sub" / "b.mp4"]
    for video in videos:
        video.write_bytes(b"not decoded here")
    (folder / "sub" / "loop").symlink_to("..")  # in/sub/loop/sub/loop/... without end
    (folder / "dup.mp4").symlink_to("a.mp4")
    (folder / "sub2").symlink_to("sub")
    os.link(videos[1], folder / "z_hard.mp4")  # a hard link: the first name in sorted order stays
    return folder, videos


@pytest.mark.timeout(60)
def test_a_folder_with_a_symlink_loop_and_duplicate_names_gives_each_video_once(looped):
    folder, videos = looped
    want = [str(v) for v in videos]
    assert expand_inputs([str(folder)]) == want
    assert expand_inputs([str(folder / "**" / "*.mp4")]) == want
    assert expand_inputs([str(folder / "**")]) == want
    # Named explicitly, by a list or next to the folder: still one input per video.
    listed = folder.parent / "inputs.txt"
    listed.write_text("in/dup.mp4\nin/a.mp4\nin/sub/loop/sub/b.mp4\n")
    assert expand_inputs([str(listed), str(folder / "dup.mp4"), str(folder)]) == want


def test_a_linked_folder_is_read_once_and_files_keep_their_plain_names(tmp_path):
    data = tmp_path / "disk" / "videos"
    data.mkdir(parents=True)
    (data / "x.mp4").write_bytes(b"x")
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a_link").symlink_to(data)  # sorts before the real copy below
    (folder / "real").symlink_to(data)
    assert expand_inputs([str(folder)]) == [str(folder / "a_link" / "x.mp4")]
    both = expand_inputs([str(folder), str(data)])
    assert both == [str(data / "x.mp4")]
    # A named path that does not exist is kept: it ends as a `failed` row.
    assert expand_inputs([str(folder / "gone.mp4")]) == [str(folder / "gone.mp4")]


# ------------------------------------------------------------------ remote copies


@pytest.fixture
def memory_file() -> Iterator[Callable[[str, bytes], str]]:
    fs = fsspec.filesystem("memory")
    made: list[str] = []

    def put(name: str, data: bytes) -> str:
        path = f"/voxhear-test/{name}"
        fs.pipe(path, data)
        made.append(path)
        return f"memory://{path}"

    yield put
    for path in made:
        fs.rm(path)


def test_a_remote_copy_within_the_cap_is_exact(memory_file, tmp_path):
    data = os.urandom(3 * 1024 + 5)
    target = tmp_path / "fetched" / "v.mp4"
    assert copy_remote(memory_file("v.mp4", data), target, max_bytes=len(data)) == len(data)
    assert target.read_bytes() == data and [p.name for p in target.parent.iterdir()] == ["v.mp4"]


def test_a_remote_input_over_the_cap_is_refused_without_a_file(memory_file, tmp_path):
    target = tmp_path / "fetched" / "big.mp4"
    with pytest.raises(RemoteTooLarge) as caught:
        copy_remote(memory_file("big.mp4", b"x" * 2048), target, max_bytes=1024)
    assert isinstance(caught.value, InputError) and caught.value.reason == "remote_too_large"
    assert not target.exists() and not list(target.parent.iterdir())


def test_a_missing_remote_input_is_not_found(tmp_path):
    with pytest.raises(InputError) as caught:
        copy_remote("memory:///voxhear-test/never-written.mp4", tmp_path / "v.mp4")
    assert caught.value.reason == "not_found" and not isinstance(caught.value, SystemFault)


class _Server(http.server.ThreadingHTTPServer):
    daemon_threads = True
    behaviour = "stall"
    release = threading.Event()


class _Handler(http.server.BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, *args) -> None:  # keep the test output clean
        pass

    def do_HEAD(self) -> None:
        self._answer(body=False)

    def do_GET(self) -> None:
        self._answer(body=True)

    def _answer(self, body: bool) -> None:
        kind = self.server.behaviour
        if kind in ("unavailable", "missing"):
            self.send_error(503 if kind == "unavailable" else 404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        if kind == "stall":
            self.send_header("Content-Length", "1000000")
        self.end_headers()
        if not body:
            return
        if kind == "stall":  # a little, then nothing: the connection stays open
            self.wfile.write(b"x" * 1000)
            self.wfile.flush()
            self.server.release.wait(60)
        elif kind == "endless":  # no Content-Length: the size is only known by counting
            for _ in range(64):
                self.wfile.write(b"y" * 65536)


@pytest.fixture
def server() -> Iterator[_Server]:
    httpd = _Server(("127.0.0.1", 0), _Handler)
    httpd.release = threading.Event()
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield httpd
    httpd.release.set()
    httpd.shutdown()
    httpd.server_close()


def _url(httpd: _Server, name: str = "v.mp4") -> str:
    return f"http://127.0.0.1:{httpd.server_address[1]}/{name}"


@pytest.mark.timeout(60)
def test_a_stalled_remote_input_times_out(server, tmp_path):
    server.behaviour = "stall"
    started = time.monotonic()
    with pytest.raises(RemoteTimeout) as caught:
        copy_remote(_url(server), tmp_path / "v.mp4", timeout_s=1.0)
    assert caught.value.reason == "remote_timeout" and time.monotonic() - started < 20
    assert not list(tmp_path.iterdir())


@pytest.mark.timeout(60)
def test_a_remote_input_without_a_size_is_capped_while_copying(server, tmp_path):
    server.behaviour = "endless"
    with pytest.raises(RemoteTooLarge):
        copy_remote(_url(server), tmp_path / "v.mp4", max_bytes=100_000, timeout_s=10.0)
    assert not list(tmp_path.iterdir())


@pytest.mark.timeout(60)
def test_a_failing_store_is_a_system_fault_not_a_row(server, tmp_path):
    server.behaviour = "unavailable"
    with pytest.raises(RemoteUnavailable) as caught:
        copy_remote(_url(server), tmp_path / "v.mp4", timeout_s=10.0)
    assert isinstance(caught.value, SystemFault) and "uncommitted" in str(caught.value)
    server.behaviour = "missing"
    with pytest.raises(InputError) as missing:
        copy_remote(_url(server), tmp_path / "v.mp4", timeout_s=10.0)
    assert missing.value.reason == "not_found"
    port = server.server_address[1]
    server.shutdown()
    server.server_close()
    with pytest.raises(RemoteUnavailable):  # connection refused
        copy_remote(f"http://127.0.0.1:{port}/v.mp4", tmp_path / "v.mp4", timeout_s=10.0)
