"""`voxhear bench`'s parts that can run in a test: a stage as a per-file tool, the measuring of a
child process, the speed page's sections. (The full bench runs the whole pipeline three times.)"""

from __future__ import annotations

import subprocess
import sys

import pyarrow.parquet as pq

from tests.conftest import make_video
from voxhear.benchmarks.speed import Measure, _run_measured, report, write_section
from voxhear.pipeline.records import SourceRecord


def test_a_stage_runs_as_a_per_file_tool_on_the_rows_of_the_one_before(tmp_path):
    video = make_video(tmp_path / "a.mp4", seconds=1.0)
    rows = tmp_path / "in.parquet"
    pq.write_table(SourceRecord.to_table([SourceRecord(source_uri=str(video))]), rows)
    out = tmp_path / "out.parquet"
    done = subprocess.run([sys.executable, "-m", "voxhear.benchmarks.speed", "tool", "ingest", str(rows), str(out),
                           "--run-dir", str(tmp_path / "run")], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    (row,) = pq.read_table(out).to_pylist()
    assert row["status"] == "ok" and abs(row["duration_s"] - 1.0) < 0.1 and dict(row["cpu_s"])["ingest"] > 0


def test_the_cpu_of_a_child_and_its_children_is_counted(tmp_path):
    spin = "import time\nt = time.process_time()\nwhile time.process_time() - t < 0.3: pass\n"
    busy = spin + f"import subprocess, sys\nsubprocess.run([sys.executable, '-c', {spin!r}])"
    measure = _run_measured([sys.executable, "-c", busy])
    assert measure.cpu_s >= 0.55 and measure.wall_s >= 0.55 and measure.peak_mb > 1


def test_a_rerun_replaces_only_its_workload_section(tmp_path):
    page = tmp_path / "speed.md"
    local = Measure(wall_s=10.0, cpu_s=20.0, peak_mb=2048.0, stage_cpu_s={"ingest": 1.0},
                    stage_peak_mb={"ingest": 300.0})
    write_section(page, "b-load", report("b-load", 10.0, 1, local, None, None))
    write_section(page, "a-load", report("a-load", 10.0, 1, local, None, None))
    slower = Measure(wall_s=30.0, cpu_s=60.0, peak_mb=2048.0)
    write_section(page, "b-load", report("b-load", 10.0, 1, local, None, slower))
    text = page.read_text()
    assert text.startswith("# Speed") and text.count("## a-load") == 1 and text.count("## b-load") == 1
    assert text.index("## a-load") < text.index("## b-load") and "**3.00x**" in text
    assert "| ingest | 1.0 | 0.100 | 300 |" in text
