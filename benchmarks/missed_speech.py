"""What the diarization misses, by kind: overlapped speech, solo speech that the background
drowns, and solo speech that could be heard.

    python -m voxhear.benchmarks.missed_speech RUN TRUTH [--snr-db 0] [--json OUT]

RUN is a finished `voxhear run` (its sources' `rttm_uri`), TRUTH the `voxhear synth` folder (its
`turns.rttm` and, for the audibility split, `stems/<person>.flac` and `stems/background.flac`).
Missed speech is counted as DER counts it at collar 0 (per 10 ms frame, the reference speakers
the hypothesis lacks there: max(0, reference count - hypothesis count)), so the three parts add
up to the DER's `missed` share up to the frame grid. A missed frame is

- `overlap`: two or more reference speakers talk there;
- `drowned`: one speaker talks and their own stem is more than `--snr-db` below the background
  stem over that frame (the truth's talking rule reads each voice alone, before mixing; under
  music at 0-12 dB SNR, the pauses between words that the rule fills, and quiet word ends, lie
  below the background);
- `audible`: the rest, what a better diarizer could find from the audio alone.

Also the local SNR (own stem over background, dB) of the missed and of the found solo frames.
Why: the issue's DER target has to be read against what the audio holds (design doc item 27).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import soundfile as sf

from voxhear.benchmarks.evaluation.audio import _read, _sources, active_counts, read_rttm
from voxhear.benchmarks.evaluation.data import RunView, TruthSet

HOP_S = 0.01
PARTS = ("overlap", "drowned", "audible")


def frame_db(audio: np.ndarray, rate: int, n: int) -> np.ndarray:
    """Power in dB of each HOP_S frame of `audio` (n frames; missing ones at -200 dB)."""
    hop = int(round(rate * HOP_S))
    out = np.full(n, -200.0)
    m = min(n, len(audio) // hop)
    power = np.mean(np.square(audio[: m * hop].reshape(m, hop)), axis=1)
    out[:m] = 10.0 * np.log10(power + 1e-20)
    return out


def _stem_db(path: Path, n: int) -> np.ndarray:
    return frame_db(_read(path), sf.info(str(path)).samplerate, n)


def missed_parts(
    reference: list[tuple[float, float, str]],
    hypothesis: list[tuple[float, float, str]],
    duration: float,
    stems_db: dict[str, np.ndarray] | None = None,
    background_db: np.ndarray | None = None,
    snr_db: float = 0.0,
) -> dict:
    """Seconds of reference speaker-time and of missed speaker-time by part (`PARTS`), and the
    local SNRs of missed and found solo frames. Without stems every missed solo frame is `audible`."""
    n = int(round(duration / HOP_S))
    mids = (np.arange(n) + 0.5) * HOP_S
    n_ref, n_hyp = active_counts(reference, mids), active_counts(hypothesis, mids)
    missed = np.maximum(0, n_ref - n_hyp)
    overlap = n_ref >= 2
    solo = n_ref == 1
    snr = np.full(n, np.inf)
    if stems_db is not None and background_db is not None:
        own = np.full(n, -200.0)
        for speaker in {t[2] for t in reference}:
            active = active_counts([t for t in reference if t[2] == speaker], mids) > 0
            # A speaker without a stem cannot be judged drowned: counted as audible.
            level = stems_db.get(speaker, np.full(n, np.inf))
            own = np.where(active, np.maximum(own, level[:n]), own)
        snr = own - background_db[:n]
    drowned = solo & (snr < -snr_db)
    seconds = {
        "reference_s": float(n_ref.sum() * HOP_S),
        "missed_s": float(missed.sum() * HOP_S),
        "overlap_s": float(missed[overlap].sum() * HOP_S),
        "drowned_s": float(missed[drowned].sum() * HOP_S),
        "audible_s": float(missed[solo & ~drowned].sum() * HOP_S),
    }
    finite = np.isfinite(snr)
    seconds["missed_solo_snr_db"] = snr[solo & (missed > 0) & finite].tolist()
    seconds["found_solo_snr_db"] = snr[solo & (missed == 0) & finite].tolist()
    return seconds


def _quartiles(values: list[float]) -> list[float] | None:
    return [round(float(q), 1) for q in np.percentile(values, [25, 50, 75])] if values else None


def summarize(parts: list[dict]) -> dict:
    """Pooled shares of the reference speaker-time, and SNR quartiles."""
    total = sum(p["reference_s"] for p in parts)
    out = {"reference_s": round(total, 2)}
    for key in ("missed", *PARTS):
        out[key] = round(sum(p[f"{key}_s"] for p in parts) / total, 4) if total else None
    out["missed_solo_snr_db_quartiles"] = _quartiles([v for p in parts for v in p["missed_solo_snr_db"]])
    out["found_solo_snr_db_quartiles"] = _quartiles([v for p in parts for v in p["found_solo_snr_db"]])
    return out


def evaluate(run_dir: Path, truth_dir: Path, snr_db: float = 0.0) -> dict:
    """Per video and pooled: the missed speech of the run's diarization against the truth, by part."""
    truth = TruthSet.open(truth_dir)
    run = RunView.open(run_dir, truth)
    rows = _sources(run, ["rttm_uri"])
    per_video, parts = {}, []
    for video, source_id in sorted(run.source_of_video.items()):
        rttm = (rows.get(source_id) or {}).get("rttm_uri")
        if not rttm or not Path(rttm).is_file():
            continue
        meta = truth.meta(video)
        stems = truth.path(video, "stems")
        background = stems / "background.flac"
        stems_db = background_db = None
        n = int(round(float(meta["duration_s"]) / HOP_S))
        if background.is_file():
            background_db = _stem_db(background, n)
            stems_db = {p.stem: _stem_db(p, n) for p in stems.glob("*.flac") if p.stem != "background"}
        part = missed_parts(
            read_rttm(truth.path(video, "turns.rttm")),
            read_rttm(rttm),
            float(meta["duration_s"]),
            stems_db,
            background_db,
            snr_db,
        )
        parts.append(part)
        per_video[video] = summarize([part])
    return {"snr_db": snr_db, "videos": per_video, "pooled": summarize(parts)}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m voxhear.benchmarks.missed_speech", description=__doc__.split("\n")[0]
    )
    parser.add_argument("run", type=Path, help="a finished voxhear run")
    parser.add_argument("truth", type=Path, help="the voxhear synth folder of its inputs")
    parser.add_argument(
        "--snr-db", type=float, default=0.0, help="own stem more than this many dB below the background: drowned"
    )
    parser.add_argument("--json", type=Path, help="also write the figures here")
    args = parser.parse_args(argv)
    result = evaluate(args.run, args.truth, args.snr_db)
    header = "video        speech s  missed  overlap  drowned  audible  SNR missed solo [q1 med q3]  found solo"
    print(header)
    for name, row in [*result["videos"].items(), ("pooled", result["pooled"])]:
        print(
            f"{name:12s} {row['reference_s']:8.1f}  {row['missed']:6.3f}  {row['overlap']:7.3f}  {row['drowned']:7.3f}"
            f"  {row['audible']:7.3f}  {row['missed_solo_snr_db_quartiles']}  {row['found_solo_snr_db_quartiles']}"
        )
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
