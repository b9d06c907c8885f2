"""ReactIDTransformer: exact equivalence with Wan at initialisation, the ReactID mechanisms, ablation switches."""

import math

import pytest
import torch
from diffusers import WanTransformer3DModel

from model import rope as R
from model.conditioning import build_timeline_conditioning
from model.losses import focal_loss
from model.timeline import Action, Subject, Timeline, example_timeline
from model.tiny import tiny_transformer_config
from model.transformer import REACTID_CONFIG_KEYS, ReactIDTransformer

BASE_KEYS = ("patch_size", "num_attention_heads", "attention_head_dim", "in_channels", "out_channels", "text_dim", "freq_dim", "ffn_dim", "num_layers", "rope_max_seq_len")


def random_wan(seed=0):
    cfg = {k: v for k, v in tiny_transformer_config().items() if k in BASE_KEYS}
    torch.manual_seed(seed)
    base = WanTransformer3DModel(**cfg).eval()
    with torch.no_grad():  # non-trivial weights everywhere (Wan's init leaves some at zero/one)
        for p in base.parameters():
            p.normal_(0, 0.2)
    return base


def fake_encoder(dim=32, L=6):
    g = torch.Generator().manual_seed(1)

    def enc(captions):
        n = len(captions)
        emb = torch.randn(n, L, dim, generator=g)
        mask = torch.arange(L).expand(n, L) < torch.tensor([3 + (len(c) % 3) for c in captions]).view(-1, 1)
        return emb, mask

    return enc


def inputs(seed=2, frames=5, hw=8, subjects=2):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(1, 4, frames, hw, hw, generator=g)
    t = torch.tensor([700.0])
    ctx = torch.randn(1, 9, 32, generator=g)
    refs = torch.randn(1, 3, 4, 8, 8, generator=g)
    ref_subject = torch.tensor([[0, 0, 1]])
    ref_text = torch.randn(1, 3, 5, 32, generator=g)
    masks = torch.rand(1, subjects, frames * (hw // 2) ** 2, generator=g)
    return x, t, ctx, refs, ref_subject, ref_text, masks


@pytest.mark.parametrize("options", [{}, {"temporal_mode": "vanilla_rope"}, {"temporal_mode": "attn_mask"}, {"label_strategy": "adaptive"}, {"use_subject_binding": False},
                                     {"timeline_rope_theta": 10.0}, {"timeline_kv": "separate"}, {"mask_threshold": 0.15},
                                     {"timeline_query_clock": "per_subject"}, {"timeline_identity_keys": True},
                                     {"timeline_query_clock": "per_subject", "timeline_identity_keys": True, "temporal_mode": "vanilla_rope"},
                                     {"reference_null_key": True}, {"reference_subject_embedding": True},
                                     {"reference_binding_bias": True, "reference_null_key": True}])
def test_reactid_equals_wan_at_initialisation(options):
    base = random_wan()
    model = ReactIDTransformer.from_wan(base, **options).eval()
    x, t, ctx, refs, rs, rt, masks = inputs()
    tl = build_timeline_conditioning([example_timeline()], fake_encoder())
    with torch.no_grad():
        want = base(x, t, ctx).sample
        feats = model.encode_references(refs, rs, rt, num_subjects=2)
        got = model(x, t, ctx, reference_features=feats, timeline=tl, subject_masks=masks)
    assert got.sample.shape == want.shape
    assert (got.sample - want).abs().max().item() <= 1e-5
    if options.get("use_subject_binding", True):
        assert got.mask_logits.shape == (1, 2, masks.shape[-1])


def test_trained_reactid_paths_do_change_the_output():
    """The equivalence above is not vacuous: once the zero-initialised outputs move, references and the timeline matter."""
    base = random_wan()
    model = ReactIDTransformer.from_wan(base).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ref_out" in name or "timeline_out" in name:
                p.normal_(0, 0.1)
    x, t, ctx, refs, rs, rt, masks = inputs()
    tl = build_timeline_conditioning([example_timeline()], fake_encoder())
    with torch.no_grad():
        feats = model.encode_references(refs, rs, rt, num_subjects=2)
        plain = model(x, t, ctx).sample
        with_refs = model(x, t, ctx, reference_features=feats).sample
        with_tl = model(x, t, ctx, reference_features=feats, timeline=tl, subject_masks=masks).sample
    assert (with_refs - plain).abs().max() > 1e-3
    assert (with_tl - with_refs).abs().max() > 1e-3


def test_from_wan_copies_base_blocks_into_reference_blocks():
    base = random_wan()
    model = ReactIDTransformer.from_wan(base)
    for i, rb in enumerate(model.ref_blocks):
        for k, v in rb.state_dict().items():
            assert torch.equal(v, base.blocks[i].state_dict()[k]), k
    assert torch.equal(model.ref_patch_embedding.weight, base.patch_embedding.weight)
    assert all(torch.count_nonzero(b.ref_out.weight) == 0 and torch.count_nonzero(b.timeline_out.weight) == 0 for b in model.blocks)
    counts = model.trainable_parameter_counts()
    assert counts["base"] == sum(p.numel() for p in base.parameters()) and counts["reactid"] > 0


def test_unknown_option_and_bad_modes_are_refused():
    base = random_wan()
    with pytest.raises(TypeError, match="unknown ReactID option"):
        ReactIDTransformer.from_wan(base, use_magic=True)
    with pytest.raises(ValueError, match="temporal_mode must be one of"):
        ReactIDTransformer(**tiny_transformer_config(temporal_mode="spline"))
    with pytest.raises(ValueError, match="label_strategy"):
        ReactIDTransformer(**tiny_transformer_config(label_strategy="fancy"))
    with pytest.raises(ValueError, match="timeline_rope_theta must be > 1"):
        ReactIDTransformer(**tiny_transformer_config(timeline_rope_theta=1.0))


def test_components_can_be_switched_off():
    m = ReactIDTransformer(**tiny_transformer_config(use_reference_branch=False, use_timeline=False))
    assert not hasattr(m, "ref_blocks") and not hasattr(m.blocks[0], "timeline_out") and m.blocks[-1].mask_head is None
    assert set(REACTID_CONFIG_KEYS) <= set(m.config)
    with pytest.raises(RuntimeError, match="without the reference branch"):
        m.encode_references(torch.zeros(1, 1, 4, 8, 8), torch.zeros(1, 1, dtype=torch.long), torch.zeros(1, 1, 2, 32))


def test_mask_prediction_is_the_mean_of_the_last_five_blocks():
    model = ReactIDTransformer(**tiny_transformer_config(layers=7)).eval()
    heads = [i for i, b in enumerate(model.blocks) if b.mask_head is not None]
    assert heads == [2, 3, 4, 5, 6]
    x, t, ctx, refs, rs, rt, masks = inputs()
    seen = []
    hooks = [model.blocks[i].register_forward_hook(lambda mod, a, out: seen.append(out[1])) for i in heads]
    with torch.no_grad():
        out = model(x, t, ctx, reference_features=model.encode_references(refs, rs, rt, 2))
    for h in hooks:
        h.remove()
    want = torch.stack(seen).mean(0).transpose(1, 2)
    assert torch.allclose(out.mask_logits, want)


def test_null_key_lets_the_mask_head_see_a_lone_subject():
    """With one subject its share of the reference attention is 1 for every token, so the mask head gets the
    same input everywhere; the null key makes that share depend on how well the token matches the references."""
    x, t, ctx, refs, rs, rt, _ = inputs()
    rs = torch.zeros_like(rs)  # every reference image belongs to subject 0
    spread = {}
    for null in (False, True):
        torch.manual_seed(0)
        model = ReactIDTransformer(**tiny_transformer_config(), reference_null_key=null).eval()
        seen = []
        hook = model.blocks[-1].register_forward_hook(lambda mod, a, out: seen.append(out[1]))
        with torch.no_grad():
            model(x, t, ctx, reference_features=model.encode_references(refs, rs, rt, 1))
        hook.remove()
        spread[null] = float(seen[0].std())
    assert spread[False] < 1e-5  # a constant: no information
    assert spread[True] > 1e-4


def test_reference_subject_slot_tells_the_subjects_apart():
    """Two subjects with identical references: without the slot embedding the reference features cannot say
    which is the first subject; with it (once trained away from zero) they differ, and too many subjects fail."""
    x, t, ctx, refs, rs, rt, _ = inputs()
    refs = refs[:, :1].expand(-1, rs.shape[1], -1, -1, -1).clone()  # every image the same picture
    rt = rt[:, :1].expand(-1, rs.shape[1], -1, -1).clone()  # and the same name
    gap = {}
    for slot in (False, True):
        torch.manual_seed(0)
        model = ReactIDTransformer(**tiny_transformer_config(), reference_subject_embedding=slot).eval()
        if slot:
            with torch.no_grad():
                assert model.ref_subject_embedding.weight.abs().max().item() == 0.0  # zero at initialisation
                model.ref_subject_embedding.weight.normal_(0, 1.0)
        with torch.no_grad():
            f = model.encode_references(refs, rs, rt, 2).features[-1]
        first, second = f[rs.repeat_interleave(f.shape[1] // rs.shape[1], 1) == 0], f[rs.repeat_interleave(f.shape[1] // rs.shape[1], 1) == 1]
        gap[slot] = float((first.mean(0) - second.mean(0)).abs().max())
    assert gap[False] < 1e-5 and gap[True] > 1e-2
    small = ReactIDTransformer(**{**tiny_transformer_config(), "max_subjects": 1}, reference_subject_embedding=True)
    with pytest.raises(ValueError, match="max_subjects"):
        small.encode_references(refs, rs, rt, 2)


def test_reference_binding_bias_sends_bound_tokens_to_their_own_subject():
    """With a large gain, a token bound to subject s reads (almost) only s's references; unbound tokens and a zero
    gain read all of them; the gain gets a gradient from the loss."""
    torch.manual_seed(0)
    for mask_block in (False, True):
        model = ReactIDTransformer(**tiny_transformer_config(), reference_binding_bias=True, reference_null_key=True)
        block = next(b for b in model.blocks if (b.mask_head is not None) == mask_block)
        B, N, H, D, R = 1, 6, block.heads, block.head_dim, 4
        q = torch.randn(B, N, H, D)
        k, v = torch.randn(B, R, H, D), torch.randn(B, R, H, D)
        token_subject = torch.tensor([[0, 0, 1, 1]])
        assign = torch.tensor([[0, 1, -1, 0, 1, -1]])
        plain, _ = block._reference_attention(q, (k, v), token_subject, 2, None)
        zero, _ = block._reference_attention(q, (k, v), token_subject, 2, assign)
        assert torch.allclose(plain, zero, atol=1e-6)  # zero gain: the paper's attention
        with torch.no_grad():
            block.ref_bind_gain.fill_(10.0)
        biased, _ = block._reference_attention(q, (k, v), token_subject, 2, assign)
        own0 = torch.nn.functional.scaled_dot_product_attention(q[:, :1].transpose(1, 2), k[:, :2].transpose(1, 2), v[:, :2].transpose(1, 2)).transpose(1, 2)
        assert torch.allclose(biased[:, 0], own0.flatten(2)[:, 0], atol=1e-3)
        assert torch.allclose(biased[:, 2], plain[:, 2], atol=1e-6)  # an unbound token is unchanged
        assert not torch.allclose(biased[:, 1], plain[:, 1], atol=1e-3)
        biased.sum().backward()
        assert block.ref_bind_gain.grad is not None and block.ref_bind_gain.grad.abs().sum() > 0


def test_absolute_position_grid_tells_tokens_their_column():
    """Zero at first: the forward is the model's without it (a warm start keeps its function). Once learned, two
    frames of the same flat content give different outputs in different columns (RoPE alone cannot: every token
    sees the same relative neighbourhood), another grid size is interpolated, and the embedding gets a gradient."""
    torch.manual_seed(0)
    cfg = tiny_transformer_config()
    plain = ReactIDTransformer(**cfg).eval()
    model = ReactIDTransformer(**cfg, absolute_position_grid=(4, 4)).eval()
    missing, unexpected = model.load_state_dict(plain.state_dict(), strict=False)
    assert missing == ["video_position"] and not unexpected
    assert ReactIDTransformer.is_reactid_param("video_position")
    x = torch.ones(1, cfg["in_channels"], 2, 8, 8)  # flat content: 2 x 4 x 4 tokens, all alike
    t, ctx = torch.tensor([500.0]), torch.randn(1, 5, cfg["text_dim"])
    with torch.no_grad():
        assert torch.allclose(plain(x, t, ctx).sample, model(x, t, ctx).sample, atol=1e-6)
        flat = plain(x, t, ctx).sample
        assert torch.allclose(flat[..., :2, :2], flat[..., 2:4, 4:6], atol=1e-4)  # no column information
        model.video_position.normal_(0, 0.5)
        out = model(x, t, ctx).sample
        assert not torch.allclose(out[..., :2, :2], out[..., :2, 6:8], atol=1e-3)
        emb = model._video_position((2, 4, 4), torch.float32)  # [1, 2 * 16, dim], row-major like the tokens
        assert torch.equal(emb[:, :16], emb[:, 16:])  # the same embedding in every frame
        assert torch.allclose(emb[0, 1], 4.0 * model.video_position[0, :, 0, 1])  # row 0, column 1
        assert model(torch.ones(1, cfg["in_channels"], 2, 12, 12), t, ctx).sample.shape[-1] == 12  # 6 x 6 grid
    model.video_position.grad = None
    model(x, t, ctx).sample.square().mean().backward()
    assert model.video_position.grad is not None and model.video_position.grad.abs().sum() > 0
    with pytest.raises(ValueError, match="absolute_position_grid"):
        ReactIDTransformer(**cfg, absolute_position_grid=(4,))


# ---- TA-RoPE ----------------------------------------------------------------------------------
def test_ta_rope_gives_equal_positions_at_equal_fractions_of_actions():
    # subject 0: actions of 4 and 12 latent frames; subject 1: one action of 8 frames after a gap
    spans = torch.tensor([[[[0.0, 4.0], [4.0, 16.0]], [[2.0, 10.0], [0.0, 0.0]]]])
    n = torch.tensor([[2, 1]])
    frames = torch.tensor([0.0, 1.0, 2.0, 4.0, 7.0, 10.0, 13.0, 16.0])
    pos = R.ta_rope_positions(frames, spans, n, T=2.0)
    # subject 0: halfway through action 0 (frame 2) -> 1.0; halfway through action 1 (frame 10) -> 3.0
    assert pos[0, 0, 2].item() == pytest.approx(1.0) and pos[0, 0, 5].item() == pytest.approx(3.0)
    # the same fraction (1/4) of actions of different lengths -> the same offset inside the action
    assert (pos[0, 0, 1] - 0).item() == pytest.approx(0.5) and (pos[0, 0, 4] - 2).item() == pytest.approx(0.5)
    # subject 1: before its action 0, then linear, then held at T after it ends
    assert pos[0, 1, 0].item() == 0.0 and pos[0, 1, 3].item() == pytest.approx(0.5) and pos[0, 1, 7].item() == pytest.approx(2.0)


def test_caption_positions_sit_at_action_centres():
    spans = torch.tensor([[[[0.0, 4.0], [4.0, 16.0]]]])
    ts, ta = torch.tensor([[0, 0, 0]]), torch.tensor([[0, 1, 1]])
    assert R.caption_positions(spans, ts, ta, "ta_rope", 2.0).tolist() == [[1.0, 3.0, 3.0]]
    assert R.caption_positions(spans, ts, ta, "vanilla_rope", 2.0).tolist() == [[2.0, 10.0, 10.0]]


def test_ta_rope_equal_fraction_gives_equal_attention_logit():
    """Rotary with TA positions: a query a quarter into a short action and one a quarter into a long
    action see their caption with the same logit."""
    d = 16
    fr = R.rope_frequencies(d, 10000.0)
    q = torch.randn(1, 1, 1, d)
    k = torch.randn(1, 1, 1, d)
    logits = []
    for frame, spans in [(1.0, (0.0, 4.0)), (6.0, (4.0, 12.0))]:
        pos_q = R.ta_rope_positions(torch.tensor([frame]), torch.tensor([[[[*spans]]]]), torch.tensor([[1]]), 2.0)[0, 0]
        cq, sq = R.rotary_cos_sin(pos_q.view(1, 1), fr)
        ck, sk = R.rotary_cos_sin(torch.tensor([[1.0]]), fr)  # caption of action 0 at T/2
        logits.append((R.apply_rotary(q, cq.unsqueeze(2), sq.unsqueeze(2)) * R.apply_rotary(k, ck.unsqueeze(2), sk.unsqueeze(2))).sum().item())
    assert logits[0] == pytest.approx(logits[1], abs=1e-5)


def test_a_low_timeline_rope_base_makes_captions_of_other_actions_distinguishable():
    """Why `timeline_rope_theta` exists: TA-RoPE positions span only 0..K*T, so with a small head's 12
    temporal dims and Wan's base of 10000 only the fastest pair turns; a low base turns most of them. Measured
    as how far the rotary turns between the caption centres of two neighbouring actions (T apart)."""
    d, T = 12, 2.0

    def moved(theta):
        fr = R.rope_frequencies(d, theta)
        angle = fr * T  # radians each pair turns between two neighbouring caption positions
        return int((angle > 0.5).sum()), fr.numel()

    turned_wan, pairs = moved(10000.0)
    turned_low, _ = moved(10.0)
    assert turned_wan == 1 and turned_low >= pairs - 2


# ---- label binding ------------------------------------------------------------------------------
def test_uniform_and_adaptive_labels():
    probs = torch.tensor([[[0.9, 0.2, 0.1], [0.05, 0.7, 0.3]]])  # [B=1, S=2, N=3]
    assert R.token_labels(probs, 2, 20, "uniform").tolist() == [[2.0, 22.0, 0.0]]
    ad = R.token_labels(probs, 2, 20, "adaptive")[0]
    assert ad[0].item() == pytest.approx(1.8) and ad[1].item() == pytest.approx(15.4) and ad[2].item() == 0.0


def test_mask_threshold_decides_which_tokens_carry_their_subject():
    """A subject about one token wide covers under half of every token it touches. With the 0.5 threshold
    those tokens stay background (no label, the subjects' mean time); a lower `mask_threshold` gives them
    their subject's label and time, exactly as a fully covered token gets."""
    tl = build_timeline_conditioning([example_timeline()], fake_encoder())
    grid = (5, 4, 4)
    N = 5 * 16

    def rotary_of_token0(threshold, p):
        m = ReactIDTransformer(**tiny_transformer_config(mask_threshold=threshold)).eval()
        probs = torch.zeros(1, 2, N)
        probs[0, 1, 0] = p  # token 0: subject 1 covers a fraction p of it
        _, _, cos_q, sin_q, *_ = m._timeline_inputs(tl, grid, probs, "cpu", torch.float32)
        return torch.cat([cos_q[0, 0], sin_q[0, 0]])

    full = rotary_of_token0(0.5, 1.0)
    assert torch.equal(rotary_of_token0(0.15, 0.3), full)
    assert torch.equal(rotary_of_token0(0.5, 0.3), rotary_of_token0(0.5, 0.0))
    assert not torch.equal(rotary_of_token0(0.5, 0.3), full)
    assert R.token_labels(torch.tensor([[[0.3, 0.1]]]), 2, 20, "uniform", threshold=0.15).tolist() == [[2.0, 0.0]]
    with pytest.raises(ValueError, match="mask_threshold must be in"):
        ReactIDTransformer(**tiny_transformer_config(mask_threshold=1.0))


def test_label_rotary_keeps_cross_subject_attention_far_below_own_subject():
    """Video tokens of subject i and caption tokens of subjects 0..2 with identical content: after the
    label rotation a token's attention mass on its own subject's captions dwarfs the others'."""
    torch.manual_seed(0)
    d, S, per = 42, 3, 6
    fr = R.rope_frequencies(d, 100.0)
    content = torch.randn(per, d) * 1.5
    keys = content.repeat(S, 1)  # captions of every subject share content: only the label differs
    key_labels = R.label_values(S, 2, 20).repeat_interleave(per)
    ck, sk = R.rotary_cos_sin(key_labels.view(1, -1), fr)
    k = R.apply_rotary(keys.view(1, -1, 1, d), ck.unsqueeze(2), sk.unsqueeze(2))[0, :, 0]
    for i in range(S):
        q_label = R.label_values(S, 2, 20)[i].view(1, 1)
        cq, sq = R.rotary_cos_sin(q_label, fr)
        q = R.apply_rotary(content.view(1, per, 1, d), cq.unsqueeze(2).expand(1, per, 1, d), sq.unsqueeze(2).expand(1, per, 1, d))[0, :, 0]
        probs = torch.softmax(q @ k.T / math.sqrt(d) * 4, dim=-1)  # [per, S*per]
        mass = probs.view(per, S, per).sum(-1).mean(0)
        own, cross = mass[i].item(), (mass.sum() - mass[i]).item() / (S - 1)
        assert own > 0.8 and cross < own / 20, (i, mass.tolist())


# ---- backends -----------------------------------------------------------------------------------
def test_masked_binding_refuses_a_maskless_backend():
    model = ReactIDTransformer(**tiny_transformer_config(temporal_mode="attn_mask")).eval()
    for b in model.blocks:
        b.attn2.processor._attention_backend = "flash"
    x, t, ctx, *_ = inputs()
    tl = build_timeline_conditioning([example_timeline()], fake_encoder())
    with pytest.raises(RuntimeError, match="cannot take attention masks"):
        with torch.no_grad():
            model(x, t, ctx, timeline=tl)
    fresh = ReactIDTransformer(**tiny_transformer_config(temporal_mode="attn_mask"))
    with pytest.raises(RuntimeError, match="temporal_mode='attn_mask' needs"):
        fresh.set_attention_backend("flash")
    ok = ReactIDTransformer(**tiny_transformer_config())
    ok.set_attention_backend("native")  # SDPA: takes masks
    assert ok.blocks[0].backend_name() == "native"


# ---- focal loss -----------------------------------------------------------------------------------
def test_focal_loss_matches_the_formula():
    logits = torch.tensor([2.0, -1.0, 0.3, -3.0])
    y = torch.tensor([1.0, 1.0, 0.0, 0.0])
    alpha, gamma = 0.25, 2.0
    want = []
    for z, t in zip(logits.tolist(), y.tolist()):
        p = 1 / (1 + math.exp(-z))
        pt = p if t == 1 else 1 - p
        at = alpha if t == 1 else 1 - alpha
        want.append(-at * (1 - pt) ** gamma * math.log(pt))
    assert focal_loss(logits, y, alpha, gamma).item() == pytest.approx(sum(want) / 4, rel=1e-5)
    valid = torch.tensor([True, False, True, False])
    assert focal_loss(logits, y, alpha, gamma, valid=valid).item() == pytest.approx((want[0] + want[2]) / 2, rel=1e-5)


def test_gradients_reach_the_new_modules():
    model = ReactIDTransformer(**tiny_transformer_config())
    x, t, ctx, refs, rs, rt, masks = inputs()
    tl = build_timeline_conditioning([example_timeline()], fake_encoder())
    out = model(x, t, ctx, reference_features=model.encode_references(refs, rs, rt, 2), timeline=tl, subject_masks=(masks > 0.5).float())
    loss = out.sample.pow(2).mean() + focal_loss(out.mask_logits, (masks > 0.5).float())
    loss.backward()
    assert model.blocks[0].ref_out.weight.grad.abs().sum() > 0
    assert model.blocks[0].timeline_out.weight.grad.abs().sum() > 0
    assert model.blocks[-1].mask_head.net[0].weight.grad.abs().sum() > 0


def test_fast_rotary_matches_the_reference_form():
    torch.manual_seed(0)
    x = torch.randn(2, 7, 3, 32)
    pos = torch.rand(2, 7) * 10
    c, s = R.rotary_cos_sin(pos, R.rope_frequencies(20, 100.0))
    want = torch.cat([R.apply_rotary(x[..., :20], c.unsqueeze(2), s.unsqueeze(2)), x[..., 20:]], -1)
    cf, sf = R.full_rotary_tables(c.unsqueeze(2), s.unsqueeze(2), 32)
    assert torch.allclose(R.apply_rotary_fast(x, cf.float(), sf.float()), want, atol=1e-5)


def test_reference_token_pooling_keeps_equivalence_and_shrinks_keys():
    base = random_wan()
    model = ReactIDTransformer.from_wan(base, reference_token_pool=2).eval()
    x, t, ctx, refs, rs, rt, masks = inputs()
    with torch.no_grad():
        feats = model.encode_references(refs, rs, rt, num_subjects=2)
        full = ReactIDTransformer.from_wan(base).eval().encode_references(refs, rs, rt, num_subjects=2)
        assert feats.features[0].shape[1] * 4 == full.features[0].shape[1]
        assert feats.token_subject.tolist() == [[0] * 4 + [0] * 4 + [1] * 4]
        out = model(x, t, ctx, reference_features=feats, timeline=build_timeline_conditioning([example_timeline()], fake_encoder()), subject_masks=masks)
    assert (out.sample - base(x, t, ctx).sample).abs().max() <= 1e-5 and out.mask_logits.shape == (1, 2, masks.shape[-1])


def _timeline_two_subjects():
    s1 = Subject("s1", "the red circle", "object", [], [Action(0.0, 1.5, "moves left"), Action(1.5, 4.0, "jumps")])
    s2 = Subject("s2", "the blue star", "object", [], [Action(0.0, 3.0, "spins"), Action(3.0, 4.0, "rests")])
    return Timeline(duration=4.0, subjects=[s1, s2], prompt="two shapes", fps=16).validate()


def _moved(model):
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "ref_out" in name or "timeline_out" in name:
                p.normal_(0, 0.1)
    return model


def test_per_subject_clock_scores_every_caption_against_its_own_subjects_time():
    """timeline_query_clock='per_subject': one attention call (query copies side by side, keys in their subject's
    slot) must equal scoring each caption key with the query rotated by that key's subject's TA-RoPE time."""
    model = _moved(ReactIDTransformer.from_wan(random_wan(), timeline_query_clock="per_subject", timeline_rope_theta=10.0)).eval()
    tl = build_timeline_conditioning([_timeline_two_subjects()], fake_encoder())
    grid = (17, 2, 2)
    keys_in, valid, cos_q, sin_q, cos_k, sin_k, attn_mask, key_subject, values_in = model._timeline_inputs(tl, grid, None, "cpu", torch.float32)
    assert values_in is None  # no identity keys here: keys and values share their input
    assert cos_q.shape[:3] == (1, 2, 17 * 4)  # one rotation per subject for every video token
    blk = model.blocks[0]
    H, d = blk.heads, blk.head_dim
    q = torch.randn(1, 17 * 4, H, d, generator=torch.Generator().manual_seed(3))
    got = blk._timeline_attention(q, keys_in, valid, cos_q, sin_q, cos_k, sin_k, attn_mask, key_subject)
    k = blk.attn2.norm_k(blk.attn2.to_k(keys_in)).unflatten(2, (H, -1))
    v = blk.attn2.to_v(keys_in).unflatten(2, (H, -1))
    kr = R.apply_rotary_fast(k, cos_k, sin_k)
    L = keys_in.shape[1]
    logits = torch.stack([(R.apply_rotary_fast(q, cos_q[:, key_subject[0, j]], sin_q[:, key_subject[0, j]]) * kr[:, j : j + 1]).sum(-1) for j in range(L)], -1) / math.sqrt(d)
    logits = torch.cat([logits, torch.zeros_like(logits[..., :1])], -1)  # the null slot
    want = torch.einsum("bnhl,blhd->bnhd", logits.softmax(-1), torch.cat([v, torch.zeros_like(v[:, :1])], 1)).flatten(2)
    assert torch.allclose(got, want, atol=1e-5)


def test_per_subject_clock_needs_no_masks_to_time_each_subject():
    """Without masks the 'assigned' clock gives every token the mean of the subjects' times; per_subject gives
    each subject's captions that subject's own time, the same as a token assigned to it by a mask would get."""
    tl = build_timeline_conditioning([_timeline_two_subjects()], fake_encoder())
    grid = (17, 2, 2)
    per = ReactIDTransformer.from_wan(random_wan(), timeline_query_clock="per_subject").eval()
    assigned = ReactIDTransformer.from_wan(random_wan(), timeline_query_clock="assigned").eval()
    cq_per = per._timeline_inputs(tl, grid, None, "cpu", torch.float32)[2]  # [1, S, N, 1, hd]
    masks = torch.zeros(1, 2, 17 * 4)
    for s in range(2):
        masks[:, s] = 1.0
        cq_own = assigned._timeline_inputs(tl, grid, masks, "cpu", torch.float32)[2]  # every token assigned to s
        tdim = assigned._time_dim
        assert torch.allclose(cq_per[:, s, ..., :tdim], cq_own[..., :tdim], atol=1e-6)
        masks[:, s] = 0.0


def test_identity_keys_tag_each_caption_with_its_subjects_references():
    model = ReactIDTransformer.from_wan(random_wan(), timeline_identity_keys=True).eval()
    x, t, ctx, refs, rs, rt, masks = inputs()
    tl = build_timeline_conditioning([_timeline_two_subjects()], fake_encoder())
    with torch.no_grad():
        feats = model.encode_references(refs, rs, rt, num_subjects=2)
        refs2 = refs.clone()
        refs2[:, 2] = torch.randn_like(refs2[:, 2])  # another reference for subject 2 only
        feats2 = model.encode_references(refs2, rs, rt, num_subjects=2)
        k1 = model._timeline_inputs(tl, (5, 4, 4), None, "cpu", torch.float32, feats)[0]
        k2 = model._timeline_inputs(tl, (5, 4, 4), None, "cpu", torch.float32, feats2)[0]
    own = tl.token_subject[0]
    assert torch.equal(k1[0, own == 0], k2[0, own == 0])  # subject 1's captions do not move
    assert not torch.allclose(k1[0, own == 1], k2[0, own == 1])
    assert ReactIDTransformer.is_reactid_param("timeline_identity.weight")
    with pytest.raises(ValueError, match="timeline_identity_keys"):
        ReactIDTransformer.from_wan(random_wan(), timeline_identity_keys=True, use_reference_branch=False)


def test_identity_tags_reach_the_timeline_keys_but_not_the_values():
    """Issue 14, defect 3: a tag in the values made one subject's different actions alike. Only the keys carry it
    now; timeline_identity_values=True restores the first design (tag in both)."""
    tl = build_timeline_conditioning([_timeline_two_subjects()], fake_encoder())
    x, t, ctx, refs, rs, rt, masks = inputs()
    base = random_wan()
    for in_values in (False, True):
        model = ReactIDTransformer.from_wan(base, timeline_identity_keys=True, timeline_identity_values=in_values).eval()
        with torch.no_grad():
            feats = model.encode_references(refs, rs, rt, num_subjects=2)
            keys_in, *_, values_in = model._timeline_inputs(tl, (5, 4, 4), None, "cpu", torch.float32, feats)
            plain = model.condition_embedder.text_embedder(tl.embeds)
        assert not torch.allclose(keys_in, plain)  # the keys are tagged
        assert torch.equal(values_in, keys_in if in_values else plain)
    with pytest.raises(ValueError, match="timeline_query_clock"):
        ReactIDTransformer.from_wan(random_wan(), timeline_query_clock="sometimes")


def test_velocity_skip_is_the_best_linear_guess_plus_the_network():
    from model.transformer import velocity_skip_coefficients

    c_skip, c_out = velocity_skip_coefficients(torch.tensor([0.0, 0.5, 1.0]))
    assert torch.allclose(c_skip, torch.tensor([-1.0, 0.0, 1.0])) and torch.allclose(c_out, torch.tensor([1.0, 2**0.5, 1.0]))
    # empirically: c_skip * x_t is the least-squares guess of v = e - x0 from x_t, and c_out the rest's spread
    g = torch.Generator().manual_seed(0)
    x0, e = torch.randn(200_000, generator=g), torch.randn(200_000, generator=g)
    for s in (0.2, 0.7):
        xt, v = (1 - s) * x0 + s * e, e - x0
        cs, co = velocity_skip_coefficients(torch.tensor(s))
        assert abs(float((xt * v).mean() / (xt * xt).mean()) - float(cs)) < 0.01
        assert abs(float((v - cs * xt).std()) - float(co)) < 0.01
    model = ReactIDTransformer(**tiny_transformer_config(velocity_skip=True)).eval()
    with torch.no_grad():
        model.proj_out.weight.zero_()
        model.proj_out.bias.zero_()
        x = torch.randn(2, 4, 5, 8, 8)
        out = model(x, torch.tensor([1000.0, 250.0]), torch.randn(2, 6, 32)).sample
    assert torch.allclose(out[0], x[0], atol=1e-6) and torch.allclose(out[1], -0.8 * x[1], atol=1e-6)


def test_rope_theta_sets_the_base_of_the_video_rotary():
    wan = ReactIDTransformer(**tiny_transformer_config())
    low = ReactIDTransformer(**tiny_transformer_config(rope_theta=100.0))
    x = torch.zeros(1, 4, 5, 8, 8)
    (c_wan, _), (c_low, _) = wan.rope(x), low.rope(x)
    assert c_wan.shape == c_low.shape and not torch.allclose(c_wan, c_low)
    # with the lower base more rotary pairs turn between neighbouring frames (token 0 -> token 16 = next frame)
    turned = lambda c: int((c[0, 16, 0, : wan.rope.t_dim] < 0.99).sum())  # noqa: E731
    assert turned(c_low) > turned(c_wan)
    with pytest.raises(ValueError, match="rope_theta"):
        ReactIDTransformer(**tiny_transformer_config(rope_theta=0.5))


# ---- per-step cost (issue 11, benchmarks/bench_wan_scale.py) ------------------------------------------
@pytest.mark.parametrize("options,dtype", [({}, torch.float32), ({}, torch.bfloat16), ({"temporal_mode": "attn_mask"}, torch.float32),
                                           ({"timeline_query_clock": "per_subject", "timeline_kv": "separate", "timeline_identity_keys": True}, torch.float32)])
def test_a_timeline_with_no_caption_left_skips_its_attention_with_the_same_output(options, dtype):
    """The CFG negative pass drops every caption: the timeline attention then sees only its null slot (value 0), so
    the block adds what the output projection makes of 0 without computing the attention. Bit for bit the same;
    with gradients on (training) the attention is always computed."""
    model = _moved(ReactIDTransformer.from_wan(random_wan(), **options)).to(dtype).eval()
    x, t, ctx, refs, rs, rt, masks = (a.to(dtype) if a.is_floating_point() and a.ndim > 1 else a for a in inputs())
    tl = build_timeline_conditioning([example_timeline()], fake_encoder())
    tl.embeds = tl.embeds.to(dtype)
    calls = []
    for b in model.blocks:
        b._timeline_attention = (lambda f: lambda *a: calls.append(1) or f(*a))(b._timeline_attention)
    with torch.no_grad():
        feats = model.encode_references(refs, rs, rt, num_subjects=2)
        for ref in (feats, None):
            out = {}
            for skip in (False, True):
                for b in model.blocks:
                    b.skip_empty_timeline = skip
                calls.clear()
                out[skip] = model(x, t, ctx, reference_features=ref, timeline=tl.dropped()).sample
                assert len(calls) == (0 if skip else len(model.blocks))
                calls.clear()
                model(x, t, ctx, reference_features=ref, timeline=tl, subject_masks=masks)
                assert len(calls) == len(model.blocks)  # captions present: always computed
            assert torch.equal(out[True], out[False])
            no_timeline = model(x, t, ctx, reference_features=ref).sample
            assert (out[True].float() - no_timeline.float()).abs().max() > 1e-3  # the projection's bias is added, as the computed branch adds it
    calls.clear()
    model(x, t, ctx, reference_features=feats, timeline=tl.dropped())  # gradients on: computed
    assert len(calls) == len(model.blocks)


def test_mask_head_runs_in_the_models_dtype():
    model = ReactIDTransformer(**tiny_transformer_config()).to(torch.bfloat16).eval()
    x, t, ctx, refs, rs, rt, masks = inputs()
    bf = torch.bfloat16
    with torch.no_grad():
        out = model(x.to(bf), t, ctx.to(bf), reference_features=model.encode_references(refs.to(bf), rs, rt.to(bf), 2))
    assert out.mask_logits.shape == (1, 2, masks.shape[-1]) and torch.isfinite(out.mask_logits.float()).all()
