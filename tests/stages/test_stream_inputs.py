"""Inputs whose streams break or mislead normalization (issue 16): audio that starts before or after
the first frame, multichannel and multi-stream audio, playlists that read other files, non-square
pixels, HDR and interlaced video. Each ends as an aligned, square-pixel SDR progressive video with
mono audio, or as one row with its reason."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import pytest
import soundfile as sf

from tests.conftest import ffmpeg, make_video
from voxhear.pipeline.config import ConfigError, load_config
from voxhear.pipeline.io import sha256_file
from voxhear.pipeline.records import SourceRecord
from voxhear.pipeline.runner import run_pipeline
from voxhear.pipeline.stage import InputError, RunContext
from voxhear.stages import ingest
from voxhear.stages.ingest import IngestConfig, IngestStage

RATE = 16000
H264 = "-c:v libx264 -preset ultrafast -pix_fmt yuv420p"
# ffmpeg layout names of the channel lists the tests build.
LAYOUTS = {"FL+FR+FC+LFE+BL+BR": "5.1"}


# --- helpers --------------------------------------------------------------------------------------


def _ingest(tmp_path: Path, path: Path, config: IngestConfig | None = None) -> SourceRecord:
    """Run the ingest stage alone on `path` (no Ray: a failed or filtered input raises)."""
    stage = IngestStage(config or IngestConfig(), RunContext(run_dir=tmp_path / "run", model_store=None))
    [row] = stage.process(SourceRecord(source_uri=str(path)))
    return row


def _stream(path: str | Path, select: str) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-select_streams", select, "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return json.loads(out)["streams"][0]


def _tool_calls(monkeypatch) -> list[list[str]]:
    """Every ffmpeg and ffprobe command ingest runs from now on, in order."""
    calls: list[list[str]] = []
    real = ingest.run_tool

    def recording(command, timeout_s, uri):
        calls.append(list(command))
        return real(command, timeout_s, uri)

    monkeypatch.setattr(ingest, "run_tool", recording)
    monkeypatch.setattr("voxhear.stages.media.run_tool", recording)
    return calls


def _onset_s(audio: np.ndarray, rate: int, threshold: float = 0.1) -> float:
    loud = np.flatnonzero(np.abs(audio) > threshold)
    assert loud.size, "no audio event found"
    return float(loud[0]) / rate


def _rms(audio: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(audio, dtype=np.float64))))


def _dominant_hz(audio: np.ndarray, rate: int) -> float:
    spectrum = np.abs(np.fft.rfft(audio))
    return float(np.fft.rfftfreq(audio.size, 1 / rate)[np.argmax(spectrum)])


# --- inputs ---------------------------------------------------------------------------------------


def _offset_input(folder: Path, offset_s: float, seconds: float, beep_at_s: float) -> Path:
    """A video of `seconds` and an audio track with a 1 kHz beep at `beep_at_s` (of the audio's own
    time) that starts `offset_s` after the first frame (before it when negative). Streams are
    copied, so the offset is in the container's timestamps, as a camera or an editor leaves it."""
    video, audio = folder / f"v{offset_s:+g}.mp4", folder / f"a{offset_s:+g}.m4a"
    ffmpeg(*f"-f lavfi -i testsrc=size=64x48:rate=25:duration={seconds} {H264}".split(), str(video))
    beep = f"aevalsrc='0.5*sin(2*PI*1000*t)*between(t,{beep_at_s},{beep_at_s + 0.2})':s=44100:d={seconds}"
    ffmpeg("-f", "lavfi", "-i", beep, "-c:a", "aac", str(audio))
    # -itsoffset shifts the timestamps of the input after it: the audio's, or else the video's.
    shift = ["-itsoffset", str(abs(offset_s))]
    inputs = (
        ["-i", str(video), *shift, "-i", str(audio)] if offset_s > 0 else [*shift, "-i", str(video), "-i", str(audio)]
    )
    out = folder / f"offset{offset_s:+g}.mp4"
    ffmpeg(*inputs, "-map", "0:v", "-map", "1:a", "-c", "copy", str(out))
    return out


def _short_audio(path: Path) -> Path:
    """4 s of video with 1.5 s of audio."""
    args = f"-f lavfi -i testsrc=size=64x48:rate=25:duration=4 -f lavfi -i sine=d=1.5 {H264} -c:a aac"
    ffmpeg(*args.split(), str(path))
    return path


def _multichannel(path: Path, channels: int, layout: str | None, tone_channel: int | None) -> Path:
    """`channels` channels of audio in Matroska: a 440 Hz tone at amplitude 0.25 in channel
    `tone_channel` (every channel, each at its own pitch, when None), the others silent."""
    args = ["-f", "lavfi", "-i", "testsrc=size=64x48:rate=25:duration=2"]
    for i in range(channels):
        if tone_channel is None or i == tone_channel:
            source = f"aevalsrc='0.25*sin(2*PI*{440 + 40 * i}*t)':s=48000:d=2"
        else:
            source = "anullsrc=r=48000:cl=mono:d=2"
        args += ["-f", "lavfi", "-i", source]
    pads = "".join(f"[{i + 1}:a]" for i in range(channels))
    if layout:
        mapping = "|".join(f"{i}.0-{name}" for i, name in enumerate(layout.split("+")))
        graph = f"{pads}join=inputs={channels}:channel_layout={LAYOUTS[layout]}:map={mapping}[a]"
    else:
        graph = f"{pads}amerge=inputs={channels}[a]"  # mono inputs overlap: the layout stays unknown
    # FLAC keeps a standard layout (Matroska PCM keeps only the count) but holds at most 8 channels.
    codec = "flac" if layout else "pcm_s16le"
    ffmpeg(*args, "-filter_complex", graph, *f"-map 0:v -map [a] {H264} -c:a {codec}".split(), str(path))
    return path


def _two_audio_streams(path: Path, default: int | None) -> Path:
    """A 300 Hz English stream and a 1200 Hz German one; `default` is the one marked default."""
    flags = ["0", "0"]
    if default is not None:
        flags[default] = "default"
    sources = "-f lavfi -i testsrc=size=64x48:rate=25:duration=2 -f lavfi -i sine=frequency=300:d=2 "
    sources += "-f lavfi -i sine=frequency=1200:d=2"
    languages = "-metadata:s:a:0 language=eng -metadata:s:a:1 language=deu"
    marks = f"-disposition:a:0 {flags[0]} -disposition:a:1 {flags[1]}"
    ffmpeg(*f"{sources} -map 0 -map 1 -map 2 {H264} -c:a aac {languages} {marks}".split(), str(path))
    return path


def _playlists(folder: Path) -> tuple[Path, Path, Path]:
    """A local video, and an HLS playlist and an ffconcat list that name it, both called .mp4."""
    other = make_video(folder / "private" / "other.mp4", seconds=2.5, size="128x96")
    ffmpeg("-i", str(other), "-c", "copy", "-f", "mpegts", str(folder / "private" / "other.ts"))
    hls = folder / "playlist.mp4"
    hls.write_text(
        "#EXTM3U\n#EXT-X-VERSION:3\n#EXT-X-TARGETDURATION:2\n#EXTINF:2.0,\nprivate/other.ts\n#EXT-X-ENDLIST\n"
    )
    concat = folder / "list.mp4"
    concat.write_text("ffconcat version 1.0\nfile private/other.mp4\n")
    return other, hls, concat


def _anamorphic(path: Path, size: str = "160x120", sar: str = "2") -> Path:
    sources = f"-f lavfi -i testsrc=size={size}:rate=25:duration=1.5 -f lavfi -i sine=d=1.5"
    ffmpeg(*f"{sources} -vf setsar={sar} {H264} -c:a aac".split(), str(path))
    return path


def _hdr(path: Path) -> Path:
    """10-bit H.264 tagged HDR10 (PQ transfer, BT.2020 primaries and matrix)."""
    sources = "-f lavfi -i testsrc=size=160x120:rate=25:duration=1.5 -f lavfi -i sine=d=1.5"
    tags = "-color_trc smpte2084 -color_primaries bt2020 -colorspace bt2020nc"
    ffmpeg(*f"{sources} -c:v libx264 -preset ultrafast -pix_fmt yuv420p10le {tags} -c:a aac".split(), str(path))
    return path


def _interlaced(path: Path) -> Path:
    """Real fields: 50p woven into 25 frames a second, coded interlaced, top field first."""
    sources = "-f lavfi -i testsrc=size=160x120:rate=50:duration=1.5 -f lavfi -i sine=d=1.5"
    coding = "-c:v libx264 -preset ultrafast -flags +ilme+ildct -top 1 -pix_fmt yuv420p"
    ffmpeg(*f"{sources} -vf tinterlace=mode=interleave_top {coding} -c:a aac".split(), str(path))
    return path


# --- 1. audio aligned to the first frame ---------------------------------------------------------


@pytest.mark.parametrize("offset_s", [2.0, -2.0])
def test_audio_that_starts_late_or_early_is_aligned_to_the_first_frame(tmp_path, offset_s):
    # 20 s, so that 2 s without audio stays within what audio must cover (90%, less 0.5 s).
    path = _offset_input(tmp_path, offset_s, seconds=20.0, beep_at_s=3.0)
    row = _ingest(tmp_path, path)
    assert row.n_frames == 500
    audio, rate = sf.read(row.audio_uri, dtype="float32")
    assert rate == RATE
    # Sample 0 is frame 0: the beep at 3 s of the audio's time is at 3 s + offset of the video's.
    assert _onset_s(audio, rate) == pytest.approx(3.0 + offset_s, abs=0.04)
    # Padded or trimmed to exactly the video's length, so that stems cut at frame times line up.
    assert audio.size == row.n_frames * RATE // 25
    orig, orig_rate = sf.read(row.audio_orig_uri, dtype="float32")
    assert orig_rate == 44100 and orig.ndim == 1
    assert _onset_s(orig, orig_rate) == pytest.approx(3.0 + offset_s, abs=0.04)
    assert orig.size == row.n_frames * orig_rate // 25


def test_audio_covering_far_less_than_the_video_fails(tmp_path):
    with pytest.raises(InputError) as caught:
        _ingest(tmp_path, _short_audio(tmp_path / "short.mp4"))
    assert caught.value.reason == "audio_shorter_than_video"


# --- 2. multichannel and multi-stream audio ------------------------------------------------------


def test_more_than_eight_channels_complete(tmp_path):
    path = _multichannel(tmp_path / "ten.mkv", 10, None, None)
    assert _stream(path, "a:0")["channels"] == 10
    row = _ingest(tmp_path, path)
    assert row.audio_channels == 10
    orig = sf.info(row.audio_orig_uri)
    assert orig.format == "FLAC" and orig.channels == 1
    audio, _ = sf.read(row.audio_uri, dtype="float32")
    assert audio.ndim == 1 and _rms(audio) > 0.01


def test_dialogue_in_the_centre_channel_keeps_its_level_in_mono(tmp_path):
    # ffmpeg 5.1's `-ac 1` leaves a 5.1 centre at 0.293 (-10.7 dB); the A/52 mix keeps 0.707 (-3 dB).
    path = _multichannel(tmp_path / "surround.mkv", 6, "FL+FR+FC+LFE+BL+BR", tone_channel=2)
    assert _stream(path, "a:0")["channel_layout"] == "5.1"
    row = _ingest(tmp_path, path)
    audio, _ = sf.read(row.audio_uri, dtype="float32")
    centre = 0.25 / np.sqrt(2)
    assert _rms(audio) == pytest.approx(0.7071 * centre, rel=0.05)
    orig, _ = sf.read(row.audio_orig_uri, dtype="float32")
    assert orig.ndim == 1 and _rms(orig) == pytest.approx(_rms(audio), rel=0.05)


@pytest.mark.parametrize(
    "layout, channels, expected",
    [
        ("mono", 1, []),
        ("stereo", 2, ["pan=mono|c0=0.5*FL+0.5*FR"]),
        ("5.1(side)", 6, ["pan=mono|c0=0.5*FL+0.5*FR+0.7071*FC+0.3536*SL+0.3536*SR"]),
        ("7.1", 8, ["pan=mono|c0=0.5*FL+0.5*FR+0.7071*FC+0.3536*BL+0.3536*BR+0.3536*SL+0.3536*SR"]),
        ("unknown", 3, ["pan=mono|c0<c0+c1+c2"]),
        ("5.1", 4, ["pan=mono|c0<c0+c1+c2+c3"]),  # a layout that disagrees with the count
    ],
)
def test_the_downmix_follows_the_layout(layout, channels, expected):
    assert ingest._downmix({"channels": channels, "channel_layout": layout}) == expected


@pytest.mark.parametrize("container", ["mkv", "mp4"])
def test_the_default_audio_stream_is_chosen(tmp_path, container):
    row = _ingest(tmp_path, _two_audio_streams(tmp_path / f"two.{container}", default=1))
    assert row.audio_stream_index == 2
    audio, rate = sf.read(row.audio_uri, dtype="float32")
    assert _dominant_hz(audio, rate) == pytest.approx(1200, abs=10)


def test_the_first_audio_stream_is_chosen_when_none_is_default(tmp_path):
    row = _ingest(tmp_path, _two_audio_streams(tmp_path / "two.mkv", default=None))
    audio, rate = sf.read(row.audio_uri, dtype="float32")
    assert row.audio_stream_index == 1 and _dominant_hz(audio, rate) == pytest.approx(300, abs=10)


# --- 3. the sample rate --------------------------------------------------------------------------


def test_a_sample_rate_other_than_16k_is_refused_at_load():
    with pytest.raises(ConfigError, match=r"'ingest\.sample_rate'.*16000.*22050"):
        load_config(None, ["ingest.sample_rate=22050"])
    assert load_config(None, ["ingest.sample_rate=16000"]).ingest.sample_rate == 16000


# --- 4. inputs that read other files -------------------------------------------------------------


def test_containers_that_read_other_files_are_refused_before_decoding(tmp_path, monkeypatch):
    _, hls, concat = _playlists(tmp_path)
    calls = _tool_calls(monkeypatch)
    for path in (hls, concat):
        with pytest.raises(InputError) as caught:
            _ingest(tmp_path, path)
        assert caught.value.reason == "unsupported_container"
    assert [c[0] for c in calls] == ["ffprobe", "ffprobe"]  # nothing was decoded


def test_every_tool_call_on_an_input_allows_only_local_files(tmp_path, monkeypatch):
    calls = _tool_calls(monkeypatch)
    _ingest(tmp_path, make_video(tmp_path / "a.mp4", seconds=1.2))
    assert len(calls) >= 4
    for command in calls:
        source = command.index("-i") + 1 if command[0] == "ffmpeg" else len(command) - 1
        at = command.index("-protocol_whitelist")
        assert command[at + 1] == "file" and at < source, command


# --- 5. 6. 7. pixels, colour, fields -------------------------------------------------------------


def test_non_square_pixels_are_made_square(tmp_path):
    path = _anamorphic(tmp_path / "anamorphic.mp4")
    assert _stream(path, "v:0")["sample_aspect_ratio"] == "2:1"
    row = _ingest(tmp_path, path)
    assert (row.norm_width, row.norm_height) == (320, 120)
    assert _stream(row.video_uri, "v:0").get("sample_aspect_ratio", "1:1") == "1:1"


def test_anamorphic_frames_keep_the_height_cap(tmp_path):
    path = _anamorphic(tmp_path / "pal.mp4", size="720x576", sar="64/45")
    row = _ingest(tmp_path, path, IngestConfig(max_height=288))
    # 720x576 at 64:45 shows as 1024x576; capped at 288 lines that is 512x288.
    assert (row.norm_width, row.norm_height) == (512, 288)


def test_hdr_is_tone_mapped_to_sdr(tmp_path, monkeypatch):
    path = _hdr(tmp_path / "hdr.mp4")
    source = _stream(path, "v:0")
    assert (source["color_transfer"], source["pix_fmt"]) == ("smpte2084", "yuv420p10le")
    calls = _tool_calls(monkeypatch)
    row = _ingest(tmp_path, path)
    assert "tonemap=" in _video_filters(calls)
    norm = _stream(row.video_uri, "v:0")
    assert norm["pix_fmt"] == "yuv420p"
    assert (norm.get("color_transfer"), norm.get("color_primaries"), norm.get("color_space")) == ("bt709",) * 3


def _video_filters(calls: list[list[str]]) -> str:
    """The -vf of the ffmpeg call that wrote video.mp4."""
    [video] = [c for c in calls if c[0] == "ffmpeg" and "-vf" in c]
    return video[video.index("-vf") + 1]


def test_interlaced_video_is_deinterlaced_before_the_rate_change(tmp_path, monkeypatch):
    path = _interlaced(tmp_path / "interlaced.mp4")
    assert _stream(path, "v:0")["field_order"] == "tt"
    calls = _tool_calls(monkeypatch)
    _ingest(tmp_path, path)
    filters = _video_filters(calls)
    assert "bwdif" in filters and filters.index("bwdif") < filters.index("fps=")
    calls.clear()
    _ingest(tmp_path / "progressive", make_video(tmp_path / "progressive.mp4", seconds=1.2))
    assert "bwdif" not in _video_filters(calls) and "zscale" not in _video_filters(calls)


# --- every kind through the pipeline -------------------------------------------------------------


@pytest.fixture(scope="module")
def stream_inputs(tmp_path_factory):
    """One small input of each kind, with the (status, reason) its manifest row must have."""
    folder = tmp_path_factory.mktemp("streams")
    expected: dict[str, tuple[str, str]] = {}

    def expect(path: Path, status: str = "ok", reason: str = "") -> None:
        expected[str(path)] = (status, reason)

    expect(make_video(folder / "good.mp4", seconds=2.0))
    other, hls, concat = _playlists(folder)
    expect(hls, "failed", "unsupported_container")
    expect(concat, "failed", "unsupported_container")
    expect(_short_audio(folder / "short_audio.mp4"), "failed", "audio_shorter_than_video")
    expect(_offset_input(folder, 0.4, seconds=4.0, beep_at_s=1.0))
    expect(_multichannel(folder / "ten.mkv", 10, None, None))
    expect(_multichannel(folder / "surround.mkv", 6, "FL+FR+FC+LFE+BL+BR", 2))
    expect(_two_audio_streams(folder / "two_streams.mkv", default=1))
    expect(_anamorphic(folder / "anamorphic.mp4"))
    expect(_hdr(folder / "hdr.mp4"))
    expect(_interlaced(folder / "interlaced.mp4"))
    return folder, expected, other


def test_each_stream_kind_is_one_row_and_no_playlist_reads_another_file(stream_inputs, run_config):
    folder, expected, other = stream_inputs
    list_file = folder / "inputs.txt"
    list_file.write_text("\n".join(expected) + "\n")
    summary = run_pipeline(run_config([str(list_file)]), show_progress=False)
    sources = pq.read_table(summary.run_dir / "manifests" / "sources.parquet").to_pylist()
    assert {row["source_uri"]: (row["status"], row["reason"]) for row in sources} == expected
    for row in sources:
        if row["status"] != "ok":
            assert row["stage"] == "ingest" and row["error_message"], row
            assert not row["video_uri"] and not row["audio_uri"], row
    clips = pq.read_table(summary.run_dir / "manifests" / "clips.parquet").to_pylist()
    ok = {row["source_uri"] for row in sources if row["status"] == "ok"}
    assert {c["source_uri"] for c in clips if c["status"] == "ok"} == ok
    # The playlists' target is no input: nothing of it became a source, a clip, a sample or media.
    other_id = sha256_file(other)[:16]
    assert other_id not in {c["source_id"] for c in clips} | {r["source_id"] for r in sources}
    assert not (summary.run_dir / "work" / other_id).exists()
