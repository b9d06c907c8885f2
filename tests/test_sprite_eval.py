"""The sprite benchmark's measurements: ground truth scores near perfectly, bad videos poorly."""

import colorsys
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from model.timeline import Action, Subject, Timeline
from train.sprite_eval import (
    ReferenceModel,
    area_wobble,
    connected_components,
    evaluate_clip,
    evaluate_sprite_clip,
    rgb_to_hsv,
    start_positions,
    summarize,
    track_subject,
    track_subjects,
)
from train.sprites import Identity, clip_from_timeline, generate_clip, render_identity


@pytest.fixture(scope="module")
def gt_clips():
    return [generate_clip(s) for s in range(12)]


def test_ground_truth_scores_near_perfectly(gt_clips):
    totals = summarize([evaluate_sprite_clip(c) for c in gt_clips])
    assert totals["action_accuracy"] >= 0.95
    assert totals["identity_fidelity"] >= 0.95
    assert totals["timing_error_frames"] <= 1.0
    assert totals["binding_accuracy"] >= 0.95
    short = summarize([evaluate_sprite_clip(generate_clip(s, duration=2.0)) for s in range(6)])
    assert short["action_accuracy"] >= 0.95 and short["timing_error_frames"] <= 1.0


def test_ground_truth_with_inter_clip_references(gt_clips):
    # other scale, rotation, lighting and background: tracking and identity must still hold
    totals = summarize([evaluate_sprite_clip(c, reference="inter") for c in gt_clips[:6]])
    assert totals["action_accuracy"] >= 0.95 and totals["identity_fidelity"] >= 0.95


def test_noise_scores_poorly(gt_clips):
    rng = np.random.default_rng(0)
    scores = [evaluate_sprite_clip(c, rng.integers(0, 256, c.frames.shape, dtype=np.uint8)) for c in gt_clips[:6]]
    totals = summarize(scores)
    assert totals["action_accuracy"] <= 0.3
    assert totals["identity_fidelity"] <= 0.1
    assert totals["timing_error_frames"] >= 2.5


def test_a_static_frame_scores_poorly(gt_clips):
    scores = []
    for c in gt_clips[:6]:
        static = np.repeat(c.frames[:1], c.frames.shape[0], axis=0)
        scores.append(evaluate_sprite_clip(c, static))
    totals = summarize(scores)
    n_stay = sum(a == "stay" for c in gt_clips[:6] for acts in c.actions for a in acts)
    n_all = sum(len(acts) for c in gt_clips[:6] for acts in c.actions)
    assert totals["action_accuracy"] <= n_stay / n_all + 1e-9  # only 'stay' can be right
    assert totals["action_accuracy"] < 0.5
    assert totals["timing_error_frames"] >= 6  # no boundary is visible
    # the motion amplitude: a frozen frame moves 0 px, the truth about its world's move length, backwards is negative
    frozen = [r["moved_px"] for sc in scores for r in sc.actions if r["moved_px"] is not None]
    truth = [evaluate_sprite_clip(c) for c in gt_clips[:6]]
    moved = [(r["moved_px"], r["commanded"]) for sc in truth for r in sc.actions if r["moved_px"] is not None]
    assert frozen and max(abs(m) for m in frozen) < 0.5
    assert moved and min(m for m, _ in moved) > 4 and all(r["moved_px"] is None for sc in truth for r in sc.actions
                                                          if not r["commanded"].startswith("move_"))
    # play one move's frames backwards: the same distance, the wrong way
    ci, rec = next((ci, r) for ci, sc in enumerate(truth) for r in sc.actions if r["moved_px"] is not None)
    c = gt_clips[ci]
    frames = c.frames.copy()
    frames[rec["f0"]:rec["f1"] + 1] = c.frames[rec["f0"]:rec["f1"] + 1][::-1]
    back = next(r for r in evaluate_sprite_clip(c, frames).actions if (r["subject"], r["index"]) == (rec["subject"], rec["index"]))
    assert back["moved_px"] == pytest.approx(-rec["moved_px"], abs=1.0)
    assert totals["identity_fidelity"] >= 0.95  # the subjects do look right


def _two_subject_timeline(a1, a2):
    return Timeline(duration=4.0, subjects=[
        Subject("s1", "the red square", "object", [], [Action(0.0, 4.0, a1)]),
        Subject("s2", "the blue star", "object", [], [Action(0.0, 4.0, a2)]),
    ])


IDS = [Identity("square", "red", "stripes"), Identity("star", "blue")]


def test_binding_catches_swapped_and_leaked_actions():
    tl = _two_subject_timeline("moves to the left", "moves up")
    clip = clip_from_timeline(tl, IDS, seed=1)
    refs = [clip.references_intra[0][0], clip.references_intra[1][0]]
    good = evaluate_clip(clip.frames, tl, refs)
    assert good.action_accuracy == 1.0 and good.binding_accuracy == 1.0
    swapped = evaluate_clip(clip.frames, tl, refs[::-1])  # each action shows on the other subject
    assert swapped.action_accuracy == 0.0 and swapped.binding_accuracy == 0.0
    # s2 was told to stay, but the video shows it moving left too: s1's action leaked onto s2
    leak_video = clip_from_timeline(_two_subject_timeline("moves to the left", "moves to the left"), IDS, seed=1).frames
    leak = evaluate_clip(leak_video, _two_subject_timeline("moves to the left", "stays still"), refs)
    s1 = next(a for a in leak.actions if a["subject"] == "s1")
    assert s1["correct"] and not s1["bound"] and leak.binding_accuracy == 0.0


def test_timing_error_measures_a_late_boundary():
    tl = Timeline(duration=4.0, subjects=[Subject("s1", "the green square", "object", [], [
        Action(0.0, 2.0, "stays still"), Action(2.0, 4.0, "moves to the right")])])
    clip = clip_from_timeline(tl, [Identity("square", "green")], seed=0)
    ref = [clip.references_intra[0][0]]
    assert evaluate_clip(clip.frames, tl, ref).timing_error == 0.0
    claimed = Timeline(duration=4.0, subjects=[Subject("s1", "the green square", "object", [], [
        Action(0.0, 1.75, "stays still"), Action(1.75, 4.0, "moves to the right")])])
    assert evaluate_clip(clip.frames, claimed, ref).timing_error == pytest.approx(4.0, abs=1.0)  # 0.25 s = 4 frames


def test_identity_needs_the_right_colour_and_shape():
    tl = Timeline(duration=2.0, subjects=[Subject("s1", "the red star", "object", [], [Action(0.0, 2.0, "spins")])])
    clip = clip_from_timeline(tl, [Identity("star", "red", "dots")], seed=2)
    same = evaluate_clip(clip.frames, tl, [Identity("star", "red", "dots")])
    assert same.identity_fidelity >= 0.95 and same.action_accuracy == 1.0
    other_shape = evaluate_clip(clip.frames, tl, [render_identity(Identity("triangle", "red"), 32, scale=0.4)])
    assert other_shape.identity_fidelity < 0.5
    other_colour = evaluate_clip(clip.frames, tl, [Identity("star", "green", "dots")])
    assert other_colour.identity_fidelity == 0.0 and other_colour.actions[0]["observed"] == "missing"


def test_reference_model_reads_hue_despite_lighting():
    for colour, bright in (("orange", 0.75), ("yellow", 1.1), ("magenta", 0.9)):
        img = render_identity(Identity("cross", colour, "checker"), 32, scale=0.4, brightness=bright, background="beige")
        exact = ReferenceModel.from_identity(Identity("cross", colour))
        assert abs((ReferenceModel.from_image(img).hue - exact.hue + 180) % 360 - 180) < 3
    with pytest.raises(ValueError, match="saturated"):
        ReferenceModel.from_image(np.full((16, 16, 3), 128, np.uint8))


def test_track_follows_the_centroid(gt_clips):
    c = gt_clips[0]
    for s in range(c.num_subjects):
        tr = track_subject(c.frames, c.references_intra[s][0])
        visible = c.masks[s].reshape(c.frames.shape[0], -1).sum(1) > 0
        assert tr.found[visible].mean() >= 0.95
        ys, xs = np.nonzero(c.masks[s, 0])
        assert abs(tr.x[0] - xs.mean()) < 1.0 and abs(tr.y[0] - ys.mean()) < 1.0


def _bfs_components(mask):
    H, W = mask.shape
    lab = -np.ones((H, W), int)
    n = 0
    for i in range(H):
        for j in range(W):
            if mask[i, j] and lab[i, j] < 0:
                q = deque([(i, j)])
                lab[i, j] = n
                while q:
                    y, x = q.popleft()
                    for dy in (-1, 0, 1):
                        for dx in (-1, 0, 1):
                            yy, xx = y + dy, x + dx
                            if 0 <= yy < H and 0 <= xx < W and mask[yy, xx] and lab[yy, xx] < 0:
                                lab[yy, xx] = n
                                q.append((yy, xx))
                n += 1
    return lab


@settings(max_examples=40, deadline=None)
@given(arrays(bool, st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(1, 12))))
def test_connected_components_match_a_plain_flood_fill(m):
    lab = connected_components(m)
    assert ((lab >= 0) == m).all()
    for f in range(m.shape[0]):
        ref = _bfs_components(m[f])
        # same partition: a bijection between label sets
        pairs = {(a, b) for a, b in zip(lab[f][m[f]].tolist(), ref[m[f]].tolist())}
        assert len(pairs) == len({a for a, _ in pairs}) == len({b for _, b in pairs})


@settings(max_examples=50, deadline=None)
@given(st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(0, 255)))
def test_hsv_matches_colorsys(rgb):
    h, s, v = rgb_to_hsv(np.array(rgb, np.uint8))
    eh, es, ev = colorsys.rgb_to_hsv(*(c / 255 for c in rgb))
    assert float(s) == pytest.approx(es, abs=1e-5) and float(v) == pytest.approx(ev, abs=1e-5)
    if es > 0:
        assert abs((float(h) - eh * 360 + 180) % 360 - 180) < 1e-3


def test_inputs_are_checked(gt_clips):
    c = gt_clips[0]
    with pytest.raises(ValueError, match="references"):
        evaluate_clip(c.frames, c.timeline, [])
    with pytest.raises(ValueError, match="frames"):
        evaluate_clip(c.frames[..., 0], c.timeline, [r[0] for r in c.references_intra])


def test_a_spin_shown_once_per_latent_frame_is_still_a_spin_and_flicker_is_not():
    """What a x4-in-time latent decodes to: a pose per latent frame (4 video frames). The spin cue compares frames
    one latent frame apart, so such a spin counts, and a still sprite whose pixels flicker every 4th frame does not."""
    from train.sprite_eval import classify_span

    tl = Timeline(duration=4.0, subjects=[Subject("s1", "the red striped square", "object", [], [Action(0.0, 4.0, "spins")])])
    clip = clip_from_timeline(tl, [Identity("square", "red", "stripes")], seed=2)
    held = clip.frames.copy()
    for f in range(1, held.shape[0]):
        held[f] = clip.frames[((f - 1) // 4) * 4 + 4 if ((f - 1) // 4) * 4 + 4 < held.shape[0] else f]
    ref = clip.references_intra[0][0]
    assert classify_span(track_subject(held, ref), 0, 64, 64, 64) == "spin"
    still = np.repeat(clip.frames[:1], clip.frames.shape[0], axis=0).copy()
    rng = np.random.default_rng(0)
    mask = clip.masks[0, 0]
    for f in range(4, still.shape[0], 4):  # a few pixels of the sprite darken at every latent-frame boundary
        flick = mask & (rng.random(mask.shape) < 0.06)
        still[f][flick] = (still[f][flick] * 0.5).astype(np.uint8)
    assert classify_span(track_subject(still, ref), 0, 64, 64, 64) == "stay"


def test_start_positions_see_subjects_in_the_wrong_places(gt_clips):
    c = next(c for c in gt_clips if len(c.timeline.subjects) >= 2)
    refs = [r[0] for r in c.references_intra]
    same = start_positions(c.frames, c.frames, refs)
    assert same["order_ok"] is True and max(same["own_px"]) < 1e-6 and min(same["other_px"]) > 5
    # the whole picture mirrored left to right: the order flips and each subject is far from its own place
    mirrored = start_positions(c.frames[:, :, ::-1], c.frames, refs)
    assert mirrored["order_ok"] is False and np.median(mirrored["own_px"]) > 5
    one = next(c for c in gt_clips if len(c.timeline.subjects) == 1)
    assert start_positions(one.frames, one.frames, [one.references_intra[0][0]])["order_ok"] is None
    # the tracks evaluate_clip made may stand in for the frames (ladder.py tracks each video once)
    assert start_positions(track_subjects(c.frames[:, :, ::-1], refs), track_subjects(c.frames, refs)) == mirrored


def test_evaluate_clip_with_tracks_already_made_scores_the_same(gt_clips):
    c = gt_clips[1]
    refs = [r[0] for r in c.references_intra]
    made = evaluate_clip(c.frames, c.timeline, refs, actions=c.actions, tracks=track_subjects(c.frames, refs))
    assert made.to_dict() == evaluate_clip(c.frames, c.timeline, refs, actions=c.actions).to_dict()


def test_area_wobble_sees_a_sprite_whose_size_flickers(gt_clips):
    c = gt_clips[0]
    ref = c.references_intra[0][0]
    assert area_wobble(track_subject(c.frames, ref)) < 0.05  # rendered sprites change size smoothly if at all
    flicker = c.frames.copy()
    for f in range(1, len(flicker), 2):  # every other frame loses the lower half of subject 0
        ys, xs = np.nonzero(c.masks[0, f])
        low = ys >= np.median(ys)
        flicker[f, ys[low], xs[low]] = 128
    assert area_wobble(track_subject(flicker, ref)) > 0.3
    score = evaluate_sprite_clip(c)
    assert len(score.area_wobble_per_subject) == c.num_subjects
    assert all(r["log_area"] is None or abs(r["log_area"]) < 0.2 for r in score.actions if r["commanded"] not in ("grow", "shrink"))
