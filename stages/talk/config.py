"""Config section of the talk/listen stage (docs/benchmarks/talk.md)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import ClassVar

from voxhear.pipeline.settings import require, setting


@dataclass
class TalkConfig:
    """Talk/listen stage: active speaker, attribution, self/other/background tracks, clips and the
    quality filter (docs/benchmarks/talk.md). Every threshold below names the reject reason it sets."""

    # Names that say which statistic is bounded (the face stage bounds a median yaw).
    # max_background_excess_db measured the background's rise in speech over pauses (+10 dB); its
    # successor measures the share of the speech leaked into it (-10 dB): an old value must not pass.
    RENAMED: ClassVar[dict[str, str]] = {
        "max_abs_yaw": "max_p90_abs_yaw",
        "max_abs_pitch": "max_median_abs_pitch",
        "max_background_excess_db": "max_background_leak_db",
    }

    # Clips are windows of one face track: tracks shorter than min_clip_s give no clip; longer
    # than max_clip_s are cut into equal windows.
    min_clip_s: float = setting(2.0, gt=0)
    max_clip_s: float = setting(20.0, gt=0)
    # Attribution (stages/talk/attribution.py): a diarized speaker is the on-screen person when
    # the face's mean Light-ASD logit over that speaker's solo speech reaches asd_threshold; a
    # mean within asd_band of the threshold, or a runner-up speaker within asd_runner_up_margin
    # of the best, makes the track `ambiguous_speaker`.
    asd_threshold: float = 1.5
    asd_band: float = setting(0.75, ge=0)
    asd_runner_up_margin: float = setting(1.0, ge=0)
    # A runner-up within asd_runner_up_margin of the best whose mean logit also reaches
    # asd_threshold + asd_band is this face's voice too (one person split into several speakers
    # by diarization), not a reason to reject the track as ambiguous.
    merge_split_voices: bool = True
    # With a face on screen beside this one: a voice that makes this face talk confidently (at
    # least asd_threshold + asd_band) while every other face on screen stays below asd_threshold
    # is this face's voice too, however far below its best, unless this face's lips also move in
    # the pauses (attribution.silent_for_rivals).
    merge_rival_silent_voices: bool = True
    # With faces on screen together: a voice cluster whose turns two faces say (one face's mean
    # logit over a turn at least asd_threshold, every other face's asd_runner_up_margin below it)
    # is split into one speaker per face before attribution (attribution.split_between_faces).
    split_voices_between_faces: bool = True
    # A self speaker's turn during which the face's mean Light-ASD logit (solo frames, at least
    # min_evidence_s of them) stays below this is someone else's speech: a voice cluster can hold
    # an off-screen voice too (attribution.unsaid_turns). None: whole clusters only.
    unsaid_turn_logit: float | None = 0.5
    # The same for part of a turn (attribution.still_runs): a run of at least still_run_s inside a
    # self speaker's turn during which the face's smoothed logit stays below still_run_logit is
    # someone else's speech (a voice cluster that took the other party's reply into this
    # person's turn). None: off. Tuning set: (0, 0.5 s) and (0, 0.3 s) attribution 0.767 -> 0.772,
    # (-1, 0.5 s) 0.770, (0.5, 0.5 s) 0.770, (0, 1 s) no change; held out 0.763 -> 0.765, GRID unchanged.
    still_run_logit: float | None = 0.0
    still_run_s: float = setting(0.5, gt=0)
    # Overlap diarization missed (stages/talk/overlap.py): runs of at least overlap_min_s where
    # only other speakers have turns but this face's Light-ASD logit stays at or above
    # overlap_talk_logit become this face's speech too (the `both` state; the audio tracks keep
    # the diarized turns). None: overlap as diarization finds it. 2.5 chosen on the realistic
    # tuning set (1.5-4 tried), checked held out and on GRID (README, "Real people").
    overlap_talk_logit: float | None = 2.5
    overlap_min_s: float = setting(0.2, gt=0)
    # The same seen from a face on screen with this one: where only this face's speakers have
    # turns but the other face's logit stays at or above this, the other party talks too. None:
    # off. 2.5 as above (tuning set: both-state F1 +0.03; held out +0.015; GRID unchanged).
    rival_overlap_logit: float | None = 2.5
    # Overlap heard in the mix (diarization.mix_overlap; stages/talk/overlap.heard_overlap_turns):
    # in a region where two voices are heard but the turns have one party only, the other party
    # talks too when the turns are this face's, and this face talks too when the turns are
    # another's and its Light-ASD logit is at least this (else the second voice may be a third
    # person's). None: off. 0 is Light-ASD's own boundary; on the realistic tuning set 1.5, 0.5,
    # 0, -0.5 and -10 gave both-state F1 0.48, 0.52, 0.53, 0.54, 0.56 and attribution 0.761,
    # 0.765, 0.767, 0.768, 0.762 (README, "Real people"). Regions the diarization already gave
    # a second speaker (diarization.overlap_neighbour_s) hold both parties and are not judged here.
    heard_overlap_logit: float | None = 0.0
    # Overlapped speech split between the two parties by their voices' own spectra (voice_split.py:
    # a dictionary of voice_split_bases spectra per speaker from their solo speech within
    # voice_split_context_s of the clip, fitted to the overlapped frames). None: overlap stays in the
    # self track, the other track silent there. Labels unchanged; self / other SI-SDR, all clips:
    # realistic tuning set 0.6 / 2.5 -> 0.8 / 3.1 dB (8, 16, 32 bases within 0.1 dB with the truth's
    # turns; 10 / 40 s of context within 0.1 dB), held out 3.0 / 3.0 -> 3.8 / 4.4, GRID 11.9 / 10.5
    # -> 13.7 / 13.1 (README, "Real people").
    voice_split_bases: int | None = setting(16, ge=1)
    voice_split_context_s: float = setting(20.0, ge=0)
    # The overlap the lips and the mix add to the states (overlap_talk_logit, rival_overlap_logit,
    # heard_overlap_logit) split too, given the face's own speaker or the other speaker nearest in
    # time (voice_split.voiced_overlap_turns). Self / other SI-SDR, all clips: tuning 0.8 / 3.1 ->
    # 0.9 / 3.3 dB, held out 3.8 / 4.4 -> 4.2 / 4.8, GRID 13.7 / 13.1 -> 14.0 / 13.4.
    voice_split_added_overlap: bool = True
    # Evidence needs at least this much of a speaker's solo speech inside the track.
    min_evidence_s: float = setting(0.4, gt=0)
    # Turns are widened by this much on each side before they become the audio masks of the self
    # and other tracks (diarization clips word onsets), with raised-cosine edges of mask_ramp_s.
    # The frame states use the turns as diarized (state_pad_s below).
    turn_pad_s: float = setting(0.1, ge=0)
    mask_ramp_s: float = setting(0.02, ge=0)
    # Silent frames within this of a party's diarized speech become that party's (the nearer one's
    # where both reach; never `both`). 0: off. A labelling convention, not an accuracy gain: at
    # 0.1 s attribution rises 4-5 points on the realistic sets, whose truth is silero-vad with
    # 30 ms pads, while on GRID (energy-VAD truth, as tight as pyannote's turns) talk / listen F1
    # fall 3-4 points (README, "Real people").
    state_pad_s: float = setting(0.0, ge=0)
    # Quality filter (reasons in the stage's `reasons`).
    min_face_px: float = setting(64.0, ge=0)  # face_too_small: median face box height, source px
    max_p90_abs_yaw: float = setting(45.0, gt=0, le=180)  # pose_not_frontal: 90th percentile |yaw|, degrees
    max_median_abs_pitch: float = setting(35.0, gt=0, le=180)  # pose_not_frontal: median |pitch|
    min_blur_var: float = 8.0  # blurry: variance of Laplacian of the 256 px crop
    min_landmark_confidence: float = setting(0.5, ge=0, le=1)  # low_landmark_confidence: mean mesh/box IoU
    min_landmark_fraction: float = setting(0.8, ge=0, le=1)  # low_landmark_confidence: frames with a mesh
    min_speech_share: float = setting(0.3, ge=0, le=1)  # too_little_speech: frames with anyone talking
    require_listening: bool = False  # no_listening: clips must contain listening
    min_listen_s: float = 1.0
    max_overlap_share: float = setting(0.3, ge=0, le=1)  # overlap_too_high: overlapped share of speech frames
    max_background_leak_db: float = -10.0  # separation_leakage: see ClipRecord.background_leak_db
    # A clip window that max_overlap_share would reject is cut around its overlapped stretches of at
    # least overlap_split_s (runs of the both state less than overlap_bridge_s apart count as one;
    # never shorter than min_clip_s): each stretch becomes a clip of its own, filtered as it was,
    # and the spans between them can still be kept (stages/talk/windows.py). None: off.
    overlap_split_s: float | None = 2.0
    overlap_bridge_s: float = setting(0.5, ge=0)
    max_embedding_spread: float = 0.6  # identity_switch: largest distance between embeddings
    # Light-ASD's encoders on CPU: "onnx" (exported once into the model cache and checked against
    # torch at setup; 2.2x cheaper, same features to 1e-5) or "torch". A GPU always uses torch.
    asd_backend: str = setting("onnx", choices=("onnx", "torch"))
    # torch threads per worker (and the CPUs the worker asks for); GPUs per worker (Light-ASD).
    threads: int = setting(1, ge=1)
    gpus: float = setting(0.0, ge=0)
    # Memory one worker of this stage holds, declared to Ray so that a node gets no more workers than
    # fit (a worker's peak was 1631 MB on `voxhear bench interview-60s`; it does not grow with the
    # input's length). 0 declares nothing.
    memory_gb: float = setting(2.5, ge=0)

    def check(self) -> None:
        require(
            self.max_clip_s >= 2 * self.min_clip_s,
            "talk.max_clip_s",
            "must be at least twice min_clip_s (so long tracks split into windows within range)",
        )
