"""`voxhear datasheet RUN`: a Markdown datasheet ("Datasheets for Datasets", Gebru et al. 2021)
and a Croissant JSON-LD description, generated from the run's manifests and config.

Every number comes from the run (manifests, config.yaml, shards, the model registry); the parts
only a person can write (why the data was made, consent, intended uses, maintenance) come from a
YAML file (see `datasheets/sample.yaml`). A question the YAML leaves open is printed as not
provided, never invented.

Licences of the inputs, first match wins: a mapping given with `--licences` (YAML, pattern ->
licence), the `licences:` mapping of the datasheet YAML, `RUN/licences.yaml`, then an
`ATTRIBUTION.md` beside the input or one folder up with a `## <file stem>` section (as
`voxhear synth` writes); otherwise "unknown".
"""

from __future__ import annotations

import fnmatch
import importlib.metadata
import importlib.resources
import os
import subprocess
import sys
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml

from voxhear.pipeline.settings import did_you_mean
from voxhear.qc.data import (RunData, breakdown, config_value, explain_reason, headline, kept, load_run,
                             per_identity, split_label, stage_timings, talk_totals)
from voxhear.qc.media import ShardIndex

UNKNOWN = "unknown"
NOT_PROVIDED = "_Not provided: add `{key}` to the datasheet YAML._"

# The human part: sections and their questions (YAML keys), in the datasheet's order.
HUMAN_KEYS: dict[str, tuple[str, ...]] = {
    "motivation": ("purpose", "creators", "funding", "comments"),
    "composition": ("instances", "sampling", "splits", "noise", "confidential", "people", "comments"),
    "collection": ("process", "timeframe", "consent", "ethics", "comments"),
    "preprocessing": ("raw_data", "comments"),
    "uses": ("used_for", "intended", "out_of_scope", "risks"),
    "distribution": ("how", "when", "licence", "comments"),
    "maintenance": ("maintainer", "contact", "updates", "errata", "retention"),
}
TOP_KEYS = ("title", "version", "summary", "url", "cite_as", "date_published", "limitations", "licences",
            *HUMAN_KEYS)
PACKAGES = ("ray", "pyarrow", "numpy", "scenedetect", "opencv-python-headless", "mediapipe", "dlib-bin",
            "onnxruntime", "torch", "pyannote.audio", "faster-whisper", "whisperx", "demucs", "webdataset")


class DatasheetError(ValueError):
    """The datasheet YAML or licence mapping is invalid; the message says where."""


# ------------------------------------------------------------------------------------------
# Inputs: the human YAML and licences


def load_info(path: str | Path | None) -> dict[str, Any]:
    """Read and check the datasheet YAML (unknown keys are errors, with a suggestion)."""
    if path is None:
        return {}
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise DatasheetError(f"{path}: the top level must be a mapping")
    for key, value in data.items():
        if key not in TOP_KEYS:
            raise DatasheetError(f"{path}: unknown key '{key}'{_suggest(key, TOP_KEYS)}; known: {', '.join(TOP_KEYS)}")
        if key in HUMAN_KEYS:
            if not isinstance(value, dict):
                raise DatasheetError(f"{path}: '{key}' must be a mapping of {', '.join(HUMAN_KEYS[key])}")
            for sub in value:
                if sub not in HUMAN_KEYS[key]:
                    raise DatasheetError(f"{path}: unknown key '{key}.{sub}'{_suggest(sub, HUMAN_KEYS[key])}; "
                                         f"known: {', '.join(HUMAN_KEYS[key])}")
    if "limitations" in data and not isinstance(data["limitations"], list):
        raise DatasheetError(f"{path}: 'limitations' must be a list")
    if "licences" in data and not isinstance(data["licences"], dict):
        raise DatasheetError(f"{path}: 'licences' must map a file name, source_id or glob to a licence")
    return data


def _suggest(key: str, known) -> str:
    return did_you_mean(key, list(known))


@dataclass
class Licence:
    licence: str
    where: str  # how it was found
    detail: str = ""


def load_mapping(path: str | Path | None) -> dict[str, str]:
    if path is None or not Path(path).exists():
        return {}
    data = yaml.safe_load(Path(path).read_text()) or {}
    if not isinstance(data, dict):
        raise DatasheetError(f"{path}: a licence mapping must map a file name, source_id or glob to a licence")
    return {str(k): str(v) for k, v in data.items()}


def _match(mapping: dict[str, str], source_uri: str, source_id: str) -> str | None:
    name = os.path.basename(source_uri)
    for pattern, licence in mapping.items():
        if pattern in (source_id, name, source_uri) or fnmatch.fnmatch(source_uri, pattern) \
                or fnmatch.fnmatch(name, pattern):
            return licence
    return None


def parse_attribution(path: Path) -> dict[str, tuple[list[str], str]]:
    """`## <stem>` sections of an ATTRIBUTION.md -> (licences of its parts, the section's text)."""
    sections: dict[str, tuple[list[str], str]] = {}
    current, lines = None, []
    for line in path.read_text().splitlines() + ["## "]:
        if line.startswith("## "):
            if current:
                licences = []
                for item in lines:
                    if item.startswith("- "):
                        licence = item.rsplit(", ", 1)[-1].strip()
                        if licence and licence not in licences:
                            licences.append(licence)
                sections[current] = (licences, "\n".join(lines).strip())
            current, lines = line[3:].strip(), []
        elif current:
            lines.append(line)
    return sections


def resolve_licences(data: RunData, mappings: list[tuple[str, dict[str, str]]]) -> dict[str, Licence]:
    """Licence per source_uri, from the first mapping that matches, else an ATTRIBUTION.md, else unknown."""
    attribution_cache: dict[Path, dict] = {}
    found = {}
    for uri, source_id in zip(data.sources["source_uri"], data.sources["source_id"]):
        licence = None
        for where, mapping in mappings:
            match = _match(mapping, uri, source_id)
            if match:
                licence = Licence(match, where)
                break
        if licence is None:
            path = Path(uri)
            for folder in (path.parent, path.parent.parent):
                attribution = folder / "ATTRIBUTION.md"
                if attribution.is_file():
                    if attribution not in attribution_cache:
                        attribution_cache[attribution] = parse_attribution(attribution)
                    section = attribution_cache[attribution].get(path.stem)
                    if section and section[0]:
                        licence = Licence("; ".join(section[0]), _display_path(attribution), section[1])
                        break
        found[uri] = licence or Licence(UNKNOWN, "no licence mapping or ATTRIBUTION.md entry")
    return found


def _display_path(path: str | Path) -> str:
    """A path relative to the working directory when inside it (no machine-specific prefix in the sheet)."""
    path = Path(path)
    try:
        return str(path.absolute().relative_to(Path.cwd()))
    except ValueError:
        return str(path)


# ------------------------------------------------------------------------------------------
# Models and software


def models_used(config: dict[str, Any], stages: list[str]) -> tuple[list[str], list[str], str]:
    """Model store names the run's stages load, as each stage declares them for the run's saved config.

    Returns the names (stage order), the stages the registry does not know, and a note when the
    saved config's stage sections no longer load (renamed or removed keys of an older version);
    then no names can be derived and the caller lists every registered model.
    """
    from voxhear.pipeline import registry
    from voxhear.pipeline.config import config_from_dict

    known = registry.stage_names()
    unknown = [stage for stage in stages if stage not in known]
    # Only the stage sections decide the models; old engine keys must not stop the datasheet.
    sections = {k: v for k, v in config.items() if k in registry.section_classes()}
    try:
        run_config = config_from_dict(sections)
    except ValueError as error:  # ConfigError: the config predates a rename or removal
        return [], unknown, f"The run's `config.yaml` does not load with this version of voxhear ({error})"
    run_config.stages = [stage for stage in known if stage in stages]
    return registry.models_in_use(run_config), unknown, ""


def model_registry() -> dict[str, Any]:
    """`voxhear.pipeline.models.load_registry()` plus the optional `models.tsv` a registered stage's package
    keeps beside its modules (found as package resources, so an installed wheel finds them too)."""
    from voxhear.pipeline import registry as stage_registry
    from voxhear.pipeline.models import load_registry

    models = load_registry()
    packages: list[str] = []
    for cls in stage_registry.stage_classes():
        package = sys.modules[cls.__module__].__package__
        if package and package not in packages:
            packages.append(package)
    for package in packages:
        resource = importlib.resources.files(package) / "models.tsv"
        if resource.is_file():
            with importlib.resources.as_file(resource) as path:
                for name, spec in load_registry(path).items():
                    models.setdefault(name, spec)
    return models


def software_versions() -> dict[str, str]:
    from voxhear.pipeline import __version__

    versions = {"voxhear": __version__, "python": sys.version.split()[0]}
    for package in PACKAGES:
        try:
            versions[package] = importlib.metadata.version(package)
        except importlib.metadata.PackageNotFoundError:
            continue
    try:
        first = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, timeout=10).stdout.split("\n")[0]
        versions["ffmpeg"] = first.split()[2] if first.startswith("ffmpeg version") else first
    except (OSError, subprocess.SubprocessError, IndexError):
        pass
    return versions


# ------------------------------------------------------------------------------------------
# Markdown


def _md_table(header: list[str], rows: list[list[Any]]) -> str:
    def cell(value: Any) -> str:
        if isinstance(value, float):
            text = "n/a" if not np.isfinite(value) else f"{value:.4g}"
        else:
            text = str(value)
        return text.replace("|", "\\|").replace("\n", " ")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _human(info: dict[str, Any], section: str, key: str) -> str:
    value = (info.get(section) or {}).get(key)
    if value is None or (isinstance(value, str) and not value.strip()):
        return NOT_PROVIDED.format(key=f"{section}.{key}")
    if isinstance(value, list):
        return "\n".join(f"- {v}" for v in value)
    return str(value).strip()


def _qa(question: str, answer: str) -> str:
    return f"**{question}**\n\n{answer}\n"


def _pct(part: float, whole: float) -> str:
    return f"{part / whole:.1%}" if whole else "n/a"


def _quantiles(values: pd.Series) -> str:
    values = values.astype(float)
    values = values[np.isfinite(values)]
    if not len(values):
        return "n/a"
    q = np.percentile(values, [0, 50, 100])
    return f"min {q[0]:.3g}, median {q[1]:.3g}, max {q[2]:.3g}"


def build_datasheet(run_dir: str | Path, info: dict[str, Any] | None = None,
                    licence_mappings: list[tuple[str, dict[str, str]]] | None = None,
                    info_path: str | None = None) -> tuple[str, dict[str, Any]]:
    """The datasheet Markdown of a run, and the facts it states (for the Croissant file and tests)."""
    info = info or {}
    data = load_run(run_dir)
    run_dir = data.run_dir
    mappings = list(licence_mappings or [])
    if info.get("licences"):
        mappings.append(("the datasheet YAML's licences", {str(k): str(v) for k, v in info["licences"].items()}))
    run_mapping = run_dir / "licences.yaml"
    if run_mapping.exists():
        mappings.append((_display_path(run_mapping), load_mapping(run_mapping)))
    licences = resolve_licences(data, mappings)
    facts = headline(data)
    clips = data.clips
    ok = kept(clips)
    config = data.config
    stages = [row["stage"] for row in stage_timings(data)[:-1]]
    title = info.get("title") or f"VoxHear run {run_dir.name}"
    generated = datetime.now(timezone.utc).strftime("%Y-%m-%d")
    out: list[str] = []
    w = out.append

    w(f"# Datasheet: {title}\n")
    w(f"Generated by `voxhear datasheet` on {generated} from the run `{run_dir.name}` "
      f"(manifests, `config.yaml`, shards and the model registry)"
      + (f" and `{info_path}` (the parts only people can answer)" if info_path else "")
      + ". It follows *Datasheets for Datasets* (Gebru et al., 2021). Regenerate it rather than edit it.\n")
    if info.get("summary"):
        w(str(info["summary"]).strip() + "\n")
    w("## At a glance\n")
    w(_md_table(["what", "value"], [
        ["inputs (videos)", f"{facts['inputs']} ({facts['input_hours']:.4f} h)"],
        ["inputs kept / filtered / failed", f"{facts['inputs_ok']} / {facts['inputs_filtered']} / {facts['inputs_failed']}"],
        ["clips kept", f"{facts['clips_kept']} ({facts['kept_hours']:.4f} h, {facts['kept_hours'] * 60:.2f} min)"],
        ["clips rejected", f"{facts['clips_rejected']} ({facts['rejected_hours']:.4f} h)"],
        ["identities (in kept clips)", facts["identities"]],
        ["shards", f"{facts['shards']} WebDataset tar files"],
        ["version", info.get("version") or NOT_PROVIDED.format(key="version")],
    ]) + "\n")

    # 1. Motivation
    w("## 1. Motivation\n")
    w(_qa("For what purpose was the dataset created?", _human(info, "motivation", "purpose")))
    w(_qa("Who created the dataset, and on behalf of whom?", _human(info, "motivation", "creators")))
    w(_qa("Who funded the creation of the dataset?", _human(info, "motivation", "funding")))
    if (info.get("motivation") or {}).get("comments"):
        w(_qa("Any other comments?", _human(info, "motivation", "comments")))

    # 2. Composition
    w("## 2. Composition\n")
    members = _member_summary(data)
    w(_qa("What do the instances represent?",
          "Each instance is one **clip**: a span of one input video during which one face is tracked on screen, "
          "with that person's face video and the audio of the span. "
          + _human(info, "composition", "instances")))
    w(_qa("How many instances are there?",
          f"{facts['clips_kept']} kept clips ({facts['kept_hours']:.4f} h) from {facts['inputs_ok']} of "
          f"{facts['inputs']} input videos, showing {facts['identities']} identities. "
          f"{facts['clips_rejected']} further candidate clips were rejected by the filters below; "
          f"they are listed in `manifests/clips.parquet` but not in the shards."))
    w(_qa("What data does each instance consist of?",
          "One WebDataset sample per clip, its members named `{key}.{ext}`:\n\n"
          + (_md_table(["member", "samples", "total MB", "mean KB"], members) if members else "_no shards_")
          + "\n\nClip durations (s): " + _quantiles(ok["clip_s"]) + "."))
    w(_qa("Is there a label or target associated with each instance?", _label_text(data)))
    w(_qa("Does the dataset contain all possible instances or is it a sample?", _human(info, "composition", "sampling")))
    w(_qa("Are there recommended data splits?", _human(info, "composition", "splits")))
    w(_qa("Are there any errors, sources of noise, or redundancies?",
          _human(info, "composition", "noise") + "\n\n" + _noise_facts(data)))
    w(_qa("Is the dataset self-contained, or does it rely on external resources?",
          "Self-contained: the shards hold the media; `manifests/` hold every input's and clip's status. "
          "The inputs it was made from, and their licences, are listed in section 3."))
    w(_qa("Does the dataset contain data that might be considered confidential or offensive?",
          _human(info, "composition", "confidential")))
    w(_qa("Does the dataset identify any subpopulations, or can individuals be identified?",
          f"Every clip shows a real face and carries a voice, so individuals can be identified. Identities are "
          f"clusters of face embeddings over this run (`manifests/identities.parquet`, threshold "
          f"`faces.identity_threshold = {config_value(config, 'faces.identity_threshold')}`), not names. "
          + _identity_text(data) + "\n\n" + _human(info, "composition", "people")))

    # 3. Collection
    w("## 3. Collection process\n")
    w(_qa("How was the data acquired?", _human(info, "collection", "process")))
    w(_qa("Which inputs, under which licences?", _sources_table(data, licences)))
    w(_licence_summary(licences))
    w(_qa("Over what timeframe was the data collected?", _human(info, "collection", "timeframe")))
    w(_qa("Were the individuals notified, and did they consent?", _human(info, "collection", "consent")))
    w(_qa("Were any ethical review processes conducted?", _human(info, "collection", "ethics")))

    # 4. Preprocessing
    w("## 4. Preprocessing, cleaning and labelling\n")
    w(_qa("What preprocessing and labelling was done?", _stages_text(data, stages)))
    w(_qa("Which filters were applied, with which thresholds, and how much did each remove?",
          _filters_text(data, stages)))
    w(_qa("Which models produced the labels?", _models_text(data, stages)))
    w(_qa("Which software?", "Installed where this datasheet was generated (the run itself records voxhear's "
          "version in every sample's json):\n\n"
          + _md_table(["package", "version"], [[k, v] for k, v in software_versions().items()])))
    w(_qa("Was the raw data saved in addition to the processed data?",
          _human(info, "preprocessing", "raw_data") + "\n\nThe run keeps normalized media and every stage's "
          "intermediate files in `work/` until it is deleted; the shards hold only the kept clips."))
    if (info.get("preprocessing") or {}).get("comments"):
        w(_human(info, "preprocessing", "comments") + "\n")

    # 5. Uses
    w("## 5. Uses\n")
    w(_qa("Has the dataset been used for any tasks already?", _human(info, "uses", "used_for")))
    w(_qa("What tasks is it intended for?", _human(info, "uses", "intended")))
    w(_qa("What should it not be used for?", _human(info, "uses", "out_of_scope")))
    w(_qa("Is there anything about its composition or collection that might impact future uses?",
          _human(info, "uses", "risks")))

    # 6. Distribution
    w("## 6. Distribution\n")
    w(_qa("How will the dataset be distributed?", _human(info, "distribution", "how") + "\n\n" + _shards_text(data)))
    w(_qa("When will it be distributed?", _human(info, "distribution", "when")))
    w(_qa("Under which licence?", _human(info, "distribution", "licence")
          + "\n\nThe inputs' own licences (section 3) bind every clip made from them."))

    # 7. Maintenance
    w("## 7. Maintenance\n")
    for key, question in (("maintainer", "Who maintains the dataset?"), ("contact", "How can they be contacted?"),
                          ("updates", "Will the dataset be updated?"), ("errata", "Is there an erratum?"),
                          ("retention", "Are there limits on the retention of the data about people?")):
        w(_qa(question, _human(info, "maintenance", key)))

    # Limitations
    w("## Known limitations\n")
    for item in _auto_limitations(data, licences):
        w(f"- {item}")
    for item in info.get("limitations") or []:
        w(f"- {str(item).strip()}")
    if not info.get("limitations"):
        w("- " + NOT_PROVIDED.format(key="limitations"))
    w("")
    facts = {**facts, "licences": {uri: lic.licence for uri, lic in licences.items()}, "stages": stages}
    return "\n".join(out).rstrip() + "\n", facts


def _member_summary(data: RunData) -> list[list[Any]]:
    index = ShardIndex(data.shards_dir)
    sizes: dict[str, list[int]] = {}
    for shard in sorted(data.shards_dir.glob("[0-9]" * 6 + ".tar")) if data.shards_dir.exists() else []:
        for member in index.members(shard.name).values():
            sizes.setdefault(member.ext, []).append(member.size)
    return [[f"`{ext}`", len(v), sum(v) / 1e6, sum(v) / len(v) / 1e3] for ext, v in sorted(sizes.items())]


def _label_text(data: RunData) -> str:
    parts = []
    talk = talk_totals(data)
    if talk:
        total = sum(talk.values())
        parts.append("Talk/listen time of the kept clips: " + ", ".join(
            f"{cls} {seconds:.1f} s ({_pct(seconds, total)})" for cls, seconds in talk.items()) + ".")
    else:
        parts.append("Frame-level talk/listen labels are not in this run's manifests yet (no talk_s/listen_s/"
                     "both_s/silence_s columns); the stage that makes them is not part of this run.")
    sources = data.sources[data.sources["status"] == "ok"]
    if "n_speakers" in sources and len(sources):
        counts = sources["n_speakers"].value_counts().sort_index()
        parts.append("Speakers found by diarization per input: " + ", ".join(
            f"{int(k)} speakers: {int(v)} inputs" for k, v in counts.items()) + ".")
    if "n_words" in sources and len(sources):
        parts.append(f"Words transcribed: {int(sources['n_words'].sum())} over {len(sources)} inputs "
                     f"(word timing: {', '.join(sorted(set(sources.get('asr_word_timing', [])) - {''})) or 'n/a'}).")
    parts.append("Per clip: its identity (face cluster), face quality facts (size, pose, blur, landmark "
                 "coverage) and per-frame arrays (`frames.npz`) where the face stage ran.")
    return " ".join(parts)


def _noise_facts(data: RunData) -> str:
    clips = data.clips
    ok = kept(clips)
    lines = []
    if len(ok) and "shot_index" in ok:
        shared = ok.groupby(["source_id", "shot_index"]).size()
        multi = int((shared > 1).sum())
        if multi:
            lines.append(f"{multi} shots yield more than one kept clip (several faces on screen at once), so "
                         "their audio spans overlap.")
    dup = data.sources[data.sources["reason"] == "duplicate_content"]
    if len(dup):
        lines.append(f"{len(dup)} inputs were dropped as byte-identical duplicates of other inputs.")
    return " ".join(lines) or "No duplicates or overlapping clips were detected by the pipeline."


def _identity_text(data: RunData) -> str:
    frame = per_identity(data)
    if not len(frame):
        return "No identities were assigned in this run."
    return (f"{len(frame)} identities; kept clips per identity: {_quantiles(frame['clips'])}; "
            f"seconds per identity: {_quantiles(frame['kept_s'])}; inputs per identity: {_quantiles(frame['sources'])}.")


def _sources_table(data: RunData, licences: dict[str, Licence]) -> str:
    ok = kept(data.clips)
    n_kept = ok.groupby("source_id").size()
    rows = []
    for row in data.sources.sort_values("source_uri").to_dict("records"):
        lic = licences[row["source_uri"]]
        rows.append([_display_path(row["source_uri"]), row["source_id"], row["label"], row.get("duration_s", 0.0),
                     int(n_kept.get(row["source_id"], 0)), lic.licence, lic.where])
    return _md_table(["input", "source_id", "status", "duration s", "clips kept", "licence", "licence from"], rows)


def _licence_summary(licences: dict[str, Licence]) -> str:
    counts: dict[str, int] = {}
    for lic in licences.values():
        for part in lic.licence.split("; "):
            counts[part] = counts.get(part, 0) + 1
    lines = ", ".join(f"{name}: {count} inputs" for name, count in sorted(counts.items(), key=lambda kv: -kv[1]))
    unknown = sum(1 for lic in licences.values() if lic.licence == UNKNOWN)
    note = (f" **{unknown} inputs have no known licence**: add a mapping (`voxhear datasheet --licences FILE`, "
            "`licences:` in the datasheet YAML or `RUN/licences.yaml`) before distributing their clips."
            if unknown else "")
    return f"Licences (an input made of several recordings counts once per licence): {lines}.{note}\n"


def _stages_text(data: RunData, stages: list[str]) -> str:
    timings = {r["stage"]: r for r in stage_timings(data)}
    rows = [[stage, timings[stage]["wall_s"], timings[stage]["rtf_wall"]] for stage in stages]
    text = ("Stages that ran, in order, with wall seconds over all inputs and the real-time factor (wall s per "
            "input s); their settings are the run's `config.yaml`:\n\n"
            + _md_table(["stage", "wall s", "RTF"], rows))
    from voxhear.pipeline import registry

    settings = []
    for section in registry.section_classes():
        values = data.config.get(section)
        if isinstance(values, dict):
            settings.append(f"- `{section}`: " + ", ".join(f"{k}={v}" for k, v in values.items()))
    return text + ("\n\nSettings:\n\n" + "\n".join(settings) if settings else "")


def _keys_text(keys: list[tuple[str, Any]]) -> str:
    return ", ".join(f"`{key}` = {value}" for key, value in keys) or "-"


def _filters_text(data: RunData, stages: list[str]) -> str:
    """Every reject found, explained with the config keys its stage declares for it, then every reason a
    stage that ran declares and that removed nothing."""
    from voxhear.pipeline import registry

    declared = registry.reject_reasons()
    rows = []
    seen: set[tuple[str, str]] = set()
    for level, frame, seconds in (("input", data.sources, "duration_s"), ("clip", data.clips, "clip_s")):
        for entry in breakdown(frame, seconds):
            if entry["label"] == "ok":
                continue
            _, stage, reason = split_label(entry["label"])
            seen.add((stage, reason))
            doc = declared[(stage, reason)].doc if (stage, reason) in declared else ""
            rows.append([level, entry["label"], _keys_text(explain_reason(data.config, stage, reason)),
                         entry["count"], entry["hours"], doc])
    for (stage, reason), declaration in declared.items():
        if (stage, reason) not in seen and (stage in stages or not stages):
            rows.append(["-", f"{stage}/{reason}", _keys_text(explain_reason(data.config, stage, reason)), 0, 0.0,
                         declaration.doc])
    return ("Every reject reason found, then every reason the stages that ran declare that removed nothing; "
            "each with the config keys its stage declares for it and their values in this run:\n\n"
            + _md_table(["level", "status: stage/reason", "config", "count", "hours", "meaning"], rows)
            + "\n\nInputs are also failed, not filtered, when they cannot be read (empty, truncated, undecodable); "
            "those rows carry the whole error message in `manifests/sources.parquet`.")


def _models_text(data: RunData, stages: list[str]) -> str:
    registry = model_registry()
    used, unknown, problem = models_used(data.config, stages)
    listed = [m for m in used if m in registry]
    missing = [m for m in used if m not in registry]
    note = ("Models the run's stages load (as each stage declares them for the run's `config.yaml`), as listed in "
            "the model registry:")
    if unknown or problem:
        why = problem or f"Stages {', '.join(unknown)} are not in this version's stage registry"
        note = f"{why}, so every registered model is listed:"
        listed = sorted(registry)
    rows = []
    for name in listed:
        spec = registry[name]
        for f in spec.files:
            rows.append([name, f"`{f.path}`", f.size, f"`{f.sha256}`", spec.licence])
    text = note + "\n\n" + _md_table(["model", "file", "bytes", "sha256", "licence"], rows)
    if missing:
        text += f"\n\nNot in the registry: {', '.join(missing)}."
    return text + "\n\nEvery file is checked against its sha256 before it is loaded (`voxhear models verify`)."


def _shards_text(data: RunData) -> str:
    shards = sorted(data.shards_dir.glob("[0-9]" * 6 + ".tar")) if data.shards_dir.exists() else []
    total = sum(p.stat().st_size for p in shards)
    return (f"As {len(shards)} WebDataset shards (`shards/NNNNNN.tar`, {total / 1e6:.1f} MB) with the manifests; "
            "the Croissant description written beside this datasheet lists every shard with its sha256.")


def _auto_limitations(data: RunData, licences: dict[str, Licence]) -> list[str]:
    items = []
    facts = headline(data)
    if facts["inputs"] and facts["inputs_failed"]:
        items.append(f"{facts['inputs_failed']} of {facts['inputs']} inputs failed "
                     f"({_pct(facts['inputs_failed'], facts['inputs'])}); see their error messages in the manifest.")
    unknown = sum(1 for lic in licences.values() if lic.licence == UNKNOWN)
    if unknown:
        items.append(f"{unknown} inputs have an unknown licence.")
    if not talk_totals(data):
        items.append("No talk/listen labels yet: this run predates the talk/listen stage.")
    if facts["identities"]:
        items.append("Identities are face clusters within this run only: the same person in another build gets "
                     "another id, and two people who look alike may share one.")
    if facts["kept_hours"] < 1:
        items.append(f"Small: {facts['kept_hours'] * 60:.1f} minutes of kept clips; statistics here describe this "
                     "build, not the sources' populations.")
    return items


# ------------------------------------------------------------------------------------------
# Entry points


def write_datasheet(run_dir: str | Path, out: str | Path | None = None, info_path: str | Path | None = None,
                    licences_path: str | Path | None = None, croissant: str | Path | None | bool = None,
                    validate: bool = True) -> dict[str, Any]:
    """Write the Markdown (default RUN/datasheet.md) and the Croissant JSON (default beside it).

    Returns:
        {"datasheet": path, "croissant": path or None, "problems": validation problems or None
        (mlcroissant absent)}.
    """
    from voxhear.pipeline.io import atomic_write_text
    from voxhear.qc.croissant import build_croissant, validate_croissant, write_croissant

    info = load_info(info_path)
    mappings = [(f"--licences {licences_path}", load_mapping(licences_path))] if licences_path else []
    text, facts = build_datasheet(run_dir, info, mappings,
                                  info_path=_display_path(info_path) if info_path else None)
    out = Path(out) if out else Path(run_dir) / "datasheet.md"
    atomic_write_text(out, text)
    result: dict[str, Any] = {"datasheet": out, "croissant": None, "problems": None, "facts": facts}
    if croissant is False:
        return result
    croissant_path = Path(croissant) if croissant else out.with_name(
        "croissant.json" if out.name == "datasheet.md" else out.stem + ".croissant.json")
    doc = build_croissant(run_dir, croissant_path, info, facts)
    write_croissant(doc, croissant_path)
    result["croissant"] = croissant_path
    if validate:
        try:
            result["problems"] = validate_croissant(croissant_path)
        except ImportError:
            result["problems"] = None
    return result
