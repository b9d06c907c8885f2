"""The annotation review tabs in a real browser (Playwright + Debian's chromium), on a store of
rendered sprite clips (tests/test_review_tabs.py builds it):

- Mask review: step to the damaged frame with the arrow key, paint the subject back with the
  brush, Fix & accept with the F key; the SQLite file holds the fixed mask, the status and the
  annotator; after a reload the page shows the clip as fixed.
- Label review: a click on a block seeks the player to its start; drag a block's edge, approve
  with the A key; the SQLite file holds the new boundary; after a reload the page shows it.

Screenshots go to test-artifacts/studio/review/.
"""

from __future__ import annotations

import json
import sqlite3
import time
from pathlib import Path

import numpy as np
import pytest

from tests.studio_fixtures import ARTIFACTS, LaunchedStudio, chromium, default_engine, playwright_or_skip
from tests.test_review_tabs import DAMAGED_FRAME, build_review_store

pytestmark = pytest.mark.browser
sync_api = playwright_or_skip()

SHOTS = ARTIFACTS / "review"


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    from studio.label_review import label_review_tab
    from studio.mask_review import mask_review_tab
    from studio.review_common import ReviewContext

    root = tmp_path_factory.mktemp("review-browser")
    db, truth = build_review_store(root / "store")
    engine, _ = default_engine()
    ctx = ReviewContext(db, root / "work")
    studio = LaunchedStudio(engine, root / "work", extra_tabs=[mask_review_tab(ctx), label_review_tab(ctx)])
    yield studio, db, truth
    studio.close()
    ctx.close()


@pytest.fixture(scope="module")
def browser():
    yield from chromium(sync_api)


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1500})
    pg = context.new_page()
    pg.set_default_timeout(60_000)  # a loaded 2-core machine
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


def shot(pg, name: str) -> None:
    SHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SHOTS / f"{name}.png"), full_page=True)


def open_tab(pg, url: str, label: str, prefix: str) -> None:
    pg.goto(url)
    pg.get_by_role("tab", name=label).click()
    pg.wait_for_function(f"() => (document.querySelector('#{prefix}-header') || {{}}).innerText?.includes('version')")


def text_of(pg, sel: str) -> str:
    return pg.locator(sel).inner_text()


def wait_text(pg, sel: str, needle: str, timeout: float = 60.0) -> str:
    deadline = time.time() + timeout
    last = ""
    while time.time() < deadline:
        last = pg.locator(sel).inner_text()
        if needle in last:
            return last
        time.sleep(0.2)
    raise AssertionError(f"{sel} never showed {needle!r}; last: {last!r}")


def pick(pg, dropdown: str, option: str) -> None:
    pg.locator(f"#{dropdown} input").click()
    pg.locator("[role=option]", has_text=option).first.click()


def type_name(pg, prefix: str, name: str) -> None:
    box = pg.locator(f"#{prefix}-annotator textarea, #{prefix}-annotator input").first
    box.fill(name)
    box.press("Tab")


def frame_value(pg) -> int:
    return int(float(pg.locator("#rt-mask-frame input[type=number]").input_value()))


def db_rows(db: Path, sql: str, *args) -> list:
    con = sqlite3.connect(str(db))
    try:
        return con.execute(sql, args).fetchall()
    finally:
        con.close()


# --------------------------------------------------------------------------------------------
# Mask review
# --------------------------------------------------------------------------------------------
def editor_image_box(pg) -> dict:
    """Where the editor draws the enlarged frame (256 px, centred and zoomed to fit its canvas)."""
    canvas = pg.locator("#rt-mask-editor canvas").first.bounding_box()
    zoom = pg.locator("#rt-mask-editor").inner_text()
    import re

    z = float(re.search(r"(\d+)%", zoom).group(1)) / 100
    side = 256 * z
    return {"x": canvas["x"] + (canvas["width"] - side) / 2, "y": canvas["y"] + (canvas["height"] - side) / 2, "scale": side / 64}


def test_fix_a_mask_with_the_brush_accept_reload(page, server):
    studio, db, truth = server
    open_tab(page, studio.url, "Mask review", "rt-mask")
    assert "clip-a" in text_of(page, "#rt-mask-header") and "pending" in text_of(page, "#rt-mask-header")
    assert "3 left" in text_of(page, "#rt-mask-counts")
    assert "the yellow checkered star" in text_of(page, "#rt-mask-subjects-legend")
    dups = page.evaluate("() => { const n = {}; document.querySelectorAll('[id]').forEach(e => { if (e.id) n[e.id] = (n[e.id] || 0) + 1; });"
                         " return Object.entries(n).filter(([k, v]) => v > 1); }")
    assert dups == []
    type_name(page, "rt-mask", "alice")
    # → steps to the damaged frame (the shortcut clicks "Frame ▶")
    page.locator("#rt-mask-header").click()
    page.keyboard.press("ArrowRight")
    page.wait_for_function("() => Number(document.querySelector('#rt-mask-frame input[type=number]').value) === 1")
    for _ in range(DAMAGED_FRAME - 1):
        page.keyboard.press("ArrowRight")
        time.sleep(0.1)  # a person's pace (presses within the same few ms can read the same frame)
    page.wait_for_function(f"() => Number(document.querySelector('#rt-mask-frame input[type=number]').value) === {DAMAGED_FRAME}")
    page.wait_for_selector("#rt-mask-editor canvas")
    time.sleep(3)  # the editor loads the new frame
    shot(page, "01-mask-damaged-frame")
    # paint over the subject's true pixels, row by row (the default brush adds)
    gt = truth["clip-a"].masks[0, DAMAGED_FRAME]
    ys, xs = np.nonzero(gt)
    box = editor_image_box(page)
    s = box["scale"]
    for y in range(ys.min(), ys.max() + 1):
        row = xs[ys == y]
        page.mouse.move(box["x"] + (row.min() + 0.5) * s, box["y"] + (y + 0.5) * s)
        page.mouse.down()
        for x in np.linspace(row.min() + 0.5, row.max() + 0.5, 6):
            page.mouse.move(box["x"] + x * s, box["y"] + (y + 0.5) * s)
        page.mouse.up()
    time.sleep(1)
    shot(page, "02-mask-painted")
    page.keyboard.press("f")  # Fix & accept
    msg = wait_text(page, "#rt-mask-msg", "fixed")
    assert "frame 8 of s1" in msg and "propagated to frame(s) 4-7, 9-12" in msg, msg
    shot(page, "03-mask-fixed")
    # in the SQLite file: the review, who, and the painted mask
    assert db_rows(db, "SELECT status, annotator FROM reviews WHERE clip_id = ? AND aspect = 'masks'", "clip-a") == [("fixed", "alice")]
    from annotate.store import AnnotationStore

    with AnnotationStore(db) as store:
        doc = store.get("clip-a")
        fixed = doc.mask("s1", DAMAGED_FRAME)
        covered = (fixed & gt).sum() / gt.sum()
        assert covered >= 0.8 and fixed.sum() <= 3 * gt.sum(), (covered, fixed.sum(), gt.sum())  # painted by hand: roughly the subject
        assert doc.updated_by == "alice" and store.history("clip-a")[-1].operation == "mask-fix"
    # reload: the clip left the pending queue; it is listed as fixed
    open_tab(page, studio.url, "Mask review", "rt-mask")
    assert "clip-b" in text_of(page, "#rt-mask-header")
    assert "1 done (0 accepted, 1 fixed)" in text_of(page, "#rt-mask-counts") and "2 left" in text_of(page, "#rt-mask-counts")
    pick(page, "rt-mask-status-filter", "fixed")
    wait_text(page, "#rt-mask-header", "clip-a")
    header = text_of(page, "#rt-mask-header")
    assert "masks: fixed by alice" in header and "version 2" in header
    shot(page, "04-mask-after-reload")


# --------------------------------------------------------------------------------------------
# Label review
# --------------------------------------------------------------------------------------------
def labels(pg) -> dict:
    return json.loads(pg.locator("#rt-label-doc-json textarea").input_value())


def px_per_second(pg) -> float:
    center = pg.locator("#rt-label-timeline .vis-panel.vis-center").bounding_box()
    start, end = pg.evaluate(
        "() => { const w = document.querySelector('#rt-label-timeline .rt-root').__reactidTimeline.timeline.getWindow();"
        " return [w.start.valueOf(), w.end.valueOf()]; }")
    return center["width"] / ((end - start) / 1000)


def test_drag_a_label_boundary_approve_reload(page, server):
    studio, db, truth = server
    open_tab(page, studio.url, "Label review", "rt-label")
    assert "clip-a" in text_of(page, "#rt-label-header")
    page.wait_for_selector("#rt-label-timeline .rt-root[data-ready='1']")
    page.wait_for_function("() => document.querySelectorAll('#rt-label-timeline .vis-item').length >= 2")
    type_name(page, "rt-label", "bob")
    before = labels(page)["subjects"][0]["actions"]
    assert [(a["start"], a["end"], a["text"]) for a in before] == [(0.0, 1.0, "goes up"), (1.25, 2.0, "becomes bigger")]
    # a click on a block plays the clip from its start
    page.wait_for_function("() => { const v = document.querySelector('#rt-label-video video'); return v && v.readyState >= 1; }")
    page.locator("#rt-label-timeline .vis-item", has_text="becomes bigger").click()
    page.wait_for_function("() => Math.abs(document.querySelector('#rt-label-video video').currentTime - 1.25) < 0.05")
    # drag the right edge of "goes up" half a second to the left
    pps = px_per_second(page)
    bb = page.locator("#rt-label-timeline .vis-item", has_text="goes up").bounding_box()
    x, y = bb["x"] + bb["width"] - 3, bb["y"] + bb["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    for k in range(1, 5):
        page.mouse.move(x - 3 * k, y)
    for k in range(1, 13):
        page.mouse.move(x - 12 - (0.5 * pps - 12) * k / 12, y)
    page.mouse.up()
    page.wait_for_function("() => JSON.parse(document.querySelector('#rt-label-doc-json textarea').value).subjects[0].actions[0].end === 0.5")
    assert "not saved yet" in text_of(page, "#rt-label-msg")
    shot(page, "05-label-dragged")
    page.locator("#rt-label-header").click()
    page.keyboard.press("a")  # Approve
    msg = wait_text(page, "#rt-label-msg", "Labels fixed")
    assert "version 3" in msg, msg  # version 2 is the mask test's fix of the same clip
    rows = db_rows(db, "SELECT start_s, end_s, caption FROM actions WHERE clip_id = ? AND subject_id = 's1' ORDER BY position", "clip-a")
    assert rows == [(0.0, 0.5, "goes up"), (1.25, 2.0, "becomes bigger")]
    assert db_rows(db, "SELECT status, annotator FROM reviews WHERE clip_id = ? AND aspect = 'timeline'", "clip-a") == [("fixed", "bob")]
    # reload: listed as fixed, the widget shows the stored boundary
    open_tab(page, studio.url, "Label review", "rt-label")
    assert "clip-b" in text_of(page, "#rt-label-header")
    pick(page, "rt-label-status-filter", "fixed")
    wait_text(page, "#rt-label-header", "clip-a")
    assert "timeline: fixed by bob" in text_of(page, "#rt-label-header")
    page.wait_for_function("() => JSON.parse(document.querySelector('#rt-label-doc-json textarea').value || '{}').subjects?.[0].actions[0].end === 0.5")
    items = page.evaluate("() => document.querySelector('#rt-label-timeline .rt-root').__reactidTimeline.items.get()"
                          ".map(i => [i.content, i.start.valueOf ? i.start.valueOf() : i.start, i.end.valueOf ? i.end.valueOf() : i.end])")
    assert ["goes up", 0, 500] in items
    shot(page, "06-label-after-reload")
