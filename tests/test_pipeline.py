"""ReactIDPipeline end to end on tiny components built in code."""

import io
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from model.pipeline import GenerationCancelled, ReactIDPipeline
from model.references import ReferenceError
from model.timeline import Timeline, TimelineError, example_timeline, num_latent_frames
from model.tiny import flow_scheduler, tiny_text_encoder, tiny_tokenizer, tiny_transformer_config, tiny_vae
from model.transformer import ReactIDTransformer
from model.video import export_mp4, probe_video, read_video
from model.weights import CheckpointMismatch, load_reactid_weights, save_reactid_weights
from tests.mask_spy import recording_forward_kwarg, recording_subject_masks

FAST = dict(num_inference_steps=2, guidance_scale=3.0, progress=False)


def test_generates_frames_and_masks_of_the_right_shape(tiny_pipe, two_subject_refs):
    out = tiny_pipe(example_timeline(), two_subject_refs, seed=0, **FAST)
    assert out.frames.shape == (65, 64, 64, 3) and out.frames.dtype == np.uint8
    assert out.masks.shape == (2, 65, 64, 64) and 0 <= out.masks.min() and out.masks.max() <= 1
    assert out.fps == 16 and out.segments == [(0, 65)]


def test_same_seed_same_video_other_seed_other_video(tiny_pipe, two_subject_refs):
    a = tiny_pipe(example_timeline(), two_subject_refs, seed=3, **FAST)
    b = tiny_pipe(example_timeline(), two_subject_refs, seed=3, **FAST)
    c = tiny_pipe(example_timeline(), two_subject_refs, seed=4, **FAST)
    assert np.array_equal(a.frames, b.frames) and np.array_equal(a.masks, b.masks)
    assert not np.array_equal(a.frames, c.frames)


def _run_recording_binding_masks(pipe, timeline, refs, **kwargs):
    """Generate 3 steps without guidance; returns (output, the subject_masks each transformer forward got)."""
    with recording_subject_masks(pipe) as seen:
        out = pipe(timeline, refs, seed=0, num_inference_steps=3, guidance_scale=1.0, progress=False, **kwargs)
    return out, seen


def test_given_binding_masks_bind_every_step_and_bad_ones_are_refused(tiny_pipe, two_subject_refs):
    """binding_masks [S, N] (masks known beforehand; benchmarks/ladder.py --mask-feedback oracle gives the truth's)
    go to every denoising forward, the first step included, instead of the predicted ones."""
    tl = example_timeline()
    p = tiny_pipe.transformer.config.patch_size
    n_lat = num_latent_frames(tl.num_frames)
    n = (n_lat // p[0]) * (64 // tiny_pipe.vae_scale_spatial // p[1]) * (64 // tiny_pipe.vae_scale_spatial // p[2])
    given = torch.zeros(2, n)
    given[0, : n // 2] = 1.0  # subject 0 on the first half of the tokens, subject 1 on the rest
    given[1, n // 2 :] = 1.0
    out, seen = _run_recording_binding_masks(tiny_pipe, tl, two_subject_refs, binding_masks=given)
    assert len(seen) == 3 and all(m is not None and torch.equal(m[0], given) for m in seen)
    assert out.frames.shape[0] == tl.num_frames
    with pytest.raises(ValueError, match=rf"binding_masks must be \[subjects, tokens\] = \[2, {n}\]"):
        tiny_pipe(tl, two_subject_refs, seed=0, progress=False, num_inference_steps=1, binding_masks=torch.zeros(3, n))
    with pytest.raises(ValueError, match=r"in \[0, 1\]"):
        tiny_pipe(tl, two_subject_refs, seed=0, progress=False, num_inference_steps=1, binding_masks=given * 2)
    with pytest.raises(ValueError, match="one window"):
        tiny_pipe(tl, two_subject_refs, seed=0, progress=False, num_inference_steps=1, binding_masks=given, segment_seconds=2.0)


def test_reference_branch_runs_once_per_generation(tiny_pipe, two_subject_refs):
    calls = []
    hook = tiny_pipe.transformer.ref_blocks[0].register_forward_hook(lambda *a: calls.append(1))
    steps = []
    try:
        tiny_pipe(example_timeline(), two_subject_refs, seed=0, num_inference_steps=5, guidance_scale=3.0, progress=False,
                  callback_on_step_end=lambda pipe, i, t, kw: steps.append(i) or {})
    finally:
        hook.remove()
    assert steps == [0, 1, 2, 3, 4]
    assert len(calls) == 1  # 5 steps x 2 CFG branches, one reference pass


def test_masks_from_the_previous_step_feed_the_binding(tiny_pipe, two_subject_refs):
    _, seen = _run_recording_binding_masks(tiny_pipe, example_timeline(), two_subject_refs)
    assert seen[0] is None and all(m is not None and m.shape[1] == 2 for m in seen[1:])


def test_fresh_mask_feedback_binds_with_masks_predicted_on_the_same_latents(tiny_pipe, two_subject_refs):
    """'fresh': each step first predicts masks with no binding on the current latents (what training's predicted
    binding does), then denoises with them; the first step is bound too. A wrong value is refused."""
    calls = []
    orig = tiny_pipe.transformer.forward

    def spy(latents, *args, **kwargs):
        out = orig(latents, *args, **kwargs)
        calls.append((latents.clone(), kwargs.get("subject_masks"), out.mask_logits))
        return out

    tiny_pipe.transformer.forward = spy
    try:
        tiny_pipe(example_timeline(), two_subject_refs, seed=0, num_inference_steps=3, guidance_scale=1.0, progress=False,
                  mask_feedback="fresh")
    finally:
        del tiny_pipe.transformer.forward
    assert len(calls) == 6  # two forwards per step
    for (lat_a, masks_a, logits_a), (lat_b, masks_b, _) in zip(calls[0::2], calls[1::2]):
        assert masks_a is None and torch.equal(lat_a, lat_b)
        assert torch.allclose(masks_b, torch.sigmoid(logits_a.float()))
    with pytest.raises(ValueError, match="mask_feedback"):
        tiny_pipe(example_timeline(), two_subject_refs, seed=0, num_inference_steps=1, progress=False, mask_feedback="later")


def test_cancel_stops_generation(tiny_pipe, two_subject_refs):
    ev = threading.Event()

    def cb(pipe, i, t, kw):
        if i == 1:
            ev.set()
        return {}

    with pytest.raises(GenerationCancelled):
        tiny_pipe(example_timeline(), two_subject_refs, seed=0, num_inference_steps=6, guidance_scale=1.0, progress=False, cancel_event=ev, callback_on_step_end=cb)


def test_long_video_is_generated_segment_by_segment_and_one_segment_rerolls(tiny_pipe, two_subject_refs):
    tl = example_timeline()
    out = tiny_pipe(tl, two_subject_refs, seed=5, segment_seconds=2.0, num_inference_steps=2, guidance_scale=1.0, progress=False)
    assert out.frames.shape[0] == tl.num_frames == 65
    assert len(out.segments) == 3 and out.segments[0] == (0, 33) and out.segments[-1][1] == 65
    assert out.seeds == [5, 6, 7]
    again = tiny_pipe(tl, two_subject_refs, seed=99, segment_seconds=2.0, num_inference_steps=2, guidance_scale=1.0, progress=False, reroll_segment=1, previous=out)
    s0 = out.segments[0][1]
    assert np.array_equal(again.frames[:s0], out.frames[:s0])  # earlier segment kept
    assert not np.array_equal(again.frames[s0:out.segments[1][1]], out.frames[s0:out.segments[1][1]])
    assert again.seeds == [5, 99, 7]


def test_too_long_without_segments_is_refused(tiny_pipe, two_subject_refs):
    tl = example_timeline()
    tl.duration = 8.0
    with pytest.raises(ValueError, match="pass segment_seconds"):
        tiny_pipe(tl, two_subject_refs, **FAST)


# ---- bad input, refused before any model work ---------------------------------------------------
@pytest.mark.parametrize("h, w", [(60, 64), (64, 8), (0, 64)])
def test_sizes_the_model_cannot_take(tiny_pipe, two_subject_refs, h, w):
    with pytest.raises(ValueError, match="multiples of 16"):
        tiny_pipe(example_timeline(), two_subject_refs, height=h, width=w, **FAST)


def test_invalid_timeline_is_refused_with_names(tiny_pipe, two_subject_refs):
    tl = example_timeline()
    tl.subjects[0].actions[1].start = 1.0
    with pytest.raises(TimelineError, match="subject 's1' .*overlaps"):
        tiny_pipe(tl, two_subject_refs, **FAST)


def test_reference_problems_name_subject_and_file(tiny_pipe, two_subject_refs, tmp_path):
    with pytest.raises(ReferenceError, match="unknown subject.*'dog'"):
        tiny_pipe(example_timeline(), {**two_subject_refs, "dog": [two_subject_refs["s1"][0]]}, **FAST)
    with pytest.raises(ReferenceError, match="subject 's2' \\(the blue square\\) has no reference"):
        tiny_pipe(example_timeline(), {"s1": two_subject_refs["s1"]}, **FAST)
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nthis is not really a png")
    with pytest.raises(ReferenceError, match="subject 's1'.*broken.png.*not a readable image"):
        tiny_pipe(example_timeline(), {"s1": [str(bad)], "s2": two_subject_refs["s2"]}, **FAST)
    with pytest.raises(ReferenceError, match="at most 4"):
        tiny_pipe(example_timeline(), {"s1": two_subject_refs["s1"] * 5, "s2": two_subject_refs["s2"]}, **FAST)


def test_references_from_timeline_paths(tiny_pipe, tmp_path):
    tl = example_timeline()
    for s, colour in zip(tl.subjects, [(255, 0, 0), (0, 0, 255)]):
        p = tmp_path / f"{s.id}.png"
        Image.new("RGB", (24, 24), colour).save(p)
        s.references = [str(p)]
    out = tiny_pipe(tl, None, seed=0, **FAST)
    assert out.frames.shape[0] == 65


# ---- weights and loading --------------------------------------------------------------------------
def test_reactid_weights_round_trip_and_mismatch(tmp_path):
    torch.manual_seed(0)
    a = ReactIDTransformer(**tiny_transformer_config())
    with torch.no_grad():
        for n, p in a.named_parameters():
            if a.is_reactid_param(n):
                p.normal_()
    save_reactid_weights(a, tmp_path / "ck")
    files = {p.name for p in (tmp_path / "ck").iterdir()}
    assert files == {"reactid.safetensors", "reactid_config.json"}
    b = ReactIDTransformer(**tiny_transformer_config())
    load_reactid_weights(b, tmp_path / "ck")
    for k, v in a.reactid_state_dict().items():
        assert torch.equal(v, b.state_dict()[k]), k
    assert len(a.reactid_state_dict()) < len(a.state_dict())  # base weights are not in the checkpoint
    other = ReactIDTransformer(**tiny_transformer_config(layers=4, temporal_mode="vanilla_rope"))
    with pytest.raises(CheckpointMismatch, match="num_layers: checkpoint 6, model 4.*temporal_mode"):
        load_reactid_weights(other, tmp_path / "ck")


def test_pipeline_save_and_reload_generates_the_same_video(tiny_pipe, two_subject_refs, tmp_path):
    tiny_pipe.save_pretrained(tmp_path / "pipe")
    again = ReactIDPipeline.from_pretrained(tmp_path / "pipe")
    a = tiny_pipe(example_timeline(), two_subject_refs, seed=1, **FAST)
    b = again(example_timeline(), two_subject_refs, seed=1, **FAST)
    for k, v in tiny_pipe.transformer.state_dict().items():
        assert torch.equal(v, again.transformer.state_dict()[k]), k
    # identical weights; float rounding (~1e-7, kernel layout) may flip a rare uint8 level
    diff = np.abs(a.frames.astype(int) - b.frames.astype(int))
    assert diff.max() <= 2 and diff.mean() < 0.01


def test_loads_a_local_wan_format_directory_plus_checkpoint(tmp_path, two_subject_refs):
    """The real loader path: a diffusers Wan2.1 layout (vae/, text_encoder/, tokenizer/, transformer/,
    scheduler/) saved locally, then a ReactID checkpoint on top."""
    from diffusers import WanTransformer3DModel

    torch.manual_seed(0)
    wan_dir = tmp_path / "Wan2.1-tiny"
    base_cfg = {k: v for k, v in tiny_transformer_config().items() if k in ("patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "text_dim", "freq_dim", "ffn_dim", "num_layers", "rope_max_seq_len")}
    base = WanTransformer3DModel(**base_cfg)
    base.save_pretrained(wan_dir / "transformer")
    tiny_vae().save_pretrained(wan_dir / "vae")
    tiny_text_encoder().save_pretrained(wan_dir / "text_encoder")
    tiny_tokenizer().save_pretrained(wan_dir / "tokenizer")
    flow_scheduler().save_pretrained(wan_dir / "scheduler")

    plain = ReactIDPipeline.from_pretrained(wan_dir, max_sequence_length=32, default_height=64, default_width=64)
    assert isinstance(plain.transformer, ReactIDTransformer)
    for k, v in base.state_dict().items():
        assert torch.equal(plain.transformer.state_dict()[k], v), k

    trained = ReactIDTransformer.from_wan(base, temporal_mode="vanilla_rope")
    with torch.no_grad():
        trained.blocks[0].timeline_out.weight.fill_(0.01)
    save_reactid_weights(trained, tmp_path / "ck")
    pipe = ReactIDPipeline.from_pretrained(wan_dir, reactid_checkpoint=tmp_path / "ck", max_sequence_length=32, default_height=64, default_width=64)
    assert pipe.transformer.config.temporal_mode == "vanilla_rope"
    assert torch.equal(pipe.transformer.blocks[0].timeline_out.weight, trained.blocks[0].timeline_out.weight)
    out = pipe(example_timeline(), two_subject_refs, seed=0, **FAST)
    assert out.frames.shape == (65, 64, 64, 3)


# ---- video export ------------------------------------------------------------------------------------
def test_export_mp4_is_h264_yuv420p_and_reads_back(tmp_path):
    frames = np.zeros((17, 30, 30, 3), np.uint8)
    for i in range(17):
        frames[i, :, : 2 * i] = (255, 0, 0)
    path = export_mp4(frames, tmp_path / "v.mp4", fps=16, upscale=3)
    info = probe_video(path)
    assert info["codec"] == "h264" and info["pix_fmt"] == "yuv420p" and (info["width"], info["height"]) == (90, 90)
    back, fps = read_video(path)
    assert back.shape == (17, 90, 90, 3) and fps == pytest.approx(16)
    assert back[16, 45, 10, 0] > 200 and back[0, 45, 80, 0] < 60  # content survived


def test_negative_branch_is_the_caption_dropped_branch_training_saw(tiny_pipe, two_subject_refs):
    """Issue 14, defect 4: caption dropout trains the unconditional case through the timeline attention's null
    slot (zero captions, no valid token), so the negative guidance branch must run the same way, not with no
    timeline at all (the two differ by the timeline output's bias)."""
    with recording_forward_kwarg(tiny_pipe, "timeline") as seen:
        tiny_pipe(example_timeline(), two_subject_refs, seed=0, num_inference_steps=2, guidance_scale=3.0, progress=False)
    cond, neg = seen[0], seen[1]
    assert cond is not None and bool(cond.valid.any())
    assert neg is not None and not bool(neg.valid.any()) and float(neg.embeds.abs().max()) == 0.0
    assert neg.spans.shape == cond.spans.shape  # same layout: only the captions are gone


def test_first_frame_guidance_sets_the_scale_of_the_first_latent_frame_only(tiny_pipe, two_subject_refs):
    """What the scheduler steps with is unc + g * (cond - unc), with g = first_frame_guidance on the lone first latent
    frame and guidance_scale on the others; the export's first_frame_guidance is the default."""
    outs, preds = [], []
    orig_fwd, orig_step = tiny_pipe.transformer.forward, tiny_pipe.scheduler.step

    def fwd(*args, **kwargs):
        out = orig_fwd(*args, **kwargs)
        outs.append(out.sample.clone())
        return out

    def step(pred, *args, **kwargs):
        preds.append(pred.clone())
        return orig_step(pred, *args, **kwargs)

    tiny_pipe.transformer.forward, tiny_pipe.scheduler.step = fwd, step
    try:
        a = tiny_pipe(example_timeline(), two_subject_refs, seed=0, first_frame_guidance=1.0, **FAST)
    finally:
        del tiny_pipe.transformer.forward, tiny_pipe.scheduler.step
    assert len(outs) == 4 and len(preds) == 2
    cond, unc = outs[0], outs[1]
    assert torch.allclose(preds[0][:, :, 0], cond[:, :, 0])  # scale 1: the conditional prediction alone
    assert torch.allclose(preds[0][:, :, 1:], unc[:, :, 1:] + 3.0 * (cond[:, :, 1:] - unc[:, :, 1:]), atol=1e-6)
    same = tiny_pipe(example_timeline(), two_subject_refs, seed=0, first_frame_guidance=3.0, **FAST)
    plain = tiny_pipe(example_timeline(), two_subject_refs, seed=0, **FAST)
    assert np.array_equal(same.frames, plain.frames) and not np.array_equal(a.frames, plain.frames)
    tiny_pipe.register_to_config(first_frame_guidance=1.0)  # an export that names it makes it the default
    try:
        assert np.array_equal(tiny_pipe(example_timeline(), two_subject_refs, seed=0, **FAST).frames, a.frames)
    finally:
        tiny_pipe.register_to_config(first_frame_guidance=None)
    with pytest.raises(ValueError, match="first_frame_guidance must be a number"):
        tiny_pipe(example_timeline(), two_subject_refs, seed=0, first_frame_guidance=-1, **FAST)


def test_first_frame_redraw_draws_only_the_first_latent_frame_again(tiny_pipe, two_subject_refs):
    """first_frame_redraw r: after the schedule, the last r of its steps run again on the lone first latent frame
    with the other frames pinned (each step: the finished latents noised to that step's level), so every other
    frame's latents stay exactly as the plain generation left them; the export's key is the default."""
    kw = dict(num_inference_steps=4, guidance_scale=3.0, progress=False, first_frame_guidance=1.0)
    calls = []
    orig_fwd = tiny_pipe.transformer.forward

    def fwd(hidden_states, *args, **kwargs):
        calls.append(hidden_states.clone())
        return orig_fwd(hidden_states, *args, **kwargs)

    plain = tiny_pipe(example_timeline(), two_subject_refs, seed=0, **kw)
    tiny_pipe.transformer.forward = fwd
    try:
        redrawn = tiny_pipe(example_timeline(), two_subject_refs, seed=0, first_frame_redraw=0.5, **kw)
    finally:
        del tiny_pipe.transformer.forward
    # 4 guided steps (2 forwards each), then 2 redraw steps whose first frame is unguided (scale 1: one forward)
    assert len(calls) == 4 * 2 + 2
    assert torch.equal(redrawn.latents[:, :, 1:], plain.latents[:, :, 1:])
    assert not torch.equal(redrawn.latents[:, :, :1], plain.latents[:, :, :1])
    # the redraw's inputs: the other frames are the finished latents noised to the step's level (sigma < 1)
    sig = tiny_pipe.scheduler.sigmas
    start = 4 - 2
    pinned = calls[8][:, :, 1:]
    noise = (pinned - (1 - sig[start]) * plain.latents[:, :, 1:]) / sig[start]
    again = (1 - sig[start + 1]) * plain.latents[:, :, 1:] + sig[start + 1] * noise
    assert torch.allclose(calls[9][:, :, 1:], again, atol=1e-5)
    assert float(noise.std()) > 0.5  # noised, not the clean latents
    tiny_pipe.register_to_config(first_frame_redraw=0.5)  # an export that names it makes it the default
    try:
        assert torch.equal(tiny_pipe(example_timeline(), two_subject_refs, seed=0, **kw).latents, redrawn.latents)
        assert torch.equal(tiny_pipe(example_timeline(), two_subject_refs, seed=0, first_frame_redraw=0, **kw).latents,
                           plain.latents)
    finally:
        tiny_pipe.register_to_config(first_frame_redraw=0.0)
    for bad in (-0.1, 1.5, "half", True):
        with pytest.raises(ValueError, match="first_frame_redraw must be a share of the steps"):
            tiny_pipe(example_timeline(), two_subject_refs, seed=0, first_frame_redraw=bad, **kw)


def test_first_frame_redraw_can_start_from_the_second_frames_picture(tiny_pipe, two_subject_refs):
    """first_frame_redraw_init 'next_frame': the redraw's first frame starts from the second video frame as the
    finished latents draw it, encoded into the first frame's latent space and noised to the redraw's first level
    (the same noise the 'own' start gets); the other frames stay as the plain generation left them."""
    kw = dict(num_inference_steps=4, guidance_scale=3.0, progress=False, first_frame_guidance=1.0, first_frame_redraw=0.5)
    inputs = {}
    orig_fwd = tiny_pipe.transformer.forward
    for init in ("own", "next_frame"):
        seen = []

        def fwd(hidden_states, *args, **kwargs):
            seen.append(hidden_states.clone())
            return orig_fwd(hidden_states, *args, **kwargs)

        tiny_pipe.transformer.forward = fwd
        try:
            out = tiny_pipe(example_timeline(), two_subject_refs, seed=0, first_frame_redraw_init=init, **kw)
        finally:
            del tiny_pipe.transformer.forward
        inputs[init] = (seen[8], out)
    plain = tiny_pipe(example_timeline(), two_subject_refs, seed=0, **{**kw, "first_frame_redraw": 0.0})
    hint = tiny_pipe.encode_video(tiny_pipe.decode_latents(plain.latents[:, :, :3])[:, :, 1:2])
    assert hint.shape[2] == 1
    sigma0 = tiny_pipe.scheduler.sigmas[2]
    own_in, nf_in = inputs["own"][0], inputs["next_frame"][0]
    assert torch.allclose(nf_in[:, :, :1] - own_in[:, :, :1], (1 - sigma0) * (hint - plain.latents[:, :, :1]), atol=1e-5)
    assert torch.equal(nf_in[:, :, 1:], own_in[:, :, 1:])
    nf_out = inputs["next_frame"][1]
    assert torch.equal(nf_out.latents[:, :, 1:], plain.latents[:, :, 1:])
    assert not torch.equal(nf_out.latents[:, :, :1], inputs["own"][1].latents[:, :, :1])
    with pytest.raises(ValueError, match="first_frame_redraw_init must be one of own, next_frame"):
        tiny_pipe(example_timeline(), two_subject_refs, seed=0, first_frame_redraw_init="previous", **kw)


def test_redraw_from_an_init_video_starts_at_the_strengths_noise_level(tiny_pipe, two_subject_refs):
    """init_video + strength (video-to-video): the clip's latents noised to the level where the last `strength` of
    the schedule starts, and only those steps run; strength 1 is the plain generation; bad input is refused."""
    tl = example_timeline()
    clip = np.random.default_rng(0).integers(0, 256, (tl.num_frames, 64, 64, 3), dtype=np.uint8)
    plain = tiny_pipe(tl, two_subject_refs, seed=1, **FAST)
    full = tiny_pipe(tl, two_subject_refs, seed=1, init_video=clip, strength=1.0, **FAST)
    assert np.array_equal(full.frames, plain.frames)  # from pure noise: the clip's content is gone

    seen = []
    orig = tiny_pipe.transformer.forward

    def spy(*args, **kw):
        seen.append(args[0].clone())
        return orig(*args, **kw)

    tiny_pipe.transformer.forward = spy
    try:
        out = tiny_pipe(tl, two_subject_refs, seed=1, num_inference_steps=4, guidance_scale=1.0, progress=False, init_video=clip, strength=0.5)
    finally:
        del tiny_pipe.transformer.forward
    assert len(seen) == 2  # the last 2 of 4 steps
    tiny_pipe.scheduler.set_timesteps(4)
    sigma = tiny_pipe.scheduler.sigmas[2]
    init = tiny_pipe.encode_video(torch.from_numpy(clip).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None])
    noise = torch.randn(init.shape, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(seen[0], (1 - sigma) * init + sigma * noise, atol=1e-5)
    # the output's latents are what was decoded
    assert out.latents is not None and np.array_equal(
        ((tiny_pipe.decode_latents(out.latents)[0].permute(1, 2, 3, 0).numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8), out.frames)

    one = dict(seed=0, progress=False, num_inference_steps=1)
    for bad, match in [(dict(strength=0.0), r"strength must be in \(0, 1\]"), (dict(strength=1.5), r"strength must be in \(0, 1\]"),
                       (dict(init_video=clip[:5]), r"init_video must be \[frames, height, width, 3\]"),
                       (dict(init_video=clip.astype(np.float32)), "uint8"), (dict(segment_seconds=2.0), "one window")]:
        kw = {"init_video": clip, "strength": 0.5, **bad}
        with pytest.raises(ValueError, match=match):
            tiny_pipe(tl, two_subject_refs, **one, **kw)


def test_x0_channels_take_their_own_guidance_scale_from_the_export(two_subject_refs):
    """x0_channel_guidance (a grown latent's x0 channels guided at their own scale): the same as the clip's scale
    changes nothing; another scale changes the video; a bad value is refused; a model without x0 channels ignores it."""
    from model.tiny import tiny_pipeline

    def run(x0_guidance, **kw):
        pipe = tiny_pipeline(seed=0, x0_channels_from=2, **kw)
        pipe.register_to_config(x0_channel_guidance=x0_guidance)
        return pipe(example_timeline(), two_subject_refs, seed=5, **FAST).frames

    plain, same, one = run(None), run(3.0), run(1.0)
    assert np.array_equal(plain, same) and not np.array_equal(plain, one)
    base = tiny_pipeline(seed=0)
    a = base(example_timeline(), two_subject_refs, seed=5, **FAST).frames
    base.register_to_config(x0_channel_guidance=1.0)
    assert np.array_equal(a, base(example_timeline(), two_subject_refs, seed=5, **FAST).frames)
    with pytest.raises(ValueError, match="x0_channel_guidance"):
        ReactIDPipeline(vae=base.vae, text_encoder=base.text_encoder, tokenizer=base.tokenizer, transformer=base.transformer,
                        scheduler=base.scheduler, x0_channel_guidance=-1.0)
