"""voxhear: turn conversation videos into talk/listen training data (VoxHear)."""

__version__ = "0.1.0"
