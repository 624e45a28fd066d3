"""`voxhear bench WORKLOAD`: how fast the pipeline is, and how much faster than the same models run
as separate per-file tools.

A workload is a named set of inputs (composed by `voxhear synth` with a fixed seed, or the bundled
sample), made once under `--work`. The bench then runs, one after another on an otherwise idle
machine:

1. the pipeline in-process (`--runner local`): wall, CPU seconds (the process and every child it
   waited for, ffmpeg included: `os.wait4`), peak resident memory, and per stage the CPU seconds
   and peak memory the manifests record (`cpu_s`, `peak_mb`);
2. the pipeline on Ray (the default runner; a local Ray of this machine's cores): wall and
   real-time factor (Ray's workers are not children of the command, so their CPU is not counted);
3. the same stages as separate per-file tools: for every input, every stage in its own fresh
   process (`python -m voxhear.benchmarks.speed tool STAGE ...`) that imports its libraries, loads
   its models, decodes what it reads and writes its rows for the next tool, as a chain of
   single-purpose command-line tools would. Shard writing is left out of the chain (it favours
   the tools).

It writes the figures to `docs/benchmarks/speed.md` (one section per workload, replaced on a
rerun) and prints the ratio of the tools' wall time to the pipeline's.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import re
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pyarrow.parquet as pq

WORKLOADS: dict[str, dict] = {
    # The input: one single-shot two-person interview of 60 s.
    "interview-60s": {
        "synth": ["--videos", "1", "--duration", "60", "--shots", "1", "--two-shot-prob", "1.0", "--seed", "5"]
    },
    # A corpus of short clips: six composed interviews of 20 s (GRID people, seed 5).
    "short-videos": {"synth": ["--videos", "6", "--duration", "20", "--seed", "5"]},
    # The bundled sample.
    "sample": {"folder": "sample"},
}
DEFAULT_OUT = Path("docs/benchmarks/speed.md")


@dataclass
class Measure:
    wall_s: float = 0.0
    cpu_s: float = 0.0
    peak_mb: float = 0.0
    stage_cpu_s: dict[str, float] = field(default_factory=dict)
    stage_peak_mb: dict[str, float] = field(default_factory=dict)


def _run_measured(argv: list[str], env: dict[str, str] | None = None, log: Path | None = None) -> Measure:
    """Run `argv` to its end; wall, CPU (user + system of it and the descendants it waited for), peak RSS."""
    started = time.perf_counter()
    with open(log or os.devnull, "ab") as out:
        process = subprocess.Popen(argv, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL)
        _, status, usage = os.wait4(process.pid, 0)
    process.returncode = os.waitstatus_to_exitcode(status)
    wall = time.perf_counter() - started
    if process.returncode != 0:
        tail = log.read_text(errors="replace")[-2000:] if log else ""
        raise RuntimeError(f"{' '.join(argv[:6])} ... exited with {process.returncode}\n{tail}")
    return Measure(wall_s=wall, cpu_s=usage.ru_utime + usage.ru_stime, peak_mb=usage.ru_maxrss / 1024)


def prepare(workload: str, work: Path) -> tuple[list[Path], float]:
    """The workload's input videos (composed once) and their total duration in seconds."""
    spec = WORKLOADS[workload]
    if "folder" in spec:
        from importlib.resources import files

        folder = Path(str(files("voxhear.pipeline"))).parent / spec["folder"]
        if not folder.is_dir():
            folder = Path(spec["folder"]).absolute()
    else:
        folder = work / "inputs"
        if not (folder / "manifest.json").is_file():
            shutil.rmtree(folder, ignore_errors=True)
            subprocess.run(
                [sys.executable, "-m", "voxhear.pipeline.cli", "synth", *spec["synth"], str(folder)],
                check=True,
                stdout=subprocess.DEVNULL,
            )
        folder = folder / "videos"
    videos = sorted(p for p in folder.glob("*.mp4"))
    if not videos:
        raise FileNotFoundError(f"workload {workload}: no .mp4 in {folder}")
    return videos, sum(_duration(v) for v in videos)


def _duration(video: Path) -> float:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(video)],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    return float(out.strip())


def pipeline(videos: list[Path], run_dir: Path, runner: str, log: Path) -> Measure:
    shutil.rmtree(run_dir, ignore_errors=True)
    argv = [
        sys.executable,
        "-m",
        "voxhear.pipeline.cli",
        "run",
        *map(str, videos),
        "--run-dir",
        str(run_dir),
        "--runner",
        runner,
        "--quiet",
    ]
    measure = _run_measured(argv, env=_offline_env(), log=log)
    sources = pq.read_table(run_dir / "manifests" / "sources.parquet").to_pylist()
    for row in sources:
        # Arrow map columns come back as (key, value) pairs.
        for stage, seconds in dict(row.get("cpu_s") or []).items():
            measure.stage_cpu_s[stage] = measure.stage_cpu_s.get(stage, 0.0) + seconds
        for stage, mb in dict(row.get("peak_mb") or []).items():
            measure.stage_peak_mb[stage] = max(measure.stage_peak_mb.get(stage, 0.0), mb)
    return measure


def per_file_tools(videos: list[Path], work: Path, log: Path) -> Measure:
    """Every stage of the default pipeline as its own process, per input file, in order."""
    from voxhear.pipeline import registry
    from voxhear.pipeline.records import SourceRecord

    total = Measure()
    stages = registry.stage_names()
    for index, video in enumerate(videos):
        run_dir = work / "tools" / f"{index:03d}"
        shutil.rmtree(run_dir, ignore_errors=True)
        run_dir.mkdir(parents=True)
        rows = run_dir / "rows-input.parquet"
        pq.write_table(SourceRecord.to_table([SourceRecord(source_uri=str(video.absolute()))]), rows)
        for stage in stages:
            out = run_dir / f"rows-{stage}.parquet"
            argv = [
                sys.executable,
                "-m",
                "voxhear.benchmarks.speed",
                "tool",
                stage,
                str(rows),
                str(out),
                "--run-dir",
                str(run_dir),
            ]
            step = _run_measured(argv, env=_offline_env(), log=log)
            total.wall_s += step.wall_s
            total.cpu_s += step.cpu_s
            total.peak_mb = max(total.peak_mb, step.peak_mb)
            total.stage_cpu_s[stage] = total.stage_cpu_s.get(stage, 0.0) + step.cpu_s
            rows = out
    return total


def run_tool(stage_name: str, rows_in: Path, rows_out: Path, run_dir: Path) -> int:
    """One stage as a stand-alone tool: load it (and its models), process the rows of one file."""
    from voxhear.pipeline import registry
    from voxhear.pipeline.config import load_config
    from voxhear.pipeline.models import ModelStore
    from voxhear.pipeline.stage import RunContext, apply_stage

    config = load_config(None, [f"run_dir={run_dir}", "inputs=[unused.mp4]"])
    context = RunContext(run_dir=run_dir, model_store=ModelStore.from_config(config.models))
    stage = registry.stage_class(stage_name)(config.section(stage_name), context)
    stage.setup()
    rows = stage.input_type.from_table(pq.read_table(rows_in))
    pq.write_table(stage.output_type.to_table(apply_stage(stage, rows)), rows_out)
    return 0


def _offline_env() -> dict[str, str]:
    return {**os.environ, "HF_HUB_OFFLINE": "1", "VOXHEAR_OFFLINE": "1"}


def _machine() -> str:
    memory = ""
    try:
        found = re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text())
        memory = f", {int(found.group(1)) / 2**20:.0f} GiB" if found else ""
    except OSError:
        pass
    return f"{os.cpu_count()} CPUs{memory}, {platform.machine()}, Python {platform.python_version()}"


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, check=True
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def report(workload: str, seconds: float, n: int, local: Measure, ray: Measure | None, tools: Measure | None) -> str:
    lines = [
        f"## {workload}",
        "",
        f"{n} input(s), {seconds:.1f} s of video; {_machine()}; commit {_commit()}; "
        f"{datetime.date.today().isoformat()}. Command: `voxhear bench {workload}`.",
        "",
        "| run | wall s | real-time factor | CPU s per input s | peak memory |",
        "|---|---|---|---|---|",
        f"| pipeline, in-process | {local.wall_s:.1f} | {local.wall_s / seconds:.2f} | "
        f"{local.cpu_s / seconds:.2f} | {local.peak_mb / 1024:.2f} GiB |",
    ]
    if ray is not None:
        lines.append(
            f"| pipeline, Ray (local, {os.cpu_count()} CPUs) | {ray.wall_s:.1f} | {ray.wall_s / seconds:.2f} "
            f"| (workers not counted) | {ray.peak_mb / 1024:.2f} GiB (driver) |"
        )
    if tools is not None:
        lines.append(
            f"| same stages as per-file tools | {tools.wall_s:.1f} | {tools.wall_s / seconds:.2f} | "
            f"{tools.cpu_s / seconds:.2f} | {tools.peak_mb / 1024:.2f} GiB |"
        )
        best = min(local.wall_s, ray.wall_s if ray is not None else float("inf"))
        lines += [
            "",
            f"Per-file tools take **{tools.wall_s / best:.2f}x** the wall time of the pipeline "
            f"(its faster runner) and {tools.cpu_s / local.cpu_s:.2f}x the CPU of the in-process run.",
        ]
    lines += [
        "",
        "Per stage (in-process run; CPU summed over inputs, peak = the process's resident high-water "
        "mark while the stage ran, models of earlier stages included):",
        "",
        "| stage | CPU s | CPU s per input s | peak MB |" + (" per-file tool CPU s |" if tools else ""),
        "|---|---|---|---|" + ("---|" if tools else ""),
    ]
    for stage, cpu in local.stage_cpu_s.items():
        row = f"| {stage} | {cpu:.1f} | {cpu / seconds:.3f} | {local.stage_peak_mb.get(stage, float('nan')):.0f} |"
        if tools:
            row += f" {tools.stage_cpu_s.get(stage, float('nan')):.1f} |"
        lines.append(row)
    return "\n".join(lines) + "\n"


def write_section(path: Path, workload: str, text: str) -> None:
    """Replace (or append) the workload's section of the speed page."""
    header = (
        "# Speed\n\nWritten by `voxhear bench` (benchmarks/speed.py): what each run measures is in its "
        "docstring. Figures are from one run each on an otherwise idle machine.\n\n"
    )
    old = path.read_text() if path.is_file() else header
    sections = re.split(r"(?m)^(?=## )", old)
    kept = [s for s in sections[1:] if not s.startswith(f"## {workload}\n")]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(sections[0] + "".join(sorted([*kept, text + "\n"])))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("workload", choices=sorted(WORKLOADS), help="the named set of inputs to time")
    parser.add_argument("--work", type=Path, default=None, help="scratch folder (default /tmp/voxhear-bench/WORKLOAD)")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"page to write (default {DEFAULT_OUT})")
    parser.add_argument("--no-ray", action="store_true", help="skip the Ray run")
    parser.add_argument("--no-tools", action="store_true", help="skip the per-file tools run")


def run_from_args(args: argparse.Namespace) -> int:
    work = (args.work or Path("/tmp/voxhear-bench") / args.workload).absolute()
    work.mkdir(parents=True, exist_ok=True)
    log = work / "bench.log"
    videos, seconds = prepare(args.workload, work)
    print(f"{args.workload}: {len(videos)} input(s), {seconds:.1f} s; log in {log}", flush=True)
    local = pipeline(videos, work / "run-local", "local", log)
    print(f"pipeline in-process: {local.wall_s:.1f} s wall, {local.cpu_s / seconds:.2f} CPU s per input s", flush=True)
    ray = None if args.no_ray else pipeline(videos, work / "run-ray", "ray", log)
    if ray is not None:
        print(f"pipeline on Ray: {ray.wall_s:.1f} s wall", flush=True)
    tools = None if args.no_tools else per_file_tools(videos, work, log)
    if tools is not None:
        print(f"per-file tools: {tools.wall_s:.1f} s wall", flush=True)
    text = report(args.workload, seconds, len(videos), local, ray, tools)
    write_section(args.out, args.workload, text)
    print(text)
    print(f"written to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m voxhear.benchmarks.speed")
    sub = parser.add_subparsers(dest="command", required=True)
    tool = sub.add_parser("tool", help="(internal) one stage as a per-file tool")
    tool.add_argument("stage")
    tool.add_argument("rows_in", type=Path)
    tool.add_argument("rows_out", type=Path)
    tool.add_argument("--run-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    return run_tool(args.stage, args.rows_in, args.rows_out, args.run_dir)


if __name__ == "__main__":
    sys.exit(main())
