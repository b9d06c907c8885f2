"""The studio through its HTTP API (gradio_client against a launched app) and its editing rules.

Every edit the widget makes arrives at `/timeline_edit` as the widget's value; these tests send the
same values a browser would and read what Python validated."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from tests.studio_fixtures import ARTIFACTS, LaunchedStudio, default_engine, write_test_files

from model.timeline import Timeline

gradio_client = pytest.importorskip("gradio_client")
from gradio_client import Client, handle_file  # noqa: E402


@pytest.fixture(scope="module")
def engine_info():
    return default_engine()


@pytest.fixture(scope="module")
def server(engine_info, tmp_path_factory):
    studio = LaunchedStudio(engine_info[0], tmp_path_factory.mktemp("studio-work"))
    yield studio
    studio.close()


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return write_test_files(tmp_path_factory.mktemp("studio-files"))


def client(server) -> Client:
    """A fresh client = a fresh browser session (its own document, undo history and run history)."""
    return Client(server.url, verbose=False, analytics_enabled=False, download_files=str(ARTIFACTS / "downloads"))


def doc_of(result) -> dict:
    """The validated document from an editor endpoint's outputs (the hidden plain-text copy)."""
    for value in result:
        if isinstance(value, str) and value.startswith('{"version"'):
            return json.loads(value)
    raise AssertionError(f"no document in {result!r}"[:400])


def problems_of(result) -> str:
    return next(v for v in result if isinstance(v, str) and ("Timeline OK" in v or "problem" in v))


def message_of(result, needle: str) -> str:
    return next(v for v in result if isinstance(v, str) and needle in v)


def widget_value(doc: dict) -> str:
    return json.dumps({"timeline": doc})


def starting_doc(c: Client) -> dict:
    # A no-op edit returns the session's current document.
    return doc_of(c.predict(json.dumps({"timeline": {"subjects": []}}), api_name="/timeline_edit"))


# --------------------------------------------------------------------------------------------
# Page and API surface
# --------------------------------------------------------------------------------------------
def test_page_serves_widget_assets(server):
    import urllib.request

    html = urllib.request.urlopen(server.url, timeout=10).read().decode()
    assert "ReactID Studio" in html
    c = client(server)
    api = c.view_api(return_format="dict", print_info=False)["named_endpoints"]
    for name in ("/timeline_edit", "/generate", "/cancel", "/plan_from_prompt", "/import_timeline", "/export_timeline", "/undo", "/redo"):
        assert name in api
    # The vendored library is served from its static path, unmodified.
    from studio.timeline_widget import VIS_JS, asset_url

    body = urllib.request.urlopen(server.url + asset_url(VIS_JS), timeout=10).read()
    assert body == VIS_JS.read_bytes()


def test_uploads_are_bounded_and_paths_limited(server):
    kwargs = server.studio.launch_kwargs()
    assert kwargs["max_file_size"] == "20mb"
    assert kwargs["allowed_paths"] == [str(server.studio.workdir)]
    import urllib.error
    import urllib.request

    with pytest.raises(urllib.error.HTTPError) as err:
        urllib.request.urlopen(server.url + "gradio_api/file=" + str(Path(__file__).resolve()), timeout=10)
    assert err.value.code == 403  # the test sources are not served


# --------------------------------------------------------------------------------------------
# Timeline edits: round trip, validation, undo/redo, fix, import/export
# --------------------------------------------------------------------------------------------
def test_timeline_edit_round_trip_snaps_and_validates(server):
    c = client(server)
    doc = starting_doc(c)
    assert [s["id"] for s in doc["subjects"]] == ["s1", "s2"]
    # a drag of s1's second block to 1.53s (off the 0.25s grid) and a move of s2's first block into s1's row
    edited = json.loads(json.dumps(doc))
    s1, s2 = edited["subjects"]
    s1["actions"][1].update(start=2.53, end=3.96)
    moved = s2["actions"].pop(0)
    s1["actions"].append(dict(moved, start=0.5, end=1.0))
    result = c.predict(widget_value(edited), api_name="/timeline_edit")
    new = doc_of(result)
    acts = {s["id"]: [(a["start"], a["end"], a["text"]) for a in s["actions"]] for s in new["subjects"]}
    assert acts["s1"] == [(0.0, 2.0, "moves to the right"), (0.5, 1.0, "stays still"), (2.5, 4.0, "jumps")]  # snapped to 4 frames
    assert acts["s2"] == [(1.5, 4.0, "moves up")]
    problems = problems_of(result)
    assert "subject 's1' (the red circle)" in problems and "'stays still'" in problems and "overlaps" in problems
    # the session keeps the edit: undo restores the original, redo brings the edit back
    assert doc_of(c.predict(api_name="/undo")) == doc
    assert doc_of(c.predict(api_name="/redo")) == new
    fixed = doc_of(c.predict(api_name="/fix_problems"))
    assert Timeline.from_dict(fixed).problems() == []
    assert [(a["start"], a["end"], a["text"]) for a in fixed["subjects"][0]["actions"]] == [(0.0, 2.0, "moves to the right"), (2.5, 4.0, "jumps")]  # "stays still" squeezed out


def test_widget_cannot_inject_subjects_or_references(server):
    c = client(server)
    doc = starting_doc(c)
    evil = json.loads(json.dumps(doc))
    evil["subjects"][0]["references"] = ["/etc/passwd"]
    evil["subjects"][0]["name"] = "renamed by the widget"
    new = doc_of(c.predict(widget_value(evil), api_name="/timeline_edit"))
    assert new["subjects"][0]["references"] == doc["subjects"][0]["references"]
    assert new["subjects"][0]["name"] == doc["subjects"][0]["name"]
    evil["subjects"].append({"id": "zz", "name": "x", "actions": [{"start": 0, "end": 1, "text": "a"}]})
    result = c.predict(widget_value(evil), api_name="/timeline_edit")
    assert "unknown subject" in message_of(result, "unknown subject")
    assert [s["id"] for s in doc_of(result)["subjects"]] == ["s1", "s2"]


def test_out_of_range_short_and_empty_blocks_are_named(server):
    c = client(server)
    doc = starting_doc(c)
    doc["subjects"][1]["actions"] = [{"start": 0.0, "end": 0.1, "text": "blinks"}, {"start": 3.0, "end": 4.75, "text": ""}]
    result = c.predict(widget_value(doc), api_name="/timeline_edit")
    text = problems_of(result)
    assert "subject 's2' (the blue square), action 2" in text and "the caption is empty" in text
    assert "ends after the video's duration" in text
    assert "action 1" in text and ("shorter than one latent frame" in text or "end must be after start" in text)


def test_duration_subjects_and_prompt_edits(server):
    c = client(server)
    doc = doc_of(c.predict(6.0, api_name="/set_duration"))
    assert doc["duration"] == 6.0
    doc = doc_of(c.predict(api_name="/add_subject"))
    assert [s["id"] for s in doc["subjects"]] == ["s1", "s2", "s3"]
    assert doc["subjects"][2]["actions"] == [{"start": 0.0, "end": 6.0, "text": "stays still"}]
    doc = doc_of(c.predict("the green square", api_name="/rename_subject_2"))
    assert doc["subjects"][2]["name"] == "the green square"
    doc = doc_of(c.predict("animal", api_name="/set_kind_2"))
    assert doc["subjects"][2]["kind"] == "animal"
    doc = doc_of(c.predict("two shapes in a park", api_name="/set_prompt"))
    assert doc["prompt"] == "two shapes in a park"
    doc = doc_of(c.predict(api_name="/remove_subject_0"))
    assert [s["name"] for s in doc["subjects"]] == ["the blue square", "the green square"]


def test_export_then_import_round_trip(server, tmp_path):
    c = client(server)
    doc = starting_doc(c)
    exported = c.predict(api_name="/export_timeline")
    path = exported["value"] if isinstance(exported, dict) else exported
    tl = Timeline.load(path)
    assert tl.to_dict() == doc
    # change the session, then import the exported file back
    c.predict(api_name="/remove_subject_1")
    result = c.predict(handle_file(path), api_name="/import_timeline")
    assert doc_of(result) == doc
    assert "Imported" in message_of(result, "Imported")


def test_import_broken_and_unsafe_timelines(server, files):
    c = client(server)
    doc = starting_doc(c)
    result = c.predict(handle_file(str(files["broken_json"])), api_name="/import_timeline")
    msg = message_of(result, "Could not import")
    assert "not valid JSON at line 1" in msg
    assert doc_of(result) == doc  # the session document is untouched
    result = c.predict(handle_file(str(files["bad_rules_json"])), api_name="/import_timeline")
    new = doc_of(result)
    assert new["subjects"][0]["references"] == []  # /etc/passwd is not taken from an uploaded file
    msg = message_of(result, "Imported")
    assert "'/etc/passwd' is not available on this server" in msg
    problems = problems_of(result)
    assert "overlaps" in problems and "ends after the video's duration" in problems


def _import_doc(c: Client, tmp_path: Path, doc: dict, name: str = "t.json"):
    path = tmp_path / name
    path.write_text(json.dumps(doc), encoding="utf-8")
    return c.predict(handle_file(str(path)), api_name="/import_timeline")


def _acts(doc: dict, sid: str) -> list[tuple[float, float, str]]:
    return [(a["start"], a["end"], a["text"]) for a in next(s for s in doc["subjects"] if s["id"] == sid)["actions"]]


def test_fix_problems_swaps_reversed_blocks_and_names_what_it_removes(server, tmp_path):
    c = client(server)
    doc = {"version": 1, "duration": 4.0, "fps": 16, "prompt": "x", "subjects": [
        {"id": "s1", "name": "the dog", "kind": "animal", "references": [],
         "actions": [{"start": 0.0, "end": 1.0, "text": "runs"}, {"start": 3.0, "end": 1.0, "text": "sits"}]},
        {"id": "s2", "name": "the cat", "kind": "animal", "references": [],
         "actions": [{"start": 2.0, "end": 2.0, "text": "blinks"}, {"start": 5.0, "end": 6.0, "text": "leaves"}]},
    ]}
    result = _import_doc(c, tmp_path, doc)
    problems = problems_of(result)
    assert "'sits' [3.00s-1.00s]: end must be after start (Fix problems: its start and end are swapped, to 1.00s-3.00s)" in problems
    result = c.predict(api_name="/fix_problems")
    fixed = doc_of(result)
    assert _acts(fixed, "s1") == [(0.0, 1.0, "runs"), (1.0, 3.0, "sits")]  # repaired, not dropped
    assert _acts(fixed, "s2") == []
    msg = message_of(result, "Fixed the timeline")
    assert "'sits' [3.00s-1.00s]: its start and end are swapped, to 1.00s-3.00s" in msg
    assert "subject 's2' (the cat): removed 'blinks' [2.00s-2.00s]: it lasts 0.00s" in msg
    assert "subject 's2' (the cat): removed 'leaves' [5.00s-6.00s]: it lies outside the 4.00s video" in msg
    assert Timeline.from_dict(fixed).problems() == []


def test_fix_hints_name_the_button_and_times_inside_the_video(server, tmp_path):
    import re

    c = client(server)
    # 'runs' ends past the 4 s video; 'sits' overlaps it. The model's own hint would say to start
    # 'sits' at 9.00s with a 'fix overlaps' button; the studio says what its Fix problems button does.
    doc = {"version": 1, "duration": 4.0, "fps": 16, "prompt": "x", "subjects": [
        {"id": "s1", "name": "the dog", "kind": "animal", "references": [],
         "actions": [{"start": 2.0, "end": 9.0, "text": "runs"}, {"start": 3.0, "end": 4.0, "text": "sits"},
                     {"start": 0.0, "end": 2.5, "text": "wags"}]},
    ]}
    problems = problems_of(_import_doc(c, tmp_path, doc))
    assert "fix overlaps" not in problems and "9.00s)" not in problems
    assert "'sits' [3.00s-4.00s] overlaps action 1 'runs' [2.00s-9.00s] by 6.00s (Fix problems: it is removed: 'runs' runs until 4.00s" in problems
    assert "'runs' [2.00s-9.00s]: ends after the video's duration (4.00s) (Fix problems: it is cut to 2.00s-4.00s to fit the 4.00s video; it starts at 2.50s, where 'wags' ends)" in problems
    for t in re.findall(r"starts at (\d+\.\d+)s", problems):
        assert float(t) < 4.0
    assert "The **Fix problems** button makes the repairs named above" in problems
    fixed = doc_of(c.predict(api_name="/fix_problems"))
    assert _acts(fixed, "s1") == [(0.0, 2.5, "wags"), (2.5, 4.0, "runs")]  # what the hints said


def test_fix_report_agrees_with_fix_overlaps():
    """The studio's Fix problems = clip to the video, then model.timeline.fix_overlaps; its notes and
    hints come from the same walk, so the document must equal what fix_overlaps makes."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from model.timeline import Action, fix_overlaps
    from studio import editor

    times = st.integers(min_value=-4, max_value=28).map(lambda k: k * 0.25)
    action = st.tuples(times, times, st.sampled_from(["a", "b", "c"]))

    @settings(max_examples=200, deadline=None)
    @given(st.lists(action, max_size=6), st.lists(action, max_size=4))
    def check(acts1, acts2):
        doc = Timeline.from_dict({"duration": 4.0, "fps": 16, "subjects": [
            {"id": "s1", "name": "a", "actions": [{"start": s, "end": e, "text": t} for s, e, t in acts1]},
            {"id": "s2", "name": "b", "actions": [{"start": s, "end": e, "text": t} for s, e, t in acts2]},
        ]}, validate=False).to_dict()
        fixed, notes, fates = editor.fix_report(doc)
        tl = Timeline.from_dict(doc, validate=False)
        for s in tl.subjects:  # swap and clip, then the model's overlap repair
            s.actions = [Action(round(max(0.0, min(a.start, a.end)), 6), round(min(4.0, max(a.start, a.end)), 6), a.text) for a in s.actions]
        assert fixed == fix_overlaps(tl).to_dict()
        assert Timeline.from_dict(fixed).problems() == []
        changed = sum(a != b for s0, s1 in zip(doc["subjects"], fixed["subjects"]) for a, b in zip(s0["actions"], s1["actions"]))
        assert len(notes) == len(fates) and (changed == 0 or notes)

    check()


# --------------------------------------------------------------------------------------------
# References
# --------------------------------------------------------------------------------------------
def test_reference_upload_checks(server, files):
    c = client(server)
    result = c.predict(handle_file(str(files["green"])), api_name="/add_reference_0")
    doc = doc_of(result)
    assert len(doc["subjects"][0]["references"]) == 3
    stored = Path(doc["subjects"][0]["references"][-1])
    assert stored.is_file() and stored.is_relative_to(server.studio.workdir)
    for key, needle in (("corrupt", "not a readable image"), ("gif", "animated images (3 frames) are not supported")):
        result = c.predict(handle_file(str(files[key])), api_name="/add_reference_1")
        msg = message_of(result, needle)
        assert "the blue square" in msg and files[key].name in msg and "/tmp/gradio" not in msg
        assert len(doc_of(result)["subjects"][1]["references"]) == 2


def test_example_reference_pick_and_limit(server):
    from studio.examples import example_references

    c = client(server)
    refs = example_references()
    doc = doc_of(c.predict(refs[-1][1], api_name="/add_example_reference_0"))
    assert doc["subjects"][0]["references"][-1] == refs[-1][1]
    doc = doc_of(c.predict(refs[-2][1], api_name="/add_example_reference_0"))
    assert len(doc["subjects"][0]["references"]) == 4
    result = c.predict(refs[-3][1], api_name="/add_example_reference_0")
    assert "already has 4 reference images" in message_of(result, "already has")
    with pytest.raises(Exception, match="not in the list of choices"):  # Gradio refuses paths that are not examples
        c.predict("/etc/hostname", api_name="/add_example_reference_0")


# --------------------------------------------------------------------------------------------
# Planner through the UI
# --------------------------------------------------------------------------------------------
def test_plan_from_prompt_and_unparseable_prompt(server):
    c = client(server)
    result = c.predict("the red circle jumps, then spins while the blue square moves up", "", "", "", api_name="/plan_from_prompt")
    doc = doc_of(result)
    acts = {s["name"]: [(a["start"], a["end"], a["text"]) for a in s["actions"]] for s in doc["subjects"]}
    assert acts["the red circle"] == [(0.0, 2.0, "jumps"), (2.0, 4.0, "spins")]
    assert acts["the blue square"] == [(2.0, 4.0, "moves up")]
    assert "offline rule planner" in message_of(result, "Planned by")
    result = c.predict("!!! ???", "", "", "", api_name="/plan_from_prompt")
    assert "Could not plan" in message_of(result, "Could not plan")
    assert doc_of(result) == doc


# --------------------------------------------------------------------------------------------
# Generation
# --------------------------------------------------------------------------------------------
def _generate(c: Client, steps=4, seed=7, randomize=False, segment=0, burn=True, layout="auto"):
    return c.predict("", steps, 5.0, seed, randomize, None, segment, burn, layout, api_name="/generate")


def test_generate_on_default_model_gives_playable_mp4(server, engine_info):
    from model.video import probe_video

    c = client(server)
    t0 = time.perf_counter()
    video, captioned, masks, legend, status, seed, gallery, reroll, details = _generate(c)
    elapsed = time.perf_counter() - t0
    assert status.startswith("Run #1:"), status
    assert seed == 7
    info = probe_video(video)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p"
    lim = server.studio.engine.limits()
    frames = 4 * lim.fps + 1  # the example's 4 s at the model's frame rate
    assert info["frames"] == frames and info["fps"] == lim.fps
    assert info["width"] >= lim.width and info["width"] % lim.width == 0  # pixel-repeated for display
    assert probe_video(captioned["value"])["codec"] == "h264"
    assert probe_video(masks)["frames"] == frames
    assert "the red circle" in legend
    assert len(gallery) == 1 and "seed 7" in gallery[0]["caption"]
    assert details.startswith("1 run in this session")
    (ARTIFACTS).mkdir(parents=True, exist_ok=True)
    (ARTIFACTS / "api-generate.txt").write_text(f"engine={engine_info[1]} seconds={elapsed:.2f}\n{status}\n")


def test_generate_refuses_bad_input_and_keeps_serving(server):
    c = client(server)
    c.predict(api_name="/clear_references_1")
    status = _generate(c)[4]
    assert "subject 's2' (the blue square) has no reference image" in status
    c.predict(api_name="/remove_subject_0")
    c.predict(api_name="/remove_subject_0")
    status = _generate(c)[4]
    assert "add at least one subject" in status
    c.predict(api_name="/undo")
    c.predict(api_name="/undo")
    c.predict(api_name="/undo")
    out = _generate(c, steps=2, layout="none")
    assert out[4].startswith("Run #"), out[4]  # the same session still generates


def test_refused_settings_give_a_clear_error_and_no_traceback(server, capfd):
    c = client(server)
    capfd.readouterr()
    for args, needle in (
        (("", 0, 5.0, 7, False, None, 0, False), "Steps: Value 0 is less than minimum value 1"),
        (("", 4, -3.0, 7, False, None, 0, False), "Guidance (CFG): Value -3.0 is less than minimum value 0"),
        (("", 4, 5.0, -5, False, None, 0, False), "Seed: Value -5 is less than minimum value 0"),
        (("", 4, 5.0, 7, False, "13x17", 0, False), "Size (width x height): Value: 13x17 is not in the list of choices"),
        (("", 4, 5.0, 7, False, None, 0, False, "grid"), "Start layout: Value: grid is not in the list of choices"),
    ):
        with pytest.raises(Exception, match=re.escape(needle)):
            c.predict(*args, api_name="/generate")
    err = capfd.readouterr().err
    assert "Traceback" not in err, err[-2000:]
    assert _generate(c, steps=2)[4].startswith("Run #")  # and the session still generates


def test_segments_and_reroll(server):
    c = client(server)
    out = _generate(c, steps=2, seed=3, segment=2.0, burn=False)
    status = out[4]
    import re

    n = int(re.search(r"in (\d+) segments", status).group(1))  # 2s windows sharing one latent frame
    assert n >= 2 and out[7]["maximum"] == n
    rer = c.predict(n, 11, False, api_name="/reroll_segment")
    assert f"re-rolled segment {n} of run #1" in rer[4] and "seed 11" in rer[4]
    from model.video import read_video

    a, _ = read_video(out[0])
    b, _ = read_video(rer[0])
    assert a.shape == b.shape
    first = slice(0, a.shape[0] // 3)
    assert abs(a[first].astype(int) - b[first].astype(int)).mean() < 3.0  # segment 1 kept (up to encoding)
    assert len(rer[6]) == 2


def test_cancel_stops_a_running_generation(server):
    c = client(server)
    job = c.submit("", 100, 5.0, 1, False, None, 0, False, api_name="/generate")
    deadline = time.time() + 60
    while time.time() < deadline:
        st = job.status()
        if st.progress_data:
            break
        time.sleep(0.05)
    assert c.predict(api_name="/cancel").startswith("Cancelling")
    status = job.result()[4]
    assert re.fullmatch(r"Cancelled (at step \d+/100|before the first denoising step): no video was made\.", status), status
    assert c.predict(api_name="/cancel") == "Nothing is running."


def test_model_flag_loads_an_exported_sprite_pipeline_on_the_cpu():
    """--model DIR with an exported ReactID pipeline (a ladder model) loads it like the default, at its own frame rate."""
    import app as app_module

    engine = app_module.make_engine(app_module.parse_args(["--model", "assets/ladder_l1"]))
    assert engine.available and engine.device == "cpu" and engine.name.startswith("ladder_l1")
    lim = engine.limits()
    assert (lim.height, lim.width, lim.fps) == (64, 64, int(engine.pipe.default_fps)) and lim.default_steps == 20


# --------------------------------------------------------------------------------------------
# Starting without a GPU while Wan is asked for
# --------------------------------------------------------------------------------------------
def test_wan_without_gpu_gives_a_message_not_a_crash(tmp_path):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present")
    import app as app_module

    engine = app_module.make_engine(app_module.parse_args(["--model", "Wan-AI/Wan2.1-T2V-1.3B-Diffusers"]))
    assert not engine.available and "needs a CUDA GPU" in engine.unavailable
    studio = LaunchedStudio(engine, tmp_path)
    try:
        c = Client(studio.url, verbose=False, analytics_enabled=False)
        status = c.predict("", 4, 5.0, 0, False, None, 0, False, api_name="/generate")[4]
        assert "needs a CUDA GPU" in status
        assert doc_of(c.predict(api_name="/add_subject"))["subjects"][-1]["id"] == "s3"  # editing still works
    finally:
        studio.close()


# --------------------------------------------------------------------------------------------
# Editing rules without a server
# --------------------------------------------------------------------------------------------
def test_undo_history_coalesces_typing_and_is_bounded():
    from studio import editor

    doc = Timeline.from_dict({"duration": 4, "subjects": [{"id": "s1", "name": "a"}]}).to_dict()
    h = editor.undo_init()
    d1 = editor.rename_subject(doc, 0, "ab")
    h = editor.record(h, doc, "name:s1")
    d2 = editor.rename_subject(d1, 0, "abc")
    h = editor.record(h, d1, "name:s1")
    assert len(h["past"]) == 1  # typing one name is one step
    back, h = editor.undo(h, d2)
    assert back["subjects"][0]["name"] == "a"
    for k in range(editor.UNDO_LIMIT + 10):
        h = editor.record(h, doc)
    assert len(h["past"]) == editor.UNDO_LIMIT
    with pytest.raises(editor.EditError):
        editor.redo(editor.undo_init(), doc)


# Emoji (and the variation selector that asks for one) render as empty boxes where no emoji font is
# installed, e.g. Debian without fonts-noto-color-emoji.
EMOJI = re.compile("[\U0001F000-\U0001FFFF\u2600-\u27BF\u23E9-\u23FA\u2B00-\u2BFF\uFE0F\u2139]")


def test_no_emoji_in_what_the_studio_shows():
    root = Path(__file__).resolve().parents[1]
    for path in sorted((root / "studio").glob("*.py")) + sorted((root / "assets" / "studio").glob("*")):
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            assert not EMOJI.search(line), f"{path.name}:{n}: {line.strip()}"


def test_old_runs_are_pruned(tmp_path):
    import os

    from studio.generate_tab import prune_runs

    old, new = tmp_path / "old", tmp_path / "new"
    old.mkdir()
    new.mkdir()
    (old / "video.mp4").write_bytes(b"x")
    os.utime(old, (time.time() - 48 * 3600,) * 2)
    assert prune_runs(tmp_path, max_age_hours=24) == 1
    assert not old.exists() and new.exists()
