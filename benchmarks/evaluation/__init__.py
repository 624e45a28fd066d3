"""`voxhear eval`: score a pipeline run against `voxhear synth` ground truth.

Metrics are modules registered in `voxhear.benchmarks.evaluation.registry.METRICS`; each reports itself
"not available" when the run lacks the output it scores. Each labelling metric reports its
headline figures per video, pooled over all videos, with a bootstrap interval over videos and the
worst video (`voxhear.benchmarks.evaluation.bootstrap`).
"""

from voxhear.benchmarks.evaluation.base import EvalSettings, MetricResult
from voxhear.benchmarks.evaluation.cli import add_arguments, evaluate_run, run_from_args
from voxhear.benchmarks.evaluation.report import format_table

__all__ = ["EvalSettings", "MetricResult", "add_arguments", "evaluate_run", "format_table", "run_from_args"]
