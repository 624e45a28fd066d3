"""Kill a run at a chosen filesystem step, and compare a run directory with a reference.

`run_forked` runs a function in a forked copy of the test process (everything is imported
already, so a child costs milliseconds, not the seconds of a fresh interpreter) with `os.replace`
and `os.unlink` wrapped: every call on a path under one of the watched folders is a step (a shard
published or replaced, a ledger part or manifest renamed into place, a shard deleted), and the
child ends with `os._exit(KILLED)` just before step `kill_at`, as a SIGKILL would leave it: the
temp file of that step written, nothing after it done. Production code has no hook for this.
"""

from __future__ import annotations

import collections
import json
import os
import tempfile
import traceback
from collections.abc import Callable, Iterable
from pathlib import Path

import pyarrow.parquet as pq

from tests.manifests.test_resume import shard_contents
from tests.pipeline.test_runners import comparable
from voxhear.manifests.verify import verify_run

KILLED = 77


def run_forked(
    action: Callable[[], object],
    watch: Iterable[Path],
    kill_at: int | None = None,
    hooks: Callable[[Callable[[str], None]], object] | None = None,
) -> tuple[int, list[str]]:
    """Run `action` in a child process; returns its exit code (0 done, KILLED, else 1) and the steps
    it took ("replace shards/000000.tar", ...), the step it was killed at excluded.

    Args:
        hooks: called in the child with `take(label)`, to count steps that are not local renames or
            deletions (uploads to object storage): `take` is the kill point, before the step.
    """
    roots = [Path(p).absolute() for p in watch]
    with tempfile.NamedTemporaryFile("r", suffix=".json") as record:
        pid = os.fork()
        if pid == 0:  # the child: never returns into pytest
            code = 1
            try:
                steps: list[str] = []

                def take(label: str) -> None:
                    if len(steps) == kill_at:
                        Path(record.name).write_text(json.dumps(steps))
                        os._exit(KILLED)
                    steps.append(label)

                def step(op: str, path: object) -> None:
                    target = Path(os.fsdecode(path)).absolute()
                    root = next((r for r in roots if target.is_relative_to(r)), None)
                    if root is None or (op == "unlink" and not target.exists()):
                        return
                    take(f"{op} {root.name}/{target.relative_to(root)}")

                if hooks is not None:
                    hooks(take)

                real_replace, real_unlink = os.replace, os.unlink

                def replace(src, dst, *args, **kwargs):
                    step("replace", dst)
                    return real_replace(src, dst, *args, **kwargs)

                def unlink(path, *args, **kwargs):
                    if kwargs.get("dir_fd") is None:
                        step("unlink", path)
                    return real_unlink(path, *args, **kwargs)

                os.replace, os.unlink, os.remove = replace, unlink, unlink
                action()
                Path(record.name).write_text(json.dumps(steps))
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        _, status = os.waitpid(pid, 0)
        text = Path(record.name).read_text()
    return os.waitstatus_to_exitcode(status), json.loads(text) if text else []


def assert_same_samples(run_dir: Path, reference: Path, media: bool = True) -> None:
    """`run_dir` holds exactly the reference's samples (every member, once) and manifests, and verifies.

    Args:
        media: compare mp4 members byte for byte too (x264 output of two runs can differ).
    """
    got, keys = shard_contents(run_dir)
    want, _ = shard_contents(reference)
    duplicates = [k for k, n in collections.Counter(keys).items() if n > 1]
    assert duplicates == [], f"samples written twice: {duplicates}"
    assert set(got) == set(want), f"lost {sorted(set(want) - set(got))}, extra {sorted(set(got) - set(want))}"
    for name in got:
        if media or not name.endswith(".mp4"):
            assert got[name] == want[name], f"{name} differs from the reference"
    assert comparable(run_dir) == comparable(reference)
    debris = [p.name for p in (run_dir / "shards").iterdir() if not p.name.endswith(".tar")]
    debris += [p.name for p in (run_dir / "manifests").rglob(".*")]
    assert debris == [], debris
    report = verify_run(run_dir)
    assert report.ok, [p.format() for p in report.problems]


def sample_labels(run_dir: Path) -> dict[str, tuple[str, str]]:
    """key -> (identity_id, split) as the loader gives them: from the sample index (shard format 2
    keeps them out of the samples' json)."""
    rows = pq.read_table(run_dir / "manifests" / "samples.parquet").to_pylist()
    return {r["key"]: (r["identity_id"], r["split"]) for r in rows}


def manifest_labels(run_dir: Path) -> dict[str, tuple[str, str]]:
    """key -> (identity_id, split) of the kept clips in clips.parquet."""
    rows = pq.read_table(run_dir / "manifests" / "clips.parquet").to_pylist()
    return {r["key"]: (r["identity_id"], r["split"]) for r in rows if r["status"] == "ok"}
