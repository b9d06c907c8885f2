"""The annotation store: concurrent writers, a killed writer, history and revert, a locked
database, bad input, and export/import round trips (dataset, Label Studio, COCO)."""

import json
import multiprocessing as mp
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pycocotools import mask as coco_mask

from annotate import rle as R
from annotate.document import AnnotationError, ClipAnnotation, Face
from annotate.exchange import (
    export_coco,
    export_dataset,
    export_labelstudio,
    import_coco,
    import_dataset,
    import_labelstudio,
)
from annotate.store import SCHEMA, AnnotationStore, ConflictError, StoreLockedError
from model.timeline import Action
from train.sprites import generate_clip

FORK = mp.get_context("fork")
WORLD = dict(height=32, width=32, duration=1.0)


def _media_clip(media: Path, seed: int, clip_id: str) -> ClipAnnotation:
    """A sprite clip written as real media (frames.npz, reference PNGs) and annotated with its exact masks."""
    clip = generate_clip(seed, **WORLD)
    d = media / clip_id
    d.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(d / "frames.npz", frames=clip.frames)
    tl = clip.timeline.copy()
    inter = {}
    for k, s in enumerate(tl.subjects):
        Image.fromarray(clip.references_intra[k][0]).save(d / f"{s.id}_intra.png")
        Image.fromarray(clip.references_inter[k][0]).save(d / f"{s.id}_inter.png")
        s.references = [f"{clip_id}/{s.id}_intra.png"]
        inter[s.id] = [f"{clip_id}/{s.id}_inter.png"]
    F, H, W = clip.frames.shape[:3]
    doc = ClipAnnotation.new(clip_id, tl, F, H, W, masks=clip.masks, frames=f"{clip_id}/frames.npz", inter_references=inter,
                             sources={"masks": "sprite-ground-truth", "timeline": "sprite-ground-truth"},
                             confidence={s.id: 0.5 + 0.1 * k for k, s in enumerate(tl.subjects)}, meta={"seed": seed})
    doc.faces = [Face(tl.subjects[0].id, 2, (3.0, 4.0, 10.0, 12.0), 0.98, R.encode(clip.masks[0, 2])),
                 Face(tl.subjects[0].id, 5, (1.0, 2.0, 5.0, 6.0), None, None)]
    return doc, clip


@pytest.fixture
def store(tmp_path):
    s = AnnotationStore(tmp_path / "annotations.db")
    yield s
    s.close()


@pytest.fixture
def stored(store, tmp_path):
    doc, clip = _media_clip(tmp_path, 3, "clip-a")
    return store.add(doc, annotator="pipeline"), clip


# --------------------------------------------------------------------------------------------
# Basics
# --------------------------------------------------------------------------------------------
def test_saved_clip_reads_back_exactly_and_masks_are_compact(store, stored):
    doc, clip = stored
    assert doc.version == 1 and doc.created_by == "pipeline" and doc.updated_by == "pipeline" and doc.created_at
    got = store.get("clip-a")
    assert got.content_dict() == doc.content_dict()
    assert np.array_equal(got.masks_array(), clip.masks)
    for s in got.subject_ids:
        assert all(len(r["counts"]) < 40 for r in got.masks[s])  # a 32x32 sprite mask is a few bytes of RLE
    assert store._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert [r.operation for r in store.history("clip-a")] == ["create"]
    assert store.get("clip-a", version=1).content_dict() == doc.content_dict()


def test_sql_stays_portable():
    src = " ".join(SCHEMA).upper() + (Path(__file__).parents[1] / "annotate" / "store.py").read_text().upper()
    for sqlite_only in ("AUTOINCREMENT", "INSERT OR REPLACE", "WITHOUT ROWID", "ON CONFLICT", "STRICT)", "JSON_EXTRACT"):
        assert sqlite_only not in src, sqlite_only


def test_review_queue_filters_and_counts(store, tmp_path):
    for i, cid in enumerate(["c1", "c2", "c3"]):
        doc, _ = _media_clip(tmp_path, 10 + i, cid)
        doc.confidence = {s: 0.9 for s in doc.subject_ids}
        if cid == "c2":
            doc.confidence[doc.subject_ids[0]] = 0.2
            doc.timeline.subjects[0].kind = "animal"
        store.add(doc, annotator="pipeline")
    assert store.next_clip("masks") == "c1"
    store.set_review("c1", "masks", "accepted", expected_version=1, annotator="ann")
    store.set_review("c3", "masks", "rejected", reason="mask bleeds into the background", expected_version=1, annotator="ann")
    assert store.next_clip("masks") == "c2" and store.next_clip("masks", after="c2") is None
    assert store.counts("masks") == {"pending": 1, "accepted": 1, "fixed": 0, "rejected": 1}
    assert [s.clip_id for s in store.list_clips(kind="animal")] == ["c2"]
    assert [s.clip_id for s in store.list_clips(max_confidence=0.5)] == ["c2"]
    assert [s.clip_id for s in store.list_clips(aspect="masks", status="rejected")] == ["c3"]
    summary = store.list_clips(aspect="timeline", status="pending")
    assert [s.clip_id for s in summary] == ["c1", "c2", "c3"] and summary[1].min_confidence == 0.2


# --------------------------------------------------------------------------------------------
# Two annotators, two processes
# --------------------------------------------------------------------------------------------
def _annotator(db, name, subject, frame, barrier, results):
    store = AnnotationStore(db, timeout=10)
    mask = np.zeros((32, 32), bool)
    mask[frame:frame + 4, :] = True
    barrier.wait(timeout=20)
    try:
        doc = store.set_mask("clip-a", subject, frame, mask, expected_version=1, annotator=name)
        results.put((name, "saved", doc.version, ""))
    except ConflictError as exc:
        results.put((name, "conflict", exc.current_version, str(exc)))
    except Exception as exc:  # pragma: no cover - reported to the parent
        results.put((name, "error", 0, repr(exc)))


def test_two_processes_saving_the_same_clip_one_gets_a_conflict(store, stored):
    doc, _ = stored
    s1 = doc.subject_ids[0]
    barrier, results = FORK.Barrier(2), FORK.Queue()
    procs = [FORK.Process(target=_annotator, args=(store.path, name, s1, frame, barrier, results)) for name, frame in (("alice", 3), ("bob", 9))]
    for p in procs:
        p.start()
    got = sorted([results.get(timeout=30) for _ in procs], key=lambda r: r[1] != "saved")
    for p in procs:
        p.join(timeout=10)
    assert [r[1] for r in got] == ["saved", "conflict"], got
    (winner, _, version_w, _), (loser, _, current, message) = got
    assert version_w == 2 and current == 2
    # the message names who saved the newer version, what they changed, and what the loser changed
    assert f"{winner!r} saved version 2" in message and "nothing was overwritten" in message
    frames = {"alice": 3, "bob": 9}
    assert f"masks: frame(s) {frames[winner]} changed" in message and f"masks: frame(s) {frames[loser]} changed" in message
    now = store.get("clip-a")
    assert now.version == 2 and now.updated_by == winner
    assert now.mask(s1, frames[winner])[frames[winner]].all()  # the winner's change is stored...
    assert np.array_equal(now.mask(s1, frames[loser]), doc.mask(s1, frames[loser]))  # ...the loser's is not
    assert [r.annotator for r in store.history("clip-a")] == ["pipeline", winner]


def test_conflict_carries_both_versions_and_an_explicit_resave_wins(store, stored):
    doc, _ = stored
    s1 = doc.subject_ids[0]
    mine = store.get("clip-a")
    store.set_review("clip-a", "timeline", "rejected", reason="wrong start", expected_version=1, annotator="bob")
    mine.timeline.subjects[0].actions[0].text = "wanders about"
    with pytest.raises(ConflictError) as err:
        store.save(mine, annotator="alice")
    e = err.value
    assert e.clip_id == "clip-a" and e.expected_version == 1 and e.current_version == 2
    assert e.theirs.review_status("timeline") == "rejected" and e.mine.timeline.subjects[0].actions[0].text == "wanders about"
    assert e.their_changes == ["review of timeline: pending -> rejected (wrong start)"]
    assert e.my_changes[0].startswith(f"subject {s1!r} action 1:") and "'wanders about'" in e.my_changes[0]
    assert store.get("clip-a").timeline.subjects[0].actions[0].text != "wanders about"
    saved = store.save(mine, annotator="alice", expected_version=e.current_version)  # on purpose, after seeing theirs
    assert saved.version == 3 and saved.review_status("timeline") == "pending"
    assert "review of timeline: rejected -> pending" in store.history("clip-a")[-1].changes  # visible in the history


def test_adding_a_clip_twice_is_a_conflict(store, stored, tmp_path):
    doc, _ = _media_clip(tmp_path, 3, "clip-a")
    with pytest.raises(ConflictError, match="already exists"):
        store.add(doc, annotator="someone")


# --------------------------------------------------------------------------------------------
# A writer killed in the middle of a save
# --------------------------------------------------------------------------------------------
def _doomed_writer(db, ready, point):
    def hook(name):
        if name == point:
            Path(ready).touch()
            time.sleep(60)  # killed here, inside the transaction

    store = AnnotationStore(db, fault_hook=hook)
    doc = store.get("clip-a")
    for sid in doc.subject_ids:
        doc.set_masks(sid, np.ones((doc.num_frames, doc.height, doc.width), bool))
    doc.timeline.subjects[0].actions[0].text = "half-saved"
    store.save(doc, annotator="doomed")


@pytest.mark.parametrize("point", ["masks-half-written", "revision-written"])
def test_writer_killed_mid_save_leaves_the_previous_version(store, stored, tmp_path, point):
    doc, clip = stored
    ready = tmp_path / "ready"
    p = FORK.Process(target=_doomed_writer, args=(store.path, str(ready), point))
    p.start()
    try:
        deadline = time.monotonic() + 20
        while not ready.exists():
            assert p.is_alive() and time.monotonic() < deadline, "the writer never reached the fault point"
            time.sleep(0.01)
        p.kill()  # SIGKILL
        p.join(timeout=10)
        assert p.exitcode == -9
    finally:
        if p.is_alive():
            p.kill()
    reopened = AnnotationStore(store.path, timeout=2)
    assert reopened._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    now = reopened.get("clip-a")
    assert now.version == 1 and now.content_dict() == doc.content_dict()
    assert np.array_equal(now.masks_array(), clip.masks)
    assert [r.version for r in reopened.history("clip-a")] == [1]
    # the dead writer's lock is gone: the next save goes through at once
    assert reopened.set_review("clip-a", "masks", "accepted", expected_version=1, annotator="alice").version == 2
    reopened.close()


def test_an_error_in_the_middle_of_a_save_rolls_it_back(store, stored):
    doc, clip = stored

    def hook(name):
        if name == "masks-half-written":
            raise OSError("disk full (simulated)")

    store.fault_hook = hook
    edited = store.get("clip-a")
    edited.set_masks(edited.subject_ids[0], np.ones((edited.num_frames, 32, 32), bool))
    with pytest.raises(OSError, match="disk full"):
        store.save(edited, annotator="alice")
    store.fault_hook = None
    assert store.get("clip-a").content_dict() == doc.content_dict() and len(store.history("clip-a")) == 1
    assert store.save(edited, annotator="alice").version == 2  # the same change goes through once the fault is gone


# --------------------------------------------------------------------------------------------
# History and revert
# --------------------------------------------------------------------------------------------
def test_every_change_is_in_the_history_and_can_be_reverted(store, stored):
    v1, _ = stored
    s1 = v1.subject_ids[0]
    v2 = store.set_mask("clip-a", s1, 0, np.ones((32, 32), bool), expected_version=1, annotator="alice")
    tl = v2.timeline.copy()
    tl.subjects[0].actions[0].text = "sidles left"
    v3 = store.set_timeline("clip-a", tl, expected_version=2, annotator="bob")
    v4 = store.set_review("clip-a", "masks", "fixed", expected_version=3, annotator="carol")
    hist = store.history("clip-a")
    assert [(r.version, r.operation, r.annotator) for r in hist] == [
        (1, "create", "pipeline"), (2, "mask", "alice"), (3, "timeline", "bob"), (4, "review-masks", "carol")]
    assert hist[1].changes == [f"subject {s1!r} masks: frame(s) 0 changed"]
    assert "'sidles left'" in hist[2].changes[0] and hist[3].changes == ["review of masks: pending -> fixed"]
    assert all(r.at for r in hist)
    # each version can be read back as it was
    assert store.get_version("clip-a", 2).content_dict() == v2.content_dict()
    assert store.get_version("clip-a", 3).content_dict() == v3.content_dict()
    # revert to the original: a new version equal to version 1
    v5 = store.revert("clip-a", 1, expected_version=4, annotator="dave")
    assert v5.version == 5 and v5.content_dict() == v1.content_dict()
    assert store.history("clip-a")[-1].operation == "revert-to-1"
    # a revert is a change like any other: it can be reverted
    v6 = store.revert("clip-a", 4, expected_version=5, annotator="dave")
    assert v6.content_dict() == v4.content_dict()
    # a stale revert is a conflict too
    with pytest.raises(ConflictError):
        store.revert("clip-a", 1, expected_version=4, annotator="erin")
    # deleting is a version; reverting restores
    store.delete("clip-a", expected_version=6, annotator="erin")
    assert not store.exists("clip-a") and store.clip_ids() == []
    with pytest.raises(AnnotationError, match="was deleted"):
        store.get("clip-a")
    with pytest.raises(AnnotationError, match="was deleted"):
        store.set_review("clip-a", "masks", "accepted", expected_version=7, annotator="erin")
    v8 = store.revert("clip-a", 6, expected_version=7, annotator="erin")
    assert store.exists("clip-a") and v8.content_dict() == v4.content_dict()


def test_a_save_that_changes_nothing_makes_no_version(store, stored):
    doc, _ = stored
    same = store.save(store.get("clip-a"), annotator="alice")
    assert same.version == 1 and len(store.history("clip-a")) == 1


# --------------------------------------------------------------------------------------------
# A locked database
# --------------------------------------------------------------------------------------------
def test_locked_database_gives_a_clear_message_and_loses_nothing(tmp_path):
    doc, _ = _media_clip(tmp_path, 4, "clip-l")
    store = AnnotationStore(tmp_path / "locked.db", timeout=0.2)
    store.add(doc, annotator="pipeline")
    s1 = doc.subject_ids[0]
    other = sqlite3.connect(str(store.path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        with pytest.raises(StoreLockedError) as err:
            store.set_review("clip-l", "masks", "accepted", expected_version=1, annotator="alice")
        msg = str(err.value)
        assert "clip 'clip-l'" in msg and str(store.path) in msg and "locked by another writer" in msg and "was not changed" in msg
        assert err.value.pending_file is not None and err.value.pending_file.exists() and str(err.value.pending_file) in msg
        # readers are not blocked (WAL): the review page keeps working, and the store opens
        assert store.get("clip-l").version == 1
        second = AnnotationStore(store.path, timeout=0.2)
        assert second.get("clip-l").version == 1
        second.close()
        # a second change, based on the same version, is kept too
        with pytest.raises(StoreLockedError):
            store.set_mask("clip-l", s1, 0, np.ones((32, 32), bool), expected_version=1, annotator="bob")
        assert len(store.pending()) == 2
        # bad input is still reported as bad input, and not kept
        with pytest.raises(AnnotationError, match="unknown subject 's9'"):
            store.set_mask("clip-l", "s9", 0, np.ones((32, 32), bool), expected_version=1, annotator="bob")
        assert len(store.pending()) == 2
        # still locked: retrying keeps them
        assert all(isinstance(r, StoreLockedError) for _, r in store.retry_pending()) and len(store.pending()) == 2
    finally:
        other.execute("ROLLBACK")
        other.close()
    results = store.retry_pending()
    saved = [r for _, r in results if isinstance(r, ClipAnnotation)]
    conflicts = [r for _, r in results if isinstance(r, ConflictError)]
    assert len(saved) == 1 and saved[0].version == 2 and saved[0].review_status("masks") == "accepted"
    assert len(conflicts) == 1 and "alice" in str(conflicts[0])  # bob's pending change was based on version 1 too
    assert len(store.pending()) == 1  # the conflicting change is kept, not dropped
    store.close()


# --------------------------------------------------------------------------------------------
# Bad input
# --------------------------------------------------------------------------------------------
def test_bad_input_is_refused_with_the_clip_and_subject_named(store, stored):
    doc, _ = stored
    s1 = doc.subject_ids[0]
    with pytest.raises(AnnotationError, match=rf"clip 'clip-a', subject '{s1}', frame 3: mask is 16x32 \(height x width\) but the clip's frames are 32x32"):
        store.set_mask("clip-a", s1, 3, np.zeros((16, 32), bool), expected_version=1, annotator="a")
    with pytest.raises(AnnotationError, match=r"clip 'clip-a': unknown subject 's9' \(known: "):
        store.set_mask("clip-a", "s9", 3, np.zeros((32, 32), bool), expected_version=1, annotator="a")
    with pytest.raises(AnnotationError, match=rf"clip 'clip-a', subject '{s1}': frame 99 is outside the clip"):
        store.set_mask("clip-a", s1, 99, np.zeros((32, 32), bool), expected_version=1, annotator="a")
    with pytest.raises(AnnotationError, match=rf"subject '{s1}', frame 2: RLE runs cover"):
        store.set_mask("clip-a", s1, 2, {"size": [32, 32], "counts": "0"}, expected_version=1, annotator="a")
    with pytest.raises(AnnotationError, match=r"frame 2: mask is 8x8"):
        store.set_mask("clip-a", s1, 2, R.encode(np.ones((8, 8), bool)), expected_version=1, annotator="a")
    with pytest.raises(AnnotationError, match=r"clip 'nope' is not in the annotation store"):
        store.set_review("nope", "masks", "accepted", expected_version=1, annotator="a")
    with pytest.raises(AnnotationError, match="needs a reason"):
        store.set_review("clip-a", "masks", "rejected", expected_version=1, annotator="a")
    with pytest.raises(AnnotationError, match="annotator's name"):
        store.set_review("clip-a", "masks", "accepted", expected_version=1, annotator="  ")
    bad_tl = doc.timeline.copy()
    bad_tl.subjects[0].actions = [Action(0.0, 0.5, "walks"), Action(0.25, 1.0, "runs")]
    with pytest.raises(AnnotationError, match=rf"clip 'clip-a': subject '{s1}' .*overlaps"):
        store.set_timeline("clip-a", bad_tl, expected_version=1, annotator="a")
    with pytest.raises(AnnotationError, match=r"clip 'clip-a', face 1: unknown subject 'ghost'"):
        store.set_faces("clip-a", [Face("ghost", 0, (0, 0, 1, 1))], expected_version=1, annotator="a")
    with pytest.raises(AnnotationError, match="clip 'clip-a'.*masks must be"):
        store.set_masks("clip-a", s1, np.zeros((3, 32, 32), bool), expected_version=1, annotator="a")
    # a stale save
    store.set_review("clip-a", "masks", "accepted", expected_version=1, annotator="a")
    with pytest.raises(ConflictError, match="clip 'clip-a': not saved"):
        store.set_review("clip-a", "timeline", "accepted", expected_version=1, annotator="b")
    # nothing of the above was written
    assert [r.version for r in store.history("clip-a")] == [1, 2]
    with pytest.raises(AnnotationError, match="clip id must be"):
        store.add(ClipAnnotation.new("../evil", doc.timeline, 5, 32, 32), annotator="a")


# --------------------------------------------------------------------------------------------
# Export / import
# --------------------------------------------------------------------------------------------
def _three_clips(store, tmp_path):
    clips = {}
    for i, cid in enumerate(["c1", "c2", "c3"]):
        doc, clip = _media_clip(tmp_path, 20 + i, cid)
        store.add(doc, annotator="pipeline")
        clips[cid] = clip
    for cid in ("c1", "c2"):
        store.set_review(cid, "masks", "accepted", expected_version=1, annotator="ann")
        store.set_review(cid, "timeline", "fixed", expected_version=2, annotator="ann")
    store.set_review("c3", "masks", "rejected", reason="subject missing", expected_version=1, annotator="ann")
    return clips


def _comparable(doc, media=False):
    c = doc.content_dict()
    if not media:
        c.pop("frames"), c.pop("video"), c.pop("inter_references")
        for s in c["timeline"]["subjects"]:
            s.pop("references")
    return c


def test_dataset_export_loads_in_the_trainer_and_imports_back(store, tmp_path):
    from train.dataset import ReactIDDataset

    clips = _three_clips(store, tmp_path)
    report = export_dataset(store, tmp_path / "ds")
    assert report.written == ["c1", "c2"] and [c for c, _ in report.skipped] == ["c3"] and "rejected" in report.skipped[0][1]
    ds = ReactIDDataset(tmp_path / "ds", deep_check=True)
    assert ds.ids() == ["c1", "c2"] and ds.skipped == []
    for i, cid in enumerate(ds.ids()):
        a = ds.load_arrays(i)
        assert np.array_equal(a["frames"], clips[cid].frames) and np.array_equal(a["masks"], clips[cid].masks)
        assert np.array_equal(a["refs"][0], clips[cid].references_intra[0][0])
        assert ds.timelines[i].to_dict()["subjects"][0]["actions"] == clips[cid].timeline.to_dict()["subjects"][0]["actions"]
        assert ds.records[i]["difficulty"]["overall_inter"] > ds.records[i]["difficulty"]["overall_intra"]
    item = ds[(0, True)]
    assert item["video"].shape[0] == 3 and item["reference_kind"] == "inter"

    # into a fresh store: every annotation comes back; media now point into the dataset
    fresh = AnnotationStore(tmp_path / "fresh.db")
    rep = import_dataset(fresh, tmp_path / "ds", annotator="importer")
    assert rep.ok and rep.created == ["c1", "c2"]
    for cid in ("c1", "c2"):
        assert _comparable(fresh.get(cid)) == _comparable(store.get(cid))
        assert (tmp_path / "ds" / "samples" / cid / "frames.npz").samefile(fresh.resolve(fresh.get(cid).frames))
    fresh.close()

    # back into the same store: nothing changed, so no new version
    rep = import_dataset(store, tmp_path / "ds", annotator="importer")
    assert rep.ok and rep.unchanged == ["c1", "c2"] and store.get("c1").version == 3
    # a clip changed in the store since the export: the import of it is a conflict, not an overwrite
    store.set_review("c1", "masks", "fixed", expected_version=3, annotator="ann")
    rep = import_dataset(store, tmp_path / "ds", annotator="importer")
    assert [c for c, _ in rep.conflicts] == ["c1"] and "'ann' saved version 4" in rep.conflicts[0][1]
    assert store.get("c1").review_status("masks") == "fixed"
    rep = import_dataset(store, tmp_path / "ds", annotator="importer", force=True)
    assert rep.updated == ["c1"] and store.get("c1").review_status("masks") == "accepted"
    # the sprite writer's datasets come in too (no store provenance)
    from train.dataset import write_sprite_dataset

    write_sprite_dataset(tmp_path / "sprites", 2, seed=1, difficulty=False, progress=False, **WORLD)
    rep = import_dataset(store, tmp_path / "sprites", annotator="importer")
    assert rep.created == ["sprite-000000", "sprite-000001"]
    assert store.get("sprite-000001").meta["source"] == "sprites"
    # ...and go out again with their sprite-world meta where the trainer's tools look for it
    export_dataset(store, tmp_path / "again", clips=rep.created, review="all", difficulty=False)
    before, after = ReactIDDataset(tmp_path / "sprites"), ReactIDDataset(tmp_path / "again")
    assert [r["meta"]["identities"] for r in after.records] == [r["meta"]["identities"] for r in before.records]
    assert after.clip(1).identities == before.clip(1).identities
    assert np.array_equal(after.clip(1).masks, before.clip(1).masks) and np.array_equal(after.clip(1).frames, before.clip(1).frames)


def test_labelstudio_round_trip(store, tmp_path):
    clips = _three_clips(store, tmp_path)
    path = export_labelstudio(store, tmp_path / "ls.json")
    tasks = json.loads(path.read_text())
    assert [t["data"]["clip_id"] for t in tasks] == ["c1", "c2", "c3"]
    types = {r["type"] for r in tasks[0]["annotations"][0]["result"]}
    assert {"timelinelabels", "textarea", "brushlabels", "rectanglelabels", "choices"} <= types
    fresh = AnnotationStore(tmp_path / "fresh.db")
    rep = import_labelstudio(fresh, path, annotator="ls")
    assert rep.ok and rep.created == ["c1", "c2", "c3"]
    for cid in clips:
        assert _comparable(fresh.get(cid), media=True) == _comparable(store.get(cid), media=True)
    fresh.close()
    # edited in Label Studio: a caption and a boundary
    res = tasks[0]["annotations"][0]["result"]
    cap = next(r for r in res if r["type"] == "textarea" and r["from_name"] == "caption")
    cap["value"]["text"] = ["drifts slowly"]
    path.write_text(json.dumps(tasks))
    rep = import_labelstudio(store, path, annotator="ls-editor")
    assert rep.updated == ["c1"] and rep.unchanged == ["c2", "c3"]
    last = store.history("c1")[-1]
    assert last.operation == "import-labelstudio" and last.annotator == "ls-editor" and "'drifts slowly'" in " ".join(last.changes)
    # importing the same file again: the clip moved on since that export -> conflict
    rep = import_labelstudio(store, path, annotator="ls-editor")
    assert [c for c, _ in rep.conflicts] == ["c1"]
    # a task labelled with a subject the clip does not have
    bad = json.loads(json.dumps(tasks[1]))
    mask_res = next(r for r in bad["annotations"][0]["result"] if r["type"] == "brushlabels")
    mask_res["value"]["brushlabels"] = ["ghost"]
    rep = import_labelstudio(store, [bad], annotator="x")
    assert rep.errors and rep.errors[0][0] == "c2" and "'ghost'" in rep.errors[0][1]


def test_coco_round_trip(store, tmp_path):
    clips = _three_clips(store, tmp_path)
    path = export_coco(store, tmp_path / "coco.json")
    coco = json.loads(path.read_text())
    # a valid COCO RLE that pycocotools decodes to the ground-truth masks
    img = {im["id"]: im for im in coco["images"]}
    track = {t["id"]: t for t in coco["tracks"]}
    vid = {v["id"]: v["name"] for v in coco["videos"]}
    sub_anns = [a for a in coco["annotations"] if "track_id" in a]
    assert len(sub_anns) == sum(c.masks.shape[0] * c.masks.shape[1] for c in clips.values())
    for a in sub_anns[:40]:
        cid = vid[a["video_id"]]
        k = [s.id for s in clips[cid].timeline.subjects].index(track[a["track_id"]]["subject_id"])
        m = coco_mask.decode({"size": a["segmentation"]["size"], "counts": a["segmentation"]["counts"].encode()})
        assert np.array_equal(m.astype(bool), clips[cid].masks[k, img[a["image_id"]]["frame_id"]])
    # into a fresh store: clips created with their subjects and masks (the timeline needs labels)
    fresh = AnnotationStore(tmp_path / "fresh.db")
    rep = import_coco(fresh, path, annotator="coco")
    assert rep.ok and rep.created == ["c1", "c2", "c3"]
    for cid, clip in clips.items():
        got, want = fresh.get(cid), store.get(cid)
        assert np.array_equal(got.masks_array(), clip.masks) and got.masks == want.masks
        assert [f.to_dict() for f in got.faces] == [f.to_dict() for f in want.faces]
        assert [(s.id, s.name, s.kind) for s in got.timeline.subjects] == [(s.id, s.name, s.kind) for s in want.timeline.subjects]
    fresh.close()
    # back into the same store: unchanged; after clearing a mask, the import restores it
    rep = import_coco(store, path, annotator="coco")
    assert rep.unchanged == ["c1", "c2", "c3"]
    c2 = store.get("c2")
    s1 = c2.subject_ids[0]
    store.set_mask("c2", s1, 0, None, expected_version=c2.version, annotator="ann")
    rep = import_coco(store, path, annotator="coco")
    assert [c for c, _ in rep.conflicts] == ["c2"]  # changed since the export
    rep = import_coco(store, path, annotator="coco", force=True)
    assert rep.updated == ["c2"] and np.array_equal(store.get("c2").masks_array(), clips["c2"].masks)
    # a COCO file whose masks do not fit the clip
    coco["annotations"][0]["segmentation"] = R.encode(np.zeros((8, 8), bool))
    rep = import_coco(store, coco, annotator="coco", force=True)
    assert rep.errors and rep.errors[0][0] == "c1" and "mask is 8x8" in rep.errors[0][1]


def test_export_skips_a_clip_with_missing_masks_and_says_why(store, tmp_path):
    doc, _ = _media_clip(tmp_path, 7, "gappy")
    doc.set_mask(doc.subject_ids[0], 4, None)
    store.add(doc, annotator="p")
    report = export_dataset(store, tmp_path / "ds", review="all", difficulty=False)
    assert report.written == [] and report.skipped[0][0] == "gappy" and "no mask for frame(s) 4" in report.skipped[0][1]
    assert (tmp_path / "ds" / "manifest.jsonl").read_text() == ""


def test_annotate_imports_only_model_except_the_difficulty_cues():
    """DESIGN.md §2: annotate -> model only. The dataset format (model/dataset_format.py) and the
    subject crop (model/references.py) are in model/; the one exception left is the difficulty cues
    (train.difficulty, paper §3.2), imported inside exchange.export_dataset when it computes them."""
    import ast

    root = Path(__file__).parents[1] / "annotate"
    for f in root.glob("*.py"):
        tree = ast.parse(f.read_text())
        top = [n for n in tree.body if isinstance(n, (ast.Import, ast.ImportFrom))]
        mods = [a.name for n in top if isinstance(n, ast.Import) for a in n.names] + [n.module or "" for n in top if isinstance(n, ast.ImportFrom)]
        assert not [m for m in mods if m.split(".")[0] in ("train", "studio", "gradio")], f.name
        nested = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and n.module.split(".")[0] == "train"}
        assert nested <= ({"train.difficulty"} if f.name == "exchange.py" else set()), (f.name, nested)
