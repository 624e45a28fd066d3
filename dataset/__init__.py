"""Reading a finished run's shards for training (`voxhear.dataset.loader`, docs/loading.md)."""

from voxhear.dataset.loader import *  # noqa: F401,F403 - the loader is this package's public face
from voxhear.dataset.loader import __all__  # noqa: F401
