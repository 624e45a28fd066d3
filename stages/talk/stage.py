"""The talk stage: one face track in, its clips out, each with talk/listen labels and the
on-screen person's own speech, the other party's speech and the background as separate tracks.

Per track: Light-ASD scores the face against the separated speech; the diarized speaker whose
solo turns make this face look like it talks is the on-screen person (attribution.py); frame
states follow from who is talking. The track is cut into clip windows; per clip the speech
stem is split by the turns into self and other, the background is the rest of the mix
(tracks.py), and the quality filter records every reason a clip fails.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from collections.abc import Iterator
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
import torch
from threadpoolctl import threadpool_limits

from voxhear.pipeline.inputs import local_path
from voxhear.pipeline.io import atomic_path
from voxhear.pipeline.records import (
    STATE_BOTH,
    STATE_LISTEN,
    STATE_NAMES,
    STATE_SILENCE,
    STATE_TALK,
    STATUS_FILTERED,
    ClipRecord,
    FaceTrackRecord,
    sample_key,
)
from voxhear.pipeline.stage import InputError, RejectReason, Stage
from voxhear.stages.audio.diarization import Turn, read_rttm
from voxhear.stages.media import FFMPEG, h264_cut, run_tool, tool_timeout
from voxhear.stages.talk.activity import frame_activity, frame_states, padded_states, sample_mask, speakers_of
from voxhear.stages.talk.asd import CropStream, crop_geometry, smooth, streamed_speaking_scores
from voxhear.stages.talk.attribution import (
    NOT_THIS_FACE,
    SAID_BY,
    Attribution,
    attribute,
    lost_voices,
    silent_for_rivals,
    split_between_faces,
    still_runs,
    unsaid_turns,
)
from voxhear.stages.talk.config import TalkConfig
from voxhear.stages.talk.frame_arrays import FrameArrays
from voxhear.stages.talk.light_asd import light_asd_onnx, load_light_asd
from voxhear.stages.talk.overlap import OVERLAP_SELF, heard_overlap_turns, overlap_turns, rival_overlap_turns
from voxhear.stages.talk.tracks import background_leak_db, read_int24, split_tracks, write_int24
from voxhear.stages.talk.voice_split import VoiceSplitSettings, self_part, voiced_overlap_turns
from voxhear.stages.talk.windows import clip_windows, keyframe_windows, overlap_share, overlap_split_windows

log = logging.getLogger(__name__)


def crop_keyframes(path: str, fps: float, uri: str) -> list[int]:
    """Frame indices of the crop video's keyframes, read from its packets (nothing is decoded);
    [] when they cannot be read."""
    command = [
        "ffprobe", "-v", "error", "-select_streams", "v:0",
        "-show_entries", "packet=pts_time,flags", "-of", "csv=p=0", path,
    ]  # fmt: skip
    result = run_tool(command, tool_timeout(0), uri)
    if result.returncode != 0:
        return []
    frames = []
    for line in result.stdout.split():
        pts, _, flags = line.partition(",")
        if "K" in flags:
            try:
                frames.append(round(float(pts) * fps))
            except ValueError:
                return []
    return sorted(set(frames))


class TalkStage(Stage[FaceTrackRecord, ClipRecord]):
    name = "talk"
    input_type = FaceTrackRecord
    output_type = ClipRecord
    config_class = TalkConfig
    requires = ("faces", "separation", "diarization")
    reasons = (
        RejectReason("track_too_short", ("talk.min_clip_s",), "face track shorter than one clip"),
        RejectReason("face_too_small", ("talk.min_face_px",), "median face height below the bound"),
        RejectReason(
            "pose_not_frontal",
            ("talk.max_p90_abs_yaw", "talk.max_median_abs_pitch"),
            "head turned away (90th percentile |yaw| or median |pitch| above the bounds)",
        ),
        RejectReason("blurry", ("talk.min_blur_var",), "crop sharpness below the bound"),
        RejectReason(
            "low_landmark_confidence",
            ("talk.min_landmark_fraction", "talk.min_landmark_confidence"),
            "face mesh missing or poorly fitted",
        ),
        RejectReason("identity_switch", ("talk.max_embedding_spread",), "the track's identity embeddings disagree"),
        RejectReason(
            "ambiguous_speaker",
            ("talk.asd_threshold", "talk.asd_band", "talk.asd_runner_up_margin"),
            "active-speaker evidence too close to call",
        ),
        RejectReason("too_little_speech", ("talk.min_speech_share",), "too few frames with anyone talking"),
        RejectReason("no_listening", ("talk.require_listening", "talk.min_listen_s"), "too little listening"),
        RejectReason("overlap_too_high", ("talk.max_overlap_share",), "too much overlapped speech"),
        RejectReason(
            "separation_leakage",
            ("talk.max_background_leak_db",),
            "the background gains a large share of the speech while anyone talks (speech leaked into it)",
        ),
    )
    uses_models = True

    config: TalkConfig

    @classmethod
    def models(cls, config: TalkConfig) -> list[str]:
        return ["light-asd"]

    def setup(self) -> None:
        torch.set_num_threads(self.config.threads)
        cv2.setNumThreads(1)
        self.device = "cuda" if self.config.gpus > 0 and torch.cuda.is_available() else "cpu"
        resolved = self.context.model_store.resolve("light-asd")
        model = load_light_asd(resolved.file()).to(self.device)
        self.model = model
        if self.device == "cpu" and self.config.asd_backend == "onnx":
            cache_dir = self.context.model_store.cache_dir.parent / "onnx"
            try:
                self.model = light_asd_onnx(model, resolved.spec.files[0].sha256, cache_dir, self.config.threads)
            except Exception as error:  # any export failure leaves the (slower, same) torch module
                log.warning("Light-ASD runs on torch: its ONNX export failed (%s: %s)", type(error).__name__, error)

    # ------------------------------------------------------------------------------------------

    def process(self, row: FaceTrackRecord) -> list[ClipRecord]:
        # numpy's BLAS (the voice split's matrix products) held to the worker's threads, as torch
        # and onnxruntime are: on 2 cores its own threads more than doubled the split's CPU time
        # and made the stage slower, not faster (README, "Long inputs").
        with threadpool_limits(limits=self.config.threads, user_api="blas"):
            return self._track_clips(row)

    def _track_clips(self, row: FaceTrackRecord) -> list[ClipRecord]:
        cfg = self.config
        fps = row.norm_fps or 25.0
        n = row.track_end_frame - row.track_start_frame
        windows = clip_windows(n, fps, cfg.min_clip_s, cfg.max_clip_s)
        keyframes: list[int] = []
        if len(windows) > 1 and row.crop_video_uri:
            keyframes = crop_keyframes(row.crop_video_uri, fps, row.source_uri)
            windows = keyframe_windows(n, fps, cfg.min_clip_s, cfg.max_clip_s, keyframes)
        if not windows:
            clip = ClipRecord.from_parent(row)
            clip.mark(
                STATUS_FILTERED,
                self.name,
                "track_too_short",
                message=f"track of {n / fps:.2f}s < talk.min_clip_s={cfg.min_clip_s}s",
            )
            return [clip]
        if not (row.speech_uri and row.rttm_uri):
            raise InputError(
                "no_audio_stages",
                "the talk stage needs the separation and diarization stages (config 'stages' must include them)",
            )
        # The per-frame arrays are read a clip window at a time (boxes and frame numbers whole).
        with FrameArrays(row.frames_uri) as arrays:
            return self._clips(row, arrays, windows, n, fps, frozenset(keyframes))

    def _clips(
        self,
        row: FaceTrackRecord,
        arrays: FrameArrays,
        windows: list[tuple[int, int]],
        n: int,
        fps: float,
        keyframes: frozenset[int] = frozenset(),
    ) -> list[ClipRecord]:
        cfg = self.config
        scores = self._cached_scores(row, Path(row.frames_uri).stem, arrays["box"], row.track_start_frame, fps)
        # Faces on screen with this one, read once: attribution and the overlap rules use them.
        rivals = list(self._co_visible(row, arrays, fps))
        turns = read_rttm(row.rttm_uri)
        if cfg.split_voices_between_faces and rivals:
            # One voice cluster holding both people of a two-shot: their lips split it turn by turn.
            faces = [(Path(row.frames_uri).stem, row.track_start_frame, scores), *rivals]
            min_frames = max(1, round(cfg.min_evidence_s * fps))
            turns = split_between_faces(turns, faces, fps, min_frames, cfg.asd_threshold, cfg.asd_runner_up_margin)
        speakers = speakers_of(turns)
        active = frame_activity(turns, speakers, row.track_start_frame, n, fps)
        decision = self._decide(row, scores, active, turns, speakers, fps, rivals)
        selves = set(decision.self_speakers)
        diarized = turns
        turns = self._lip_checked_turns(row, turns, selves, scores, fps)
        # The tracks follow the diarized turns: a whole overlap turn from the lips would move the
        # other party's speech into the self track. Those turns reach the tracks only through the
        # voice split (`voiced`, below), which gives each party its own voice's share.
        audio_turns, audio_selves = turns, selves
        extra = self._overlap_turns(row, turns, selves, scores, n, fps, rivals)
        voiced = self._voiced_overlap(extra, turns, selves, decision.self_speaker)
        if extra:
            turns = sorted([*turns, *extra], key=lambda t: (t.start, t.end, t.speaker))
            if any(t.speaker == OVERLAP_SELF for t in extra):
                selves = selves | {OVERLAP_SELF}
        if turns is not diarized:
            speakers = speakers_of(turns)
            active = frame_activity(turns, speakers, row.track_start_frame, n, fps)
        states, self_active, other_active = self._frame_states(row, turns, speakers, active, selves, n, fps)
        if cfg.overlap_split_s is not None:
            # The windows the overlap filter would reject, cut around their overlapped stretches.
            windows = overlap_split_windows(
                windows,
                states,
                fps,
                cfg.min_clip_s,
                cfg.max_clip_s,
                cfg.max_overlap_share,
                max(cfg.overlap_split_s, cfg.min_clip_s),
                cfg.overlap_bridge_s,
            )
        words = _with_turn_speakers(_read_words(row.words_uri), turns)
        embeddings = arrays["embeddings"] if "embeddings" in arrays else arrays["embedding"][None]
        spread = float(max((np.linalg.norm(a - b) for a in embeddings for b in embeddings), default=0.0))
        out_dir = self.context.source_work_dir(row.source_id) / "clips"
        clips = []
        for index, (a, b) in enumerate(windows):
            clip = self._clip(row, index, len(windows), a, b, fps)
            clip.self_speaker = decision.self_speaker
            clip.self_speakers = list(decision.self_speakers)
            clip.other_speakers = [s for s in speakers if s not in selves]
            clip.speaker_asd = dict(decision.evidence)
            clip.attribution_margin = float(decision.margin)
            clip.asd_mean = float(scores[a:b].mean())
            clip.embedding_spread = spread
            self._label(clip, states[a:b], fps)
            self._write_frames(clip, arrays, scores, states, a, b, out_dir)
            self._write_audio(
                clip, row, audio_turns, audio_selves, self_active[a:b] | other_active[a:b], fps, out_dir, voiced
            )
            self._write_words(clip, words, selves, out_dir)
            self._measure_face(clip, arrays, a, b)
            self._filter(clip)
            if clip.status != STATUS_FILTERED:
                self._write_video(clip, row, a, b, n, out_dir, keyframes)
            clips.append(clip)
        return clips

    # ------------------------------------------------------------------------------------------

    def _lip_checked_turns(
        self, row: FaceTrackRecord, turns: list[Turn], selves: set[str], scores: np.ndarray, fps: float
    ) -> list[Turn]:
        """The self speakers' turns checked against this face's lips: a whole turn
        (attribution.unsaid_turns), then runs inside one (attribution.still_runs), each as
        configured. `turns` itself when neither changes anything."""
        cfg = self.config
        checked = turns
        if cfg.unsaid_turn_logit is not None and selves:
            min_frames = max(1, round(cfg.min_evidence_s * fps))
            checked = unsaid_turns(
                checked, selves, scores, row.track_start_frame, fps, min_frames, cfg.unsaid_turn_logit
            )
        if cfg.still_run_logit is not None and selves:
            min_run = max(1, round(cfg.still_run_s * fps))
            checked = still_runs(checked, selves, scores, row.track_start_frame, fps, min_run, cfg.still_run_logit)
        return turns if checked == turns else checked

    def _frame_states(
        self,
        row: FaceTrackRecord,
        turns: list[Turn],
        speakers: list[str],
        active: np.ndarray,
        selves: set[str],
        n: int,
        fps: float,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(per-frame states, frames this face's speakers talk, frames others talk) of the track
        from `active` (`frame_activity` of `turns` over `speakers`); with `talk.state_pad_s`, the
        states widened into the silent frames next to speech (activity.padded_states)."""
        is_self = np.array([s in selves for s in speakers], bool)
        self_active = active[is_self].any(axis=0)
        other_active = active[~is_self].any(axis=0)
        states = frame_states(self_active, other_active)
        if self.config.state_pad_s > 0:
            # Opt-in: speech widened into the silent frames next to it (README, "Real people").
            padded = frame_activity(turns, speakers, row.track_start_frame, n, fps, pad_s=self.config.state_pad_s)
            states = padded_states(self_active, other_active, padded[is_self].any(axis=0), padded[~is_self].any(axis=0))
        return states, self_active, other_active

    def _overlap_turns(
        self,
        row: FaceTrackRecord,
        turns: list[Turn],
        selves: set[str],
        scores: np.ndarray,
        n: int,
        fps: float,
        rivals: list[tuple[str, int, np.ndarray]],
    ) -> list[Turn]:
        """Overlap diarization missed (overlap.py): from the lips, this face talking during another
        speaker's turn and a face on screen with it talking during this face's turn (both read the
        same turns: neither rule's new turns fall where the other looks); then from the mix, the
        regions where two voices are heard that the turns give to one party only."""
        cfg = self.config
        min_frames = max(1, round(cfg.overlap_min_s * fps))
        own = frozenset(selves)
        extra: list[Turn] = []
        if cfg.overlap_talk_logit is not None:
            extra += overlap_turns(turns, scores, row.track_start_frame, fps, own, cfg.overlap_talk_logit, min_frames)
        if cfg.rival_overlap_logit is not None:
            for _, rival_start, rival_scores in rivals:
                extra += rival_overlap_turns(
                    turns,
                    row.track_start_frame,
                    n,
                    fps,
                    own,
                    rival_start,
                    rival_scores,
                    cfg.rival_overlap_logit,
                    min_frames,
                )
        if cfg.heard_overlap_logit is not None and row.overlap_uri:
            # After the lip rules: a region they already made `both` is left as it is.
            regions = [(t.start, t.end) for t in read_rttm(row.overlap_uri)]
            covered = sorted([*turns, *extra], key=lambda t: (t.start, t.end, t.speaker))
            extra += heard_overlap_turns(
                covered,
                regions,
                scores,
                row.track_start_frame,
                fps,
                own | {OVERLAP_SELF},
                cfg.heard_overlap_logit,
                min_frames,
            )
        return extra

    def _decide(
        self,
        row: FaceTrackRecord,
        scores: np.ndarray,
        active: np.ndarray,
        turns: list[Turn],
        speakers: list[str],
        fps: float,
        rivals: list[tuple[str, int, np.ndarray]],
    ) -> Attribution:
        """Attribute a speaker to this face (`active`: its frames' speaker activity), then give it
        up to a face on screen at the same time that claims the same speaker with stronger
        evidence (`attribution.lost_voices`)."""
        cfg = self.config
        min_frames = max(1, round(cfg.min_evidence_s * fps))

        def decide(
            face_scores: np.ndarray,
            face_active: np.ndarray,
            exclude: frozenset[str] = frozenset(),
            rival_silent: frozenset[str] = frozenset(),
        ) -> Attribution:
            return attribute(
                face_scores,
                face_active,
                speakers,
                min_frames,
                cfg.asd_threshold,
                cfg.asd_band,
                cfg.asd_runner_up_margin,
                exclude,
                merge_voices=cfg.merge_split_voices,
                rival_silent=rival_silent,
            )

        own_key = Path(row.frames_uri).stem
        others = [
            (rival_key, decide(rival_scores, frame_activity(turns, speakers, rival_start, len(rival_scores), fps)))
            for rival_key, rival_start, rival_scores in rivals
        ]
        silent = (
            silent_for_rivals([r for _, r in others], cfg.asd_threshold)
            if cfg.merge_rival_silent_voices
            else frozenset()
        )
        decision = decide(scores, active, rival_silent=silent)
        taken: set[str] = set()
        for rival_key, rival in others:
            lost = lost_voices(decision, own_key, rival, rival_key)
            if lost:
                taken |= lost
                decision = decide(scores, active, frozenset(taken), silent)
        return decision

    def _co_visible(
        self, row: FaceTrackRecord, arrays: FrameArrays, fps: float
    ) -> Iterator[tuple[str, int, np.ndarray]]:
        """(key, first frame, ASD scores) of every other face track of this shot that is on screen
        while this one is (listed by the face stage, which sees all tracks of a shot)."""
        first, last = int(arrays["frame"][0]), int(arrays["frame"][-1])
        for uri in sorted(row.co_visible_frames_uris):
            path = Path(uri)
            with np.load(path) as other:
                frames, boxes = other["frame"], other["box"]
            start = int(frames[0])
            if start > last or int(frames[-1]) < first:
                continue
            yield path.stem, start, self._cached_scores(row, path.stem, boxes, start, fps)

    def _cached_scores(
        self, row: FaceTrackRecord, key: str, boxes: np.ndarray, start_frame: int, fps: float
    ) -> np.ndarray:
        """ASD scores of track `key` of `row`'s shot, computed once per run: a two-shot's other
        face needs them too."""
        path = self.context.source_work_dir(row.source_id) / "talk" / f"{key}.asd.npy"
        if path.exists():
            return np.load(path)
        track = dataclasses.replace(row, track_start_frame=start_frame, track_start_s=start_frame / fps)
        scores = self._asd_scores(track, boxes, fps)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.save(handle, scores)
        return scores

    def _asd_scores(self, row: FaceTrackRecord, boxes: np.ndarray, fps: float) -> np.ndarray:
        """Smoothed Light-ASD logits of the track's face against the separated speech, with the
        shot video and the speech read a window at a time (memory flat however long the track)."""
        capture = cv2.VideoCapture(row.segment_video_uri)
        if not capture.isOpened():
            raise InputError("decode_failed", f"cannot open the shot video {row.segment_video_uri}")
        rate = 16000
        start = round(row.track_start_s * rate)

        def read_audio(a: int, b: int) -> np.ndarray:
            return (read_int24(row.speech_uri, start + a, start + b) / 2**23).astype(np.float32)

        try:
            crops = CropStream(_decoded_frames(capture, row.track_start_frame - row.start_frame), crop_geometry(boxes))
            scores = streamed_speaking_scores(self.model, len(boxes), crops, round(len(boxes) * rate / fps), read_audio)
        finally:
            capture.release()
        return smooth(scores)

    def _clip(self, row: FaceTrackRecord, index: int, n_clips: int, a: int, b: int, fps: float) -> ClipRecord:
        start, end = row.track_start_frame + a, row.track_start_frame + b
        licence, attribution = source_licence(row.source_uri)
        provenance = self.context.provenance
        return ClipRecord.from_parent(
            row,
            clip_index=index,
            n_clips=n_clips,
            clip_start_frame=start,
            clip_end_frame=end,
            clip_start_s=start / fps,
            clip_end_s=end / fps,
            key=sample_key(row.source_id, round(start / fps * 1000), track=f"face{row.track_index}"),
            source_licence=licence,
            source_attribution=attribution,
            model_hashes=dict(provenance.get("model_hashes", {})),
            config_hash=provenance.get("config_hash", ""),
        )

    def _label(self, clip: ClipRecord, states: np.ndarray, fps: float) -> None:
        seconds = {code: float((states == code).sum() / fps) for code in range(len(STATE_NAMES))}
        clip.talk_s, clip.listen_s = seconds[STATE_TALK], seconds[STATE_LISTEN]
        clip.both_s, clip.silence_s = seconds[STATE_BOTH], seconds[STATE_SILENCE]
        speech = clip.talk_s + clip.listen_s + clip.both_s
        clip.speech_share = speech / max(len(states) / fps, 1e-9)
        # The share the windows were cut by (windows.overlap_split_windows), so the two agree.
        clip.overlap_share = overlap_share(states)

    def _write_frames(
        self,
        clip: ClipRecord,
        arrays: FrameArrays,
        scores: np.ndarray,
        states: np.ndarray,
        a: int,
        b: int,
        out_dir: Path,
    ) -> None:
        pose = np.concatenate([arrays.rows("rotation_deg", a, b), arrays.rows("translation", a, b)], axis=1)
        path = out_dir / f"{clip.key}.npz"
        with atomic_path(path) as tmp, open(tmp, "wb") as handle:
            np.savez_compressed(
                handle,
                frame=arrays.rows("frame", a, b).astype(np.int32),
                state=states[a:b].astype(np.uint8),
                state_names=np.array(STATE_NAMES),
                asd=scores[a:b].astype(np.float32),
                landmarks=arrays.rows("landmarks", a, b),
                blendshapes=arrays.rows("blendshapes", a, b),
                blendshape_names=arrays["blendshape_names"],
                pose=pose.astype(np.float32),
                has_landmarks=arrays.rows("has_landmarks", a, b),
                landmark_confidence=arrays.rows("confidence", a, b),
                box=arrays.rows("box", a, b),
                crop_box=arrays.rows("crop_box", a, b),
            )
        clip.clip_frames_uri = str(path)

    def _write_audio(
        self,
        clip: ClipRecord,
        row: FaceTrackRecord,
        turns: list[Turn],
        self_speakers: set[str],
        speaking: np.ndarray,
        fps: float,
        out_dir: Path,
        voiced: list[Turn] | None = None,
    ) -> None:
        """The clip's mix / self / other / background tracks. `voiced`: overlap turns beyond the
        diarized `turns` (voice_split.voiced_overlap_turns) that open both parties' masks, used only
        where the voice split can act; without a split the masks follow `turns` alone."""
        rate = 16000
        start = round(clip.clip_start_frame * rate / fps)
        count = round((clip.clip_end_frame - clip.clip_start_frame) * rate / fps)
        mix = read_int24(row.audio_uri, start, start + count)
        speech = read_int24(row.speech_uri, start, start + count)
        tracks, split = self._tracks(row, mix, speech, turns, voiced or [], self_speakers, start, count)
        if voiced and not split:
            # The added overlap only ever opens both masks for the split, never moves speech whole.
            tracks, _ = self._tracks(row, mix, speech, turns, [], self_speakers, start, count)
        for name, values in tracks.items():
            path = out_dir / f"{clip.key}.{name}.flac"
            write_int24(path, values, rate)
            setattr(
                clip,
                {"mix": "mix_uri", "self": "self_uri", "other": "other_uri", "background": "background_clip_uri"}[name],
                str(path),
            )
        per_frame = rate / fps
        frame_of_sample = (np.arange(count) / per_frame).astype(int).clip(0, len(speaking) - 1)
        talking = speaking[frame_of_sample]
        clip.background_leak_db = background_leak_db(tracks["background"], mix, talking)

    def _voiced_overlap(self, extra: list[Turn], turns: list[Turn], selves: set[str], self_speaker: str) -> list[Turn]:
        """The overlap turns the lips and the mix added (`extra`) as turns of speakers whose voices
        the split knows (voice_split.voiced_overlap_turns), when the split and
        talk.voice_split_added_overlap are on. The tracks take them only through the split."""
        cfg = self.config
        if not extra or cfg.voice_split_bases is None or not cfg.voice_split_added_overlap:
            return []
        return voiced_overlap_turns(extra, turns, selves, self_speaker, OVERLAP_SELF)

    def _tracks(
        self,
        row: FaceTrackRecord,
        mix: np.ndarray,
        speech: np.ndarray,
        turns: list[Turn],
        added: list[Turn],
        self_speakers: set[str],
        start: int,
        count: int,
    ) -> tuple[dict[str, np.ndarray], bool]:
        """split_tracks under the masks of `turns` + `added`, and whether the voice split acted."""
        cfg = self.config
        rate = 16000
        every = [*turns, *added]
        own = [t for t in every if t.speaker in self_speakers]
        others = [t for t in every if t.speaker not in self_speakers]
        self_mask = sample_mask(own, start, count, rate, cfg.turn_pad_s, cfg.mask_ramp_s)
        # Where both parties' masks are open (overlap, and the pads where turns meet) the speech is
        # split between them by their voices' spectra (talk.voice_split_bases); without the split,
        # or where it cannot learn a voice, it stays in self. The frames are `both` either way.
        others_mask = sample_mask(others, start, count, rate, cfg.turn_pad_s, cfg.mask_ramp_s)
        other_mask = others_mask * (1 - self_mask)
        moved = self._other_voice_in_overlap(row, turns, self_speakers, start, count, self_mask * others_mask, added)
        return split_tracks(mix, speech, self_mask, other_mask, moved), moved is not None

    def _other_voice_in_overlap(
        self,
        row: FaceTrackRecord,
        turns: list[Turn],
        self_speakers: set[str],
        start: int,
        count: int,
        overlap: np.ndarray,
        added: list[Turn] | None = None,
    ) -> np.ndarray | None:
        """Float samples of the clip's speech that are the other party's voice where both parties'
        masks are open (`overlap`, their product), split off by the voices' own spectra
        (voice_split.py); None when the split is off, there is no overlap, or a party has too
        little solo speech nearby to tell its voice."""
        cfg = self.config
        if cfg.voice_split_bases is None or not overlap.any():
            return None
        rate = 16000
        context = round(cfg.voice_split_context_s * rate)
        first = max(0, start - context)
        speech = read_int24(row.speech_uri, first, start + count + context).astype(np.float64)
        settings = VoiceSplitSettings(bases=cfg.voice_split_bases, context_s=cfg.voice_split_context_s)
        own = self_part(speech, first, turns, self_speakers, rate, cfg.turn_pad_s, settings, added)
        if own is None:
            return None
        window = slice(start - first, start - first + count)
        return overlap * (speech[window] - own[window])

    def _write_words(self, clip: ClipRecord, words: list[dict], self_speakers: set[str], out_dir: Path) -> None:
        inside = []
        for w in words:
            middle = (w["start_s"] + w["end_s"]) / 2
            if clip.clip_start_s <= middle < clip.clip_end_s:
                party = "self" if w["speaker"] in self_speakers else "other"
                inside.append(
                    {
                        "word": w["word"],
                        "start_s": round(w["start_s"] - clip.clip_start_s, 3),
                        "end_s": round(w["end_s"] - clip.clip_start_s, 3),
                        "speaker": w["speaker"],
                        "party": party,
                        "probability": w.get("probability"),
                    }
                )
        clip.n_words_self = sum(w["party"] == "self" for w in inside)
        clip.n_words_other = len(inside) - clip.n_words_self
        path = out_dir / f"{clip.key}.words.json"
        with atomic_path(path) as tmp:
            tmp.write_text(json.dumps(inside))
        clip.words_json_uri = str(path)

    def _measure_face(self, clip: ClipRecord, arrays: FrameArrays, a: int, b: int) -> None:
        """The track's quality facts, re-measured over the clip's own frames."""
        boxes = arrays.rows("box", a, b)
        clip.face_width_px = float(np.median(boxes[:, 2] - boxes[:, 0]))
        clip.face_height_px = float(np.median(boxes[:, 3] - boxes[:, 1]))
        has = arrays.rows("has_landmarks", a, b)
        clip.landmark_fraction = float(has.mean())
        clip.landmark_confidence = float(arrays.rows("confidence", a, b).mean())
        pose = arrays.rows("rotation_deg", a, b)[has]
        if len(pose):
            clip.yaw_deg, clip.pitch_deg, clip.roll_deg = (float(v) for v in np.median(pose, axis=0))
            clip.abs_yaw_p90_deg = float(np.percentile(np.abs(pose[:, 0]), 90))
        else:
            clip.yaw_deg = clip.pitch_deg = clip.roll_deg = clip.abs_yaw_p90_deg = float("nan")

    def _filter(self, clip: ClipRecord) -> None:
        """Mark the clip filtered with the first failing reason; the message lists all of them."""
        cfg = self.config
        checks = [
            (
                "face_too_small",
                clip.face_height_px < cfg.min_face_px,
                f"median face height {clip.face_height_px:.0f}px < talk.min_face_px={cfg.min_face_px}",
            ),
            (
                "pose_not_frontal",
                not (clip.abs_yaw_p90_deg <= cfg.max_p90_abs_yaw),
                f"90th percentile |yaw| {clip.abs_yaw_p90_deg:.0f} deg > talk.max_p90_abs_yaw={cfg.max_p90_abs_yaw}",
            ),
            (
                "pose_not_frontal",
                abs(clip.pitch_deg) > cfg.max_median_abs_pitch,
                f"median |pitch| {abs(clip.pitch_deg):.0f} deg > talk.max_median_abs_pitch={cfg.max_median_abs_pitch}",
            ),
            (
                "blurry",
                clip.blur_var < cfg.min_blur_var,
                f"blur variance {clip.blur_var:.1f} < talk.min_blur_var={cfg.min_blur_var}",
            ),
            (
                "low_landmark_confidence",
                clip.landmark_fraction < cfg.min_landmark_fraction,
                f"face mesh on {clip.landmark_fraction:.0%} of frames < talk.min_landmark_fraction",
            ),
            (
                "low_landmark_confidence",
                clip.landmark_confidence < cfg.min_landmark_confidence,
                f"mean landmark confidence {clip.landmark_confidence:.2f} < talk.min_landmark_confidence",
            ),
            (
                "identity_switch",
                clip.embedding_spread > cfg.max_embedding_spread,
                f"identity embeddings {clip.embedding_spread:.2f} apart > talk.max_embedding_spread",
            ),
            (
                "ambiguous_speaker",
                clip.attribution_margin < 0,
                f"active-speaker evidence {_fmt(clip.speaker_asd)} too close to call (threshold "
                f"{cfg.asd_threshold}±{cfg.asd_band}, runner-up margin {cfg.asd_runner_up_margin})",
            ),
            (
                "too_little_speech",
                clip.speech_share < cfg.min_speech_share,
                f"speech on {clip.speech_share:.0%} of frames < talk.min_speech_share={cfg.min_speech_share}",
            ),
            (
                "no_listening",
                cfg.require_listening and clip.listen_s < cfg.min_listen_s,
                f"{clip.listen_s:.1f}s of listening < talk.min_listen_s={cfg.min_listen_s}",
            ),
            (
                "overlap_too_high",
                clip.overlap_share > cfg.max_overlap_share,
                f"overlap {clip.overlap_share:.0%} of speech > talk.max_overlap_share={cfg.max_overlap_share}",
            ),
            (
                "separation_leakage",
                clip.background_leak_db > cfg.max_background_leak_db,
                f"background gains {clip.background_leak_db:.1f} dB of the speech-time mix while anyone talks > "
                f"talk.max_background_leak_db={cfg.max_background_leak_db}",
            ),
        ]
        failed = [(reason, message) for reason, bad, message in checks if bad]
        if failed:
            clip.mark(STATUS_FILTERED, self.name, failed[0][0], message="; ".join(m for _, m in failed))
            clip.filter_reasons = sorted({reason for reason, _ in failed})

    def _write_video(
        self,
        clip: ClipRecord,
        row: FaceTrackRecord,
        a: int,
        b: int,
        n: int,
        out_dir: Path,
        keyframes: frozenset[int] = frozenset(),
    ) -> None:
        if a == 0 and b == n:
            clip.clip_video_uri = row.crop_video_uri  # the clip is the whole track
            return
        fps = row.norm_fps or 25.0
        path = out_dir / f"{clip.key}.mp4"
        with atomic_path(path) as tmp:
            if not (_copy_cuttable(a, b, n, fps, keyframes) and self._copy_cut(row, a, b, fps, tmp)):
                self._encode_cut(row, a, b, fps, tmp)
        clip.clip_video_uri = str(path)

    def _copy_cut(self, row: FaceTrackRecord, a: int, b: int, fps: float, out: Path) -> bool:
        """Frames [a, b) of the crop video as they are (a keyframe to the next one, or the end):
        no decoding or encoding. False when the result does not hold exactly b - a frames."""
        # Seeking before -i to a keyframe's exact time starts the copy on that keyframe; packets
        # from a keyframe to the next are frames [a, b) in display order (closed GOPs).
        command = [*FFMPEG, "-ss", f"{a / fps:.6f}", "-i", row.crop_video_uri, "-frames:v", str(b - a), "-an",
                   "-c:v", "copy", "-movflags", "+faststart", "-f", "mp4", str(out)]  # fmt: skip
        result = run_tool(command, tool_timeout(0), row.source_uri)
        if result.returncode != 0:
            return False
        probe = ["ffprobe", "-v", "error", "-select_streams", "v:0", "-count_packets",
                 "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", str(out)]  # fmt: skip
        counted = run_tool(probe, tool_timeout(0), row.source_uri)
        return counted.returncode == 0 and counted.stdout.strip() == str(b - a)

    def _encode_cut(self, row: FaceTrackRecord, a: int, b: int, fps: float, out: Path) -> None:
        # Half a frame early, so rounding never skips frame a.
        command = h264_cut(row.crop_video_uri, max(a - 0.5, 0) / fps, b - a, out, 20, "veryfast")
        # Reads the track's crop video up to frame b: limited by the track's length.
        result = run_tool(command, tool_timeout(row.track_end_s - row.track_start_s), row.source_uri)
        if result.returncode != 0:
            raise RuntimeError(f"ffmpeg could not cut the clip video: {result.stderr.strip()[-400:]}")


def _copy_cuttable(a: int, b: int, n: int, fps: float, keyframes: frozenset[int]) -> bool:
    """Whether frames [a, b) can be copied out of the crop: both ends on its keyframes (or b its
    end), and a's time exact in microseconds (the seek must land on the keyframe itself)."""
    exact = abs(round(a / fps, 6) - a / fps) < 1e-9
    return exact and a in keyframes and (b in keyframes or b == n)


def source_licence(source_uri: str) -> tuple[str, str]:
    """Licence and attribution from a sidecar JSON beside a local input (`video.mp4.json` or
    `video.json`, keys `licence`/`license` and `attribution`); "unknown" without one."""
    path = local_path(source_uri)
    for sidecar in (path.with_name(path.name + ".json"), path.with_suffix(".json")):
        try:
            data = json.loads(sidecar.read_text())
        except (OSError, ValueError):
            continue
        return (str(data.get("licence") or data.get("license") or "unknown"), str(data.get("attribution", "")))
    return "unknown", ""


def _decoded_frames(capture: cv2.VideoCapture, first: int) -> Iterator[np.ndarray]:
    """Frames `first`, `first` + 1, ... of an opened capture, until it runs out."""
    for _ in range(first):
        if not capture.grab():
            return
    while True:
        ok, frame = capture.read()
        if not ok:
            return
        yield frame


def _with_turn_speakers(words: list[dict], turns: list[Turn]) -> list[dict]:
    """Words whose middle falls in a turn relabelled by `split_between_faces` or `unsaid_turns`
    take its label, so a word goes to the same party as the audio it was heard in."""
    relabelled = [t for t in turns if SAID_BY in t.speaker or t.speaker.endswith(NOT_THIS_FACE)]
    if not relabelled:
        return words
    out = []
    for w in words:
        middle = (w["start_s"] + w["end_s"]) / 2
        for t in relabelled:
            if t.start <= middle < t.end and _base_speaker(t.speaker) == w["speaker"]:
                w = {**w, "speaker": t.speaker}
                break
        out.append(w)
    return out


def _base_speaker(label: str) -> str:
    """The diarized speaker a turn label was made from (before `SAID_BY` and `NOT_THIS_FACE`)."""
    return label.removesuffix(NOT_THIS_FACE).split(SAID_BY, 1)[0]


def _read_words(uri: str) -> list[dict]:
    if not uri or not Path(uri).exists():
        return []
    return pq.read_table(uri).to_pylist()


def _fmt(evidence: dict[str, float]) -> str:
    return ", ".join(f"{k} {v:.2f}" for k, v in sorted(evidence.items()))
