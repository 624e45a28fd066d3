"""Run manifests: declared schemas, the commit ledger, and the consolidated Parquet files."""

from voxhear.manifests.schemas import ClipManifestRow, SourceManifestRow
from voxhear.manifests.ledger import Ledger, LedgerState, consolidate, read_manifests

__all__ = ["ClipManifestRow", "SourceManifestRow", "Ledger", "LedgerState", "consolidate", "read_manifests"]
