"""The training recipe's options: the foreground-weighted flow loss and warm starts from a pipeline directory."""

import math
import shutil

import pytest
import torch

from model.losses import flow_matching_loss, foreground_loss_weight
from train.config import load_config
from train.loop import build_transformer, warm_start

from test_train import TINY


def test_foreground_weight_follows_the_token_masks():
    # 2 latent frames of 2 x 2 tokens, patch (1, 2, 2): subject 0 covers token 1 of frame 0 fully, subject 1 half of token 3 of frame 1
    masks = torch.zeros(1, 2, 8)
    masks[0, 0, 1] = 1.0
    masks[0, 1, 4 + 3] = 0.5
    w = foreground_loss_weight(masks, (2, 2, 2), (1, 2, 2), strength=4.0)
    assert w.shape == (1, 1, 2, 4, 4)
    assert torch.equal(w[0, 0, 0, :2, 2:], torch.full((2, 2), 5.0))  # token (0, 1) -> latents rows 0-1, cols 2-3
    assert torch.equal(w[0, 0, 1, 2:, 2:], torch.full((2, 2), 3.0))  # half covered -> 1 + 4 * 0.5
    assert (w == 1.0).sum() == 32 - 8  # every other latent keeps weight 1


def test_foreground_weight_time_dilation_covers_where_a_sprite_was_and_will_be():
    # 4 latent frames of 1 x 2 tokens, patch (1, 1, 1): a sprite in token 0 at frame 1 only
    masks = torch.zeros(1, 1, 8)
    masks[0, 0, 1 * 2 + 0] = 1.0
    w0 = foreground_loss_weight(masks, (4, 1, 2), (1, 1, 1), strength=4.0)
    w1 = foreground_loss_weight(masks, (4, 1, 2), (1, 1, 1), strength=4.0, time_dilation=1)
    assert w0[0, 0, :, 0, 0].tolist() == [1.0, 5.0, 1.0, 1.0]
    assert w1[0, 0, :, 0, 0].tolist() == [5.0, 5.0, 5.0, 1.0]  # the frames before and after too, not two away
    assert (w1[0, 0, :, 0, 1] == 1.0).all()  # never another token
    with pytest.raises(Exception, match="fg_time_dilation"):
        load_config({**TINY, "optim": {**TINY.get("optim", {}), "fg_time_dilation": -1}})


def test_weighted_flow_loss_tilts_towards_the_subjects():
    torch.manual_seed(0)
    x0, noise = torch.randn(1, 4, 2, 4, 4), torch.randn(1, 4, 2, 4, 4)
    target = noise - x0
    masks = torch.zeros(1, 1, 8)
    masks[0, 0, 0] = 1.0
    w = foreground_loss_weight(masks, (2, 2, 2), (1, 2, 2), strength=9.0)
    # a uniform weight is the plain MSE
    pred = target + 0.1 * torch.randn_like(target)
    assert flow_matching_loss(pred, noise, x0, torch.ones(1, 1, 1, 1, 1)).item() == pytest.approx(flow_matching_loss(pred, noise, x0).item(), rel=1e-6)
    # the same error costs more on a subject than on the background
    err_fg, err_bg = target.clone(), target.clone()
    err_fg[:, :, 0, 0, 0] += 1.0  # inside token 0 of frame 0
    err_bg[:, :, 1, 3, 3] += 1.0  # background
    assert flow_matching_loss(err_fg, noise, x0, w) > 5 * flow_matching_loss(err_bg, noise, x0, w)
    assert flow_matching_loss(err_fg, noise, x0) == pytest.approx(flow_matching_loss(err_bg, noise, x0).item())


def _tiny_cfg(tmp_path, **model):
    return load_config({**TINY, "output_dir": str(tmp_path / "run"), "model": {**TINY["model"], **model}})


def test_warm_start_copies_every_weight(tmp_path):
    src = build_transformer(_tiny_cfg(tmp_path), in_channels=4, text_dim=16)
    with torch.no_grad():
        for p in src.parameters():
            p.add_(torch.randn_like(p))  # make it unlike a fresh initialisation
    src.save_pretrained(tmp_path / "pipe" / "transformer")
    fresh = build_transformer(_tiny_cfg(tmp_path), in_channels=4, text_dim=16)
    assert any(not torch.equal(a, b) for a, b in zip(fresh.state_dict().values(), src.state_dict().values()))
    warm = build_transformer(_tiny_cfg(tmp_path, init_from=str(tmp_path / "pipe")), in_channels=4, text_dim=16)
    for (k, a), b in zip(src.state_dict().items(), warm.state_dict().values()):
        assert torch.equal(a, b), k


def test_warm_start_into_an_ablation_reports_what_it_skipped(tmp_path):
    src = build_transformer(_tiny_cfg(tmp_path), in_channels=4, text_dim=16)
    src.save_pretrained(tmp_path / "pipe" / "transformer")
    ablation = build_transformer(load_config({**TINY, "model": {**TINY["model"], "reactid": {"mask_blocks": 2, "use_timeline": False}}}), in_channels=4, text_dim=16)
    report = warm_start(ablation, tmp_path / "pipe")
    assert report["ignored"] and all("timeline_out" in k for k in report["ignored"])
    assert report["kept_own_init"] == []
    assert torch.equal(ablation.blocks[0].attn1.to_q.weight, src.blocks[0].attn1.to_q.weight)


def test_warm_start_refuses_weights_of_another_shape(tmp_path):
    build_transformer(_tiny_cfg(tmp_path), in_channels=4, text_dim=16).save_pretrained(tmp_path / "pipe" / "transformer")
    wider = build_transformer(load_config({**TINY, "model": {**TINY["model"], "ffn_dim": 48}}), in_channels=4, text_dim=16)
    with pytest.raises(ValueError, match=r"model.init_from .*do not fit this model config — blocks\.0\.ffn"):
        warm_start(wider, tmp_path / "pipe")
    with pytest.raises(ValueError, match="no .safetensors weights"):
        warm_start(wider, tmp_path)


def test_growing_a_model_deeper_keeps_its_function_and_the_new_blocks_learn(tmp_path):
    """model.init_block_map: a 2-block model grown to 4 blocks ([0, None, None, 1]) computes exactly what it did,
    with references, timeline and binding masks, because the new blocks add nothing at first; the new blocks get
    gradients (their zeroed outputs are not stuck)."""
    from model.conditioning import build_timeline_conditioning
    from model.timeline import example_timeline

    one_mask_head = {"mask_blocks": 1}  # on the last block, which the map keeps last
    src = build_transformer(_tiny_cfg(tmp_path, reactid=one_mask_head), in_channels=4, text_dim=16).eval()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.1 * torch.randn_like(p))  # the zero-initialised outputs too: every path counts
    src.save_pretrained(tmp_path / "pipe" / "transformer")
    grown = build_transformer(_tiny_cfg(tmp_path, layers=4, reactid=one_mask_head, init_from=str(tmp_path / "pipe"),
                                        init_block_map=[0, None, None, 1]), in_channels=4, text_dim=16).eval()
    assert len(grown.blocks) == 4
    assert torch.equal(grown.blocks[3].attn1.to_q.weight, src.blocks[1].attn1.to_q.weight)
    assert torch.equal(grown.blocks[3].mask_head.net[0].weight, src.blocks[1].mask_head.net[0].weight)
    assert torch.equal(grown.blocks[2].attn1.to_q.weight, src.blocks[0].attn1.to_q.weight)  # a copy of the block before
    with torch.no_grad():
        assert float(grown.blocks[1].ffn.net[-1].weight.abs().sum()) == 0.0 and float(grown.blocks[2].timeline_out.weight.abs().sum()) == 0.0

    torch.manual_seed(0)
    x, t, ctx = torch.randn(1, 4, 2, 4, 4), torch.tensor([700.0]), torch.randn(1, 5, 16)
    refs = (torch.randn(1, 2, 4, 4, 4), torch.tensor([[0, 1]]), torch.randn(1, 2, 4, 16))
    g = torch.Generator().manual_seed(0)
    tl = build_timeline_conditioning([example_timeline()], lambda caps: (torch.randn(len(caps), 4, 16, generator=g), torch.ones(len(caps), 4, dtype=torch.bool)))
    masks = torch.rand(1, 2, 8)  # 2 x 2 x 2 tokens (patch 1 x 2 x 2)
    with torch.no_grad():
        a = src(x, t, ctx, references=refs, timeline=tl, subject_masks=masks)
        b = grown(x, t, ctx, references=refs, timeline=tl, subject_masks=masks)
    assert torch.equal(a.sample, b.sample)
    assert torch.allclose(a.mask_logits, b.mask_logits)
    grown.train()
    grown(x, t, ctx, references=refs, timeline=tl, subject_masks=masks).sample.square().mean().backward()
    assert float(grown.blocks[1].ffn.net[-1].weight.grad.abs().sum()) > 0
    assert float(grown.blocks[2].attn1.to_out[0].weight.grad.abs().sum()) > 0


def test_init_block_map_is_checked(tmp_path):
    src = build_transformer(_tiny_cfg(tmp_path), in_channels=4, text_dim=16)
    src.save_pretrained(tmp_path / "pipe" / "transformer")
    pipe = str(tmp_path / "pipe")
    for bad, why in (([0, None, 1], "one entry per block"), ([None, 0, 1, None], "first block must load"),
                     ([0, -1, 1, None], "block indices"), ([0, True, 1, None], "block indices")):
        with pytest.raises(Exception, match=why):
            _tiny_cfg(tmp_path, layers=4, init_from=pipe, init_block_map=bad)
    with pytest.raises(Exception, match="init_from, which is not set"):
        _tiny_cfg(tmp_path, layers=2, init_block_map=[0, 1])
    with pytest.raises(ValueError, match="names block 5"):
        build_transformer(_tiny_cfg(tmp_path, layers=4, init_from=pipe, init_block_map=[0, 5, 1, None]), in_channels=4, text_dim=16)


def test_binding_masks_never_hand_the_model_the_ground_truth_unless_asked():
    """optim.binding_masks: 'predicted' binds with the masks the model predicts itself from the same noisy input
    without binding (what inference has at the next step), 'none' with nothing, 'ground_truth' with the clip's."""
    from types import SimpleNamespace

    from model.conditioning import build_timeline_conditioning
    from model.timeline import example_timeline
    from model.tiny import tiny_transformer_config
    from model.transformer import ReactIDTransformer
    from train.loop import Trainer

    torch.manual_seed(0)
    model = ReactIDTransformer(**tiny_transformer_config()).eval()
    cfg = model.config
    x = torch.randn(1, cfg.in_channels, 5, 8, 8)
    t = torch.tensor([600.0])
    ctx = torch.randn(1, 6, cfg.text_dim)
    feats = model.encode_references(torch.randn(1, 2, cfg.in_channels, 8, 8), torch.tensor([[0, 1]]), torch.randn(1, 2, 4, cfg.text_dim), num_subjects=2)
    g = torch.Generator().manual_seed(0)

    def enc(caps):
        return torch.randn(len(caps), 4, cfg.text_dim, generator=g), torch.ones(len(caps), 4, dtype=torch.bool)

    tl = build_timeline_conditioning([example_timeline()], enc)
    gt = (torch.rand(1, 2, 80) > 0.5).float()

    def call(mode, none_prob=0.0):
        fake = SimpleNamespace(cfg=SimpleNamespace(optim=SimpleNamespace(binding_masks=mode, binding_none_prob=none_prob, binding_layout_prob=0.0)))
        return Trainer.binding_masks(fake, model, x, t, ctx, {"reference_features": feats}, tl, gt, torch.Generator().manual_seed(1))

    assert call("ground_truth") is gt
    assert call("none") is None and call("predicted", none_prob=1.0) is None
    with torch.no_grad():
        own = torch.sigmoid(model(x, t, ctx, reference_features=feats, timeline=tl).mask_logits)
    got = call("predicted")
    assert torch.allclose(got, own) and not torch.allclose(got, gt) and not got.requires_grad


def test_binding_layout_binds_high_noise_samples_to_their_columns_layout():
    """optim.binding_layout_prob: a sample at sigma >= binding_layout_sigma is bound to the 'columns' start layout of
    its own subject count (as the first steps are at inference with a layout); the others keep their predicted masks.
    The option needs predicted binding and is range-checked."""
    from types import SimpleNamespace

    from model.layout import layout_pixel_masks, layout_token_masks
    from train.loop import Trainer

    model = SimpleNamespace(config=SimpleNamespace(patch_size=(1, 1, 1)))
    fake = SimpleNamespace(cfg=SimpleNamespace(height=64, width=64, optim=SimpleNamespace(binding_layout_prob=1.0, binding_layout_sigma=0.75,
                                                                                           binding_layout="columns")),
                           model=model, accelerator=SimpleNamespace(unwrap_model=lambda m: m))
    bind = torch.full((2, 3, 5 * 64), 0.3)
    valid = torch.tensor([[True, True, False], [True, True, True]])
    out = Trainer.layout_binding(fake, bind, (2, 16, 5, 8, 8), torch.tensor([0.9, 0.5]), valid, torch.Generator().manual_seed(0))
    want = layout_token_masks(layout_pixel_masks("columns", 2, 64, 64), 5, (8, 8))
    assert torch.equal(out[0, :2], want) and float(out[0, 2].abs().sum()) == 0.0
    assert torch.equal(out[1], bind[1]) and torch.equal(bind, torch.full_like(bind, 0.3))  # the input is not changed
    fake.cfg.optim.binding_layout_prob = 0.0
    assert torch.equal(Trainer.layout_binding(fake, bind, (2, 16, 5, 8, 8), torch.tensor([0.9, 0.9]), valid, torch.Generator()), bind)
    with pytest.raises(Exception, match="needs optim.binding_masks 'predicted'"):
        load_config(TINY, {"optim": {"binding_layout_prob": 0.5, "binding_masks": "ground_truth"}})
    with pytest.raises(Exception, match="binding_layout_sigma"):
        load_config(TINY, {"optim": {"binding_layout_sigma": 1.5}})
    # 'truth': the high-noise sample is bound to its own masks (what the paths layout plans), the other keeps its own
    fake.cfg.optim.binding_layout_prob, fake.cfg.optim.binding_layout = 1.0, "truth"
    truth = torch.rand(2, 3, 5 * 64)
    out = Trainer.layout_binding(fake, bind, (2, 16, 5, 8, 8), torch.tensor([0.9, 0.5]), valid, torch.Generator().manual_seed(0), truth)
    assert torch.equal(out[0], truth[0]) and torch.equal(out[1], bind[1])
    with pytest.raises(Exception, match="binding_layout"):
        load_config(TINY, {"optim": {"binding_layout": "ovals"}})


def test_paths_binding_layout_binds_training_samples_to_the_discs_inference_binds_around_each_sprite():
    """optim.binding_layout 'paths': a high-noise training sample is bound to the paths layout of its own timeline,
    the discs the first inference steps bind. In the default model's world (canonical placement) each disc sits on
    its sprite (a median under a quarter of a token apart) and holds nearly all of it, and is larger than the sprite (its circumcircle), which is
    why 'truth' and 'paths' measure a token's place on the subject in different units (reference_offset_bias)."""
    import json
    from pathlib import Path
    from types import SimpleNamespace

    from model.timeline import num_latent_frames
    from train.loop import Trainer
    from train.prepare import token_masks
    from train.sprites import WorldConfig, generate_clip

    root = Path(__file__).resolve().parents[1]
    world = WorldConfig.from_kwargs(**json.loads((root / "assets/default_model/sprite_world.json").read_text()))
    clips = [generate_clip(9_000_000 + k, world) for k in range(6)]
    n_lat = num_latent_frames(clips[0].timeline.num_frames)
    model = SimpleNamespace(config=SimpleNamespace(patch_size=(1, 1, 1)))
    fake = SimpleNamespace(cache={"timelines": [c.timeline.to_dict() for c in clips]}, path_masks_by_clip={}, model=model,
                           cfg=SimpleNamespace(height=64, width=64, optim=SimpleNamespace(binding_layout_prob=1.0, binding_layout_sigma=0.43,
                                                                                          binding_layout="paths")),
                           accelerator=SimpleNamespace(unwrap_model=lambda m: m))
    plan = Trainer.path_layout_masks(fake, list(range(6)), 3, (6, 16, n_lat, 8, 8))
    assert plan.shape == (6, 3, n_lat * 64)
    yy, xx = torch.meshgrid(torch.arange(8) + 0.5, torch.arange(8) + 0.5, indexing="ij")
    held, ratio, dist = [], [], []
    for b, clip in enumerate(clips):
        n = len(clip.timeline.subjects)
        assert float(plan[b, n:].abs().sum()) == 0.0  # no disc for a subject the clip lacks
        truth = token_masks(clip.masks, n_lat, (8, 8)).reshape(n, n_lat, 8, 8)
        disc = plan[b, :n].reshape(n, n_lat, 8, 8)
        for m in (truth, disc):
            assert float(m.sum((-1, -2)).min()) > 0.3
        cy = [(m * yy).sum((-1, -2)) / m.sum((-1, -2)) for m in (truth, disc)]
        cx = [(m * xx).sum((-1, -2)) / m.sum((-1, -2)) for m in (truth, disc)]
        # a latent frame's disc is the mean of its 4 video frames, its truth mask the last of them: a jump parts them most
        dist.append(((cy[0] - cy[1]) ** 2 + (cx[0] - cx[1]) ** 2).sqrt().flatten())
        held.append(float(torch.minimum(truth, disc).sum() / truth.sum()))
        ratio.append(float(truth.sum() / disc.sum()))
    dist = torch.cat(dist)
    assert float(dist.median()) < 0.25 and float(dist.max()) < 1.0
    assert min(held) > 0.85 and max(ratio) < 1.0
    # the step binds those discs (Trainer.binding_masks passes them as `truth`) and leaves low-noise samples alone
    bind = torch.full((2, 3, n_lat * 64), 0.3)
    out = Trainer.layout_binding(fake, bind, (2, 16, n_lat, 8, 8), torch.tensor([0.9, 0.2]), torch.ones(2, 3, dtype=torch.bool),
                                 torch.Generator().manual_seed(0), plan[:2])
    assert torch.equal(out[0], plan[0]) and torch.equal(out[1], bind[1])
    assert load_config(TINY, {"optim": {"binding_layout": "paths", "binding_layout_prob": 0.5}}).optim.binding_layout == "paths"


def test_sigma_shift_moves_training_noise_towards_where_a_shifted_sampler_spends_its_steps():
    from train.loop import shift_sigmas

    s = torch.sigmoid(torch.randn(100_000, generator=torch.Generator().manual_seed(0)))
    assert torch.equal(shift_sigmas(s, 1.0), s)
    shifted = shift_sigmas(s, 3.0)
    assert 0.0 <= float(shifted.min()) and float(shifted.max()) <= 1.0 and torch.all(shifted >= s)
    assert abs(float(shifted.median()) - 0.75) < 0.01  # the median 0.5 maps to 3*0.5/(1+2*0.5)


def test_a_list_of_sigma_shifts_mixes_them_per_sample_and_a_number_draws_nothing_extra():
    from train.loop import per_sample_shift, shift_sigmas

    g = torch.Generator().manual_seed(0)
    before = g.get_state()
    assert per_sample_shift(3, 8, g) == 3.0 and torch.equal(g.get_state(), before)  # old runs keep their noise
    shifts = per_sample_shift([1.0, 3.0], 10_000, g)
    assert set(shifts.unique().tolist()) == {1.0, 3.0} and abs(float((shifts == 3.0).float().mean()) - 0.5) < 0.03
    s = torch.sigmoid(torch.randn(10_000, generator=g))
    mixed = shift_sigmas(s, shifts)
    assert torch.equal(mixed[shifts == 1.0], s[shifts == 1.0])
    assert torch.allclose(mixed[shifts == 3.0], shift_sigmas(s[shifts == 3.0], 3.0))
    # high noise (where the layout is set) gets several times a plain schedule's share
    assert float((mixed > 0.9).float().mean()) > 3 * float((s > 0.9).float().mean())


def test_sigma_shift_setting_is_checked():
    from train.config import ConfigError, load_config

    assert load_config("ladder_l2l").optim.sigma_shift == [1.0, 3.0]
    for bad in ([], [1.0, 0.0], "3", [True]):
        with pytest.raises(ConfigError, match="optim.sigma_shift"):
            load_config("sprite", {"optim": {"sigma_shift": bad}})


def test_bce_mask_loss_tracks_coverage_where_focal_does_not():
    """Issue 14, defect 2: the focal loss's optimum for a soft target of 33% coverage is p ~ 0.16; BCE's is 0.33."""
    from train.loop import mask_head_loss

    target = torch.full((1, 1, 1), 0.33)
    valid = torch.ones(1, 1, 1, dtype=torch.bool)
    best = {}
    for kind in ("focal", "bce"):
        grid = torch.linspace(-4, 2, 601)
        losses = [mask_head_loss(torch.full((1, 1, 1), float(x)), target, kind, 0.25, 2.0, valid).item() for x in grid]
        best[kind] = torch.sigmoid(grid[int(torch.tensor(losses).argmin())]).item()
    assert abs(best["bce"] - 0.33) < 0.01 and best["focal"] < 0.2


def test_binding_recall_counts_true_subject_tokens_that_get_their_label():
    from model.rope import binding_recall

    cover = torch.tensor([[[0.9, 0.8, 0.1, 0.0], [0.0, 0.1, 0.7, 0.0]]])  # subject 0 owns tokens 0-1, subject 1 token 2
    probs = torch.tensor([[[0.6, 0.2, 0.0, 0.0], [0.0, 0.0, 0.5, 0.0]]])
    assert binding_recall(probs, cover, threshold=0.3) == pytest.approx(2 / 3)  # token 1 falls under the threshold
    assert binding_recall(probs, cover, threshold=0.1) == pytest.approx(1.0)
    assert binding_recall(probs, torch.zeros_like(cover), threshold=0.3) is None


def test_timeline_lr_scale_gives_the_timeline_weights_their_own_rate(tmp_path):
    from train.loop import optimizer_groups

    cfg = load_config(TINY, {"output_dir": str(tmp_path), "optim": {"timeline_lr_scale": 5.0}})
    model = build_transformer(cfg, 4, 32)
    params = list(model.parameters())
    base, tl = optimizer_groups(model, params, cfg.optim)
    tl_names = {n for n, p in model.named_parameters() if any(p is q for q in tl["params"])}
    assert tl["lr"] == pytest.approx(5 * cfg.optim.lr) and "lr" not in base
    assert tl_names and all(".timeline_" in f".{n}" for n in tl_names)
    assert "blocks.0.timeline_out.weight" in tl_names and "blocks.0.attn2.to_k.weight" not in tl_names
    assert len(base["params"]) + len(tl["params"]) == len(params)
    assert optimizer_groups(model, params, load_config(TINY).optim) is params  # scale 1: one group, old checkpoints resume


def test_channel_loss_power_2_is_the_pixel_error_of_a_linear_decoder():
    """Through an orthonormal linear decoder (the PCA latent), the pixel MSE of a normalised-latent error is
    sum_c std_c^2 e_c^2: the channel weight at power 2 ranks errors as the pixels do, power 0 as the latents do."""
    from model.losses import channel_loss_weight

    std = torch.tensor([8.0, 2.0, 1.0, 0.5])
    q, _ = torch.linalg.qr(torch.randn(12, 4, generator=torch.Generator().manual_seed(0)))  # 4 orthonormal columns

    def pixel_mse(err):  # err [1, 4, 1, 1, 1] in normalised units -> pixels
        return (q @ (err.flatten() * std)).pow(2).sum().item()

    x0, noise = torch.zeros(1, 4, 1, 1, 1), torch.zeros(1, 4, 1, 1, 1)
    errs = [torch.zeros(1, 4, 1, 1, 1) for _ in range(2)]
    errs[0][0, 0] = 0.2  # small error in the high-variance channel
    errs[1][0, 3] = 1.0  # large error in the low-variance one
    w2, w0 = channel_loss_weight(std, 2.0), channel_loss_weight(std, 0.0)
    assert w2.shape == (1, 4, 1, 1, 1) and w2.mean().item() == pytest.approx(1.0) and torch.equal(w0, torch.ones(1, 4, 1, 1, 1))
    loss2 = [flow_matching_loss(e, noise, x0, w2).item() for e in errs]  # target noise - x0 = 0, so pred = error
    loss0 = [flow_matching_loss(e, noise, x0, w0).item() for e in errs]
    pix = [pixel_mse(e) for e in errs]
    assert loss2[0] / loss2[1] == pytest.approx(pix[0] / pix[1], rel=1e-5)  # 2.56 / 0.25
    assert pix[0] > pix[1] and loss0[0] < loss0[1]  # the plain loss ranks them the other way
    with pytest.raises(ValueError, match="positive"):
        channel_loss_weight([1.0, 0.0], 1.0)


def test_trainer_weighs_the_flow_loss_by_channel_only_when_asked(tmp_path):
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_train_step import synthetic_cache
    from train.loop import Trainer, plan_step

    def first_flow(power, std):
        cfg = load_config(TINY, {"output_dir": str(tmp_path / f"p{power}"), "optim": {"channel_loss_power": power}})
        cache = synthetic_cache(cfg, n=4, z=4)
        if std is not None:
            cache["latents_std"] = std
        torch.manual_seed(0)
        trainer = Trainer(cfg, cache)
        return trainer.train_step(plan_step(trainer.curriculum, 0))["flow"]

    plain = first_flow(0.0, None)
    assert first_flow(2.0, [3.0, 3.0, 3.0, 3.0]) == pytest.approx(plain, rel=1e-5)  # equal stds: the plain loss
    assert abs(first_flow(2.0, [9.0, 1.0, 1.0, 0.5]) - plain) > 1e-3 * plain
    with pytest.raises(ValueError, match="latents_std"):
        first_flow(1.0, None)
    with pytest.raises(ValueError, match="4"):
        first_flow(1.0, [1.0, 2.0])
    with pytest.raises(Exception, match="channel_loss_power"):
        load_config(TINY, {"optim": {"channel_loss_power": -1}})


def test_temporal_difference_loss_counts_only_the_error_that_changes_between_frames():
    from model.losses import flow_matching_loss, flow_matching_target, temporal_difference_loss

    torch.manual_seed(0)
    noise, x0 = torch.randn(2, 4, 6, 3, 3), torch.randn(2, 4, 6, 3, 3)
    target = flow_matching_target(noise, x0)
    steady = torch.randn(2, 4, 1, 3, 3).expand(-1, -1, 6, -1, -1)  # the same error in every frame
    assert float(temporal_difference_loss(target + steady, noise, x0)) == pytest.approx(0.0, abs=1e-10)
    assert float(flow_matching_loss(target + steady, noise, x0)) > 0.1  # the flow loss counts it
    flicker = 0.5 * (-1.0) ** torch.arange(6).view(1, 1, 6, 1, 1) * torch.ones(2, 4, 6, 3, 3)  # +-0.5, frame to frame
    assert float(temporal_difference_loss(target + flicker, noise, x0)) == pytest.approx(1.0)  # (0.5 + 0.5)^2
    first_only = torch.zeros(2, 4, 6, 3, 3)
    first_only[:, :, 0] = 3.0  # the lone first latent frame is left out by default
    assert float(temporal_difference_loss(target + first_only, noise, x0)) == 0.0
    assert float(temporal_difference_loss(target + first_only, noise, x0, skip_first=False)) > 0
    w = torch.zeros(1, 1, 6, 1, 1)
    w[:, :, 3] = 1.0  # only the pair (2, 3) counts
    assert float(temporal_difference_loss(target + flicker, noise, x0, w)) == pytest.approx(1.0)
    with pytest.raises(ValueError, match="two latent frames after the first"):
        temporal_difference_loss(target[:, :, :2], noise[:, :, :2], x0[:, :, :2])
    with pytest.raises(Exception, match="temporal_loss_weight"):
        load_config(TINY, {"optim": {"temporal_loss_weight": -1}})


def test_first_frame_loss_weight_multiplies_only_the_lone_first_latent_frame():
    from model.losses import first_frame_loss_weight, flow_matching_loss, flow_matching_target

    torch.manual_seed(0)
    noise, x0 = torch.randn(2, 4, 5, 3, 3), torch.randn(2, 4, 5, 3, 3)
    target = flow_matching_target(noise, x0)
    err = torch.zeros(2, 4, 5, 3, 3)
    err[:, :, 0] = 1.0  # an error of 1 in the first latent frame only
    assert first_frame_loss_weight(None, err.shape, 1.0) is None
    w = first_frame_loss_weight(None, err.shape, 4.0)
    assert w.shape == (1, 1, 5, 1, 1) and w.flatten().tolist() == [4.0, 1.0, 1.0, 1.0, 1.0]
    assert float(flow_matching_loss(target + err, noise, x0)) == pytest.approx(1 / 5)
    assert float(flow_matching_loss(target + err, noise, x0, w)) == pytest.approx(4 / 8)  # the weighted mean
    fg = torch.rand(2, 1, 5, 3, 3)
    wf = first_frame_loss_weight(fg, err.shape, 3.0)  # on top of a foreground weight
    assert torch.allclose(wf[:, :, 0], 3 * fg[:, :, 0]) and torch.equal(wf[:, :, 1:], fg[:, :, 1:])
    with pytest.raises(Exception, match="first_frame_loss_weight"):
        load_config(TINY, {"optim": {"first_frame_loss_weight": 0}})


def test_growing_the_latent_keeps_the_old_channels_prediction_and_the_new_ones_learn(tmp_path):
    """model.init_grow_latent: a model trained on a 4-channel latent, loaded into one on 6 channels whose first 4 are
    the old latent (a PCA refitted with more components on the same clips is nested exactly): whatever the new
    channels hold, the old channels' prediction is the small model's and the new channels' is zero; the new channels'
    input and output weights get gradients. Patch (1, 2, 2), so the output rows (patch, channel) are checked too."""
    from model.conditioning import build_timeline_conditioning
    from model.timeline import example_timeline

    src = build_transformer(_tiny_cfg(tmp_path), in_channels=4, text_dim=16).eval()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.1 * torch.randn_like(p))
    src.save_pretrained(tmp_path / "pipe" / "transformer")
    pipe = str(tmp_path / "pipe")
    with pytest.raises(ValueError, match="init_grow_latent: true"):
        build_transformer(_tiny_cfg(tmp_path, init_from=pipe), in_channels=6, text_dim=16)
    with pytest.raises(Exception, match="init_from, which is not set"):
        _tiny_cfg(tmp_path, init_grow_latent=True)
    cfg = _tiny_cfg(tmp_path, init_from=pipe, init_grow_latent=True)
    assert tuple(cfg.model.patch_size) == (1, 2, 2)
    grown = build_transformer(cfg, in_channels=6, text_dim=16).eval()
    report = warm_start(build_transformer(_tiny_cfg(tmp_path), in_channels=6, text_dim=16), pipe, grow_latent=True)
    assert sorted(report["grown_latent"]) == ["patch_embedding.weight", "proj_out.bias", "proj_out.weight", "ref_patch_embedding.weight"]

    torch.manual_seed(0)
    x, t, ctx = torch.randn(1, 4, 2, 4, 4), torch.tensor([700.0]), torch.randn(1, 5, 16)
    ref_lat = torch.randn(1, 2, 4, 4, 4)
    g = torch.Generator().manual_seed(0)
    tl = build_timeline_conditioning([example_timeline()], lambda caps: (torch.randn(len(caps), 4, 16, generator=g), torch.ones(len(caps), 4, dtype=torch.bool)))
    masks = torch.rand(1, 2, 8)
    ids, names = torch.tensor([[0, 1]]), torch.randn(1, 2, 4, 16)
    def wide(a, dim):  # two new channels holding anything
        extra = list(a.shape)
        extra[dim] = 2
        return torch.cat([a, 3 * torch.randn(extra)], dim)

    with torch.no_grad():
        a = src(x, t, ctx, references=(ref_lat, ids, names), timeline=tl, subject_masks=masks)
        b = grown(wide(x, 1), t, ctx, references=(wide(ref_lat, 2), ids, names), timeline=tl, subject_masks=masks)
    assert b.sample.shape == (1, 6, 2, 4, 4)
    assert torch.allclose(a.sample, b.sample[:, :4], atol=1e-6) and float(b.sample[:, 4:].abs().max()) == 0.0
    assert torch.allclose(a.mask_logits, b.mask_logits, atol=1e-6)
    grown.train()
    grown(wide(x, 1), t, ctx, references=(wide(ref_lat, 2), ids, names), timeline=tl, subject_masks=masks).sample.square().mean().backward()
    assert float(grown.patch_embedding.weight.grad[:, 4:].abs().sum()) > 0 and float(grown.proj_out.weight.grad.abs().sum()) > 0


def test_grown_channels_read_as_x0_start_at_their_mean_and_train_on_x0s_error(tmp_path):
    """model.reactid.x0_channels_from on a grown latent: the old channels' velocity is the small model's, the new ones'
    zero output is a clean-latent guess of 0, so their velocity is x_t / sigma (a sampler step then moves them toward 0,
    where a zero velocity would keep their starting noise); x0_channel_loss_weight turns their velocity loss into
    x0's squared error."""
    from model.losses import flow_matching_loss, x0_channel_loss_weight

    src = build_transformer(_tiny_cfg(tmp_path), in_channels=4, text_dim=16).eval()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.1 * torch.randn_like(p))
    src.save_pretrained(tmp_path / "pipe" / "transformer")
    reactid = {**TINY["model"].get("reactid", {}), "x0_channels_from": 4}
    with pytest.raises(ValueError, match="x0_channels_from"):
        build_transformer(_tiny_cfg(tmp_path, reactid={**reactid, "x0_channels_from": 6}), in_channels=6, text_dim=16)
    grown = build_transformer(_tiny_cfg(tmp_path, init_from=str(tmp_path / "pipe"), init_grow_latent=True, reactid=reactid),
                              in_channels=6, text_dim=16).eval()
    torch.manual_seed(1)
    x, ctx = torch.randn(2, 4, 2, 4, 4), torch.randn(2, 5, 16)
    x_wide = torch.cat([x, torch.randn(2, 2, 2, 4, 4)], 1)
    t = torch.tensor([700.0, 250.0])
    with torch.no_grad():
        a = src(x, t, ctx).sample
        b = grown(x_wide, t, ctx).sample
    assert torch.allclose(a, b[:, :4], atol=1e-6)
    sigma = (t / 1000).view(2, 1, 1, 1, 1)
    assert torch.allclose(b[:, 4:], x_wide[:, 4:] / sigma, atol=1e-5)
    # the loss: x_t = (1 - s) x0 + s e; the x0 channels' weighted velocity error equals x0_hat's error
    x0, e = torch.randn(2, 6, 2, 4, 4), torch.randn(2, 6, 2, 4, 4)
    pred = torch.randn(2, 6, 2, 4, 4)
    w = x0_channel_loss_weight(t / 1000, 6, 4)
    assert w.shape == (2, 6, 1, 1, 1) and float(w[:, :4].min()) == 1.0
    x_t = (1 - sigma) * x0 + sigma * e
    x0_hat = x_t - sigma * pred
    only_new = torch.zeros(1, 6, 1, 1, 1)
    only_new[:, 4:] = 1.0
    got = flow_matching_loss(pred * only_new, e * only_new, x0 * only_new, w * only_new)
    per_sample = (x0_hat - x0)[:, 4:].pow(2).mean(dim=(1, 2, 3, 4))  # each sample's x0 error counts alike
    assert torch.allclose(got, per_sample.sum() / (sigma.view(2) ** 2).sum(), atol=1e-5)
    plain = flow_matching_loss(pred * only_new, e * only_new, x0 * only_new, only_new)  # 1 / sigma^2 per sample
    assert torch.allclose(plain, (per_sample / sigma.view(2) ** 2).mean(), atol=1e-5)


def test_detail_path_starts_silent_and_training_it_alone_never_moves_the_old_channels(tmp_path):
    """model.reactid.detail_blocks: the x0 channels' own path (blocks copied from the trunk's last, zero input and
    output layers). Grown from a small model it predicts what the x0 channels alone did (0); with optim.train_only
    [detail_], a real training step changes the new channels' guess and leaves the old channels' prediction exact."""
    src = build_transformer(_tiny_cfg(tmp_path), in_channels=4, text_dim=16).eval()
    with torch.no_grad():
        for p in src.parameters():
            p.add_(0.1 * torch.randn_like(p))
    src.save_pretrained(tmp_path / "pipe" / "transformer")
    reactid = {**TINY["model"].get("reactid", {}), "x0_channels_from": 4, "detail_blocks": 1}
    with pytest.raises(ValueError, match="x0_channels_from too"):
        build_transformer(_tiny_cfg(tmp_path, reactid={**reactid, "x0_channels_from": 0}), in_channels=6, text_dim=16)
    grown = build_transformer(_tiny_cfg(tmp_path, init_from=str(tmp_path / "pipe"), init_grow_latent=True, reactid=reactid),
                              in_channels=6, text_dim=16)
    last = grown.blocks[-1].state_dict()
    for k, v in grown.detail_layers[0].state_dict().items():
        assert torch.equal(v, last[k]), k  # the loaded trunk's last block, not a fresh one
    torch.manual_seed(2)
    x, ctx, t = torch.randn(2, 6, 2, 4, 4), torch.randn(2, 5, 16), torch.tensor([600.0, 300.0])
    with torch.no_grad():
        old = src.eval()(x[:, :4], t, ctx).sample
        before = grown.eval()(x, t, ctx).sample
    sigma = (t / 1000).view(2, 1, 1, 1, 1)
    assert torch.allclose(before[:, :4], old, atol=1e-6) and torch.allclose(before[:, 4:], x[:, 4:] / sigma, atol=1e-5)
    chosen = [p for n, p in grown.named_parameters() if n.startswith("detail_")]
    for n, p in grown.named_parameters():
        p.requires_grad_(n.startswith("detail_"))
    opt = torch.optim.AdamW(chosen, lr=1e-2)
    grown.train()
    for _ in range(3):
        opt.zero_grad()
        grown(x, t, ctx).sample[:, 4:].square().mean().backward()
        opt.step()
    with torch.no_grad():
        after = grown.eval()(x, t, ctx).sample
    assert torch.equal(after[:, :4], before[:, :4])
    assert float((after[:, 4:] - before[:, 4:]).abs().max()) > 1e-3


def test_train_only_must_be_a_list_of_name_prefixes(tmp_path):
    from train.config import ConfigError

    for bad in ("detail_", [""], [3]):
        with pytest.raises(ConfigError, match="optim.train_only"):
            load_config({**TINY, "output_dir": str(tmp_path / "run"), "optim": {**TINY.get("optim", {}), "train_only": bad}})
    cfg = load_config({**TINY, "output_dir": str(tmp_path / "run"), "optim": {**TINY.get("optim", {}), "train_only": ["detail_"]}})
    assert cfg.optim.train_only == ["detail_"]


def test_trainer_with_a_detail_path_trains_it_alone_and_logs_the_x0_channels(tmp_path):
    """The loop with x0 channels, a detail path and optim.train_only [detail_]: real training steps move the detail
    path's weights and no other, and the log carries the x0 channels' error beside their energy."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_train_step import synthetic_cache
    from train.loop import Trainer, plan_step

    cfg = load_config(TINY, {"output_dir": str(tmp_path / "d"), "model": {"reactid": {"x0_channels_from": 2, "detail_blocks": 1}},
                             "optim": {"train_only": ["detail_"], "lr": 0.01}})
    torch.manual_seed(0)
    trainer = Trainer(cfg, synthetic_cache(cfg, n=4, z=4))
    before = {n: p.detach().clone() for n, p in trainer.model.named_parameters()}
    stats = [trainer.train_step(plan_step(trainer.curriculum, i)) for i in range(2)]
    assert all(s["x0_energy"] > 0 and s["x0_mse"] > 0 for s in stats)
    moved = {n for n, p in trainer.model.named_parameters() if not torch.equal(p.detach(), before[n])}
    assert moved and all(n.startswith("detail_") for n in moved)
    assert any(n.startswith("detail_proj_out") for n in moved)
    cfg_none = load_config(TINY, {"output_dir": str(tmp_path / "n"), "optim": {"train_only": ["no_such_layer"]}})
    with pytest.raises(ValueError, match="no parameter"):
        Trainer(cfg_none, synthetic_cache(cfg_none, n=4, z=4))


@pytest.mark.skipif(not any(shutil.which(c) for c in ("g++", "c++", "clang++")),
                    reason="torch.compile's CPU backend needs a C++ compiler")
def test_compiled_training_forward_trains_like_the_plain_one(tmp_path):
    """optim.compile: the same steps from the same start give the same losses and weights as the plain module (up to
    float reassociation), across batches with different subject counts (the compiled graph is dynamic), and the
    checkpoint keeps the plain module's parameter names."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_train_step import synthetic_cache
    from train.config import ConfigError
    from train.loop import Trainer, plan_step

    with pytest.raises(ConfigError, match="optim.compile"):
        load_config(TINY, {"output_dir": str(tmp_path / "x"), "optim": {"compile": "yes"}})
    runs = {}
    for compiled in (False, True):
        cfg = load_config(TINY, {"output_dir": str(tmp_path / str(compiled)), "optim": {"compile": compiled, "batch_size": 2,
                                                                                              "binding_masks": "ground_truth"}})
        torch.manual_seed(0)
        trainer = Trainer(cfg, synthetic_cache(cfg, n=6, z=4))  # one forward graph per step: the test's compile time
        losses = [trainer.train_step(plan_step(trainer.curriculum, i))["loss"] for i in range(3)]
        runs[compiled] = (losses, {n: p.detach().clone() for n, p in trainer.model.named_parameters()}, trainer)
    assert runs[True][2].forward_model is not runs[True][2].model and runs[False][2].forward_model is runs[False][2].model
    assert runs[True][0] == pytest.approx(runs[False][0], rel=1e-4, abs=1e-5)
    for n, p in runs[False][1].items():
        assert torch.allclose(runs[True][1][n], p, atol=1e-4), n
    runs[True][2].out.mkdir(parents=True)
    ck = torch.load(runs[True][2].save_checkpoint(), weights_only=False)
    assert set(ck["model"]) == set(runs[False][1]) and not any(k.startswith("_orig_mod") for k in ck["model"])


def test_a_training_step_with_paths_binding_plans_the_discs_of_its_own_clips(tmp_path):
    """optim.binding_layout 'paths' inside real training steps: each step's clips get their paths layout (kept per clip,
    for exactly the clips the steps drew) and the steps train."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
    from bench_train_step import synthetic_cache
    from train.loop import Trainer, plan_step

    cfg = load_config(TINY, {"output_dir": str(tmp_path / "p"),
                             "optim": {"binding_layout": "paths", "binding_layout_prob": 1.0, "binding_layout_sigma": 0.0}})
    torch.manual_seed(0)
    trainer = Trainer(cfg, synthetic_cache(cfg, n=4, z=4))
    plans = [plan_step(trainer.curriculum, i) for i in range(2)]
    stats = [trainer.train_step(p) for p in plans]
    assert all(math.isfinite(s["loss"]) for s in stats)
    assert set(trainer.path_masks_by_clip) == {int(i) for p in plans for i in p.indices}
    for i, m in trainer.path_masks_by_clip.items():
        assert m.shape[0] == trainer.cache["num_subjects"][i] and float(m.sum()) > 0
