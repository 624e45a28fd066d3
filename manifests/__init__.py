"""Run manifests: declared schemas, the commit ledger, and the consolidated Parquet files."""

from voxhear.manifests.ledger import Ledger, LedgerState, consolidate, read_manifests
from voxhear.manifests.schemas import ClipManifestRow, SourceManifestRow, clip_row_type

__all__ = [
    "ClipManifestRow",
    "clip_row_type",
    "SourceManifestRow",
    "Ledger",
    "LedgerState",
    "consolidate",
    "read_manifests",
]
