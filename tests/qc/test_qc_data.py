"""The dashboard's view model: columns found, funnel, filters, timings."""

from __future__ import annotations

import math

import pytest

from .qc_helpers import KEPT, SID_A, SID_B
from voxhear.qc.data import Filter, funnel, headline, load_run, per_identity, per_source, stage_timings, talk_totals


@pytest.fixture(scope="module")
def data(qc_run):
    return load_run(qc_run)


def test_metrics_are_the_clip_columns_beyond_source_facts(data):
    names = data.clip_metric_names
    assert names[:2] == ["clip_s", "shot_s"]
    assert {"face_height_px", "yaw_deg", "talk_s", "listen_s"} <= set(names)
    # Inherited source facts and bookkeeping are not clip metrics.
    assert not {"duration_s", "width", "fps", "share_den", "commit", "shot_index", "track_index"} & set(names)
    assert "duration_s" in data.source_metric_names


def test_headline_and_funnel(data):
    h = headline(data)
    assert (h["inputs"], h["inputs_ok"], h["inputs_filtered"], h["inputs_failed"]) == (4, 2, 1, 1)
    assert (h["clips"], h["clips_kept"], h["clips_rejected"], h["identities"], h["shards"]) == (8, 5, 3, 3, 1)
    assert h["kept_hours"] == pytest.approx((2 + 2 + 1.5 + 3 + 2) / 3600)
    steps = {s["step"]: s for s in funnel(data)}
    assert steps["inputs"]["count"] == 4 and steps["kept clips"]["count"] == 5
    assert steps["inputs"]["hours"] == pytest.approx((8 + 6 + 8 + 0) / 3600)


def test_identities_are_joined_and_tabled(data):
    table = per_identity(data).set_index("identity")
    assert table.loc["face-1", "clips"] == 3 and table.loc["face-1", "sources"] == 2
    assert table.loc["face-1", "talk_s"] == pytest.approx(1.2 + 0.5 + 2.0)
    assert talk_totals(data) == pytest.approx({"talk": 4.7, "listen": 5.8})


def test_thresholds_come_from_the_config(data):
    (bound,) = data.thresholds("clips", "face_height_px")
    assert bound.value == 48.0 and bound.label == "faces.min_face_px = 48"
    (yaw,) = data.thresholds("clips", "yaw_deg")
    assert yaw.lines() == [-60.0, 60.0]
    assert data.thresholds("clips", "talk_s") == []


def test_filters_change_the_counts(data):
    def counts(query):
        view = Filter.from_query(query).apply(data)
        return len(view.clips), len(view.sources)

    assert counts({}) == (8, 4)
    assert counts({"status": ["filtered"]}) == (3, 3)  # 3 rejected clips; input C, and A and B for their rejects
    assert counts({"reason": ["filtered: faces/face_too_small"]}) == (1, 1)
    assert counts({"reason": ["failed: ingest/probe_failed"]}) == (0, 1)
    assert counts({"source": [SID_B]}) == (3, 1)
    assert counts({"source": ["a.mp4"]}) == (5, 1)
    assert counts({"identity": ["face-1"]}) == (3, 2)
    assert counts({"range": ["face_height_px:100:"]}) == (4, 2)
    assert counts({"range": ["face_height_px:100:", "yaw_deg::0"]}) == (2, 2)
    # NaN metrics never fall inside a range; an unknown column is ignored.
    assert counts({"range": ["yaw_deg:-1000:1000"]}) == (7, 2)
    assert counts({"range": ["no_such_column:0:1"]}) == (8, 4)


def test_stage_timings_and_real_time_factors(data):
    rows = {r["stage"]: r for r in stage_timings(data)}
    assert rows["faces"]["wall_s"] == pytest.approx(12.0)
    assert rows["faces"]["rtf_wall"] == pytest.approx(12.0 / 14.0)  # over the inputs that ran faces
    assert rows["ingest"]["input_s"] == pytest.approx(22.0)
    assert rows["all stages"]["rtf_cpu"] == pytest.approx((1 + 6 + 0.5 + 3 + 0.2 + 0.1) / 22.0)


def test_per_source_table(data):
    table = per_source(data).set_index("source_id")
    assert table.loc[SID_A, "clips_kept"] == 3 and table.loc[SID_A, "clips_rejected"] == 2
    assert table.loc[SID_A, "identities"] == 2
    assert table.loc[SID_A, "rtf"] == pytest.approx(10.0 / 8.0)
    assert math.isnan(table.loc["dddddddddddddddd", "rtf"])  # zero duration: no factor
    assert table.loc["dddddddddddddddd", "status"] == "failed: ingest/probe_failed"
    assert len(KEPT) == 5 and SID_A in set(table.index)
