"""Ingest: fetch, hash, probe and normalize every input once.

After this stage every source is a constant-fps H.264 video, a mono 16 kHz WAV and (for
separators that want it) the same mono audio at its original rate, all in the run's work area, so
that no later stage has to care about containers, variable frame rates or odd sample rates.

The video is progressive (interlaced input is deinterlaced), has square pixels and is SDR BT.709
(HDR is tone-mapped). The audio is the container's default stream, downmixed with the dialogue in
front, and starts at the first video frame and ends with the last: sample 0 of audio16k.wav is
frame 0 of video.mp4, and both files are exactly n_frames / fps long.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np
import soundfile as sf

from voxhear.pipeline.inputs import copy_remote, is_remote, local_path
from voxhear.pipeline.io import atomic_path, sha256_file
from voxhear.pipeline.records import SourceRecord
from voxhear.pipeline.settings import require, setting
from voxhear.pipeline.stage import Bound, FilteredError, InputError, RejectReason, Stage
from voxhear.pipeline.workarea import fetched_path
from voxhear.stages.media import (
    FFMPEG,
    INPUT_OPTIONS,
    X264_PRESETS,
    h264_output,
    last_lines,
    probe,
    run_tool,
    tool_timeout,
)

# Peak level below which audio counts as silent (about -80 dBFS).
SILENCE_PEAK = 1e-4
# A normalized video shorter than this share of the probed duration means the input is truncated;
# audio (aligned to the first frame) covering less than this share of the video is refused.
MIN_DECODED_SHARE = 0.9

# Demuxers that read other files named inside the input: an HLS playlist or a DASH/IMF manifest
# (segments), an ffconcat list, a VobSub index, an image2 pattern, an AviSynth/VapourSynth script.
# Any such file named .mp4 would pull arbitrary local files into a sample, so it is refused after
# the probe, before anything is decoded. (mov's external data references stay off: ffmpeg's
# enable_drefs defaults to 0.)
REFERENCING_FORMATS = frozenset(
    {"hls", "applehttp", "dash", "imf", "concat", "vobsub", "image2", "avisynth", "vapoursynth"}
)

# ffprobe's field_order of interlaced video (progressive and unknown are left alone).
INTERLACED_ORDERS = frozenset({"tt", "bb", "tb", "bt"})
# bwdif on every frame, one frame out per frame in: the fps filter after it picks the output rate.
DEINTERLACE = "bwdif=mode=send_frame:parity=auto:deint=all"
# Transfers of HDR video: PQ (HDR10, Dolby Vision's base layer) and HLG.
HDR_TRANSFERS = frozenset({"smpte2084", "arib-std-b67"})
# zscale's names of the transfers and matrices ffprobe reports that the conversion accepts.
ZSCALE_TRANSFERS = frozenset({"smpte2084", "arib-std-b67", "bt709", "bt2020-10", "bt2020-12", "linear"})
ZSCALE_MATRICES = frozenset({"bt2020nc", "bt2020c", "bt709", "smpte170m", "bt470bg"})

# The mono downmix, by channel name: ATSC A/52 (AC-3) section 7.8 with the centre and surround
# mix levels at -3 dB, averaged to mono: M = (Lo + Ro) / 2 = 0.5 L + 0.5 R + 0.707 C + 0.354 Ls
# + 0.354 Rs, LFE dropped. Every other full-range channel (backs and sides of 7.1, wides, tops)
# counts as a surround. A stereo input gets 0.5 L + 0.5 R, what `-ac 1` gives it.
# Why not `-ac 1`: for 5.1, ffmpeg 5.1's libswresample uses the ITU-R BS.775 mono matrix (C 1,
# L and R 0.707, Ls and Rs 0.5) and, writing 16-bit samples, divides it by its sum (3.41) so
# that nothing can clip: the centre, where films and broadcasts put the dialogue, ends at 0.293
# (-10.7 dB; measured here), so a 5.1 film's speech is far quieter than a stereo one's. This mix
# keeps the same balance between the channels with the centre at 0.707 (-3 dB). It is not
# normalized: a moment when every channel is loud at once can clip, which harms less than
# taking 7.7 dB off all the speech (levels feed the silence test and the audio models).
# Layouts without names (ffprobe's "unknown", e.g. 10 channels) get a plain average.
DOWNMIX_GAINS = {"FL": 0.5, "FR": 0.5, "DL": 0.5, "DR": 0.5, "FC": 0.7071, "LFE": 0.0, "LFE2": 0.0}
SURROUND_GAIN = 0.3536
# ffmpeg's standard channel layouts (`ffmpeg -layouts`) that name a channel the gains tell apart.
LAYOUT_CHANNELS = {
    "stereo": "FL+FR",
    "2.1": "FL+FR+LFE",
    "3.0": "FL+FR+FC",
    "3.0(back)": "FL+FR+BC",
    "4.0": "FL+FR+FC+BC",
    "quad": "FL+FR+BL+BR",
    "quad(side)": "FL+FR+SL+SR",
    "3.1": "FL+FR+FC+LFE",
    "5.0": "FL+FR+FC+BL+BR",
    "5.0(side)": "FL+FR+FC+SL+SR",
    "4.1": "FL+FR+FC+LFE+BC",
    "5.1": "FL+FR+FC+LFE+BL+BR",
    "5.1(side)": "FL+FR+FC+LFE+SL+SR",
    "6.0": "FL+FR+FC+BC+SL+SR",
    "6.0(front)": "FL+FR+FLC+FRC+SL+SR",
    "hexagonal": "FL+FR+FC+BL+BR+BC",
    "6.1": "FL+FR+FC+LFE+BC+SL+SR",
    "6.1(back)": "FL+FR+FC+LFE+BL+BR+BC",
    "6.1(front)": "FL+FR+LFE+FLC+FRC+SL+SR",
    "7.0": "FL+FR+FC+BL+BR+SL+SR",
    "7.0(front)": "FL+FR+FC+FLC+FRC+SL+SR",
    "7.1": "FL+FR+FC+LFE+BL+BR+SL+SR",
    "7.1(wide)": "FL+FR+FC+LFE+BL+BR+FLC+FRC",
    "7.1(wide-side)": "FL+FR+FC+LFE+FLC+FRC+SL+SR",
    "octagonal": "FL+FR+FC+BL+BR+BC+SL+SR",
    "downmix": "DL+DR",
}


@dataclass
class IngestConfig:
    """Probing and normalization of every input."""

    fps: int = setting(25, gt=0)
    # Only 16 kHz: separation, diarization, ASR, the shot cuts and the sample metadata all assume
    # it, and another rate would silently cut stems at the wrong sample positions downstream.
    # Refused at load until every stage reads the rate from the record.
    sample_rate: int = setting(16000, choices=(16000,))
    # Larger frames are scaled down once here so every later stage decodes less.
    max_height: int = setting(720, ge=64)
    # Frames above this many pixels are rejected before decoding (a 16k video would OOM a worker).
    max_pixels: int = setting(4096 * 2304, ge=1)
    min_duration_s: float = setting(1.0, ge=0)
    max_duration_s: float = setting(6 * 3600.0, gt=0)
    # Container frame rates outside this range are treated as broken metadata.
    min_fps: float = setting(5.0, gt=0)
    max_fps: float = setting(240.0, gt=0)
    keep_original_audio: bool = True
    video_crf: int = setting(18, ge=0, le=51)
    x264_preset: str = setting("veryfast", choices=X264_PRESETS)
    # Remote inputs (s3://, gs://, https://...) larger than this are refused before and while they
    # are copied into the work area (remote_too_large); one read stalled this long is remote_timeout.
    remote_max_bytes: int = setting(32 * 2**30, ge=1)
    remote_timeout_s: float = setting(120.0, gt=0)

    def check(self) -> None:
        require(self.max_duration_s > self.min_duration_s, "ingest.max_duration_s", "must exceed min_duration_s")
        require(self.min_fps < self.max_fps, "ingest.min_fps", "must be below max_fps")


class IngestStage(Stage[SourceRecord, SourceRecord]):
    name = "ingest"
    input_type = SourceRecord
    output_type = SourceRecord
    config_class = IngestConfig
    reasons = (
        RejectReason("no_video_stream", (), "the input has no video stream (audio only?)"),
        RejectReason("no_audio_stream", (), "the input has no audio stream"),
        RejectReason("silent_audio", (), "the audio track is digital silence"),
        RejectReason("frame_too_large", ("ingest.max_pixels",), "frame has more pixels than the bound"),
        RejectReason(
            "unsupported_frame_rate",
            ("ingest.min_fps", "ingest.max_fps"),
            "container frame rate outside the accepted range",
            (Bound("ingest.min_fps", "sources", "fps", "min"), Bound("ingest.max_fps", "sources", "fps", "max")),
        ),
        RejectReason(
            "too_short",
            ("ingest.min_duration_s",),
            "input shorter than the bound",
            (Bound("ingest.min_duration_s", "sources", "duration_s", "min"),),
        ),
        RejectReason(
            "too_long",
            ("ingest.max_duration_s",),
            "input longer than the bound",
            (Bound("ingest.max_duration_s", "sources", "duration_s", "max"),),
        ),
    )

    config: IngestConfig

    def process(self, row: SourceRecord) -> list[SourceRecord]:
        local = self._localize(row.source_uri)
        row.size_bytes = local.stat().st_size
        if row.size_bytes == 0:
            raise InputError("empty_file", f"{row.source_uri} is a zero-byte file")
        row.source_id = sha256_file(local)[:16]
        streams = self._probe(local, row)
        self._check_probe(row)
        work = self.context.source_work_dir(row.source_id)
        self._normalize(local, row, work, streams)
        return [row]

    def _localize(self, uri: str) -> Path:
        """Local inputs are read in place; remote ones are copied into the work area once."""
        if not is_remote(uri):
            path = local_path(uri)
            try:
                mode = os.stat(path).st_mode
            except (FileNotFoundError, NotADirectoryError):
                raise InputError("not_found", f"input {uri} does not exist") from None
            if not stat.S_ISREG(mode):
                # Opening a named pipe blocks until something writes to it; a device never ends.
                raise InputError("not_a_regular_file", f"input {uri} is not a regular file (a pipe, device or socket)")
            with open(path, "rb"):  # raises PermissionError for unreadable paths
                pass
            return path
        target = fetched_path(self.context.work_dir, uri)
        if not target.exists():
            # Capped and timed: a huge or stalled object must not fill the disk or hang a worker.
            copy_remote(uri, target, self.config.remote_max_bytes, self.config.remote_timeout_s)
        return target

    def _probe(self, path: Path, row: SourceRecord) -> Streams:
        info = probe(str(path), row.source_uri)
        fmt = info.get("format", {})
        row.container = fmt.get("format_name", "")
        if REFERENCING_FORMATS.intersection(row.container.split(",")):
            # A failed row, as for any other file that is not a video (a text file: probe_failed).
            raise InputError(
                "unsupported_container",
                f"{row.source_uri} is a '{row.container}' file, which reads other files named inside it "
                "(a playlist or list, not a video); it is not decoded",
            )
        row.duration_s = float(fmt.get("duration") or 0.0)
        video: dict[str, Any] = next((s for s in info.get("streams", []) if _is_video(s)), {})
        audio = _pick_audio([s for s in info.get("streams", []) if s.get("codec_type") == "audio"])
        row.has_video, row.has_audio = bool(video), bool(audio)
        if video:
            row.video_codec = video.get("codec_name", "")
            row.width, row.height = int(video.get("width") or 0), int(video.get("height") or 0)
            row.fps = _frame_rate(video)
            # The normalized media last as long as the video; the format's duration spans the
            # longest stream (audio that starts late or runs on makes it longer).
            row.duration_s = _stream_duration(video) or row.duration_s
        if audio:
            row.audio_stream_index = int(audio["index"])
            row.audio_codec = audio.get("codec_name", "")
            row.audio_sample_rate = int(audio.get("sample_rate") or 0)
            row.audio_channels = int(audio.get("channels") or 0)
        return Streams(video, audio)

    def _check_probe(self, row: SourceRecord) -> None:
        cfg = self.config
        if not row.has_video:
            raise FilteredError("no_video_stream", f"{row.source_uri} has no video stream (audio only?)")
        if not row.has_audio:
            raise FilteredError("no_audio_stream", f"{row.source_uri} has no audio stream")
        if row.width <= 0 or row.height <= 0:
            raise InputError("bad_frame_size", f"video stream reports {row.width}x{row.height}")
        if row.width * row.height > cfg.max_pixels:
            raise FilteredError(
                "frame_too_large", f"frame {row.width}x{row.height} exceeds ingest.max_pixels={cfg.max_pixels}"
            )
        if not cfg.min_fps <= row.fps <= cfg.max_fps:
            raise FilteredError(
                "unsupported_frame_rate",
                f"frame rate {row.fps:.3f} is outside [{cfg.min_fps}, {cfg.max_fps}] (broken metadata?)",
            )
        if row.duration_s < cfg.min_duration_s:
            raise FilteredError(
                "too_short", f"duration {row.duration_s:.2f}s < ingest.min_duration_s={cfg.min_duration_s}"
            )
        if row.duration_s > cfg.max_duration_s:
            raise FilteredError(
                "too_long", f"duration {row.duration_s:.0f}s > ingest.max_duration_s={cfg.max_duration_s}"
            )

    def _normalize(self, path: Path, row: SourceRecord, work: Path, streams: Streams) -> None:
        cfg = self.config
        video_out, audio_out, orig_out = work / "video.mp4", work / "audio16k.wav", work / "audio_orig.flac"
        timeout_s = tool_timeout(row.duration_s)
        self._write_video(path, row, streams.video, video_out, timeout_s)
        length_s = row.n_frames / cfg.fps
        self._write_audio(path, row, streams, audio_out, length_s, timeout_s)
        if cfg.keep_original_audio:
            # The same mono mix, aligned and cut the same way, at the input's own rate: a separator
            # that estimates speech from it subtracts that from audio16k.wav sample for sample.
            chain = _audio_filter(streams.audio, streams.audio_offset_s, length_s, rate=None)
            with atomic_path(orig_out) as tmp:
                _ffmpeg(
                    [*_input(path), "-map", f"0:{row.audio_stream_index}", "-af", chain]
                    + ["-c:a", "flac", "-f", "flac", str(tmp)],
                    row.source_uri,
                    timeout_s,
                )
            row.audio_orig_uri = str(orig_out)
        row.video_uri, row.audio_uri = str(video_out), str(audio_out)

    def _write_video(self, path: Path, row: SourceRecord, video: dict[str, Any], out: Path, timeout_s: float) -> None:
        """video.mp4 (see `_video_filter`), its frame count and size; InputError when it decodes short."""
        cfg = self.config
        threads = str(max(1, int(self.resources.cpus)))
        with atomic_path(out) as tmp:
            _ffmpeg(
                [*_input(path), "-map", f"0:{video['index']}", "-vf", _video_filter(video, cfg.fps, cfg.max_height)]
                + h264_output(cfg.video_crf, cfg.x264_preset)
                + ["-an", "-threads", threads, "-f", "mp4", str(tmp)],
                row.source_uri,
                timeout_s,
            )
        options = ("-count_packets", "-select_streams", "v:0")
        norm = probe(str(out), row.source_uri, timeout_s, options)["streams"][0]
        row.n_frames = int(norm.get("nb_read_packets") or 0)
        row.norm_width, row.norm_height = int(norm["width"]), int(norm["height"])
        row.norm_fps = float(cfg.fps)
        decoded_s = row.n_frames / cfg.fps
        if decoded_s < MIN_DECODED_SHARE * row.duration_s - 0.5:
            raise InputError(
                "truncated",
                f"only {decoded_s:.2f}s of video decoded out of the "
                f"{row.duration_s:.2f}s the container declares (truncated or corrupt)",
            )

    def _write_audio(
        self, path: Path, row: SourceRecord, streams: Streams, out: Path, length_s: float, timeout_s: float
    ) -> None:
        """audio16k.wav: mono, sample 0 at frame 0, exactly `length_s` long; refused when too little
        of it is real audio, or all of it is silence."""
        rate = self.config.sample_rate
        offset_s = streams.audio_offset_s
        chain = _audio_filter(streams.audio, offset_s, length_s, rate=rate, pad=False)
        with atomic_path(out) as tmp:
            _ffmpeg(
                [*_input(path), "-map", f"0:{row.audio_stream_index}", "-af", chain]
                + ["-c:a", "pcm_s16le", "-f", "wav", str(tmp)],
                row.source_uri,
                timeout_s,
            )
        frames = sf.info(str(out)).frames
        if frames == 0:
            raise InputError("truncated", "the audio stream decoded to no samples")
        # Audio that ends (or, aligned, starts) short of the video by a little is padded with
        # silence: a few frames without sound at either end. Far short, the padding would pass for
        # a silent speaker (a "listening" label where the sound is missing): a failed row, as a
        # video that decodes far short of its declared duration is (`truncated`).
        covered_s = frames / rate - max(0.0, offset_s)
        if covered_s < MIN_DECODED_SHARE * length_s - 0.5:
            raise InputError(
                "audio_shorter_than_video",
                f"the audio covers {max(covered_s, 0.0):.2f}s of the {length_s:.2f}s video "
                f"(it starts {offset_s:+.2f}s from the first frame)",
            )
        if _peak(out) < SILENCE_PEAK:
            raise FilteredError("silent_audio", "the audio track is digital silence")
        # Padded here rather than by ffmpeg (as audio_orig.flac is): the check above needs the
        # length of the real audio.
        length = round(length_s * rate)
        if frames < length:
            _append_silence(out, length - frames)


@dataclass(frozen=True)
class Streams:
    """The video and audio stream ingest reads, as ffprobe describes them ({} when there is none)."""

    video: dict[str, Any]
    audio: dict[str, Any]

    @property
    def audio_offset_s(self) -> float:
        """Seconds from the first video frame to the first audio sample (negative: audio first)."""
        video, audio = _start_s(self.video), _start_s(self.audio)
        return audio - video if video is not None and audio is not None else 0.0


def _is_video(stream: dict[str, Any]) -> bool:
    # Cover art is a video stream of one picture.
    return stream.get("codec_type") == "video" and not stream.get("disposition", {}).get("attached_pic")


def _pick_audio(streams: list[dict[str, Any]]) -> dict[str, Any]:
    """The stream the container marks default, else the first ({} when there is none). With one
    stream per language, the default one is the language the publisher means to be heard."""
    default = [s for s in streams if s.get("disposition", {}).get("default")]
    return (default or streams or [{}])[0]


def _start_s(stream: dict[str, Any]) -> float | None:
    try:
        return float(stream["start_time"])
    except (KeyError, ValueError):
        return None


def _stream_duration(stream: dict[str, Any]) -> float:
    """A stream's own duration in seconds, 0.0 where unknown (Matroska keeps it in a tag)."""
    try:
        return float(stream["duration"])
    except (KeyError, ValueError):
        pass
    tag = stream.get("tags", {}).get("DURATION", "")
    try:
        hours, minutes, seconds = tag.split(":")
        return int(hours) * 3600 + int(minutes) * 60 + float(seconds)
    except ValueError:
        return 0.0


# Samples read at a time from a WAV: a 6 h input is never in memory at once.
WAV_BLOCK = 1 << 20


def _peak(wav: Path) -> float:
    """The largest absolute sample of a 16-bit `wav`, full scale 1.0."""
    peak = 0
    for block in sf.blocks(str(wav), blocksize=WAV_BLOCK, dtype="int16"):
        if block.size:
            peak = max(peak, int(np.max(np.abs(block.astype(np.int32)))))
    return peak / 32768


def _append_silence(wav: Path, samples: int) -> None:
    """`wav` (16-bit mono) with `samples` zeros after it, replaced atomically."""
    info = sf.info(str(wav))
    with atomic_path(wav) as tmp, sf.SoundFile(tmp, "w", info.samplerate, 1, "PCM_16", format="WAV") as out:
        for block in sf.blocks(str(wav), blocksize=WAV_BLOCK, dtype="int16"):
            out.write(block)
        out.write(np.zeros(samples, dtype=np.int16))


def _input(path: Path) -> list[str]:
    return [*INPUT_OPTIONS, "-i", str(path)]


def _video_filter(video: dict[str, Any], fps: int, max_height: int) -> str:
    """Progressive, starting at 0 (frame 0 is the first frame, whatever the container's start
    time), `fps` frames a second, square pixels, at most `max_height` lines, SDR."""
    deinterlace = [DEINTERLACE] if video.get("field_order") in INTERLACED_ORDERS else []
    # Deinterlaced at the input's rate, before fps drops or repeats frames (a repeated frame
    # would otherwise carry its two fields' combing twice).
    return ",".join([*deinterlace, "setpts=PTS-STARTPTS", f"fps={fps}", *_scale(video, max_height), *_to_sdr(video)])


def _scale(video: dict[str, Any], max_height: int) -> list[str]:
    # Height is capped and rounded to even numbers because yuv420p needs even dimensions.
    height = f"trunc(min({max_height},ih)/2)*2"
    if _ratio(video.get("sample_aspect_ratio")) in (None, 1):
        return [f"scale=-2:'{height}'"]
    # Non-square pixels (anamorphic DV, DVD, HDV): the width that shows the frame at its display
    # aspect ratio (dar) in square pixels, so that faces are not squashed for later stages.
    return [f"scale='trunc(oh*dar/2)*2':'{height}'", "setsar=1"]


def _ratio(value: str | None) -> Fraction | None:
    """ffprobe's "16:15" as a fraction; None for a missing or unknown ("0:1") one."""
    try:
        ratio = Fraction(*map(int, (value or "").split(":")))
    except (TypeError, ValueError, ZeroDivisionError):
        return None
    return ratio if ratio > 0 else None


def _to_sdr(video: dict[str, Any]) -> list[str]:
    """zscale steps that bring BT.2020 (PQ or HLG HDR, or SDR) to BT.709 SDR; none for other video.

    HDR is linearized (100 nits as 1.0), moved to BT.709 primaries, tone-mapped with Hable's curve
    (desaturation off: it greys out bright skin) and brought to BT.709's transfer and matrix: the
    usual zscale+tonemap route. Probed properties are passed explicitly (the decoder's frames do
    not always carry them); what zscale cannot name falls back to the BT.2020 defaults.
    """
    transfer, primaries = video.get("color_transfer", ""), video.get("color_primaries", "")
    hdr = transfer in HDR_TRANSFERS
    if not hdr and primaries != "bt2020":
        return []
    matrix = video.get("color_space", "")
    source = (
        f"zscale=tin={transfer if transfer in ZSCALE_TRANSFERS else 'bt709'}"
        f":pin=bt2020:min={matrix if matrix in ZSCALE_MATRICES else 'bt2020nc'}"
        f":rin={'full' if video.get('color_range') == 'pc' else 'limited'}"
    )
    if not hdr:
        return [f"{source}:t=bt709:p=bt709:m=bt709:r=limited", "format=yuv420p"]
    return [
        f"{source}:t=linear:npl=100",
        "format=gbrpf32le",
        "zscale=p=bt709",
        "tonemap=tonemap=hable:desat=0",
        "zscale=t=bt709:m=bt709:r=limited",
        "format=yuv420p",
    ]


def _audio_filter(audio: dict[str, Any], offset_s: float, length_s: float, rate: int | None, pad: bool = True) -> str:
    """Mono, starting at the first video frame, at `rate` (None: the input's), at most (with `pad`,
    exactly) `length_s` long.

    Time runs from the sample count (asetpts=N/SR/TB), not the container's timestamps, once the
    start is aligned: gaps inside the stream are closed, as they always were in a WAV.
    """
    steps = [*_downmix(audio), "asetpts=N/SR/TB"]
    if offset_s > 0:  # audio starts after the first frame: silence before it
        steps.append(f"adelay=delays={offset_s * 1000:.3f}")
    elif offset_s < 0:  # audio starts before it: drop what has no picture
        steps.append(f"atrim=start={-offset_s:.6f}")
    if rate is not None:
        steps.append(f"aresample={rate}")
    steps.append("asetpts=N/SR/TB")
    if pad:
        steps.append(f"apad=whole_dur={length_s:.6f}")
    steps.append(f"atrim=end={length_s:.6f}")
    return ",".join(steps)


def _downmix(audio: dict[str, Any]) -> list[str]:
    """A pan filter that makes `audio` mono (see DOWNMIX_GAINS); none for mono input."""
    channels = int(audio.get("channels") or 0)
    if channels <= 1:
        return []
    layout = audio.get("channel_layout", "")
    names = (LAYOUT_CHANNELS.get(layout) or (layout if "+" in layout else "")).split("+")
    if len(names) != channels:
        # Positions unknown: every channel counts the same ('<' scales the gains to sum to 1).
        return ["pan=mono|c0<" + "+".join(f"c{i}" for i in range(channels))]
    gains = {name: DOWNMIX_GAINS.get(name, SURROUND_GAIN) for name in names}
    return ["pan=mono|c0=" + "+".join(f"{gain:g}*{name}" for name, gain in gains.items() if gain > 0)]


def _frame_rate(stream: dict) -> float:
    for key in ("avg_frame_rate", "r_frame_rate"):
        value = stream.get(key, "0/0")
        try:
            rate = Fraction(value)
        except (ValueError, ZeroDivisionError):
            continue
        if rate > 0:
            return float(rate)
    return 0.0


def _ffmpeg(args: list[str], uri: str, timeout_s: float) -> None:
    command = [*FFMPEG, *args]
    result = run_tool(command, timeout_s, uri)
    if result.returncode != 0:
        raise InputError("decode_failed", f"ffmpeg could not decode {uri}: {last_lines(result.stderr)}")
