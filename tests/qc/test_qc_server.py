"""`voxhear qc serve` over HTTP, and in a real headless chromium."""

from __future__ import annotations

import json
import os
import tarfile
import threading
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from .qc_helpers import KEPT, SID_B, STEM_KEY
from voxhear.qc.server import make_server


@pytest.fixture
def server(qc_run):
    """The app on 127.0.0.1 and a free port, served from a thread; shut down after the test."""
    httpd = make_server(qc_run, "127.0.0.1", 0)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}"
    httpd.shutdown()
    httpd.server_close()
    thread.join(timeout=10)
    assert not thread.is_alive()


def get(url: str, headers: dict | None = None):
    request = urllib.request.Request(url, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as error:
        return error.code, dict(error.headers), error.read()


def test_api_filters_change_counts(server):
    status, _, body = get(server + "/api/view")
    everything = json.loads(body)
    assert status == 200 and everything["headline"]["clips_kept"] == 5
    view = json.loads(get(server + "/api/view?status=filtered")[2])
    assert (view["headline"]["clips"], view["headline"]["clips_kept"]) == (3, 0)
    view = json.loads(get(server + f"/api/view?source={SID_B}&range=face_height_px:105:")[2])
    assert view["headline"]["clips"] == 1 and view["headline"]["inputs"] == 1
    assert 'data-metric="clips_kept"><div class="v">1<' in view["html"]
    rows = json.loads(get(server + "/api/clips?identity=face-1&limit=2")[2])
    assert rows["total"] == 3 and len(rows["rows"]) == 2
    options = json.loads(get(server + "/api/options")[2])
    assert "filtered: faces/profile_view" in options["reasons"] and options["identities"] == ["face-1", "face-2", "face-3"]


def test_media_is_streamed_from_the_shard_with_ranges(server, qc_run):
    name = f"{STEM_KEY}.mp4"
    with tarfile.open(qc_run / "shards" / "000000.tar") as tar:
        whole = tar.extractfile(name).read()
    status, headers, body = get(f"{server}/media/000000.tar/{name}")
    assert status == 200 and body == whole and headers["Content-Type"] == "video/mp4"
    assert headers["Accept-Ranges"] == "bytes"
    status, headers, body = get(f"{server}/media/000000.tar/{name}", {"Range": "bytes=100-199"})
    assert status == 206 and body == whole[100:200]
    assert headers["Content-Range"] == f"bytes 100-199/{len(whole)}"
    status, _, body = get(f"{server}/media/000000.tar/{name}", {"Range": "bytes=-50"})
    assert status == 206 and body == whole[-50:]
    assert get(f"{server}/media/000000.tar/{name}", {"Range": f"bytes={len(whole)}-"})[0] == 416
    assert get(f"{server}/media/000000.tar/nothing.mp4")[0] == 404
    assert get(f"{server}/media/..%2Fconfig.yaml/x")[0] == 404


def test_player_and_work_area_stems(server):
    player = json.loads(get(f"{server}/api/player?key={KEPT[1]}")[2])
    assert player["tracks"] == ["video", "mix", "background (work area)"]
    stem = "background%20(work%20area)"
    status, headers, body = get(f"{server}/stem/{KEPT[1]}/{stem}", {"Range": "bytes=0-43"})
    assert status == 206 and body[:4] == b"RIFF" and headers["Content-Type"] == "audio/wav"
    assert get(f"{server}/stem/{KEPT[1]}/..%2F..%2Fetc%2Fpasswd")[0] == 404
    assert get(f"{server}/api/player?key=nope")[0] == 404


@pytest.mark.timeout(240)
def test_dashboard_in_headless_chromium(server, tmp_path):
    """The page loads, charts render, filtering changes the counts, a clip's video becomes playable."""
    from voxhear.qc.browser import BrowserUnavailable, chromium, find_browser, full_page_screenshot, wait_for

    try:
        find_browser()
    except BrowserUnavailable as error:
        pytest.skip(f"no headless browser: {error}")
    card = "return document.querySelector('[data-metric=\"%s\"] .v').textContent"
    with chromium(1280, 1000) as driver:
        driver.get(server + "/")
        assert "voxhear QC" in driver.title
        wait_for(driver, "return document.querySelectorAll('svg.chart rect.bar').length > 20", 30)
        assert driver.execute_script("return document.querySelectorAll('#metrics svg.chart').length") >= 6
        assert driver.execute_script("return document.querySelectorAll('line.threshold').length") >= 3
        assert driver.execute_script(card % "clips_kept") == "5"

        # A kept clip's face video, streamed from the shard, reaches a playable state.
        state = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const v = document.querySelector('#gallery video');
            const finish = () => done([v.readyState, v.duration, v.error && v.error.code]);
            if (v.readyState >= 3) finish();
            else { v.addEventListener('canplay', finish, {once: true});
                   v.addEventListener('error', finish, {once: true}); v.load(); }""")
        assert state[0] >= 3 and state[1] == pytest.approx(2.0, abs=0.1) and state[2] is None, state
        played = driver.execute_async_script("""
            const done = arguments[arguments.length - 1];
            const v = document.querySelector('#gallery video');
            v.play().then(() => setTimeout(() => done(v.currentTime), 400), e => done('play failed: ' + e));""")
        assert isinstance(played, (int, float)) and played > 0, played
        full_page_screenshot(driver, tmp_path / "dashboard.png", 1280)

        # Filtering by status updates the counts, the charts and the URL.
        driver.execute_script("""
            const s = document.querySelector('select[name=status]');
            for (const o of s.options) o.selected = o.value === 'filtered';
            s.dispatchEvent(new Event('change', {bubbles: true}));""")
        wait_for(driver, (card % "clips_kept") + " === '0'", 30)
        assert driver.execute_script(card % "clips_rejected") == "3"
        assert "status=filtered" in driver.current_url
        assert driver.execute_script("return document.querySelectorAll('#rejects .clip.reject').length") == 3

        # A metric range narrows it further; reset brings everything back.
        driver.execute_script("""
            const row = document.querySelector('.range');
            row.querySelector('select').value = 'face_height_px';
            row.querySelector('.hi').value = '50';
            row.querySelector('.hi').dispatchEvent(new Event('change', {bubbles: true}));""")
        wait_for(driver, (card % "clips_rejected") + " === '1'", 30)
        driver.execute_script("document.getElementById('reset').click()")
        wait_for(driver, (card % "clips_kept") + " === '5'", 30)

        # Clicking a key in the clip table plays it from the shard.
        driver.execute_script("document.querySelector('a.play').click()")
        wait_for(driver, "const v = document.querySelector('#player video'); return v && v.readyState >= 2", 30)
        screenshot = tmp_path / "dashboard.png"
        assert screenshot.stat().st_size > 20_000
        target = os.environ.get("VOXHEAR_QC_SCREENSHOT")
        if target:
            Path(target).write_bytes(screenshot.read_bytes())


@pytest.mark.timeout(240)
def test_static_report_in_headless_chromium(qc_run, tmp_path):
    from voxhear.qc.browser import BrowserUnavailable, chromium, find_browser, wait_for
    from voxhear.qc.report import write_report

    try:
        find_browser()
    except BrowserUnavailable as error:
        pytest.skip(f"no headless browser: {error}")
    path = write_report(qc_run, tmp_path / "report.html")
    with chromium() as driver:
        driver.get(path.as_uri())
        wait_for(driver, "return document.querySelectorAll('svg.chart rect.bar').length > 20", 30)
        # Embedded (data URI) video of every gallery clip decodes without any server.
        wait_for(driver, "return [...document.querySelectorAll('#gallery video')].every(v => v.readyState >= 2)", 30)
        assert driver.execute_script("return document.querySelectorAll('#gallery video').length") == 5
