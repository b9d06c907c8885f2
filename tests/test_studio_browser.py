"""Real-browser tests: Playwright driving Debian's chromium against a launched studio.

Each test edits the timeline the way a user does (drag, resize, move between rows, double-click to add,
edit in place, delete, undo) and checks the document Python validated (the hidden plain-text copy of
the session document, `#rt-doc-json`). Screenshots of each state go to test-artifacts/studio/.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from tests.studio_fixtures import ARTIFACTS, LaunchedStudio, big_file, default_engine, write_test_files

pytestmark = pytest.mark.browser
CHROMIUM = os.environ.get("REACTID_CHROMIUM", "/usr/bin/chromium")
sync_api = pytest.importorskip("playwright.sync_api")
if not Path(CHROMIUM).exists():
    pytest.skip(f"chromium not found at {CHROMIUM}", allow_module_level=True)

SHOTS = ARTIFACTS / "browser"
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
        "--disable-sync", "--no-first-run", "--disable-quic"]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    engine, _ = default_engine()
    studio = LaunchedStudio(engine, tmp_path_factory.mktemp("studio-browser"))
    yield studio
    studio.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_test_files(tmp_path_factory.mktemp("browser-files"))


@pytest.fixture(scope="module")
def browser():
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser, server):
    context = browser.new_context(viewport={"width": 1400, "height": 1700})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda e: errors.append(str(e)))
    pg.goto(server.url)
    pg.wait_for_selector("#rt-timeline .rt-root[data-ready='1']", timeout=30_000)
    pg.wait_for_selector("#rt-subject-0 input", timeout=10_000)
    pg.wait_for_function("() => document.querySelectorAll('#rt-timeline .vis-item').length >= 4")
    yield pg
    context.close()
    assert not errors, f"JavaScript errors on the page: {errors}"


# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------
def shot(pg, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    pg.screenshot(path=str(path), full_page=False)
    return path


def doc(pg) -> dict:
    return json.loads(pg.locator("#rt-doc-json textarea").input_value())


def actions(d: dict, sid: str) -> list[tuple[float, float, str]]:
    return [(a["start"], a["end"], a["text"]) for a in next(s for s in d["subjects"] if s["id"] == sid)["actions"]]


def wait_doc(pg, pred, timeout: float = 15.0) -> dict:
    deadline = time.time() + timeout
    last = None
    while time.time() < deadline:
        try:
            last = doc(pg)
            if pred(last):
                return last
        except (ValueError, StopIteration):
            pass
        time.sleep(0.1)
    raise AssertionError(f"Python never saw the expected document; last: {json.dumps(last)[:800]}")


def px_per_second(pg) -> tuple[float, float]:
    """(x of t=0 on screen, pixels per second) of the timeline's current window."""
    center = pg.locator("#rt-timeline .vis-panel.vis-center").bounding_box()
    start, end = pg.evaluate(
        "() => { const w = document.querySelector('#rt-timeline .rt-root').__reactidTimeline.timeline.getWindow();"
        " return [w.start.valueOf(), w.end.valueOf()]; }"
    )
    pps = center["width"] / ((end - start) / 1000)
    return center["x"] - start / 1000 * pps, pps


def block(pg, caption: str):
    return pg.locator("#rt-timeline .vis-item", has_text=caption)


def drag(pg, loc, dx: float, dy: float = 0.0, grip: str = "middle") -> None:
    """Press on a block (its middle, or 3px inside its left/right edge), move by (dx, dy), release.
    The pointer first moves a little sideways: vis-timeline starts a drag on horizontal motion."""
    bb = loc.bounding_box()
    x = {"middle": bb["x"] + bb["width"] / 2, "left": bb["x"] + 3, "right": bb["x"] + bb["width"] - 3}[grip]
    y = bb["y"] + bb["height"] / 2
    pg.mouse.move(x, y)
    pg.mouse.down()
    for k in range(1, 5):
        pg.mouse.move(x + 5 * k, y)
    for k in range(1, 13):
        pg.mouse.move(x + 20 + (dx - 20) * k / 12, y + dy * k / 12)
    pg.mouse.up()


# --------------------------------------------------------------------------------------------
# Tests
# --------------------------------------------------------------------------------------------
def test_page_loads_with_one_row_per_subject(page):
    labels = page.locator("#rt-timeline .rt-group-name").all_inner_texts()
    assert labels == ["the red striped circle", "the blue square"]
    assert sorted(page.locator("#rt-timeline .vis-item").all_inner_texts()) == ["jumps", "moves to the right", "moves up", "stays still"]
    assert page.locator("#rt-subject-refs-0 img").count() == 2  # the crops the model sees
    assert "Timeline OK" in page.locator("#rt-problems").inner_text()
    axis = page.locator("#rt-timeline .vis-time-axis .vis-text").all_inner_texts()
    assert "0s" in axis and "2s" in axis  # the axis is in seconds
    shot(page, "01-loaded")


def test_drag_block_to_new_time_reports_overlap_then_fix(page):
    x0, pps = px_per_second(page)
    drag(page, block(page, "jumps"), -0.5 * pps)
    d = wait_doc(page, lambda d: actions(d, "s1")[1][0] != 2.0)
    assert actions(d, "s1") == [(0.0, 2.0, "moves to the right"), (1.5, 3.5, "jumps")]  # moved by 0.5s, on the grid
    problems = page.locator("#rt-problems").inner_text()
    assert "subject 's1' (the red striped circle): action 2 'jumps' [1.50s-3.50s] overlaps action 1" in problems
    page.wait_for_selector("#rt-timeline .vis-item.rt-bad")  # the block is outlined in the widget
    shot(page, "02-dragged-overlap")
    page.locator("#rt-fix").click()
    d = wait_doc(page, lambda d: actions(d, "s1")[1][0] == 2.0)
    assert actions(d, "s1") == [(0.0, 2.0, "moves to the right"), (2.0, 3.5, "jumps")]
    page.wait_for_function("() => !document.querySelector('#rt-timeline .vis-item.rt-bad')")
    assert "Timeline OK" in page.locator("#rt-problems").inner_text()
    shot(page, "03-fixed")


def test_resize_both_edges(page):
    _, pps = px_per_second(page)
    drag(page, block(page, "jumps"), -1.0 * pps, grip="right")
    d = wait_doc(page, lambda d: actions(d, "s1")[1][1] != 4.0)
    assert actions(d, "s1")[1] == (2.0, 3.0, "jumps")
    drag(page, block(page, "moves up"), 0.5 * pps, grip="left")
    d = wait_doc(page, lambda d: actions(d, "s2")[1][0] != 1.5)
    assert actions(d, "s2") == [(0.0, 1.5, "stays still"), (2.0, 4.0, "moves up")]
    shot(page, "04-resized")


def test_move_block_to_another_subject_then_undo_redo(page):
    top = block(page, "moves to the right").bounding_box()
    src = block(page, "stays still").bounding_box()
    drag(page, block(page, "stays still"), 0, top["y"] - src["y"])
    d = wait_doc(page, lambda d: any(a[2] == "stays still" for a in actions(d, "s1")))
    assert actions(d, "s1") == [(0.0, 1.5, "stays still"), (0.0, 2.0, "moves to the right"), (2.0, 4.0, "jumps")]
    assert actions(d, "s2") == [(1.5, 4.0, "moves up")]
    assert "overlaps" in page.locator("#rt-problems").inner_text()
    shot(page, "05-moved-to-other-row")
    page.locator("#rt-undo").click()
    d = wait_doc(page, lambda d: any(a[2] == "stays still" for a in actions(d, "s2")))
    page.wait_for_function("() => document.querySelectorAll('#rt-timeline .vis-item').length === 4")
    assert actions(d, "s2") == [(0.0, 1.5, "stays still"), (1.5, 4.0, "moves up")]
    page.locator("#rt-redo").click()
    wait_doc(page, lambda d: any(a[2] == "stays still" for a in actions(d, "s1")))
    # Ctrl+Z inside the widget undoes too
    block(page, "moves up").click()
    page.keyboard.press("Control+z")
    wait_doc(page, lambda d: any(a[2] == "stays still" for a in actions(d, "s2")))
    shot(page, "06-undone")


def test_add_edit_and_delete_blocks(page):
    block(page, "jumps").click()
    page.keyboard.press("Delete")
    d = wait_doc(page, lambda d: len(actions(d, "s1")) == 1)
    assert actions(d, "s1") == [(0.0, 2.0, "moves to the right")]
    x0, pps = px_per_second(page)
    row = block(page, "moves to the right").bounding_box()
    page.mouse.dblclick(x0 + 3.0 * pps + 4, row["y"] + row["height"] / 2)
    page.wait_for_selector("#rt-timeline .rt-caption-input")
    page.keyboard.type("spins")
    page.keyboard.press("Enter")
    d = wait_doc(page, lambda d: any(a[2] == "spins" for a in actions(d, "s1")))
    assert actions(d, "s1") == [(0.0, 2.0, "moves to the right"), (3.0, 4.0, "spins")]
    shot(page, "07-added")
    block(page, "spins").dblclick()
    page.wait_for_selector("#rt-timeline .rt-caption-input")
    page.keyboard.press("Control+a")
    page.keyboard.type("grows")
    page.keyboard.press("Enter")
    d = wait_doc(page, lambda d: any(a[2] == "grows" for a in actions(d, "s1")))
    assert actions(d, "s1")[1] == (3.0, 4.0, "grows")
    shot(page, "08-caption-edited")
    block(page, "grows").click()
    page.locator("#rt-timeline .vis-item.vis-selected .vis-delete").click()  # the block's × button
    d = wait_doc(page, lambda d: len(actions(d, "s1")) == 1)
    assert page.locator("#rt-timeline .vis-item", has_text="grows").count() == 0


def test_upload_reference_and_refuse_bad_files(page, files, tmp_path):
    page.locator("#rt-subject-upload-0 input[type=file]").set_input_files(str(files["green"]))
    d = wait_doc(page, lambda d: len(d["subjects"][0]["references"]) == 3)
    assert Path(d["subjects"][0]["references"][-1]).is_file()
    page.wait_for_function("() => document.querySelectorAll('#rt-subject-refs-0 img').length === 3")
    shot(page, "09-reference-uploaded")
    page.locator("#rt-subject-upload-1 input[type=file]").set_input_files(str(files["corrupt"]))
    page.wait_for_function("() => document.querySelector('#rt-editor-msg').innerText.includes('not a readable image')")
    assert "the blue square" in page.locator("#rt-editor-msg").inner_text()
    page.locator("#rt-subject-upload-1 input[type=file]").set_input_files(str(files["gif"]))
    page.wait_for_function("() => document.querySelector('#rt-editor-msg').innerText.includes('animated images')")
    page.locator("#rt-subject-upload-1 input[type=file]").set_input_files(str(big_file(tmp_path, 50)))
    page.wait_for_selector("text=exceed the maximum allowed size", timeout=10_000)
    assert len(doc(page)["subjects"][1]["references"]) == 2
    shot(page, "10-bad-references-refused")


def test_generate_shows_a_playable_mp4(page):
    page.locator("#rt-steps input[type=number]").fill("4")
    page.locator("#rt-steps input[type=number]").press("Enter")
    page.locator("#rt-generate").click()
    page.wait_for_function("() => (document.querySelector('#rt-status') || {}).innerText && document.querySelector('#rt-status').innerText.includes('Run #1')", timeout=120_000)
    page.wait_for_selector("#rt-video video", timeout=30_000)
    src = page.locator("#rt-video video").get_attribute("src")
    assert src and src.endswith(".mp4")
    state = page.evaluate(
        """() => new Promise(resolve => {
            const v = document.querySelector('#rt-video video');
            const report = () => resolve({ready: v.readyState, duration: v.duration, width: v.videoWidth, error: v.error && v.error.code});
            if (v.readyState >= 2) report(); else { v.addEventListener('loadeddata', report); setTimeout(report, 10000); }
        })"""
    )
    assert state["error"] is None and state["ready"] >= 2 and state["duration"] > 3.5 and state["width"] > 0, state
    page.wait_for_selector("#rt-masks video")
    page.wait_for_function("() => document.querySelectorAll('#rt-history img').length === 1")
    assert "4 steps" in page.locator("#rt-history").inner_text()
    page.locator("#rt-video").scroll_into_view_if_needed()
    time.sleep(0.5)
    shot(page, "11-generated")
    # Change the timeline, then load the run back from the history.
    generated = doc(page)
    page.locator("#rt-subject-remove-1").click()
    wait_doc(page, lambda d: len(d["subjects"]) == 1)
    page.locator("#rt-history img").first.click()
    page.wait_for_function("() => document.querySelector('#rt-history-details').innerText.includes('Run #1')")
    page.locator("#rt-history-load").click()
    d = wait_doc(page, lambda d: len(d["subjects"]) == 2)
    assert d == generated
    assert page.locator("#rt-seed input").input_value() != "" and not page.locator("#rt-randomize input").is_checked()
    page.wait_for_function("() => document.querySelectorAll('#rt-timeline .vis-item').length === 4")
    shot(page, "12-loaded-from-history")


def test_import_broken_json_shows_the_error(page, files):
    before = doc(page)
    page.locator("#rt-json-accordion").click()
    page.locator("#rt-import input[type=file]").set_input_files(str(files["broken_json"]))
    page.wait_for_function("() => document.querySelector('#rt-editor-msg').innerText.includes('Could not import')")
    msg = page.locator("#rt-editor-msg").inner_text()
    assert "broken.json" in msg and "not valid JSON at line 1" in msg
    assert doc(page) == before
    assert page.locator("#rt-timeline .vis-item").count() == 4  # the page keeps working
    shot(page, "13-broken-json")


def test_plan_from_prompt_fills_the_widget(page):
    page.locator("#rt-plan-text textarea").fill("the blue square spins, then the red striped circle jumps while the blue square grows")
    page.locator("#rt-plan").click()
    d = wait_doc(page, lambda d: any(a[2] == "grows" for a in actions(d, "s2")))
    assert actions(d, "s2") == [(0.0, 2.0, "spins"), (2.0, 4.0, "grows")]
    assert actions(d, "s1") == [(2.0, 4.0, "jumps")]
    page.wait_for_function("() => [...document.querySelectorAll('#rt-timeline .vis-item')].map(e => e.innerText).includes('grows')")
    assert "offline rule planner" in page.locator("#rt-editor-msg").inner_text()
    shot(page, "14-planned")
