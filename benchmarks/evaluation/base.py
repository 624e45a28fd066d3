"""The interface every metric module implements, and the result it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from voxhear.benchmarks.evaluation.data import RunView, TruthSet


@dataclass(frozen=True, slots=True)
class EvalSettings:
    """Knobs shared by the metrics (kept in eval.json so that scores are comparable).

    Attributes:
        shot_tolerance_frames: A predicted cut within this many frames of a true one matches it.
        der_collars: DER collars in seconds (pyannote's convention: half on each side of every
            reference boundary); the first is the headline `der`, the others add `der_c<collar>`.
        bootstrap_resamples: Resamples of the videos for the intervals (0: none).
        bootstrap_seed: Seed of the resampling (fixed: the intervals are reproducible).
        bootstrap_level: Coverage of the intervals.
        speech_reference: The truth folder the separated speech and the self/other tracks are
            scored against: "stems" (each person's speech as mixed, reverberation included) or
            "dry" (before the room; sets composed with reverberation only).
    """

    shot_tolerance_frames: int = 2
    der_collars: tuple[float, ...] = (0.0, 0.25)
    bootstrap_resamples: int = 1000
    bootstrap_seed: int = 0
    bootstrap_level: float = 0.95
    speech_reference: str = "stems"

    def to_json(self) -> dict:
        return {"shot_tolerance_frames": self.shot_tolerance_frames, "der_collars_s": list(self.der_collars),
                "speech_reference": self.speech_reference,
                "bootstrap": {"unit": "video", "resamples": self.bootstrap_resamples, "seed": self.bootstrap_seed,
                              "level": self.bootstrap_level}}


@dataclass(slots=True)
class MetricResult:
    """What one metric found.

    Attributes:
        name: The metric's name (a key of eval.json's ``metrics``).
        available: False when the run has no output this metric scores.
        reason: Why it is not available.
        summary: Scores over all videos (micro-averaged where that applies).
        per_video: Scores per truth video id.
        columns: The keys of `summary` and of each per-video dict shown in the table, in order.
        figures: Per headline figure (a key of `summary` and of the per-video dicts): its pooled
            value, the bootstrap interval over videos, the worst video and its value, which way
            is better (see `voxhear.benchmarks.evaluation.bootstrap`).
    """

    name: str
    available: bool
    reason: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    per_video: dict[str, dict[str, Any]] = field(default_factory=dict)
    columns: list[str] = field(default_factory=list)
    figures: dict[str, dict] = field(default_factory=dict)

    def to_json(self) -> dict:
        if not self.available:
            return {"available": False, "reason": self.reason}
        return {"available": True, "summary": self.summary, "per_video": self.per_video, "columns": self.columns,
                "figures": self.figures}


class Metric(Protocol):
    """A metric module's entry: constructed with the settings, run once per evaluation."""

    name: str

    def __init__(self, settings: EvalSettings) -> None: ...

    def evaluate(self, run: RunView, truth: TruthSet) -> MetricResult:
        """Score `run` against `truth`; return ``available=False`` when the run lacks the output."""
        ...


def not_available(name: str, reason: str) -> MetricResult:
    return MetricResult(name=name, available=False, reason=reason)
