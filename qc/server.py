"""`voxhear qc serve`: the dashboard as a local web app over the run's Parquet manifests.

Standard library only (`http.server`). Routes:

- `/`: the page with its filter controls (filters are kept in the query string, so a view can be
  bookmarked or sent);
- `/api/view?status=&reason=&source=&identity=&range=col:lo:hi`: the filtered sections (HTML)
  and headline counts (JSON); every parameter repeats;
- `/api/options`, `/api/clips?...&offset=&limit=`: filter choices, and the filtered clip rows;
- `/api/player?key=`: a player for one clip;
- `/media/SHARD/MEMBER`: a shard member read in place at its tar offset, with HTTP Range so a
  `<video>` can seek;
- `/work/KEY/video`, `/stem/KEY/N`: work-area media of a clip (rejected clips, cut stems).

Manifests are reloaded when their files change, so the page follows a run that is still going.
"""

from __future__ import annotations

import logging
import re
import threading
import urllib.parse
from html import escape
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from voxhear.qc.data import Filter, RunData, filter_options, headline, load_run, manifest_mtimes
from voxhear.qc.media import ShardIndex, Track, mime_of, sample_tracks, track_bytes
from voxhear.qc.report import ReportOptions, _player, dumps, render_page, render_sections

log = logging.getLogger(__name__)
CHUNK = 256 * 1024
RANGE = re.compile(r"^bytes=(\d*)-(\d*)$")


class QCApp:
    """The run behind the server: its manifests (reloaded on change) and its shard index."""

    def __init__(self, run_dir: str | Path, options: ReportOptions | None = None) -> None:
        self.run_dir = Path(run_dir).expanduser().absolute()
        self.options = options or ReportOptions(gallery_clips=8, reject_clips=8)
        self._lock = threading.Lock()
        self._data = load_run(self.run_dir)
        self.index = ShardIndex(self._data.shards_dir)

    @property
    def data(self) -> RunData:
        with self._lock:
            if manifest_mtimes(self.run_dir) != self._data.mtimes:
                try:
                    self._data = load_run(self.run_dir)
                except (OSError, ValueError) as error:  # a consolidation in progress: keep the old view
                    log.warning("could not reload manifests: %s", error)
            return self._data

    def media_url(self, track: Track, clip: dict) -> str:
        key = urllib.parse.quote(clip["key"])
        if track.member is not None:
            return f"media/{track.member.shard}/{urllib.parse.quote(track.member.name)}"
        if track.end_s > track.start_s:
            return f"stem/{key}/{urllib.parse.quote(track.label)}"
        return f"work/{key}/video"

    def clip(self, key: str) -> dict | None:
        clips = self.data.clips
        rows = clips[clips["key"] == key]
        return rows.iloc[-1].to_dict() if len(rows) else None

    def view(self, query: dict[str, list[str]]) -> dict[str, Any]:
        full = self.data
        view = Filter.from_query(query).apply(full)
        html = render_sections(view, self.media_url, self.options, serve=True, index=self.index)
        return {"headline": headline(view), "total": headline(full), "html": html}

    def clip_rows(self, query: dict[str, list[str]]) -> dict[str, Any]:
        view = Filter.from_query(query).apply(self.data)
        offset = int((query.get("offset") or ["0"])[0])
        limit = min(int((query.get("limit") or ["100"])[0]), 1000)
        columns = ["key", "status", "label", "source_id", "source_name", "identity_id", "shard",
                   "clip_start_s", "clip_end_s"] + [m for m in view.clip_metric_names if m in view.clips.columns]
        frame = view.clips[list(dict.fromkeys(columns))].iloc[offset:offset + limit]
        return {"total": int(len(view.clips)), "offset": offset, "rows": frame.to_dict("records")}

    def page(self) -> str:
        data = self.data
        sections = render_sections(data, self.media_url, self.options, serve=True, index=self.index)
        return render_page(data, sections, serve=True, filter_options=filter_options(data),
                           footer="Static, mailable copy: voxhear qc report " + str(self.run_dir))


class Handler(BaseHTTPRequestHandler):
    app: QCApp
    server_version = "voxhear-qc"

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 (stdlib signature)
        log.info("%s %s", self.address_string(), format % args)

    def do_HEAD(self) -> None:  # noqa: N802
        self._dispatch(head=True)

    def do_GET(self) -> None:  # noqa: N802
        self._dispatch(head=False)

    def _dispatch(self, head: bool) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query, keep_blank_values=False)
        parts = [urllib.parse.unquote(p) for p in url.path.split("/") if p]
        try:
            if not parts:
                self._send(HTTPStatus.OK, self.app.page().encode(), "text/html; charset=utf-8", head)
            elif parts == ["api", "view"]:
                self._json(self.app.view(query), head)
            elif parts == ["api", "options"]:
                self._json(filter_options(self.app.data), head)
            elif parts == ["api", "clips"]:
                self._json(self.app.clip_rows(query), head)
            elif parts == ["api", "player"]:
                self._player((query.get("key") or [""])[0], head)
            elif len(parts) == 3 and parts[0] == "media":
                self._media(parts[1], parts[2], head)
            elif len(parts) == 3 and parts[0] in ("stem", "work"):
                self._work_media(parts[0], parts[1], parts[2], head)
            elif parts == ["favicon.ico"]:
                self._send(HTTPStatus.NO_CONTENT, b"", "image/x-icon", head)
            else:
                self._error(HTTPStatus.NOT_FOUND, "no such page")
        except (BrokenPipeError, ConnectionResetError):
            pass  # the browser dropped a media request (seeking does that)
        except ValueError as error:
            self._error(HTTPStatus.BAD_REQUEST, str(error))

    # ------------------------------------------------------------------

    def _send(self, status: HTTPStatus, body: bytes, content_type: str, head: bool,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in (extra or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def _json(self, value: Any, head: bool) -> None:
        self._send(HTTPStatus.OK, dumps(value).encode(), "application/json", head)

    def _error(self, status: HTTPStatus, message: str) -> None:
        self._send(status, dumps({"error": message}).encode(), "application/json", head=False)

    def _player(self, key: str, head: bool) -> None:
        clip = self.app.clip(key)
        if clip is None:
            self._error(HTTPStatus.NOT_FOUND, f"no clip {key!r}")
            return
        tracks = sample_tracks(self.app.index, clip)
        html = (f'<div class="clip" data-key="{escape(key)}"><div class="key">{escape(key)} \u00b7 '
                f'{escape(clip["label"])}</div>'
                + _player(clip, tracks, self.app.media_url, self.app.options) + "</div>")
        self._json({"key": key, "html": html, "tracks": [t.label for t in tracks]}, head)

    def _media(self, shard: str, name: str, head: bool) -> None:
        try:
            member = self.app.index.members(shard).get(name)
        except KeyError:
            member = None
        if member is None:
            self._error(HTTPStatus.NOT_FOUND, f"no member {name} in shard {shard}")
            return
        start, end = self._range(member.size)
        if start is None:
            return
        self._ranged_headers(member.size, start, end, mime_of(name))
        if head:
            return
        with open(self.app.index.shard_path(shard), "rb") as handle:
            handle.seek(member.offset + start)
            left = end - start + 1
            while left > 0:
                chunk = handle.read(min(CHUNK, left))
                if not chunk:
                    break
                self.wfile.write(chunk)
                left -= len(chunk)

    def _work_media(self, kind: str, key: str, which: str, head: bool) -> None:
        clip = self.app.clip(key)
        if clip is None:
            self._error(HTTPStatus.NOT_FOUND, f"no clip {key!r}")
            return
        # Only files the manifest names for this clip are served, never a path from the URL.
        tracks = [t for t in sample_tracks(self.app.index, clip) if t.member is None]
        if kind == "work":
            track = next((t for t in tracks if t.is_video), None)
        else:
            track = next((t for t in tracks if t.label == which), None)
        if track is None:
            self._error(HTTPStatus.NOT_FOUND, f"no {kind} media {which!r} for {key}")
            return
        data = track_bytes(self.app.index, track)
        start, end = self._range(len(data))
        if start is None:
            return
        self._ranged_headers(len(data), start, end, track.mime)
        if not head:
            self.wfile.write(data[start:end + 1])

    def _range(self, size: int) -> tuple[int | None, int]:
        """The byte range asked for (inclusive end), or (None, 0) after answering 416."""
        header = self.headers.get("Range")
        self._partial = False
        if not header:
            return 0, size - 1
        match = RANGE.match(header.strip())
        if not match or (not match.group(1) and not match.group(2)):
            return 0, size - 1  # unsupported (multi-range) forms get the whole body
        first, last = match.group(1), match.group(2)
        if first:
            start = int(first)
            end = min(int(last), size - 1) if last else size - 1
        else:
            start, end = max(size - int(last), 0), size - 1
        if start >= size or start > end:
            self.send_response(HTTPStatus.REQUESTED_RANGE_NOT_SATISFIABLE)
            self.send_header("Content-Range", f"bytes */{size}")
            self.send_header("Content-Length", "0")
            self.end_headers()
            return None, 0
        self._partial = True
        return start, end

    def _ranged_headers(self, size: int, start: int, end: int, content_type: str) -> None:
        self.send_response(HTTPStatus.PARTIAL_CONTENT if self._partial else HTTPStatus.OK)
        self.send_header("Content-Type", content_type)
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("Content-Length", str(end - start + 1))
        if self._partial:
            self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
        self.end_headers()


def make_server(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8765,
                options: ReportOptions | None = None) -> ThreadingHTTPServer:
    """A ready (bound, not yet serving) server; port 0 picks a free one (see `server.server_address`)."""
    app = QCApp(run_dir, options)
    handler = type("BoundHandler", (Handler,), {"app": app})
    server = ThreadingHTTPServer((host, port), handler)
    server.daemon_threads = True
    return server


def serve(run_dir: str | Path, host: str = "127.0.0.1", port: int = 8765) -> None:
    """Serve until interrupted."""
    server = make_server(run_dir, host, port)
    bound_host, bound_port = server.server_address[:2]
    print(f"voxhear qc: serving {Path(run_dir).absolute()} at http://{bound_host}:{bound_port}/ (Ctrl-C stops)",
          flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
