"""Scale check of the identity pass (issue 18): synthetic face tracks in, wall time, peak memory and purity out.

    python -m voxhear.benchmarks.identity_scale --tracks 100000 [--sources 5000] [--identities 2500]
        [--big-source 3000] [--clips-per-track 1] [--neighbours 32] [--seed 0] [--keep DIR]

Makes `--tracks` 128-d track embeddings shaped like dlib's (about 1.45 in norm, one person's
tracks about 0.1-0.3 apart, two people's about 0.5-0.9, as in runs/demo), spread over
`--sources` videos of a cast of 1-6 people each drawn by popularity (a few people appear in
hundreds of videos), plus one long video of `--big-source` tracks (clustered by the sparse path
within the source). Shots hold 1-3 people on screen together: co-visible, hence cannot-links. A
few tracks (3%) are noisier, as blurred or profile faces are.

It writes them as a face-stage manifests/clips.parquet, then runs `assign_identities` on it in a
fresh interpreter (so that its peak RSS, read with getrusage, is that of the pass alone, imports
included) at the faces config's `identity_threshold`, and scores identities.parquet against the
synthetic truth: purity (tracks in their cluster's majority person) and inverse purity (tracks in
their person's majority cluster). Not a timed test: run by hand (docs/design or the issue note the
figures).
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

DIM = 128


def make_tracks(
    n_tracks: int, n_sources: int, n_identities: int, big_source: int, seed: int
) -> tuple[pa.Table, np.ndarray]:
    """A face-stage clips table of `n_tracks` synthetic tracks, and each track's true identity."""
    rng = np.random.default_rng(seed)
    # Identity centres: a shared offset (dlib's descriptors are not centred) plus a decaying
    # spectrum, scaled so two people are about 0.76 apart on average.
    offset = rng.normal(0.0, 1.4 / np.sqrt(DIM), DIM)
    spectrum = np.exp(-np.arange(DIM) / 48.0)
    spectrum *= 0.76 / np.sqrt(2.0 * (spectrum**2).sum())
    centres = offset + rng.normal(0.0, 1.0, (n_identities, DIM)) * spectrum
    # Per-person spread: one person's tracks about 0.18 apart on average (0.7-1.5x by person).
    spread = 0.18 / np.sqrt(2.0 * DIM) * rng.uniform(0.7, 1.5, n_identities)
    popularity = 1.0 / (np.arange(n_identities) + 10.0) ** 0.9
    popularity /= popularity.sum()

    per_source = rng.multinomial(n_tracks - big_source, np.full(n_sources, 1.0 / n_sources))
    if big_source:
        per_source = np.append(per_source, big_source)
    source_ids: list[str] = []
    shots: list[int] = []
    starts: list[int] = []
    ends: list[int] = []
    keys: list[str] = []
    truth: list[int] = []
    for source, count in enumerate(per_source.tolist()):
        if count == 0:
            continue
        cast_size = min(n_identities, int(np.clip(1 + rng.poisson(1.5), 1, 6)))
        if source == len(per_source) - 1 and big_source:
            cast_size = min(n_identities, 4)
        cast = rng.choice(n_identities, cast_size, replace=False, p=popularity)
        name = f"src{source:05d}"
        made, shot = 0, 0
        while made < count:
            on_screen = min(count - made, int(rng.integers(1, min(3, cast_size) + 1)))
            for person in rng.choice(cast, on_screen, replace=False).tolist():
                start = int(rng.integers(0, 50))
                source_ids.append(name)
                shots.append(shot)
                starts.append(start)
                ends.append(start + int(rng.integers(50, 300)))
                keys.append(f"{name}-face{made}-{start:08d}")
                truth.append(person)
                made += 1
            shot += 1
    person_of = np.asarray(truth)
    noise = spread[person_of] * np.where(rng.random(len(person_of)) < 0.03, 2.5, 1.0)
    embeddings = centres[person_of] + rng.normal(0.0, 1.0, (len(person_of), DIM)) * noise[:, None]
    flat = pa.array(embeddings.reshape(-1))
    offsets = pa.array(np.arange(0, len(person_of) * DIM + 1, DIM, dtype=np.int32))
    table = pa.table(
        {
            "key": keys,
            "source_id": source_ids,
            "status": ["ok"] * len(keys),
            "shot_index": pa.array(shots, pa.int64()),
            "track_start_frame": pa.array(starts, pa.int64()),
            "track_end_frame": pa.array(ends, pa.int64()),
            "embedding": pa.ListArray.from_arrays(offsets, flat),
        }
    )
    return table, person_of


def as_clips(table: pa.Table, clips_per_track: int) -> pa.Table:
    """The talk stage's shape: `clips_per_track` rows per track (own keys, one track_index)."""
    if clips_per_track <= 1:
        return table
    rows = np.repeat(np.arange(table.num_rows), clips_per_track)
    out = table.take(pa.array(rows))
    clip = np.tile(np.arange(clips_per_track), table.num_rows)
    keys = [f"{key}-c{c}" for key, c in zip(out.column("key").to_pylist(), clip.tolist())]
    out = out.set_column(out.schema.get_field_index("key"), "key", pa.array(keys))
    return out.append_column("track_index", pa.array(rows.astype(np.int64)))


def purity(truth: list[int], found: list[str]) -> tuple[float, float]:
    """Purity and inverse purity of clustering `found` against `truth` (per track)."""
    pairs = Counter(zip(found, truth))
    best_truth: dict[str, int] = {}
    best_found: dict[int, int] = {}
    for (cluster, person), count in pairs.items():
        best_truth[cluster] = max(best_truth.get(cluster, 0), count)
        best_found[person] = max(best_found.get(person, 0), count)
    n = len(truth)
    return sum(best_truth.values()) / n, sum(best_found.values()) / n


def run_pass(run_dir: Path, threshold: float, neighbours: int | None) -> dict:
    """In this process: assign_identities on run_dir; wall time and peak RSS (MiB)."""
    from voxhear.passes import identities

    if neighbours is not None:
        identities.NEIGHBOURS = neighbours  # read by assign_identities at each call
    started = time.perf_counter()
    identities.assign_identities(run_dir, threshold)
    wall = time.perf_counter() - started
    return {"wall_s": round(wall, 2), "peak_rss_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


def main(argv: list[str] | None = None) -> int:
    from voxhear.stages.faces.config import FaceConfig

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tracks", type=int, default=100_000)
    parser.add_argument("--sources", type=int, help="videos (default tracks / 20)")
    parser.add_argument("--identities", type=int, help="people (default tracks / 40)")
    parser.add_argument("--big-source", type=int, help="tracks of one long video (default min(3000, tracks / 20))")
    parser.add_argument("--clips-per-track", type=int, default=1, help="rows per track, as the talk stage writes")
    parser.add_argument("--neighbours", type=int, help="sparse candidate neighbours (default the pass's)")
    parser.add_argument("--threshold", type=float, default=FaceConfig().identity_threshold)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--keep", type=Path, help="write the run folder here (default: a temporary one)")
    parser.add_argument("--pass-only", type=Path, help=argparse.SUPPRESS)  # the child: run the pass on this folder
    args = parser.parse_args(argv)
    if args.pass_only:
        print(json.dumps(run_pass(args.pass_only, args.threshold, args.neighbours)))
        return 0

    sources = args.sources or max(1, args.tracks // 20)
    n_identities = args.identities or max(30, args.tracks // 40)
    big = args.big_source if args.big_source is not None else min(3000, args.tracks // 20)
    started = time.perf_counter()
    table, truth = make_tracks(args.tracks, sources, n_identities, big, args.seed)
    with tempfile.TemporaryDirectory() as scratch:
        run_dir = args.keep or Path(scratch)
        (run_dir / "manifests").mkdir(parents=True, exist_ok=True)
        pq.write_table(as_clips(table, args.clips_per_track), run_dir / "manifests" / "clips.parquet")
        made_s = time.perf_counter() - started
        command = [sys.executable, "-m", "voxhear.benchmarks.identity_scale", "--pass-only", str(run_dir)]
        command += ["--threshold", str(args.threshold)]
        if args.neighbours is not None:
            command += ["--neighbours", str(args.neighbours)]
        child = subprocess.run(command, check=True, capture_output=True, text=True)
        measured = json.loads(child.stdout.strip().splitlines()[-1])
        found = pq.read_table(run_dir / "manifests" / "identities.parquet", columns=["key", "identity_id"])
    person = dict(zip(table.column("key").to_pylist(), truth.tolist()))
    keys = found.column("key").to_pylist()
    # Clip keys (--clips-per-track) end in -c<k>: score each track once, by its first clip.
    track_keys = [k.rsplit("-c", 1)[0] if args.clips_per_track > 1 else k for k in keys]
    ids = found.column("identity_id").to_pylist()
    first: dict[str, str] = {}
    for track, identity in zip(track_keys, ids):
        first.setdefault(track, identity)
    order = list(first)
    pure, inverse = purity([person[k] for k in order], [first[k] for k in order])
    report = {
        "tracks": len(truth),
        "sources": sources + (1 if big else 0),
        "big_source_tracks": big,
        "true_identities": len(set(truth.tolist())),
        "found_identities": len(set(ids)),
        "threshold": args.threshold,
        "generate_s": round(made_s, 2),
        **measured,
        "purity": round(pure, 4),
        "inverse_purity": round(inverse, 4),
    }
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
