"""The metrics `voxhear eval` runs, in report order.

To add one (face boxes, tracks, SI-SDR, DER, WER, talk/listen F1): write a module with a class
following `voxhear.evaluation.base.Metric` whose `evaluate` returns `not_available(...)` when the
run lacks the output it scores, and append the class here.
"""

from __future__ import annotations

from voxhear.evaluation.audio import AudioSpeedMetric, DiarizationMetric, SeparationMetric, WordErrorMetric
from voxhear.evaluation.base import EvalSettings, Metric
from voxhear.evaluation.faces import FaceMetric, StageTimeMetric
from voxhear.evaluation.shots import ShotBoundaryMetric
from voxhear.evaluation.talk import AttributionMetric, SelfOtherMetric, TalkListenMetric

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
