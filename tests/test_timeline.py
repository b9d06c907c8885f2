import json

import jsonschema
import pytest
from hypothesis import given, settings, strategies as st

from model.timeline import (
    SCHEMA_PATH, Action, Subject, Timeline, TimelineError, example_timeline, fix_overlaps, json_schema,
    latent_frame_times, min_action_seconds, num_latent_frames, num_video_frames, seconds_to_latent, snap_to_grid,
    split_segments,
)


def problems_of(doc):
    with pytest.raises(TimelineError) as exc:
        Timeline.from_dict(doc)
    return exc.value.problems


def base_doc():
    return example_timeline().to_dict()


def test_example_is_valid_and_round_trips(tmp_path):
    tl = example_timeline()
    path = tmp_path / "t.json"
    tl.save(path)
    assert Timeline.load(path).to_dict() == tl.to_dict()
    jsonschema.validate(tl.to_dict(), json_schema())


def test_schema_file_is_current():
    assert json.loads(SCHEMA_PATH.read_text()) == json_schema()


def test_overlap_names_subject_and_both_actions_and_offers_fix():
    doc = base_doc()
    doc["subjects"][1]["actions"][1]["start"] = 1.0  # overlaps 'stays still' [0, 1.5]
    (p,) = problems_of(doc)
    assert "subject 's2' (the blue square)" in p.message and "action 2" in p.message and "overlaps action 1" in p.message
    assert p.fixable and p.subject_id == "s2" and p.action_index == 1
    fixed = fix_overlaps(Timeline.from_dict(doc, validate=False))
    assert fixed.problems() == []
    assert fixed.subject("s2").actions[1].start == pytest.approx(1.5)


@pytest.mark.parametrize(
    "mutate, needle",
    [
        (lambda d: d["subjects"][0]["actions"][0].update(end=9.0), "ends after the video's duration"),
        (lambda d: d["subjects"][0]["actions"][0].update(start=-1.0), "starts before 0s"),
        (lambda d: d["subjects"][0]["actions"][0].update(start=2.0), "end must be after start"),
        (lambda d: d["subjects"][0]["actions"][0].update(end=0.1), "shorter than one latent frame"),
        (lambda d: d["subjects"][0]["actions"][0].update(text="  "), "caption is empty"),
        (lambda d: d["subjects"][0].update(colour="red"), "unknown key(s) 'colour'"),
        (lambda d: d["subjects"][0]["actions"][0].update(speed=2), "unknown key(s) 'speed'"),
        (lambda d: d.update(extra=1), "unknown key(s) 'extra'"),
        (lambda d: d["subjects"][1].update(id="s1"), "id is used twice"),
        (lambda d: d["subjects"][0].update(kind="robot"), "kind must be one of"),
        (lambda d: d.update(subjects=[]), "at least one subject"),
        (lambda d: d.update(duration=-2), "duration must be a positive number"),
        (lambda d: d["subjects"][0]["actions"][0].update(start="soon"), "start must be a number"),
        (lambda d: d.update(version=7), "version 7 is not supported"),
    ],
)
def test_rule_violations_are_named(mutate, needle):
    doc = base_doc()
    mutate(doc)
    msgs = [p.message for p in problems_of(doc)]
    assert any(needle in m for m in msgs), msgs


def test_errors_name_the_subject_of_an_action_problem():
    doc = base_doc()
    doc["subjects"][1]["actions"][0]["text"] = ""
    (p,) = problems_of(doc)
    assert p.message.startswith("subject 's2' (the blue square), action 1") and p.path == "/subjects/1/actions/0/text"


def test_unknown_subject_lookup():
    with pytest.raises(TimelineError, match="unknown subject 'dog'.*'s1', 's2'"):
        example_timeline().subject("dog")


def test_not_json():
    with pytest.raises(TimelineError, match="not valid JSON at line 1"):
        Timeline.from_json("{oops")


def test_frame_arithmetic_matches_wan():
    assert num_video_frames(5.0, 16) == 81 and num_latent_frames(81) == 21
    assert num_video_frames(4.0, 16) == 65 and num_latent_frames(65) == 17
    assert num_video_frames(0.01, 16) == 5  # at least one latent step after the first frame
    with pytest.raises(ValueError, match="4k\\+1"):
        num_latent_frames(80)
    assert latent_frame_times(3, 16) == [0.0, 0.25, 0.5]
    assert seconds_to_latent(1.0, 16) == 4.0
    assert min_action_seconds(16) == 0.25
    assert snap_to_grid(0.37, 16) == 0.25 and snap_to_grid(0.4, 16) == 0.5


def test_split_segments_cover_the_video_with_overlap():
    tl = example_timeline()
    windows = split_segments(tl, 2.0, 0.25)
    assert [round(o, 2) for o, _ in windows] == [0.0, 1.75, 3.5]
    assert windows[-1][0] + windows[-1][1].duration == pytest.approx(tl.duration)
    # s1 jumps from 2.0 s: in window 2 (offset 1.75) that is 0.25 s in
    s1 = windows[1][1].subject("s1")
    assert [(a.start, a.end, a.text) for a in s1.actions] == [(0.0, 0.25, "moves to the right"), (0.25, 2.0, "jumps")]
    for _, w in windows:
        w.validate()


# ---- property tests --------------------------------------------------------------------------
@st.composite
def timelines(draw):
    fps = draw(st.sampled_from([8, 16, 24]))
    step = 4 / fps
    n_steps = draw(st.integers(2, 40))
    duration = round(n_steps * step, 6)
    subjects = []
    for i in range(draw(st.integers(1, 6))):
        cuts = sorted(set(draw(st.lists(st.integers(0, n_steps), min_size=2, max_size=6))))
        acts = [Action(round(a * step, 6), round(b * step, 6), draw(st.text(min_size=1, max_size=12).filter(str.strip))) for a, b in zip(cuts, cuts[1:])]
        subjects.append(Subject(f"s{i + 1}", f"subject {i + 1}", draw(st.sampled_from(["human", "animal", "object"])), [], acts))
    return Timeline(duration, subjects, draw(st.text(max_size=20)), fps)


@settings(max_examples=60, deadline=None)
@given(timelines())
def test_generated_timelines_are_valid_and_round_trip(tl):
    assert tl.problems() == []
    again = Timeline.from_json(tl.to_json())
    assert again.to_dict() == tl.to_dict()
    jsonschema.validate(tl.to_dict(), json_schema())


@settings(max_examples=60, deadline=None)
@given(timelines(), st.data())
def test_fix_overlaps_always_yields_a_valid_timeline(tl, data):
    # shove random actions around so they overlap, then repair
    for s in tl.subjects:
        for a in s.actions:
            shift = data.draw(st.floats(-1.0, 1.0))
            length = a.end - a.start
            a.start = min(max(0.0, a.start + shift), tl.duration - length)
            a.end = a.start + length
    fixed = fix_overlaps(tl)
    assert fixed.problems() == []
    assert all(len(f.actions) <= len(s.actions) for f, s in zip(fixed.subjects, tl.subjects))


@settings(max_examples=40, deadline=None)
@given(timelines(), st.floats(0.5, 3.0))
def test_segments_partition_time(tl, seg):
    step = 4 / tl.fps
    seg = max(2 * step, round(seg / step) * step)
    windows = split_segments(tl, seg, step)
    assert windows[0][0] == 0.0
    assert windows[-1][0] + windows[-1][1].duration == pytest.approx(tl.duration)
    for (o1, w1), (o2, _) in zip(windows, windows[1:]):
        assert o2 == pytest.approx(o1 + w1.duration - step)


def test_flatten_to_prompt_reads_like_the_timeline():
    from model.timeline import flatten_to_prompt

    text = flatten_to_prompt(example_timeline())
    assert text == ("two toys on a table. the red circle moves to the right from 0.0s to 2.0s, then jumps from 2.0s to 4.0s; "
                    "the blue square stays still from 0.0s to 1.5s, then moves up from 1.5s to 4.0s")
