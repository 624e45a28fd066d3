"""`voxhear synth`: a composed two-person conversation benchmark with exact ground truth.

Two GRID talking faces (each with its own voice) take turns in front of a drifting camera that
cuts between close shots and two-shots; the listener shows silent frames of their clip back and
forth, music or noise plays under everything. Because every part is placed by a seeded plan, the
shots, face boxes, per-person stems, speaker turns and talking labels are known exactly.
`--people-source wild` composes the same from the real single-person recordings of faces-wild/
(wild*.py) and `--audio-only` conversations for diarization (diar.py).
The ground-truth format is described in docs/synth-format.md.
"""

from voxhear.benchmarks.synth.cli import add_arguments, run_from_args
from voxhear.benchmarks.synth.compose import compose_dataset
from voxhear.benchmarks.synth.options import SynthOptions

__all__ = ["SynthOptions", "add_arguments", "compose_dataset", "run_from_args"]
