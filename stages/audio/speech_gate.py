"""Turns found in the mix, kept only where the separated speech carries the sound
(`diarization.speech_gate_db`).

Diarizing the mix finds the soft speech the separator takes out, which is why it labels real
recordings better, but pyannote's segmentation also reads a music bed as speech: on the composed
GRID sets the mix's turns have 11% false alarm against the separated speech's 7%. The separator
decides that question better than the segmentation: where its speech holds only a tiny share of
the mix's power, the sound is not speech. So a turn of the mix keeps only its runs where the
separated speech's power, over 50 ms around each 10 ms frame, is within `threshold_db` of the
mix's. Both files are read a minute at a time: memory does not grow with the input.
"""

from __future__ import annotations

import numpy as np

from voxhear.stages.audio.asr import SAMPLE_RATE, Speech
from voxhear.stages.audio.diarization import Turn
from voxhear.stages.runs import runs_of

FRAME_S = 0.01
FRAME = round(FRAME_S * SAMPLE_RATE)
# Frames each power is taken over (50 ms): long enough to bridge the gaps between a voice's
# pitch periods, short enough to end with the word.
SMOOTH_FRAMES = 5
# Shorter kept runs are dropped: a few frames of speech inside music are not a turn.
MIN_RUN_S = 0.1
BLOCK_FRAMES = 6000  # one minute per read


def speech_share_db(speech: Speech, mix: Speech) -> np.ndarray:
    """Per 10 ms frame: the separated speech's power over the mix's, in dB, each summed over
    the `SMOOTH_FRAMES` frames around it (both 16 kHz, read a block at a time)."""
    frames = min(speech.length, mix.length) // FRAME
    if frames == 0:
        return np.empty(0)
    power = {"speech": np.empty(frames), "mix": np.empty(frames)}
    for start in range(0, frames, BLOCK_FRAMES):
        stop = min(frames, start + BLOCK_FRAMES)
        for name, signal in (("speech", speech), ("mix", mix)):
            block = signal.read(start * FRAME, stop * FRAME).astype(np.float64).reshape(-1, FRAME)
            power[name][start:stop] = np.square(block).sum(axis=1)
    kernel = np.ones(SMOOTH_FRAMES)
    # Centred sums over SMOOTH_FRAMES frames, as long as the signal even when it is shorter.
    half = SMOOTH_FRAMES // 2
    speech_power, mix_power = (np.convolve(p, kernel)[half : half + frames] for p in power.values())
    # A mix below -100 dBFS is digital silence: no speech there, whatever the ratio.
    share = np.full(frames, -np.inf)
    sound = mix_power > 1e-10 * FRAME * SMOOTH_FRAMES
    with np.errstate(divide="ignore"):
        share[sound] = 10 * np.log10(speech_power[sound] / mix_power[sound])
    return share


def gate_turns(turns: list[Turn], share_db: np.ndarray, threshold_db: float) -> list[Turn]:
    """The runs (at least `MIN_RUN_S`) of each turn where `share_db` reaches `threshold_db`;
    past the end of `share_db` nothing is kept."""
    carried = share_db >= threshold_db
    min_frames = round(MIN_RUN_S / FRAME_S)
    out: list[Turn] = []
    for turn in turns:
        first = max(0, int(np.floor(turn.start / FRAME_S)))
        last = min(len(share_db), int(np.ceil(turn.end / FRAME_S)))
        for a, b in runs_of(carried[first:last], min_frames):
            start, end = max(turn.start, (first + a) * FRAME_S), min(turn.end, (first + b) * FRAME_S)
            out.append(Turn(round(start, 3), round(end, 3), turn.speaker))
    return out
