"""The faces-wild check and the audio-only diarization benchmark: their parsing and scoring."""

from pathlib import Path

import pytest

from tests.conftest import require_shared
from tests.stages.audio.conftest import needs_media, needs_store
from voxhear.benchmarks.diarization_dev import der_parts, pool
from voxhear.benchmarks.synth.options import default_media_dir
from voxhear.benchmarks.wild_check import people_visible


def test_people_on_screen_come_from_the_sources_table():
    sources = default_media_dir() / "faces-wild" / "SOURCES.md"
    require_shared(sources, "faces-wild/SOURCES.md")
    people = people_visible(sources)
    assert len(people) == 19
    assert {name for name, n in people.items() if n == 2} == {"visualvoice_interview.mp4", "ghost_2person.mp4"}
    assert people["edtalk_uncrop_Obama.mp4"] == 1


def _rttm(path: Path, turns: list[tuple[float, float, str]]) -> Path:
    path.write_text("".join(f"SPEAKER x 1 {a:.3f} {b - a:.3f} <NA> <NA> {s} <NA> <NA>\n" for a, b, s in turns))
    return path


def test_der_counts_missed_overlap_and_pools_by_time(tmp_path):
    reference = _rttm(tmp_path / "ref.rttm", [(0, 4, "A"), (3, 6, "B")])  # 1 s of overlap: 7 s of speech
    perfect = _rttm(tmp_path / "perfect.rttm", [(0, 4, "x"), (3, 6, "y")])
    no_overlap = _rttm(tmp_path / "flat.rttm", [(0, 3, "x"), (3, 6, "y")])
    assert der_parts(reference, perfect, 6.0)["total"] == pytest.approx(7.0)
    flat = der_parts(reference, no_overlap, 6.0)
    assert flat["missed detection"] == pytest.approx(1.0) and flat["confusion"] == pytest.approx(0.0)
    pooled = pool([der_parts(reference, perfect, 6.0), flat])
    assert pooled["der"] == pytest.approx(1.0 / 14.0) and pooled["missed"] == pytest.approx(1.0 / 14.0)
    assert pool([])["der"] is None


def test_diarization_dev_refuses_an_unknown_input_before_reading_anything(tmp_path, capsys):
    from voxhear.benchmarks.diarization_dev import main

    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path / "no-such-set"), "--input", "mix,spech"])
    assert stopped.value.code == 2
    assert "--input takes mix, speech and both" in capsys.readouterr().err


def test_diarization_dev_diarizes_what_the_pipeline_diarizes(tmp_path, monkeypatch):
    """The "speech" input reads the separator's own speech (`separated_uri`), as the pipeline's
    diarization does, not the stems' speech with the residue back; "mix" reads neither."""
    import numpy as np
    import soundfile as sf

    from voxhear.benchmarks import diarization_dev

    truth = tmp_path / "set" / "truth" / "rec-0"
    truth.mkdir(parents=True)
    _rttm(truth / "turns.rttm", [(0.5, 1.5, "A")])
    (tmp_path / "set" / "audio").mkdir()
    sf.write(tmp_path / "set" / "audio" / "rec-0.flac", np.zeros(32000, np.float32), 16000)
    seen = {}

    class Separation:
        def __init__(self, config, context):
            pass

        def process(self, row):
            row.speech_uri, row.separated_uri = "stems-speech.flac", "separated.flac"
            return [row]

    class Diarization:
        def __init__(self, config, context):
            self.input = config.input

        def process(self, row):
            seen[self.input] = (row.speech_uri, row.separated_uri, row.separator_speech_uri)
            row.rttm_uri = str(_rttm(tmp_path / f"{self.input}.rttm", [(0.5, 1.5, "x")]))
            return [row]

    monkeypatch.setattr(diarization_dev, "SeparationStage", Separation)
    monkeypatch.setattr(diarization_dev, "DiarizationStage", Diarization)
    report = diarization_dev.evaluate(tmp_path / "set", ["mix", "speech"], [], tmp_path / "work")
    assert seen["speech"][2] == "separated.flac"
    assert seen["mix"] == ("", "", "")
    assert report["speech, collar 0.0"]["pooled"]["der"] == pytest.approx(0.0)


@needs_store
@needs_media
def test_talk_bench_rediarizes_the_runs_audio_into_its_own_folder(tmp_path):
    """`diarization.*` overrides make talk_bench diarize each source again from the run's audio:
    new turns under OUT (the run's own file untouched), and OUT's sources manifest points at them."""
    import numpy as np
    import pyarrow.parquet as pq

    from tests.stages.audio.conftest import arctic, load_speech, write_wav16
    from voxhear.benchmarks.talk_bench import hear_overlap, rediarize
    from voxhear.pipeline.config import load_config
    from voxhear.pipeline.records import SourceRecord
    from voxhear.stages.audio.diarization import read_rttm

    gap = np.zeros(8000, np.float32)
    pieces = [load_speech(p.name) for p in (arctic("aew")[0], arctic("axb")[0], arctic("aew")[1], arctic("axb")[2])]
    audio = write_wav16(tmp_path / "run" / "work" / "s0" / "audio16k.wav", np.concatenate([gap, *[
        np.concatenate([x, gap]) for x in pieces]]))
    stale = tmp_path / "run" / "work" / "s0" / "turns.rttm"
    old_turns = "SPEAKER s0 1 0.000 1.000 <NA> <NA> SPEAKER_00 <NA> <NA>\n"
    stale.write_text(old_turns)
    row = SourceRecord(source_uri="v.mp4", source_id="s0", audio_uri=str(audio), speech_uri=str(audio),
                       rttm_uri=str(stale))
    (tmp_path / "run" / "manifests").mkdir(parents=True)
    pq.write_table(SourceRecord.to_table([row]), tmp_path / "run" / "manifests" / "sources.parquet")
    out = tmp_path / "out"
    (out / "manifests").mkdir(parents=True)

    config = load_config(None, ["inputs=[/tmp]", "diarization.input=mix"])
    renamed = rediarize(tmp_path / "run", out, config)
    assert list(renamed) == [str(stale)]
    new = renamed[str(stale)]
    assert new == str(out / "work" / "s0" / "turns.rttm")
    assert len({t.speaker for t in read_rttm(new)}) == 2
    assert stale.read_text() == old_turns  # the run's own turns are left as they were
    [written] = pq.read_table(out / "manifests" / "sources.parquet").to_pylist()
    assert written["rttm_uri"] == new
    # The talk stage then gets the overlap regions the new diarization found, not the run's.
    assert hear_overlap(out, config) == {"s0": str(out / "work" / "s0" / "overlap.rttm")}


def test_talk_bench_refuses_truth_turns_with_rediarize(tmp_path, capsys):
    from voxhear.benchmarks.talk_bench import main

    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path), str(tmp_path), str(tmp_path / "out"), "--truth-turns", "--rediarize"])
    assert stopped.value.code == 2
    assert "--rediarize would diarize for nothing" in capsys.readouterr().err


def test_talk_bench_truth_turns_replace_each_sources_turns_by_the_truths(tmp_path):
    """`--truth-turns`: every source's turns become its video's truth turns.rttm (oracle diarization),
    copied under OUT; the run's own file untouched."""
    import pyarrow.parquet as pq

    from voxhear.benchmarks.talk_bench import truth_turns
    from voxhear.pipeline.records import SourceRecord

    run, truth, out = tmp_path / "run", tmp_path / "truth", tmp_path / "out"
    (run / "work" / "s0").mkdir(parents=True)
    (truth / "synth-0003").mkdir(parents=True)
    own = _rttm(run / "work" / "s0" / "turns.rttm", [(0.0, 1.0, "SPEAKER_00")])
    true = _rttm(truth / "synth-0003" / "turns.rttm", [(0.5, 2.0, "A"), (1.5, 3.0, "B")])
    row = SourceRecord(source_uri="/videos/synth-0003.mp4", source_id="s0", rttm_uri=str(own))
    (run / "manifests").mkdir()
    (out / "manifests").mkdir(parents=True)
    pq.write_table(SourceRecord.to_table([row]), run / "manifests" / "sources.parquet")
    renamed = truth_turns(run, out, truth)
    assert renamed == {str(own): str(out / "work" / "s0" / "turns.rttm")}
    assert Path(renamed[str(own)]).read_text() == true.read_text()
    assert "SPEAKER_00" in own.read_text()
    [written] = pq.read_table(out / "manifests" / "sources.parquet").to_pylist()
    assert written["rttm_uri"] == renamed[str(own)]


@needs_store
@needs_media
def test_asr_bench_transcribes_each_source_again_and_scores_the_new_words(tmp_path):
    """asr_bench reruns the ASR stage with the overrides into OUT (the run's words untouched), points
    OUT's sources manifest at the new words and scores them as the eval's `asr` metric does."""
    import json

    import numpy as np
    import pyarrow as pa
    import pyarrow.parquet as pq

    from tests.stages.audio.conftest import arctic, load_speech, write_wav16
    from voxhear.benchmarks.asr_bench import bench
    from voxhear.benchmarks.evaluation.audio import normalize_words, word_errors
    from voxhear.pipeline.config import load_config, save_config
    from voxhear.pipeline.records import SourceRecord

    run, truth, out = tmp_path / "run", tmp_path / "truth", tmp_path / "out"
    speech = load_speech(arctic("aew")[0].name)
    audio = write_wav16(run / "work" / "s0" / "audio16k.wav", np.concatenate([np.zeros(4000, np.float32), speech]))
    seconds = 0.25 + len(speech) / 16000
    rttm = _rttm(run / "work" / "s0" / "turns.rttm", [(0.25, seconds, "SPEAKER_00")])
    own_words = run / "work" / "s0" / "words.parquet"
    own_words.write_bytes(b"the run's own words")
    row = SourceRecord(source_uri="/videos/synth-0000.mp4", source_id="s0", audio_uri=str(audio),
                       speech_uri=str(audio), rttm_uri=str(rttm), words_uri=str(own_words))
    (run / "manifests").mkdir(parents=True)
    pq.write_table(SourceRecord.to_table([row]), run / "manifests" / "sources.parquet")
    save_config(load_config(None, ["inputs=[/tmp]"]), run / "config.yaml")
    (truth / "synth-0000").mkdir(parents=True)
    (truth / "synth-0000" / "meta.json").write_text("{}")
    _rttm(truth / "synth-0000" / "turns.rttm", [(0.25, seconds, "A")])
    reference = ["author", "of", "the", "danger", "trail"]
    pq.write_table(pa.Table.from_pylist([
        {"person_id": "A", "utterance_index": 0, "word_index": i, "word": w, "segment_start_s": 0.0}
        for i, w in enumerate(reference)]), truth / "synth-0000" / "words.parquet")

    summary = bench(run, truth, out, ["asr.piece_s=10"])

    [written] = pq.read_table(out / "manifests" / "sources.parquet").to_pylist()
    assert written["words_uri"] == str(out / "work" / "s0" / "words.parquet")
    assert own_words.read_bytes() == b"the run's own words"
    words = [w["word"] for w in pq.read_table(written["words_uri"]).to_pylist()]
    assert len(words) >= 3  # a real sentence of real speech
    errors, n_ref = word_errors(normalize_words(reference), normalize_words(words))
    assert summary["wer"] == round(errors / n_ref, 4) and summary["ref_words"] == n_ref == 5
    assert summary["settings"] == ["asr.piece_s=10"] and 0 < summary["cpu_s_per_audio_s"] < 5
    assert json.loads((out / "asr.json").read_text())["summary"] == summary
    with pytest.raises(SystemExit, match="must not be the run"):
        bench(run, truth, tmp_path, [])  # OUT is emptied first: never the run or above it
    assert (run / "manifests" / "sources.parquet").is_file()
