"""Cosine distances between the diarized speakers of finished runs, from whole-turn CAM++
embeddings weighted by turn length: how far apart one voice split in two is, next to two people
(docs/benchmarks/audio.md, `diarization.merge_threshold`).

    python -m voxhear.benchmarks.speaker_distances RUN [RUN ...]
"""

from __future__ import annotations

import argparse
import itertools
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq
import torch
import torch.nn.functional as F

from voxhear.pipeline.models import ModelStore
from voxhear.stages.audio.diarization import Diarizer, read_rttm
from voxhear.stages.audio.separation import read_mono


def speaker_distances(diarizer: Diarizer, speech_uri: str, rttm_uri: str, min_turn_s: float = 0.5) -> dict[str, float]:
    """'A-B' -> cosine distance of the two speakers' duration-weighted turn-embedding centroids."""
    assert diarizer.embed is not None, "needs the CAM++ pipeline"
    turns = read_rttm(rttm_uri)
    audio, rate = read_mono(speech_uri)
    waveform = torch.from_numpy(audio.astype(np.float32))
    centroids = {}
    for speaker in sorted({t.speaker for t in turns}):
        vectors = []
        for t in turns:
            if t.speaker != speaker or t.end - t.start <= min_turn_s:
                continue
            keep = torch.zeros(waveform.shape[-1])
            keep[int(t.start * rate) : int(t.end * rate)] = 1.0
            with torch.inference_mode():
                e = diarizer.embed(waveform[None, None, :], weights=keep[None])[0]
            vectors.append(F.normalize(e, dim=0).numpy() * (t.end - t.start))
        if vectors:
            c = np.sum(vectors, axis=0)
            centroids[speaker] = c / np.linalg.norm(c)
    return {
        f"{a}-{b}": round(1 - float(centroids[a] @ centroids[b]), 3) for a, b in itertools.combinations(centroids, 2)
    }


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m voxhear.benchmarks.speaker_distances",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("runs", nargs="+", type=Path)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    diarizer = Diarizer(ModelStore(allow_download=False))
    for run in args.runs:
        for row in pq.read_table(run / "manifests" / "sources.parquet").to_pylist():
            if row["rttm_uri"] and row["speech_uri"] and (row["n_speakers"] or 0) > 1:
                print(Path(row["source_uri"]).name, speaker_distances(diarizer, row["speech_uri"], row["rttm_uri"]))


if __name__ == "__main__":
    main()
