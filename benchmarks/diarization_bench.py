"""CAM++ backends side by side: CPU seconds per audio second of the diarizer with the torch and
the onnx embedding, and whether their turns agree (docs/benchmarks/audio.md).

    HF_HUB_OFFLINE=1 VOXHEAR_MODEL_DIR=../shared/models \
        python -m voxhear.benchmarks.diarization_bench RUN/work/*/speech.flac
"""

from __future__ import annotations

import torch

from voxhear.pipeline.models import ModelStore
from voxhear.stages.audio.diarization import Diarizer, Turn


def main(argv: list[str] | None = None) -> None:
    """CPU seconds per audio second of the diarizer with each CAM++ backend, one thread, alternating
    backends per file (the minimum of `--repeat` runs; CPU time, since the machine may be shared),
    and whether the onnx turns equal the torch ones (else their DER against them)."""
    import argparse
    import os
    import time

    from pyannote.core import Annotation, Segment
    from pyannote.metrics.diarization import DiarizationErrorRate

    from voxhear.stages.audio.separation import read_mono

    parser = argparse.ArgumentParser(prog="python -m voxhear.benchmarks.diarization_bench")
    parser.add_argument("files", nargs="+", help="separated speech (speech.flac of a run's work area)")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    store = ModelStore(allow_download=False)
    diarizers = {backend: Diarizer(store, embedding_backend=backend) for backend in ("torch", "onnx")}

    def annotation(turns: list[Turn]) -> Annotation:
        out = Annotation()
        for i, t in enumerate(turns):
            out[Segment(t.start, t.end), i] = t.speaker
        return out

    for path in args.files:
        audio, rate = read_mono(path)
        for diarizer in diarizers.values():
            diarizer(audio[: 5 * rate], rate)  # first-call costs (allocations, pyannote's probes)
        rtf, turns = {}, {}
        for backend, diarizer in diarizers.items():
            times = []
            for _ in range(args.repeat):
                started = time.process_time()
                turns[backend] = diarizer(audio, rate)
                times.append(time.process_time() - started)
            rtf[backend] = min(times) / (len(audio) / rate)
        same = turns["onnx"] == turns["torch"]
        verdict = (
            "identical"
            if same
            else f"DER {DiarizationErrorRate()(annotation(turns['torch']), annotation(turns['onnx'])):.4f}"
        )
        print(
            f"{path}: CPU RTF torch {rtf['torch']:.4f}, onnx {rtf['onnx']:.4f} "
            f"({rtf['torch'] / rtf['onnx']:.2f}x); {len(turns['onnx'])} turns {verdict}; "
            f"load {os.getloadavg()[0]:.1f}",
            flush=True,
        )


if __name__ == "__main__":
    main()
