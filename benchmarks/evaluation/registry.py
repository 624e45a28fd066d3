"""The metrics `voxhear eval` runs, in report order.

To add one (face boxes, tracks, SI-SDR, DER, WER, talk/listen F1): write a module with a class
following `voxhear.benchmarks.evaluation.base.Metric` whose `evaluate` returns `not_available(...)` when the
run lacks the output it scores, and append the class here.
"""

from __future__ import annotations

from voxhear.benchmarks.evaluation.audio import AudioSpeedMetric, DiarizationMetric, SeparationMetric, WordErrorMetric
from voxhear.benchmarks.evaluation.base import EvalSettings, Metric
from voxhear.benchmarks.evaluation.faces import FaceMetric, StageTimeMetric
from voxhear.benchmarks.evaluation.shots import ShotBoundaryMetric
from voxhear.benchmarks.evaluation.talk import AttributionMetric, SelfOtherMetric, TalkListenMetric

METRICS: list[type] = [
    ShotBoundaryMetric,
    FaceMetric,
    StageTimeMetric,
    SeparationMetric,
    DiarizationMetric,
    WordErrorMetric,
    AudioSpeedMetric,
    TalkListenMetric,
    AttributionMetric,
    SelfOtherMetric,
]


def build_metrics(settings: EvalSettings) -> list[Metric]:
    return [cls(settings) for cls in METRICS]
