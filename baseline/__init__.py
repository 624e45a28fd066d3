"""The bundled baseline: a small transformer from self and other speech to face motion.

`voxhear baseline train|eval|render`; see baseline/model.py for the model and the Gaussian-kernel
attention ablation. Heavy imports (torch) stay in the submodules.
"""

from voxhear.baseline.cli import add_arguments, run_from_args

__all__ = ["add_arguments", "run_from_args"]
