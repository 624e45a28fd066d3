"""The shard reader, the self-contained report and the datasheet, on the made-up run."""

from __future__ import annotations

import io
import re
import tarfile
import wave

import pytest
import yaml

from .qc_helpers import KEPT, SID_A, STEM_KEY
from voxhear.qc.data import load_run
from voxhear.qc.media import ShardIndex, cut_wav, sample_tracks
from voxhear.qc.report import ReportOptions, build_report, write_report


def test_shard_members_are_read_in_place(qc_run):
    index = ShardIndex(qc_run / "shards")
    with tarfile.open(qc_run / "shards" / "000000.tar") as tar:
        for info in tar:
            member = index.members("000000.tar")[info.name]
            assert index.read(member) == tar.extractfile(info).read()
            assert index.read(member, 10, 5) == tar.extractfile(info).read()[10:15]
    with pytest.raises(KeyError):
        index.members("../000000.tar")


def test_tracks_of_a_clip(qc_run):
    data = load_run(qc_run)
    clip = data.clips[data.clips["key"] == STEM_KEY].iloc[0].to_dict()
    labels = [t.label for t in sample_tracks(ShardIndex(qc_run / "shards"), clip)]
    # Shard members first (video, then the stems in listening order), then work-area stems the shard lacks.
    assert labels == ["video", "mix", "background"]
    other = data.clips[data.clips["key"] == KEPT[1]].iloc[0].to_dict()
    labels = [t.label for t in sample_tracks(ShardIndex(qc_run / "shards"), other)]
    assert labels == ["video", "mix", "background (work area)"]
    rejected = data.clips[data.clips["reason"] == "profile_view"].iloc[0].to_dict()
    assert [t.label for t in sample_tracks(ShardIndex(qc_run / "shards"), rejected)][0] == "video (work area)"


def test_cut_wav_has_the_span(qc_run):
    data = load_run(qc_run)
    path = data.sources.set_index("source_id").loc[SID_A, "background_uri"]
    with wave.open(io.BytesIO(cut_wav(path, 1.0, 2.5))) as wav:
        assert wav.getframerate() == 16000 and wav.getnframes() == 24000


def test_report_is_one_self_contained_file(qc_run, tmp_path):
    path = write_report(qc_run, tmp_path / "report.html")
    html = path.read_text()
    # Nothing is fetched: every src/href is a data URI or an in-page anchor.
    for attribute in re.findall(r'(?:src|href)="([^"]*)"', html):
        assert attribute.startswith(("data:", "#")), attribute
    assert "<script src" not in html and "<link" not in html
    assert html.count("data:video/mp4;base64,") >= 5  # gallery (5 kept clips) and the rejected clip's video
    assert "data:audio/flac;base64," in html and "data:audio/wav;base64," in html
    # Every QC metric is drawn, with its configured threshold.
    for metric in ("clip_s", "face_height_px", "yaw_deg", "talk_s", "listen_s"):
        assert f'data-metric="{metric}"' in html
    assert "faces.min_face_px = 48" in html and "faces.max_median_abs_yaw = \u00b160" in html
    for reason in ("filtered: faces/face_too_small", "filtered: faces/profile_view", "failed: ingest/probe_failed",
                   "filtered: ingest/no_audio_stream"):
        assert reason in html
    assert 'data-metric="clips_kept"><div class="v">5<' in html
    # The funnel explains each reason with the keys its own stage declares.
    assert re.search(r"filtered: faces/face_too_small</td>.*?<td[^>]*>faces\.min_face_px = 48\.0</td>", html)
    for section in ("funnel", "metrics", "talk", "sources", "identities", "timings", "gallery", "rejects"):
        assert f'<section id="{section}">' in html


def test_report_media_budget_is_respected(qc_run):
    html, media = build_report(qc_run, ReportOptions(max_media_mb=0.05))
    assert media.used <= 50_000 and media.skipped > 0
    assert "not embedded (size limit)" in html
    html, media = build_report(qc_run, ReportOptions(gallery_clips=1, reject_clips=0))
    assert html.count('class="clip"') == 1


def test_datasheet_numbers_and_licences(qc_run, tmp_path):
    from voxhear.qc.datasheet import write_datasheet

    licences = tmp_path / "licences.yaml"
    licences.write_text(yaml.safe_dump({"a.mp4": "CC-BY 4.0", "bbbb*": "CC0-1.0"}))
    info = tmp_path / "info.yaml"
    info.write_text(yaml.safe_dump({"title": "Test set", "motivation": {"purpose": "Testing the datasheet."},
                                    "limitations": ["Made up."]}))
    result = write_datasheet(qc_run, tmp_path / "sheet.md", info, licences, validate=False)
    text = result["datasheet"].read_text()
    assert "# Datasheet: Test set" in text
    assert "| clips kept | 5 (0.0029 h" in text
    assert "| inputs kept / filtered / failed | 2 / 1 / 1 |" in text
    assert "Testing the datasheet." in text and "- Made up." in text
    assert "_Not provided: add `motivation.funding`" in text  # open questions stay open
    # Licences: mapped by file name, by source_id glob is not a file name match, unknown stays unknown.
    assert "| CC-BY 4.0 | --licences" in text
    assert text.count("| unknown |") == 3 and "3 inputs have no known licence" in text
    # Filters with their thresholds and counts.
    assert "| clip | filtered: faces/face_too_small | `faces.min_face_px` = 48.0 | 1 |" in text
    assert "| clip | filtered: faces/profile_view | `faces.max_median_abs_yaw` = 60.0 | 1 |" in text
    assert "| - | ingest/too_short | `ingest.min_duration_s` = 1.0 | 0 |" in text  # declared, removed nothing
    filters = text[text.index("**Which filters"):text.index("**Which models")]
    assert "talk/" not in filters  # the talk stage did not run in this run
    # Settings of every registered section the config holds (talk included).
    assert "- `talk`: min_face_px=64.0" in text and "- `faces`: " in text
    assert "| input | failed: ingest/probe_failed | - | 1 |" in text
    # Models: those of the stages that ran (ingest and faces here), with their hashes.
    assert "| yunet | `yunet/face_detection_yunet_2023mar.onnx`" in text
    assert "deepfilternet3" not in text
    assert "as each stage declares them" in text
    assert "talk 4.7 s" in text
    assert result["croissant"].name == "sheet.croissant.json"


def test_datasheet_explains_reasons_by_stage(qc_run):
    from voxhear.qc.datasheet import _filters_text

    data = load_run(qc_run)
    clips = data.clips.copy()
    clips.loc[clips["reason"] == "face_too_small", "label"] = "filtered: talk/face_too_small"
    text = _filters_text(data.subset(clips, data.sources), ["ingest", "faces", "talk"])
    # The talk stage's own bound, not the face stage's.
    assert "| clip | filtered: talk/face_too_small | `talk.min_face_px` = 64.0 | 1 |" in text
    assert "| - | faces/face_too_small | `faces.min_face_px` = 48.0 | 0 |" in text
    assert "| - | talk/ambiguous_speaker | `talk.asd_threshold` = None" in text  # keys shown even when unset
    assert "| - | talk/overlap_too_high | `talk.max_overlap_share` = None" in text


def test_datasheet_of_a_run_whose_config_predates_a_rename(qc_run, tmp_path):
    import shutil

    from voxhear.qc.datasheet import build_datasheet, models_used

    names, unknown, note = models_used({"faces": {"max_abs_yaw": 60.0}}, ["ingest", "faces"])
    assert names == [] and unknown == [] and "renamed to 'faces.max_median_abs_yaw'" in note
    names, unknown, note = models_used({"faces": {"embedder": "arcface"}, "inputs": "old"}, ["ingest", "faces", "lip"])
    assert names == ["yunet", "mediapipe-face-landmarker", "insightface-arcface"] and unknown == ["lip"]
    assert note == ""
    run = shutil.copytree(qc_run, tmp_path / "old-run")
    config = yaml.safe_load((run / "config.yaml").read_text())
    config["faces"]["max_abs_yaw"] = config["faces"].pop("max_median_abs_yaw")
    (run / "config.yaml").write_text(yaml.safe_dump(config))
    text, _ = build_datasheet(run)
    assert "does not load with this version of voxhear" in text and "so every registered model is listed" in text
    assert "| htdemucs |" in text  # the audio stages' own registry, found as a package resource


def test_datasheet_yaml_is_validated(tmp_path, qc_run):
    from voxhear.qc.datasheet import DatasheetError, load_info

    bad = tmp_path / "bad.yaml"
    bad.write_text("motivation:\n  purpos: typo\n")
    with pytest.raises(DatasheetError, match="did you mean 'purpose'"):
        load_info(bad)


def test_attribution_of_the_bundled_sample():
    from pathlib import Path

    from voxhear.qc.datasheet import parse_attribution

    sections = parse_attribution(Path(__file__).resolve().parents[2] / "sample" / "ATTRIBUTION.md")
    assert sections["synth-0000"][0] == ["CC-BY 4.0", "public domain"]
    assert sections["synth-0003"][0] == ["CC-BY 4.0", "CC-BY 3.0 (credit: Kevin MacLeod)"]


def test_croissant_validates(qc_run, tmp_path):
    mlc = pytest.importorskip("mlcroissant", reason="mlcroissant is not installed")
    from voxhear.qc.datasheet import write_datasheet

    result = write_datasheet(qc_run, tmp_path / "datasheet.md")
    assert result["problems"] == []
    dataset = mlc.Dataset(jsonld=str(result["croissant"]))
    records = list(dataset.records(record_set="clips"))
    assert len(records) == 8
    assert sorted(r["clips/key"].decode() for r in records if r["clips/status"] == b"ok") == sorted(KEPT)
    doc = yaml.safe_load(result["croissant"].read_text())  # JSON is YAML
    shards = [d for d in doc["distribution"] if d["encodingFormat"] == "application/x-tar"]
    assert len(shards) == 1 and len(shards[0]["sha256"]) == 64
