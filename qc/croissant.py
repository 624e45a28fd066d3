"""A Croissant 1.0 (MLCommons) JSON-LD description of a run's shards and manifests.

Describes: the two manifests (Parquet) and every shard (a tar, with its sha256), the members
inside the shards as file sets by extension, and two record sets: `clips` (columns of
clips.parquet, one record per clip, kept or rejected) and `samples` (the shards' members joined
by WebDataset key). The members are described as file sets but not as record sets: mlcroissant 1.1 takes a tar whose
last member is an `.npz` (a zip) for a zip archive and extracts the wrong thing, so `clips` (with
`shard` and `key`) is the record set to read, and webdataset the reader of the shards.
`contentUrl`s are relative to the JSON file, so the file is valid where it is
written and can be moved together with the run.
"""

from __future__ import annotations

import collections
import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from voxhear.qc.media import ShardIndex, mime_of

CONTEXT = {
    "@language": "en", "@vocab": "https://schema.org/", "citeAs": "cr:citeAs", "column": "cr:column",
    "conformsTo": "dct:conformsTo", "cr": "http://mlcommons.org/croissant/",
    "rai": "http://mlcommons.org/croissant/RAI/", "data": {"@id": "cr:data", "@type": "@json"},
    "dataType": {"@id": "cr:dataType", "@type": "@vocab"}, "dct": "http://purl.org/dc/terms/",
    "examples": {"@id": "cr:examples", "@type": "@json"}, "extract": "cr:extract", "field": "cr:field",
    "fileProperty": "cr:fileProperty", "fileObject": "cr:fileObject", "fileSet": "cr:fileSet",
    "format": "cr:format", "includes": "cr:includes", "isLiveDataset": "cr:isLiveDataset",
    "jsonPath": "cr:jsonPath", "key": "cr:key", "md5": "cr:md5", "parentField": "cr:parentField",
    "path": "cr:path", "recordSet": "cr:recordSet", "references": "cr:references", "regex": "cr:regex",
    "repeated": "cr:repeated", "replace": "cr:replace", "sc": "https://schema.org/", "separator": "cr:separator",
    "source": "cr:source", "subField": "cr:subField", "transform": "cr:transform",
    "samplingRate": "cr:samplingRate", "equivalentProperty": "cr:equivalentProperty",
}
# Clip columns described in the `clips` record set when present (scalars only; maps and lists of
# the manifest stay out, embeddings are in the shards' json).
CLIP_FIELDS = ("key", "status", "stage", "reason", "source_id", "shard", "start_s", "end_s", "track_start_s",
               "track_end_s", "identity_id")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _data_type(arrow: pa.DataType) -> str | None:
    if pa.types.is_string(arrow) or pa.types.is_large_string(arrow):
        return "sc:Text"
    if pa.types.is_integer(arrow):
        return "sc:Integer"
    if pa.types.is_floating(arrow):
        return "sc:Float"
    if pa.types.is_boolean(arrow):
        return "sc:Boolean"
    return None


def build_croissant(run_dir: str | Path, out_path: str | Path, info: dict[str, Any], facts: dict[str, Any]) -> dict:
    """The Croissant JSON-LD for a run.

    Args:
        run_dir: The run folder.
        out_path: Where the JSON will be written (URLs are made relative to its folder).
        info: The datasheet YAML's fields (title, summary, distribution.licence, url, creators, ...).
        facts: Numbers from the datasheet (clips, hours) for the description.
    """
    run_dir = Path(run_dir).absolute()
    base = Path(out_path).absolute().parent

    def url(path: Path) -> str:
        return os.path.relpath(path, base)

    manifests = run_dir / "manifests"
    distribution: list[dict[str, Any]] = []
    for name in ("clips", "sources", "identities"):
        path = manifests / f"{name}.parquet"
        if path.exists():
            distribution.append({
                "@type": "cr:FileObject", "@id": f"{name}-manifest", "name": f"{name}-manifest",
                "description": f"manifests/{name}.parquet of the run",
                "contentUrl": url(path), "encodingFormat": "application/x-parquet",
                "contentSize": f"{path.stat().st_size} B", "sha256": _sha256(path)})
    shard_ids = []
    index = ShardIndex(run_dir / "shards")
    exts: collections.Counter[str] = collections.Counter()
    for shard in sorted((run_dir / "shards").glob("[0-9]" * 6 + ".tar")):
        shard_id = f"shard-{shard.stem}"
        shard_ids.append({"@id": shard_id})
        distribution.append({
            "@type": "cr:FileObject", "@id": shard_id, "name": shard_id, "contentUrl": url(shard),
            "encodingFormat": "application/x-tar", "contentSize": f"{shard.stat().st_size} B",
            "sha256": _sha256(shard)})
        for member in index.members(shard.name).values():
            exts[member.ext] += 1
    file_sets = {}
    for ext in sorted(exts):
        set_id = "members-" + ext.replace(".", "-")
        file_sets[ext] = set_id
        distribution.append({
            "@type": "cr:FileSet", "@id": set_id, "name": set_id,
            "description": f"the `{{key}}.{ext}` member of every sample ({exts[ext]} files)",
            "containedIn": shard_ids, "encodingFormat": mime_of("x." + ext.rsplit(".", 1)[-1]),
            "includes": f"*.{ext}"})

    record_sets = []
    clips_path = manifests / "clips.parquet"
    if clips_path.exists():
        schema = pq.read_schema(clips_path)
        fields = []
        for name in CLIP_FIELDS + tuple(_qc_columns(schema)):
            if name not in schema.names or any(f["name"] == name for f in fields):
                continue
            data_type = _data_type(schema.field(name).type)
            if data_type:
                fields.append({"@type": "cr:Field", "@id": f"clips/{name}", "name": name, "dataType": data_type,
                               "source": {"fileObject": {"@id": "clips-manifest"}, "extract": {"column": name}}})
        record_sets.append({
            "@type": "cr:RecordSet", "@id": "clips", "name": "clips",
            "description": "One record per clip, kept (status ok, in `shard`) or rejected (status/stage/reason say why).",
            "field": fields})
    identities_path = manifests / "identities.parquet"
    if identities_path.exists():
        schema = pq.read_schema(identities_path)
        fields = [{"@type": "cr:Field", "@id": f"identities/{name}", "name": name,
                   "dataType": _data_type(schema.field(name).type),
                   "source": {"fileObject": {"@id": "identities-manifest"}, "extract": {"column": name}}}
                  for name in schema.names if _data_type(schema.field(name).type)]
        record_sets.append({
            "@type": "cr:RecordSet", "@id": "identities", "name": "identities",
            "description": "The identity (face cluster over the whole run) of every kept clip, by key.",
            "field": fields})
    description = info.get("summary") or (
        f"VoxHear clips made by the voxhear pipeline: {facts.get('clips_kept', 0)} clips "
        f"({facts.get('kept_hours', 0.0):.3f} h) of one on-screen person with decoupled audio.")
    licence = (info.get("distribution") or {}).get("licence") or "unknown (see the datasheet's sources table)"
    doc: dict[str, Any] = {
        "@context": CONTEXT,
        "@type": "sc:Dataset",
        "name": _identifier(info.get("title") or f"voxhear-{run_dir.name}"),
        "description": description,
        "conformsTo": "http://mlcommons.org/croissant/1.0",
        "license": licence,
        "url": info.get("url") or "https://example.invalid/voxhear-dataset-not-published",
        "version": str(info.get("version") or "0.0.0"),
        "datePublished": str(info.get("date_published") or _run_date(run_dir)),
        "citeAs": info.get("cite_as") or (
            "Datasheet: see datasheet.md next to this file; pipeline: voxhear."),
        "distribution": distribution,
        "recordSet": record_sets,
    }
    creators = (info.get("motivation") or {}).get("creators")
    if creators:
        doc["creator"] = {"@type": "sc:Organization", "name": str(creators).split("\n")[0][:200]}
    return doc


def _run_date(run_dir: Path) -> str:
    """The day the run's clip manifest was written (stable across regenerations of the datasheet)."""
    import datetime

    path = run_dir / "manifests" / "clips.parquet"
    stamp = path.stat().st_mtime if path.exists() else 0
    return datetime.datetime.fromtimestamp(stamp, datetime.timezone.utc).date().isoformat()


def _identifier(title: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in title).strip("-") or "voxhear"


def _qc_columns(schema: pa.Schema) -> list[str]:
    """Float columns a clip has beyond the source facts it inherits (face quality, talk/listen time)."""
    from voxhear.manifests import SourceManifestRow

    inherited = set(SourceManifestRow.schema().names)
    return [f.name for f in schema if pa.types.is_floating(f.type) and f.name not in inherited]


def write_croissant(doc: dict, path: str | Path) -> Path:
    from voxhear.pipeline.io import atomic_write_text

    path = Path(path)
    atomic_write_text(path, json.dumps(doc, indent=2) + "\n")
    return path


def validate_croissant(path: str | Path, records: int = 2) -> list[str]:
    """Validate with mlcroissant (when installed) and read a few records of each record set.

    Returns:
        Problems found (empty when valid).

    Raises:
        ImportError: mlcroissant is not installed.
    """
    import mlcroissant as mlc

    problems: list[str] = []
    try:
        dataset = mlc.Dataset(jsonld=str(path))
    except mlc.ValidationError as error:
        return [str(error)]
    for record_set in dataset.metadata.record_sets:
        try:
            for i, _ in enumerate(dataset.records(record_set=record_set.uuid)):
                if i + 1 >= records:
                    break
        except Exception as error:  # noqa: BLE001 (report any reader failure as a problem)
            problems.append(f"record set {record_set.name}: {type(error).__name__}: {error}")
    return problems
