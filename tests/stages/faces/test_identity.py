"""Identity embeddings of real GRID speakers and the clustering across shots and videos."""

from __future__ import annotations

import cv2
import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.stages.faces.conftest import grid_frames
from voxhear.stages.faces.detect import make_detector
from voxhear.passes.identities import TrackRef, agglomerate, assign_identities, cluster_tracks
from voxhear.stages.faces.identity import make_embedder


@pytest.fixture(scope="module")
def embed(model_store):
    detector = make_detector("yunet", model_store, 0.5, 0.3, 640)
    embedder = make_embedder("dlib", model_store)

    def run(frame: np.ndarray) -> np.ndarray:
        found = detector.detect(frame)
        assert len(found) == 1
        return embedder.embed(cv2.cvtColor(frame, cv2.COLOR_BGR2RGB), found.boxes[0], found.kps[0])

    return run


def _other_view(frame: np.ndarray) -> np.ndarray:
    """The same person as another shot would show them: smaller, elsewhere, on another backdrop."""
    small = cv2.resize(frame, None, fx=0.7, fy=0.7, interpolation=cv2.INTER_AREA)
    canvas = np.full((360, 640, 3), (150, 172, 160), np.uint8)
    canvas[60:60 + small.shape[0], 330:330 + small.shape[1]] = small
    return canvas


def test_same_speaker_across_clips_merges_and_two_speakers_separate(embed):
    tracks = []
    for speaker in ("bbaf2n", "lbbc2a"):
        frames = grid_frames(speaker, 61)
        # Two "clips" of each speaker: different frames, scale, position and background.
        for clip, frame in enumerate((frames[10], _other_view(frames[60]))):
            tracks.append(TrackRef(key=f"{speaker}-{clip}", source_id=f"video{clip}", shot_index=0,
                                   start=0, end=10, embedding=embed(frame)))
    labels = cluster_tracks(tracks, threshold=0.47)
    assert labels[0] == labels[1]
    assert labels[2] == labels[3]
    assert labels[0] != labels[2]


def test_people_on_screen_together_are_never_merged():
    near = np.array([[0.0, 0.0], [0.01, 0.0], [5.0, 5.0]])
    assert len(set(agglomerate(near, threshold=1.0).tolist())) == 2
    cannot = np.zeros((3, 3), bool)
    cannot[0, 1] = cannot[1, 0] = True
    assert len(set(agglomerate(near, threshold=1.0, cannot_link=cannot).tolist())) == 3


def test_average_linkage_merges_chains_only_below_the_threshold():
    points = np.array([[0.0], [0.4], [0.8], [3.0]])
    labels = agglomerate(points, threshold=0.5)
    # 0 and 0.4 merge (0.4); then 0.8 is 0.6 on average from them: stays apart.
    assert labels.tolist() == [0, 0, 1, 2]


def test_identities_are_written_for_the_kept_tracks(tmp_path):
    rng = np.random.default_rng(0)
    people = {"p": rng.normal(0, 1, 128), "q": rng.normal(0, 1, 128)}
    rows = []
    for i, (person, source, shot, start) in enumerate([("p", "s1", 0, 0), ("q", "s1", 0, 0), ("p", "s1", 1, 50),
                                                       ("q", "s2", 0, 0), ("p", "s2", 2, 90)]):
        emb = people[person] * 0.05 + rng.normal(0, 0.001, 128)
        rows.append({"key": f"{source}-face{i}-{start:08d}", "source_id": source, "status": "ok", "shot_index": shot,
                     "track_start_frame": start, "track_end_frame": start + 40, "embedding": emb.tolist()})
    rows.append({"key": "s2-face9-00000000", "source_id": "s2", "status": "filtered", "shot_index": 3,
                 "track_start_frame": 0, "track_end_frame": 5, "embedding": []})
    (tmp_path / "manifests").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "manifests" / "clips.parquet")
    table = assign_identities(tmp_path, threshold=0.47)
    ids = dict(zip(table.column("key").to_pylist(), table.column("identity_id").to_pylist()))
    assert len(ids) == 5  # the filtered row gets none
    assert ids["s1-face0-00000000"] == ids["s1-face2-00000050"] == ids["s2-face4-00000090"]
    assert ids["s1-face1-00000000"] == ids["s2-face3-00000000"]
    assert ids["s1-face0-00000000"] != ids["s1-face1-00000000"]
    assert pq.read_table(tmp_path / "manifests" / "identities.parquet").num_rows == 5


def test_clips_of_one_track_share_its_identity(tmp_path):
    """Talk-stage manifests have several clips per track: they are one track, not co-visible people."""
    rng = np.random.default_rng(1)
    emb = rng.normal(0, 0.05, 128).tolist()
    rows = [{"key": f"s1-face0-{start:08d}", "source_id": "s1", "status": "ok", "shot_index": 0, "track_index": 0,
             "track_start_frame": 0, "track_end_frame": 1000, "embedding": emb} for start in (0, 20000)]
    rows.append({"key": "s1-face1-00000000", "source_id": "s1", "status": "ok", "shot_index": 0, "track_index": 1,
                 "track_start_frame": 0, "track_end_frame": 1000, "embedding": emb})
    (tmp_path / "manifests").mkdir()
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "manifests" / "clips.parquet")
    ids = dict(zip(*assign_identities(tmp_path, threshold=0.47).select(["key", "identity_id"]).to_pydict().values()))
    assert ids["s1-face0-00000000"] == ids["s1-face0-00020000"] != ids["s1-face1-00000000"]
