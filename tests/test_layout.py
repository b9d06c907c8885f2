"""Start layouts (model/layout.py): plans of who stands where, bound for the first denoising steps."""

import numpy as np
import pytest
import torch

from model.layout import PATH_AMOUNTS, LayoutError, column_boxes, layout_pixel_masks, layout_token_masks
from model.timeline import Action, Subject, Timeline, example_timeline, num_latent_frames
from tests.mask_spy import recording_subject_masks


def _centre(mask):
    ys, xs = np.nonzero(mask)
    return xs.mean() + 0.5, ys.mean() + 0.5


def test_columns_put_subject_i_in_the_middle_of_the_ith_column():
    m = layout_pixel_masks("columns", 3, 64, 96, radius=0.1)
    assert m.shape == (3, 64, 96)
    for i in range(3):
        cx, cy = _centre(m[i])
        assert abs(cx - 96 * (i + 0.5) / 3) < 0.5 and abs(cy - 32) < 0.5
        # a disc of radius 0.1 of the shorter side (6.4 px): its area, give or take the pixel grid
        assert abs(m[i].sum() - np.pi * 6.4 ** 2) < 12
    assert not (m.sum(0) > 1).any()  # columns do not overlap at this radius
    boxes = column_boxes(3, 64, 96, radius=0.1)
    assert boxes[0][0] < boxes[1][0] < boxes[2][0]


def test_boxes_layout_and_its_refusals():
    m = layout_pixel_masks("boxes", 2, 64, 64, boxes=[(0, 0, 0.5, 0.25), [0.5, 0.5, 1.0, 1.0]])
    assert m[0].sum() == 32 * 16 and m[0][:16, :32].all() and m[1][32:, 32:].all() and m[1].sum() == 32 * 32
    with pytest.raises(LayoutError, match="got 1 for 2 subjects"):
        layout_pixel_masks("boxes", 2, 64, 64, boxes=[(0, 0, 1, 1)])
    with pytest.raises(LayoutError, match="subject 2.*not a box inside the frame"):
        layout_pixel_masks("boxes", 2, 64, 64, boxes=[(0, 0, 1, 1), (0.6, 0, 0.4, 1)])
    with pytest.raises(LayoutError, match="subject 1: expected four numbers"):
        layout_pixel_masks("boxes", 1, 64, 64, boxes=[("a", 0, 1)])
    with pytest.raises(LayoutError, match="must be one of columns, boxes"):
        layout_pixel_masks("diagonal", 1, 64, 64)
    with pytest.raises(LayoutError, match=r"radius must be in \(0, 0.5\]"):
        layout_pixel_masks("columns", 2, 64, 64, radius=0.7)


def test_token_masks_are_each_tokens_share_and_the_same_in_every_latent_frame():
    m = layout_pixel_masks("boxes", 1, 64, 64, boxes=[(0, 0, 0.25, 0.125)])  # 16 x 8 px: two 8-px tokens fully
    t = layout_token_masks(m, 5, (8, 8))
    assert t.shape == (1, 5 * 64)
    frame0 = t[0, :64].view(8, 8)
    assert torch.equal(frame0[0, :2], torch.ones(2)) and float(frame0.sum()) == 2.0
    assert all(torch.equal(t[0, k * 64:(k + 1) * 64], t[0, :64]) for k in range(5))


def _two_subject_timeline():
    """4 s at 8 fps (33 frames, 9 latent frames): a moves right over 0-2 s then stays; b does something no keyword
    names, then jumps over 1.5-3 s (video frames 12-24, latent frames 3-6)."""
    return Timeline(duration=4.0, fps=8, subjects=[
        Subject("a", "red circle", actions=[Action(0.0, 2.0, "moves to the right"), Action(2.0, 4.0, "stays still")]),
        Subject("b", "blue square", actions=[Action(0.0, 1.0, "does something unusual"), Action(1.5, 3.0, "jumps")])])


def test_paths_follow_each_subjects_commanded_motion_centred_on_its_column():
    tl = _two_subject_timeline()
    m = layout_pixel_masks("paths", 2, 64, 64, radius=0.1, timeline=tl)
    assert m.shape == (2, 9, 64, 64)
    a = [_centre(m[0, k] > 0.5) for k in range(9)]
    move = PATH_AMOUNTS["move"] * 64
    # the move ends at 2 s = video frame 16, the last of latent frame 4 (frames 13-16): from latent frame 5 on it is done
    assert a[5][0] - a[0][0] == pytest.approx(move, abs=1.0)
    assert all(a[k + 1][0] > a[k][0] for k in range(5)) and all(abs(a[k][0] - a[5][0]) < 0.6 for k in range(5, 9))
    assert all(abs(c[1] - 32) < 0.6 for c in a)  # a move right stays at mid-height
    # the path is centred on the left column: its extent's middle is at 16 px
    assert (a[0][0] + a[5][0]) / 2 == pytest.approx(16, abs=0.6)
    b = [_centre(m[1, k] > 0.5) for k in range(9)]
    assert all(abs(c[0] - 48) < 0.6 for c in b)  # an unknown caption and a jump leave x alone
    assert min(c[1] for c in b[4:7]) < b[0][1] - 5 and abs(b[7][1] - b[0][1]) < 0.6  # up in the air, then landed
    # the first latent frame is the first video frame's disc; later ones the mean over their four frames (soft edges)
    assert set(np.unique(m[0, 0])) <= {0.0, 1.0} and ((m[0, 2] > 0) & (m[0, 2] < 1)).any()
    t = layout_token_masks(m, 9, (8, 8))
    assert t.shape == (2, 9 * 64) and not torch.equal(t[0, :64], t[0, 4 * 64:5 * 64])
    with pytest.raises(LayoutError, match="latent frames"):
        layout_token_masks(m, 5, (8, 8))
    with pytest.raises(LayoutError, match="follows the timeline"):
        layout_pixel_masks("paths", 2, 64, 64)


def test_a_path_stays_inside_the_frame_and_grow_scales_the_disc():
    far = Timeline(duration=4.0, fps=8, subjects=[Subject("a", "dot", actions=[
        Action(0.0, 1.0, "moves left"), Action(1.0, 2.0, "moves left"), Action(2.0, 3.0, "moves left"), Action(3.0, 4.0, "grows")])])
    m = layout_pixel_masks("paths", 1, 64, 64, radius=0.1, timeline=far)
    assert m[:, 0].sum() > 0 and m[:, -1].sum() > m[:, 0].sum() * PATH_AMOUNTS["grow"] ** 2 * 0.8
    cx = [_centre(m[0, k] > 0.5)[0] for k in range(9)]
    assert cx[0] > cx[6] and min(cx) >= 6.4 * 1.5 - 1 and max(cx) <= 64 - 6.4 + 1  # pushed back inside the frame


def test_the_paths_layout_binds_the_pipelines_first_steps(tiny_pipe, two_subject_refs):
    tl = example_timeline()
    p = tiny_pipe.transformer.config.patch_size
    grid = (64 // tiny_pipe.vae_scale_spatial // p[1], 64 // tiny_pipe.vae_scale_spatial // p[2])
    want = layout_token_masks(layout_pixel_masks("paths", 2, 64, 64, radius=0.2, timeline=tl), num_latent_frames(tl.num_frames) // p[0], grid)
    _, seen = _record(tiny_pipe, tl, two_subject_refs, layout="paths", layout_steps=1, layout_radius=0.2)
    assert torch.equal(seen[0][0], want) and not torch.equal(seen[1][0], want)


def _record(pipe, tl, refs, **kwargs):
    with recording_subject_masks(pipe) as seen:
        out = pipe(tl, refs, seed=0, num_inference_steps=4, guidance_scale=1.0, progress=False, **kwargs)
    return out, seen


def test_a_layout_binds_the_first_steps_then_the_predicted_masks_take_over(tiny_pipe, two_subject_refs):
    tl = example_timeline()
    p = tiny_pipe.transformer.config.patch_size
    grid = (64 // tiny_pipe.vae_scale_spatial // p[1], 64 // tiny_pipe.vae_scale_spatial // p[2])
    want = layout_token_masks(layout_pixel_masks("columns", 2, 64, 64, radius=0.2), num_latent_frames(tl.num_frames) // p[0], grid)
    out, seen = _record(tiny_pipe, tl, two_subject_refs, layout="columns", layout_steps=2, layout_radius=0.2)
    assert len(seen) == 4
    assert all(torch.equal(m[0], want) for m in seen[:2])
    assert all(m is not None and not torch.equal(m[0], want) for m in seen[2:])  # the mask head's, from step 3 on
    # subject 0 on the left half of the frame, subject 1 on the right
    left = want.view(2, -1, *grid)[:, 0, :, : grid[1] // 2].sum((1, 2))
    assert left[0] > 0 and left[1] == 0
    free, seen_free = _record(tiny_pipe, tl, two_subject_refs)
    assert seen_free[0] is None
    # layout_steps 0 binds nothing: the same video as no layout
    zero, _ = _record(tiny_pipe, tl, two_subject_refs, layout="columns", layout_steps=0)
    assert np.array_equal(zero.frames, free.frames)


def test_a_layout_binds_only_the_first_window_of_a_segmented_video(tiny_pipe, two_subject_refs):
    tl = example_timeline()
    with recording_subject_masks(tiny_pipe) as seen:
        out = tiny_pipe(tl, two_subject_refs, seed=1, segment_seconds=2.0, num_inference_steps=2, guidance_scale=1.0,
                        progress=False, layout="columns", layout_steps=1)
    assert len(out.segments) == 3 and len(seen) == 6
    assert seen[0] is not None and seen[2] is None and seen[4] is None  # each later window starts unbound


def test_layout_refusals(tiny_pipe, two_subject_refs):
    tl = example_timeline()
    run = dict(seed=0, progress=False, num_inference_steps=1)
    with pytest.raises(ValueError, match="not both"):
        tiny_pipe(tl, two_subject_refs, layout="columns", binding_masks=torch.zeros(2, 10), **run)
    with pytest.raises(LayoutError, match="got 3 for 2 subjects"):
        tiny_pipe(tl, two_subject_refs, layout="boxes", layout_boxes=[(0, 0, 1, 1)] * 3, **run)
    with pytest.raises(ValueError, match="layout_steps must be a whole number"):
        tiny_pipe(tl, two_subject_refs, layout="columns", layout_steps=-1, **run)


def test_the_studio_engine_uses_the_models_default_layout_unless_told_otherwise():
    """The shipped default says default_layout 'paths', first_frame_guidance 1 and a first-frame redraw from the second
    frame's picture over the last 0.3 of the steps (reactid_pipeline.json): 'auto'
    binds its first step with the paths plan, 'columns' with the columns plan, 'none' leaves the first step unbound,
    an unknown layout is refused before any work."""
    from model.timeline import Timeline
    from studio.app import initial_document
    from studio.engine import GenerationRequest
    from tests.studio_fixtures import default_engine

    engine, _ = default_engine()
    pipe = engine.pipe
    assert pipe.config.default_layout == "paths" and pipe.config.first_frame_guidance == 1.0
    assert pipe.config.first_frame_redraw == 0.3 and pipe.config.first_frame_redraw_init == "next_frame"
    tl = Timeline.from_dict(initial_document(engine.limits().fps))
    first = {}
    for layout, bound in (("auto", True), ("none", False), ("columns", True), ("paths", True)):
        with recording_subject_masks(pipe) as seen:
            engine.generate(GenerationRequest(tl, steps=1, seed=0, guidance=1.0, layout=layout))
        assert (seen[0] is not None) == bound, layout
        first[layout] = seen[0]
    assert torch.equal(first["auto"], first["paths"]) and not torch.equal(first["paths"], first["columns"])
    with pytest.raises(ValueError, match="unknown start layout 'grid'"):
        engine.generate(GenerationRequest(tl, steps=1, seed=0, layout="grid"))
