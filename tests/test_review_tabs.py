"""The annotation review tabs' logic, on a real store of rendered sprite clips (no mocks):
mask propagation by optical flow, the colour overlay, the brush strokes, the queue, and the tabs'
handlers against stale saves, a locked database, masks of the wrong size, SAM2 not installed, an
empty store and an import. The browser side is tests/test_review_browser.py."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import gradio as gr
import numpy as np
import pytest

from annotate.document import ClipAnnotation
from annotate.propagate import iou, propagate
from annotate.store import AnnotationStore
from studio import review_common as rc
from studio.label_review import LabelReviewTab
from studio.mask_review import (
    ADD_COLOR,
    REMOVE_COLOR,
    MaskReviewTab,
    MaskSizeError,
    editor_value,
    mask_from_editor,
    mask_from_image,
    overlay,
)
from train.sprites import generate_clip

SIZE = 64
DAMAGED_FRAME = 8  # clip-a's first subject has no pixels here: the mask to fix


# --------------------------------------------------------------------------------------------
# A store of rendered sprite clips (also used by the browser tests)
# --------------------------------------------------------------------------------------------
def build_review_store(folder: Path, seeds=(3, 11, 5)) -> tuple[Path, dict]:
    """clip-a, clip-b, clip-c: 2 s sprite clips at 64x64 with their exact masks and timelines,
    frames in frames.npz beside the database. clip-a's first subject lost its mask on one frame;
    clip-b's first subject is an animal; confidences 0.3 / 0.5 / 0.7."""
    folder.mkdir(parents=True, exist_ok=True)
    db = folder / "annotations.db"
    truth = {}
    with AnnotationStore(db) as store:
        for i, seed in enumerate(seeds):
            clip = generate_clip(seed, height=SIZE, width=SIZE, duration=2.0, max_subjects=2)
            cid = f"clip-{'abc'[i]}"
            (folder / cid).mkdir(exist_ok=True)
            np.savez_compressed(folder / cid / "frames.npz", frames=clip.frames)
            tl = clip.timeline.copy()
            if i == 1:
                tl.subjects[0].kind = "animal"
            masks = clip.masks.copy()
            if i == 0:
                masks[0, DAMAGED_FRAME] = False
            doc = ClipAnnotation.new(cid, tl, *clip.frames.shape[:3], masks=masks, frames=f"{cid}/frames.npz",
                                     sources={"masks": "sprite-ground-truth", "timeline": "sprite-ground-truth"},
                                     confidence={s.id: 0.3 + 0.2 * i for s in tl.subjects})
            store.add(doc, annotator="pipeline")
            truth[cid] = clip
    return db, truth


@pytest.fixture
def review_store(tmp_path):
    return build_review_store(tmp_path / "store")


@pytest.fixture
def tabs(review_store, tmp_path):
    db, truth = review_store
    ctx = rc.ReviewContext(db, tmp_path / "work", timeout=0.3)
    with gr.Blocks():
        mask_tab, label_tab = MaskReviewTab(ctx), LabelReviewTab(ctx)
        mask_tab.build()
        label_tab.build()
    yield ctx, mask_tab, label_tab, truth
    ctx.close()


FILTERS = ("pending", rc.ANY, 1.0)


def _state(out: dict, tab) -> dict:
    return out[tab.state]


def _stroke(shape=(256, 256), where=None, color=ADD_COLOR) -> np.ndarray:
    """A layer as the editor sends it: painted pixels opaque in the brush's colour."""
    layer = np.zeros((*shape, 4), np.uint8)
    rgb = tuple(int(color[i:i + 2], 16) for i in (1, 3, 5))
    layer[where] = (*rgb, 255)
    return layer


# --------------------------------------------------------------------------------------------
# Propagation
# --------------------------------------------------------------------------------------------
def _moving_square(speed: int, textured: bool, F: int = 9):
    rng = np.random.default_rng(0)
    bg = rng.integers(90, 160, (SIZE, SIZE, 3)).astype(np.uint8) if textured else np.full((SIZE, SIZE, 3), 128, np.uint8)
    frames = np.repeat(bg[None], F, 0).copy()
    gt = np.zeros((F, SIZE, SIZE), bool)
    for f in range(F):
        x, y = min(4 + speed * f, 46), 20 + f
        gt[f, y:y + 16, x:x + 16] = True
        sq = np.full((16, 16, 3), (220, 40, 40), np.uint8)
        if textured:
            sq[::4, :] = (250, 200, 200)
        frames[f, y:y + 16, x:x + 16] = sq
    return frames, gt


@pytest.mark.parametrize("speed", [3, 6])
def test_flow_propagation_follows_a_moving_square(speed):
    frames, gt = _moving_square(speed, textured=True)
    prop = propagate(frames, 4, gt[4], 4)
    assert sorted(prop.masks) == [0, 1, 2, 3, 5, 6, 7, 8] and "opencv-farneback" in prop.backend
    ious = [iou(prop.masks[f], gt[f]) for f in sorted(prop.masks)]
    copied = [iou(gt[4], gt[f]) for f in sorted(prop.masks)]
    assert min(ious) >= 0.9, ious
    assert np.mean(ious) > np.mean(copied) + 0.3  # it moved with the square


def test_flow_propagation_on_a_flat_square_uses_the_fitted_motion():
    # Dense flow decays inside a flat-coloured subject (the square falls behind); the fitted
    # similarity carries it further. Measured: dense flow alone 0.42-0.80, with the fit 0.76-0.84.
    from annotate.propagate import backward_flow, warp_mask

    frames, gt = _moving_square(3, textured=False)
    ious = [iou(m, gt[f]) for f, m in sorted(propagate(frames, 4, gt[4], 4).masks.items())]
    dense, cur = [], gt[4]
    for f in range(5, 9):
        cur = warp_mask(cur, backward_flow(frames[f], frames[f - 1]))
        dense.append(iou(cur, gt[f]))
    assert min(ious) >= 0.7, ious
    assert np.mean(ious[4:]) > np.mean(dense) + 0.1, (ious, dense)


def test_flow_propagation_on_a_sprite_clip():
    clip = generate_clip(11, height=SIZE, width=SIZE, duration=2.0, max_subjects=2)  # a diamond drifting left
    prop = propagate(clip.frames, 16, clip.masks[0, 16], 4)
    assert min(iou(m, clip.masks[0, f]) for f, m in prop.masks.items()) >= 0.9
    with pytest.raises(ValueError, match="the mask is 32x32 but the frames are 64x64"):
        propagate(clip.frames, 16, np.zeros((32, 32), bool), 2)


# --------------------------------------------------------------------------------------------
# Pixels: overlay, editor strokes, mask images
# --------------------------------------------------------------------------------------------
def test_overlay_tints_each_subject_in_its_colour():
    frame = np.full((4, 6, 3), 100, np.uint8)
    masks = np.zeros((2, 4, 6), bool)
    masks[0, 0, 0] = True
    masks[1, 3, 5] = True
    out = overlay(frame, masks, ["#ff0000", "#0000ff"], k=2)
    assert out.shape == (8, 12, 3) and out.dtype == np.uint8
    assert out[0, 0, 0] > 150 and out[0, 0, 2] < 100  # red subject
    assert out[7, 11, 2] > 150 and out[7, 11, 0] < 100  # blue subject
    assert (out[4, 4] == 100).all()  # background untouched
    assert (out[0:2, 0:2] == out[0, 0]).all()  # enlarged by whole pixels


def test_editor_strokes_add_and_remove_and_wrong_sizes_are_refused():
    H, W, k = 8, 8, 4
    frame = np.zeros((H, W, 3), np.uint8)
    base = np.zeros((H, W), bool)
    base[2:4, 2:4] = True
    value = editor_value(frame, base, "#e6194b", k)
    assert value["background"].shape == (H * k, W * k, 3) and value["layers"] == []
    assert value["background"][2 * k, 2 * k, 0] > value["background"][0, 0, 0]  # the mask is tinted in the subject's colour
    assert np.array_equal(mask_from_editor(value, base, H, W, k), base)  # no strokes: unchanged
    layer = _stroke((H * k, W * k), (slice(6 * k, 7 * k), slice(6 * k, 8 * k)))  # two pixels added
    layer[2 * k:3 * k, 2 * k:4 * k] = _stroke((k, 2 * k), (slice(None), slice(None)), REMOVE_COLOR)  # the base's top row removed
    layer[0, 0] = layer[6 * k, 6 * k]  # one sixteenth of a pixel: not enough to count
    got = mask_from_editor(dict(value, layers=[layer]), base, H, W, k)
    want = base.copy()
    want[6, 6:8] = True
    want[2, 2:4] = False
    assert np.array_equal(got, want)
    with pytest.raises(MaskSizeError, match=r"The edited mask is 20x30 pixels \(width x height\), but this clip's frames are 8x8 or 32x32"):
        mask_from_editor(dict(value, layers=[np.zeros((30, 20, 4), np.uint8)]), base, H, W, k)
    with pytest.raises(MaskSizeError, match="The image in the editor is 5x5 pixels"):
        mask_from_editor(dict(value, background=np.zeros((5, 5, 4), np.uint8)), base, H, W, k)
    # a mask image: the clip's size, the display size, or refused
    img = np.zeros((H, W), np.uint8)
    img[1, 1] = 255
    assert mask_from_image(img, H, W, k)[1, 1] and mask_from_image(img, H, W, k).sum() == 1
    assert mask_from_image(img.repeat(k, 0).repeat(k, 1), H, W, k).sum() == 1
    with pytest.raises(MaskSizeError, match="The mask image is 5x8 pixels.*Nothing was saved"):
        mask_from_image(np.zeros((8, 5), np.uint8), H, W, k)


# --------------------------------------------------------------------------------------------
# The queue and the database path
# --------------------------------------------------------------------------------------------
def test_queue_filters_and_counters(review_store):
    db, _ = review_store
    with AnnotationStore(db) as store:
        def ids(*a):
            return [s.clip_id for s in rc.queue(store, "masks", *a)]
        assert ids("pending", rc.ANY, 1.0) == ["clip-a", "clip-b", "clip-c"]
        assert ids("pending", "animal", 1.0) == ["clip-b"]
        assert ids(rc.ANY, rc.ANY, 0.5) == ["clip-a", "clip-b"]  # lowest confidence 0.3, 0.5
        assert ids("pending", rc.ANY, "") == ["clip-a", "clip-b", "clip-c"]
        store.set_review("clip-b", "masks", "accepted", expected_version=1, annotator="alice")
        store.set_review("clip-c", "masks", "rejected", reason="bleeds", expected_version=1, annotator="alice")
        assert ids("pending", rc.ANY, 1.0) == ["clip-a"]
        assert ids("accepted", rc.ANY, 1.0) == ["clip-b"] and ids("rejected", rc.ANY, 1.0) == ["clip-c"]
        assert not ids("pending", "human", 1.0)
        md = rc.counts_markdown(store, "masks")
        assert "**1 done** (1 accepted, 0 fixed)" in md and "**1 rejected**" in md and "**1 left**" in md
        items = rc.queue(store, "masks", rc.ANY, rc.ANY, 1.0)
        assert rc.next_in_queue(items, "clip-a") == "clip-b" and rc.next_in_queue(items, "clip-c") == "clip-a"
        assert rc.next_in_queue(items, None) == "clip-a" and rc.next_in_queue([], "clip-a") is None
        assert rc.next_in_queue(rc.queue(store, "masks", "pending", rc.ANY, 1.0), "clip-b") == "clip-a"  # left the queue: wraps
        assert rc.queue_label(items[1], "masks").startswith("clip-b · accepted · animal")
    for bad, msg in ((("weird", rc.ANY, 1), "Unknown status"), ((rc.ANY, "robot", 1), "Unknown subject kind"),
                     ((rc.ANY, rc.ANY, 2), "between 0 and 1"), ((rc.ANY, rc.ANY, "x"), "must be a number")):
        with pytest.raises(rc.UserError, match=msg):
            rc.queue_filters(*bad)


def test_database_path_from_flag_env_or_workdir(tmp_path, monkeypatch):
    import app

    monkeypatch.delenv(rc.DB_ENV, raising=False)
    assert rc.resolve_db_path(None, tmp_path) == (tmp_path / "annotations" / "annotations.db").resolve()
    monkeypatch.setenv(rc.DB_ENV, str(tmp_path / "env.db"))
    assert rc.resolve_db_path(None, tmp_path) == (tmp_path / "env.db").resolve()
    assert rc.resolve_db_path(tmp_path / "flag.db", tmp_path) == (tmp_path / "flag.db").resolve()
    assert app.parse_args([]).annotation_db == str(tmp_path / "env.db")
    assert app.parse_args(["--annotation-db", "x/y.db"]).annotation_db == "x/y.db"


# --------------------------------------------------------------------------------------------
# The mask tab's handlers against the real store
# --------------------------------------------------------------------------------------------
def test_fix_and_accept_propagates_and_records_the_annotator(tabs):
    ctx, mt, _, truth = tabs
    out = mt.on_load({}, *FILTERS)
    st = _state(out, mt)
    assert st == {"clip": "clip-a", "version": 1, "frames": 33}
    assert out[mt.view].shape == (256, 256, 3) and "clip-a" in out[mt.header] and "pending" in out[mt.header]
    sid = "s1"
    gt = truth["clip-a"].masks[0]
    out = mt.on_frame(st, DAMAGED_FRAME, sid)
    assert out[mt.editor]["background"].shape == (256, 256, 3)
    # paint the true mask of the damaged frame in the add colour (what the brush does)
    value = dict(out[mt.editor], layers=[_stroke(where=gt[DAMAGED_FRAME].repeat(4, 0).repeat(4, 1))])
    assert "Annotator" in mt.on_fix(st, "  ", DAMAGED_FRAME, sid, value, {}, 2, "flow", *FILTERS)[mt.message]  # no name: refused
    out = mt.on_fix(st, "alice", DAMAGED_FRAME, sid, value, {}, 2, "flow", *FILTERS, accept=True)
    assert "**fixed**" in out[mt.message] and "propagated to frame(s) 6-7, 9-10" in out[mt.message], out[mt.message]
    with AnnotationStore(ctx.db_path) as store:
        doc = store.get("clip-a")
        assert doc.version == 2 and doc.updated_by == "alice"
        assert doc.review["masks"].status == "fixed" and doc.review["masks"].annotator == "alice"
        assert np.array_equal(doc.mask(sid, DAMAGED_FRAME), gt[DAMAGED_FRAME])
        for f in (6, 7, 9, 10):
            assert iou(doc.mask(sid, f), gt[f]) >= 0.85
        assert doc.meta["mask_review"]["hand_fixed"] == {sid: [DAMAGED_FRAME]} and "opencv-farneback" in doc.sources["mask_fixes"]
        hist = store.history("clip-a")
        assert hist[-1].annotator == "alice" and hist[-1].operation == "mask-fix"
    # a second fix two frames on, propagated 4 frames: it stops before the frame fixed by hand
    st = _state(out, mt)
    out = mt.on_frame(st, 10, sid)
    value = dict(out[mt.editor], layers=[_stroke(where=(slice(0, 8), slice(0, 8)))])  # two pixels in a corner
    out = mt.on_fix(st, "bob", 10, sid, value, {}, 4, "flow", *FILTERS, accept=False)
    assert "Saved (version 3)" in out[mt.message] and "stopped before frame(s) 8" in out[mt.message], out[mt.message]
    with AnnotationStore(ctx.db_path) as store:
        doc = store.get("clip-a")
        assert np.array_equal(doc.mask(sid, DAMAGED_FRAME), gt[DAMAGED_FRAME])  # kept
        assert doc.mask(sid, 10)[0:2, 0:2].all() and doc.review["masks"].status == "fixed"
        assert doc.meta["mask_review"]["hand_fixed"] == {sid: [DAMAGED_FRAME, 10]}


def test_accept_reject_and_next_clip(tabs):
    ctx, mt, _, _ = tabs
    st = _state(mt.on_load({}, *FILTERS), mt)
    out = mt.on_reject(st, "alice", "", *FILTERS, 0, "s1")
    assert "needs a reason" in out[mt.message] and mt.state not in out
    out = mt.on_accept(st, "alice", *FILTERS, 0, "s1")
    assert "**accepted** (version 2)" in out[mt.message] and "**1 done**" in out[mt.counts] and "**2 left**" in out[mt.counts]
    out = mt.on_next_clip(_state(out, mt), *FILTERS)
    assert _state(out, mt)["clip"] == "clip-b"
    out = mt.on_reject(_state(out, mt), "bob", "bleeds into the wall", *FILTERS, 0, "s1")
    assert "**rejected**" in out[mt.message]
    with AnnotationStore(ctx.db_path) as store:
        assert store.get("clip-b").review["masks"].reason == "bleeds into the wall"
        assert store.get("clip-a").review["masks"].annotator == "alice"


def test_stale_save_shows_both_versions_and_overwrites_nothing(tabs):
    ctx, mt, _, truth = tabs
    out = mt.on_load({}, *FILTERS)
    st = _state(out, mt)
    with AnnotationStore(ctx.db_path) as store:  # another annotator saves first
        store.set_mask("clip-a", "s1", DAMAGED_FRAME, truth["clip-a"].masks[0, DAMAGED_FRAME], expected_version=1, annotator="bob")
    assert mt.state not in mt.on_load(st, *FILTERS)  # a filter change keeps the page's version (and its check)
    out = mt.on_frame(st, DAMAGED_FRAME, "s1")  # the page draws its own version (frame 8 still empty), not bob's
    assert not np.array_equal(out[mt.view], mt.on_frame({**st, "version": 2}, DAMAGED_FRAME, "s1")[mt.view])
    value = dict(out[mt.editor], layers=[_stroke(where=(slice(100, 140), slice(100, 140)))])
    out = mt.on_fix(st, "alice", DAMAGED_FRAME, "s1", value, {}, 0, "flow", *FILTERS)
    msg = out[mt.message]
    assert "Not saved: this clip changed while you were reviewing it" in msg and "Nothing was overwritten" in msg
    assert "Stored version 2** (by bob" in msg and "subject 's1' masks: frame(s) 8 changed" in msg and "Your version** (based on version 1" in msg
    gallery = out[mt.conflict]
    assert gallery["visible"] is True and len(gallery["value"]) == 2 and "stored version 2" in gallery["value"][0][1]
    out = mt.on_accept(st, "alice", *FILTERS, 0, "s1")
    assert "Not saved" in out[mt.message] and "review of masks: pending -> accepted" in out[mt.message]
    with AnnotationStore(ctx.db_path) as store:
        doc = store.get("clip-a")
        assert doc.version == 2 and doc.updated_by == "bob" and doc.review["masks"].status == "pending"
        assert np.array_equal(doc.mask("s1", DAMAGED_FRAME), truth["clip-a"].masks[0, DAMAGED_FRAME])


def test_wrong_size_mask_is_refused_and_sam2_reports_not_available(tabs, tmp_path):
    from PIL import Image

    ctx, mt, _, _ = tabs
    out = mt.on_load({}, *FILTERS)
    st = _state(out, mt)
    bad = dict(out[mt.editor], layers=[np.zeros((100, 80, 4), np.uint8)])
    msg = mt.on_fix(st, "alice", 0, "s1", bad, {}, 0, "flow", *FILTERS)[mt.message]
    assert "is 80x100 pixels (width x height), but this clip's frames are 64x64 or 256x256" in msg and "Nothing was saved" in msg
    png = tmp_path / "wrong.png"
    Image.fromarray(np.zeros((50, 40), np.uint8)).save(png)
    assert "The mask image is 40x50 pixels" in mt.on_upload(str(png), st, 0, "s1")[mt.message]
    good = tmp_path / "good.png"
    m = np.zeros((SIZE, SIZE), np.uint8)
    m[10:20, 10:20] = 255
    Image.fromarray(m).save(good)
    up = mt.on_upload(str(good), st, 0, "s1")
    assert "Loaded good.png" in up[mt.message] and up[mt.base]["frame"] == 0
    value = dict(up[mt.editor], layers=[_stroke(where=(slice(0, 4), slice(0, 4)))])
    out = mt.on_fix(st, "alice", 0, "s1", value, up[mt.base], 3, "sam2", *FILTERS)
    assert "SAM2 is not available" in out[mt.message] and "--sam2-model" in out[mt.message]
    out = mt.on_fix(st, "alice", 0, "s1", value, up[mt.base], 0, "flow", *FILTERS, accept=False)
    assert "Saved (version 2)" in out[mt.message]
    with AnnotationStore(ctx.db_path) as store:
        want = m.astype(bool)
        want[0, 0] = True
        assert np.array_equal(store.get("clip-a").mask("s1", 0), want)  # the uploaded mask plus the stroke
        assert store.get("clip-a").version == 2


def test_locked_database_gives_a_message_and_keeps_the_change(tabs):
    ctx, mt, lt, _ = tabs
    st = _state(mt.on_load({}, *FILTERS), mt)
    other = sqlite3.connect(str(ctx.db_path), isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another writer holds the lock
    try:
        msg = mt.on_accept(st, "alice", *FILTERS, 0, "s1")[mt.message]
        assert "Not saved: the annotation database is locked" in msg and "Save waiting changes" in msg and "Traceback" not in msg
        assert len(ctx.store().pending()) == 1
        assert _state(lt.on_load({}, *FILTERS), lt)["clip"] == "clip-a"  # reading still works (WAL)
    finally:
        other.execute("ROLLBACK")
        other.close()
    assert "saved clip-a as version 2" in mt.db.do_retry()
    with AnnotationStore(ctx.db_path) as store:
        r = store.get("clip-a").review["masks"]
        assert (r.status, r.annotator) == ("accepted", "alice")


# --------------------------------------------------------------------------------------------
# The label tab's handlers
# --------------------------------------------------------------------------------------------
def _widget_value(doc: dict) -> str:
    return json.dumps({"timeline": doc, "colors": []})


def test_label_edit_approve_and_stale_approve(tabs):
    ctx, _, lt, _ = tabs
    out = lt.on_load({}, *FILTERS)
    st = _state(out, lt)
    assert st["clip"] == "clip-a" and Path(out[lt.video]).is_file() and out[lt.video].endswith(".mp4")
    assert json.loads(out[lt.keys]) == {"fps": 16} and "Labels OK" in out[lt.problems]
    doc = json.loads(out[lt.doc_json])
    first = doc["subjects"][0]["actions"][0]
    # drag the first block's end a quarter second earlier and edit its caption (the widget sends the whole document)
    edited = json.loads(json.dumps(doc))
    edited["subjects"][0]["actions"][0].update(end=first["end"] - 0.25, text="rises slowly")
    out = lt.on_widget_input(_widget_value(edited), st)
    st = _state(out, lt)
    assert "not saved yet" in out[lt.message] and json.loads(out[lt.doc_json])["subjects"][0]["actions"][0]["text"] == "rises slowly"
    # an overlap is a problem: approving is refused
    broken = json.loads(json.dumps(edited))
    broken["subjects"][0]["actions"].append({"start": 0.0, "end": 0.5, "text": "overlaps"})
    bad = lt.on_widget_input(_widget_value(broken), st)
    assert "problem" in bad[lt.problems] and bad[lt.widget]["problems"] and "Fix problems" not in bad[lt.problems]
    assert "timeline has problems" in lt.on_approve(_state(bad, lt), "alice", *FILTERS)[lt.message]
    out = lt.on_approve(st, "alice", *FILTERS)
    assert "Labels **fixed** (version 2)" in out[lt.message], out[lt.message]
    with AnnotationStore(ctx.db_path) as store:
        d = store.get("clip-a")
        a = d.timeline.subjects[0].sorted_actions()[0]
        assert (a.end, a.text) == (first["end"] - 0.25, "rises slowly")
        assert (d.review["timeline"].status, d.review["timeline"].annotator, d.review["masks"].status) == ("fixed", "alice", "pending")
        assert d.missing_mask_frames("s1") == []  # the masks stay
    out = lt.on_next_clip(_state(out, lt), *FILTERS)
    st_b = _state(out, lt)
    assert st_b["clip"] == "clip-b"
    # meanwhile someone else rejects clip-b: this page's approval is refused, both shown
    with AnnotationStore(ctx.db_path) as store:
        store.set_review("clip-b", "timeline", "rejected", reason="wrong subject", expected_version=1, annotator="bob")
    out = lt.on_approve(st_b, "alice", *FILTERS)
    assert "Not saved: this clip changed" in out[lt.message] and out[lt.conflict]["visible"] is True
    assert "review: rejected (wrong subject)" in out[lt.theirs] and "review: accepted" in out[lt.mine]
    out = lt.on_reload(st_b, *FILTERS)
    out = lt.on_approve(_state(out, lt), "alice", *FILTERS)  # unchanged labels: accepted
    assert "Labels **accepted** (version 3)" in out[lt.message]
    assert "needs a reason" in lt.on_reject(_state(out, lt), "alice", " ", *FILTERS)[lt.message]


def test_empty_store_explains_how_to_fill_it_and_import_works(tmp_path):
    from train.dataset import write_sprite_dataset

    ctx = rc.ReviewContext(tmp_path / "work" / "annotations" / "annotations.db", tmp_path / "work", timeout=0.3)
    with gr.Blocks():
        mt = MaskReviewTab(ctx)
        mt.build()
    out = mt.on_load({}, *FILTERS)
    assert out[mt.empty]["visible"] is True and "python -m annotate run" in out[mt.empty]["value"] and "--annotation-db" in out[mt.empty]["value"]
    assert "Type the path" in mt.db.do_import("", "alice")
    assert "no manifest.jsonl" in mt.db.do_import(str(tmp_path), "alice")
    assert "Annotator" in mt.db.do_import(str(tmp_path), "")
    ds = tmp_path / "ds"
    write_sprite_dataset(ds, 2, seed=1, difficulty=False, progress=False, height=32, width=32, duration=1.0)
    msg = mt.db.do_import(str(ds), "alice")
    assert "2 clip(s) created" in msg, msg
    out = mt.on_load({}, *FILTERS)
    assert out[mt.empty]["visible"] is False and _state(out, mt)["frames"] == 17
    ctx.close()


def test_review_events_never_share_the_generate_queue(tmp_path):
    ctx = rc.ReviewContext(tmp_path / "x.db", tmp_path)
    with gr.Blocks() as demo:
        MaskReviewTab(ctx).build()
        LabelReviewTab(ctx).build()
    fns = list(demo.fns.values())
    assert fns and all(f.concurrency_id != "gpu" for f in fns)  # the Generate tab's id (studio/generate_tab.py)
    heavy = [f for f in fns if f.api_name in ("mask_review_fix", "label_review_approve")]
    assert len(heavy) == 2 and all((f.concurrency_id, f.concurrency_limit) == ("annotation-review", 2) for f in heavy)
    edits = [f for f in fns if f.api_name in ("label_review_edit", "mask_review_accept")]
    assert len(edits) == 2 and all(f.concurrency_limit is None for f in edits)
