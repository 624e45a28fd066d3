"""Check a run over the real recordings of `shared/media/faces-wild` (run as they are) against
issue 14's targets: no failed row; at least 17 of the 19 keep clips; no single-person recording
is diarized into more than one speaker; both two-person recordings give clips of both people with
talk and listen frames.

There is no frame-level truth for these recordings; what is known is how many people each shows
(the "People visible" column of `faces-wild/SOURCES.md`), which bounds the speaker count.

    voxhear run ../shared/media/faces-wild --run-dir /tmp/wild/run --runner local
    python -m voxhear.benchmarks.wild_check /tmp/wild/run [--media ../shared/media] [--json OUT]
"""

from __future__ import annotations

import argparse
import collections
import json
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

from voxhear.benchmarks.synth.options import default_media_dir


@dataclass
class RecordingResult:
    name: str
    people: int
    status: str
    reason: str
    n_speakers: int
    clips_ok: int
    clips_filtered: int
    reject_reasons: dict[str, int] = field(default_factory=dict)
    # Per kept clip's self speaker: seconds of talk and listen.
    kept_people: dict[str, dict[str, float]] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)


def people_visible(sources_md: Path) -> dict[str, int]:
    """File name -> people on screen, from the SOURCES.md table."""
    counts: dict[str, int] = {}
    column = None
    for line in sources_md.read_text().splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if "People visible" in cells:
            column = cells.index("People visible")
            file_column = next(i for i, c in enumerate(cells) if "file" in c.lower())
            continue
        if column is None or len(cells) <= column or set(cells[0]) <= {"-", ":"}:
            continue
        found = re.search(r"\d+", cells[column])
        name = cells[file_column].strip("`").split("`")[0].strip()
        if found and name.endswith(".mp4"):
            counts[name] = int(found.group())
    return counts


def check_run(run_dir: Path, media_dir: Path) -> tuple[list[RecordingResult], dict[str, object]]:
    people = people_visible(media_dir / "faces-wild" / "SOURCES.md")
    sources = pq.read_table(run_dir / "manifests" / "sources.parquet").to_pylist()
    clips = pq.read_table(run_dir / "manifests" / "clips.parquet").to_pylist()
    by_source = collections.defaultdict(list)
    for clip in clips:
        by_source[clip["source_uri"]].append(clip)
    results = []
    for row in sorted(sources, key=lambda r: Path(r["source_uri"]).name):
        name = Path(row["source_uri"]).name
        own = by_source[row["source_uri"]]
        kept = [c for c in own if c["status"] == "ok"]
        result = RecordingResult(
            name=name,
            people=people.get(name, 0),
            status=row["status"],
            reason=row["reason"] or "",
            n_speakers=int(row["n_speakers"] or 0),
            clips_ok=len(kept),
            clips_filtered=sum(c["status"] == "filtered" for c in own),
            reject_reasons=dict(collections.Counter(f"{c['stage']}/{c['reason']}" for c in own if c["status"] != "ok")),
        )
        for clip in kept:
            person = result.kept_people.setdefault(clip["self_speaker"] or "(silent)", {"talk_s": 0.0, "listen_s": 0.0})
            person["talk_s"] += clip["talk_s"] or 0.0
            person["listen_s"] += clip["listen_s"] or 0.0
        if result.status == "failed":
            result.problems.append(f"failed at {row['stage']}: {row['reason']}")
        if not kept:
            result.problems.append("no clip kept")
        if result.people == 1 and result.n_speakers > 1:
            result.problems.append(f"one person on screen, {result.n_speakers} speakers diarized")
        if result.people >= 2:
            both = [
                p for p, t in result.kept_people.items() if p != "(silent)" and t["talk_s"] > 0 and t["listen_s"] > 0
            ]
            if len(both) < 2:
                result.problems.append(f"clips of {len(both)} of 2 people with both talk and listen frames")
        results.append(result)
    summary = {
        "recordings": len(results),
        "failed": sum(r.status == "failed" for r in results),
        "keep_clips": sum(r.clips_ok > 0 for r in results),
        "single_person_over_split": sum(r.people == 1 and r.n_speakers > 1 for r in results),
        "two_person_ok": sum(r.people >= 2 and not any("people with both" in p for p in r.problems) for r in results),
        "two_person": sum(r.people >= 2 for r in results),
    }
    summary["targets_met"] = bool(
        summary["failed"] == 0
        and summary["keep_clips"] >= 17
        and summary["single_person_over_split"] == 0
        and summary["two_person_ok"] == summary["two_person"]
    )
    return results, summary


def format_report(results: list[RecordingResult], summary: dict[str, object]) -> str:
    lines = [f"{'recording':36} {'ppl':>3} {'spk':>3} {'status':8} {'ok':>3} {'rej':>3}  problems / rejects"]
    for r in results:
        notes = "; ".join(r.problems + [f"{k} {v}" for k, v in r.reject_reasons.items()])
        lines.append(
            f"{r.name:36} {r.people:3d} {r.n_speakers:3d} {r.status:8} {r.clips_ok:3d} {r.clips_filtered:3d}  {notes}"
        )
    lines.append(
        f"failed {summary['failed']} (target 0); keep clips {summary['keep_clips']} of {summary['recordings']} "
        f"(target >= 17); single-person recordings over-split {summary['single_person_over_split']} (target 0); "
        f"two-person recordings with both people talking and listening {summary['two_person_ok']} of "
        f"{summary['two_person']}; targets met: {summary['targets_met']}"
    )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m voxhear.benchmarks.wild_check",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("run", type=Path)
    parser.add_argument("--media", type=Path, default=None, help="shared media folder (default: beside the repo)")
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    results, summary = check_run(args.run, args.media or default_media_dir())
    print(format_report(results, summary))
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "recordings": [asdict(r) for r in results]}, indent=1))


if __name__ == "__main__":
    main()
