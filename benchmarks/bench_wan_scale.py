"""ReactID vs base Wan per denoising step at Wan2.1-T2V-1.3B scale, on one CPU thread (issue 11).

    taskset -c 1 python benchmarks/bench_wan_scale.py --threads 1 --repeats 3 --validate

What is timed: one diffusers `WanTransformerBlock` against `model.transformer.ReactIDBlock` (reference injection
and timeline cross-attention on; a block with the mask head and one without) at Wan2.1-1.3B's dimensions (width
1536, 12 heads x 128, ffn 8960, text 4096 -> 1536) at 480p: 81 frames at 480 x 832 are 21 x 30 x 52 = 32,760
video tokens; the prompt is 512 text tokens (Wan pads to 512); two subjects with one 480 x 832 reference each
(2 x 1,560 tokens, keys/values cached as the pipeline does); a timeline of 2 subjects x 3 actions x 16 caption
tokens. Both passes of classifier-free guidance are timed: the conditional pass (timeline, masks from the previous
step) and the negative pass the pipeline runs (empty prompt, timeline captions dropped, references kept, no masks).

How a 32,760-token block is timed without running it (a full block takes minutes on one core): a block's cost is
affine in its number of query tokens n when every key set stays complete. Every per-token layer (projections,
norms, modulation, FFN, rotary, mask head) is linear in n; every attention is linear in n for a fixed key set; the
rest (the prompt's and captions' key/value projections, 512 + 96 tokens) does not depend on n. So the unmodified
block forward runs on a slice of n video tokens whose self-attention attends to the keys/values of all N tokens:
the processor's own code runs (projections, norms, RoPE of the slice, output), only the key/value tensors handed to
its attention call are the whole sequence's (computed beforehand by the same processor). Two slice sizes n0 < n
give the line: T(N) = T(n0) + (T(n) - T(n0)) (N - n0) / (n - n0). `--validate` checks this against the full,
unmodified block forward at a smaller size (8,192 tokens) and checks that the slice's output equals the full
forward's rows.

Two ways to the ratio. (1) Whole blocks: the ReactID blocks' forward against the Wan block's. (2) Additions:
everything a ReactID block computes beyond a Wan block is one method, `ReactIDBlock._inject` (reference attention
with its mask head, timeline attention, their output projections and residual adds; the rest of the block runs the
same modules on the same shapes as Wan's), timed on its own; ReactID = Wan block + additions. Both are measured;
(2) is the headline because it is the more precise: on this shared, noisy machine a time moves by up to about 15%
from one measurement to the next. On the additions (about a tenth of a block) that is about 1.5% of a block; on a
whole block it is more than the whole difference (1) measures.

Slice size: at n = 1,024 a token slice's activations ([n, 1536] float32, 6 MB) stay in a 32 MB L3 cache, at 32,760
they do not, so element-wise work costs more per token at full size. `--slice 8192 --small-slice 1024` (slower)
puts the timed slice out of cache. `--checks-only` runs the validation and an in-situ check (`insitu_check`: does
a ReactID block cost a Wan block plus `_inject` alone?) without the main measurement.

Noise: times are this process's CPU time (one thread), not wall-clock time, since the core is shared with other
jobs. Each round times the whole-block n-slices as Wan, A, Wan, B, Wan, ...: each row is divided by the mean of the
two Wan times beside it (and multiplied by the round's median Wan time), so a busier stretch of the machine
(caches, memory bandwidth) hits both sides of each ratio; small slices and additions are medians of 3 per round.
Reported: medians over rounds, and the spread of the per-round ratios.

Variants of the additions: the empty timeline attention of the negative pass computed (as before
`ReactIDBlock.skip_empty_timeline`); one output projection shared by the reference and timeline attention (not a model
option: `shared_projection_inject` computes what it would); `reference_token_pool=2`; and the timeline options of the
shipped sprite model (SHIPPED_TIMELINE: per-subject clock, the timeline's own caption keys/values, identity keys).
The last two are counted with the default model's work outside the blocks.

Per step: 30 blocks of which the last 5 are mask blocks, plus what runs outside the blocks (patch embedding, RoPE,
time/text embedding, the timeline's rotary tables, output projection; timed as the model's own forward with its
block list emptied), for both CFG passes; plus the reference branch (4 reference blocks on 2 x 1,560 tokens and the
reference keys/values of all 30 blocks), run once per generation and spread over 50 steps.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass, replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
import torch.nn as nn  # noqa: E402
from diffusers import WanTransformer3DModel  # noqa: E402
from diffusers.models.transformers import transformer_wan  # noqa: E402

from model.conditioning import build_timeline_conditioning  # noqa: E402
from model.timeline import Action, Subject, Timeline  # noqa: E402
from model.transformer import ReactIDTransformer  # noqa: E402


@dataclass(frozen=True)
class Scale:
    dim: int = 1536
    heads: int = 12
    ffn: int = 8960
    text_dim: int = 4096
    text_tokens: int = 512  # Wan pads the prompt to 512 tokens
    latent: tuple[int, int, int] = (21, 60, 104)  # 81 frames at 480 x 832 -> 21 x 30 x 52 = 32,760 tokens
    ref_latent: tuple[int, int] = (60, 104)  # one 480 x 832 reference per subject -> 1,560 tokens
    subjects: int = 2
    actions: int = 3  # per subject
    caption_tokens: int = 16  # per action caption
    name_tokens: int = 8  # the subject name the reference blocks cross-attend to
    layers: int = 30
    mask_blocks: int = 5
    ref_blocks: int = 4
    steps: int = 50  # the reference branch runs once per generation of this many steps
    slice_tokens: int = 1024  # n
    small_slice: int = 64  # n0
    validate_latent: tuple[int, int, int] = (8, 64, 64)  # 8 x 32 x 32 = 8,192 tokens

    @property
    def grid(self) -> tuple[int, int, int]:
        return (self.latent[0], self.latent[1] // 2, self.latent[2] // 2)

    @property
    def video_tokens(self) -> int:
        f, h, w = self.grid
        return f * h * w

    @property
    def ref_tokens(self) -> int:
        return self.subjects * (self.ref_latent[0] // 2) * (self.ref_latent[1] // 2)

    @property
    def timeline_tokens(self) -> int:
        return self.subjects * self.actions * self.caption_tokens


WAN_1_3B = Scale()
# seconds on a CPU: for the smoke test
TINY = Scale(dim=64, heads=2, ffn=128, text_dim=32, text_tokens=16, latent=(3, 8, 8), ref_latent=(4, 4), caption_tokens=4, name_tokens=2,
             layers=4, mask_blocks=1, ref_blocks=1, steps=5, slice_tokens=48, small_slice=4, validate_latent=(2, 8, 8))  # slice = all 48 tokens


# ----------------------------------------------------------------------------------------------
# Self-attention of a query slice against the whole sequence's keys/values
# ----------------------------------------------------------------------------------------------
class _KV:
    mode = None  # None: untouched; "capture": record the key/value, skip the attention; (k, v): attend to these


_original_dispatch = transformer_wan.dispatch_attention_fn


def _dispatch(query, key, value, *args, **kwargs):
    mode = _KV.mode
    if mode is None:
        return _original_dispatch(query, key, value, *args, **kwargs)
    if isinstance(mode, str):
        _KV.captured = (key, value)
        return torch.zeros_like(query)
    return _original_dispatch(query, mode[0], mode[1], *args, **kwargs)


@contextlib.contextmanager
def patched_dispatch():
    transformer_wan.dispatch_attention_fn = _dispatch
    try:
        yield
    finally:
        transformer_wan.dispatch_attention_fn = _original_dispatch


class FullSequenceKV:
    """attn1's processor for a query slice: WanAttnProcessor's own code, whose attention call gets `kv`."""

    def __init__(self, inner, kv):
        self.inner, self.kv = inner, kv

    def __call__(self, attn, hidden_states, encoder_hidden_states=None, attention_mask=None, rotary_emb=None, **kw):
        _KV.mode = self.kv
        try:
            return self.inner(attn, hidden_states, encoder_hidden_states, attention_mask, rotary_emb, **kw)
        finally:
            _KV.mode = None


@contextlib.contextmanager
def full_sequence_kv(block, kv):
    inner = block.attn1.processor
    block.attn1.processor = FullSequenceKV(inner, kv)
    try:
        yield
    finally:
        block.attn1.processor = inner


def _modulation(block, tproj):
    return (block.scale_shift_table + tproj.float()).chunk(6, dim=1)


@torch.no_grad()
def capture_kv(block, hidden, tproj, rot):
    """The keys/values the block's own self-attention processor computes for the whole sequence."""
    shift, scale = _modulation(block, tproj)[:2]
    norm = (block.norm1(hidden.float()) * (1 + scale) + shift).type_as(hidden)  # the block forward's first line
    _KV.mode = "capture"
    try:
        block.attn1(norm, None, None, rot)
    finally:
        _KV.mode = None
    k, v = _KV.captured
    _KV.captured = None
    return k, v


# ----------------------------------------------------------------------------------------------
# Models and inputs
# ----------------------------------------------------------------------------------------------
def _randomise(named_params, std: float = 0.02) -> None:
    """Trained-like weights: no zero output projection (a zero GEMM costs the same, but nothing here should rely on it)."""
    with torch.no_grad():
        for name, p in named_params:
            if p.ndim == 1 and "norm" in name:
                p.fill_(1.0)
            else:
                p.normal_(0.0, std)


def build_models(scale: Scale, dtype=torch.float32, **reactid_options):
    """One Wan transformer and its ReactID counterpart with max(2, ref_blocks) blocks (ReactID: the last one a mask block)."""
    layers = max(2, scale.ref_blocks)
    cfg = dict(patch_size=(1, 2, 2), num_attention_heads=scale.heads, attention_head_dim=scale.dim // scale.heads, in_channels=16, out_channels=16,
               text_dim=scale.text_dim, freq_dim=256, ffn_dim=scale.ffn, num_layers=layers, rope_max_seq_len=1024)
    torch.manual_seed(0)
    base = WanTransformer3DModel(**cfg).eval()
    _randomise(base.named_parameters())
    model = ReactIDTransformer.from_wan(base, num_reference_blocks=scale.ref_blocks, mask_blocks=1, **reactid_options).eval()
    _randomise((k, p) for k, p in model.named_parameters() if model.is_reactid_param(k))
    assert model.blocks[0].mask_head is None and model.blocks[-1].mask_head is not None
    return _to_dtype(base, dtype), _to_dtype(model, dtype)


def _to_dtype(m, dtype):
    """As `from_pretrained(torch_dtype=...)` loads it: the modules Wan keeps in float32 stay float32."""
    nn.Module.to(m, dtype)  # (ModelMixin.to would warn about the modules restored below)
    keep = set(getattr(m, "_keep_in_fp32_modules", None) or [])
    for name, mod in m.named_modules():
        if name.split(".")[-1] in keep:
            mod.float()
    for name, p in m.named_parameters():
        if name.split(".")[-1] in keep:
            p.data = p.data.float()
    return m


def scene_timeline(scale: Scale) -> Timeline:
    dur = 5.0
    subjects = []
    for s in range(scale.subjects):
        acts = [Action(round(k * dur / scale.actions, 4), round((k + 1) * dur / scale.actions, 4), f"subject {s} does action {k}") for k in range(scale.actions)]
        subjects.append(Subject(f"s{s + 1}", f"subject {s + 1}", "human", [], acts))
    return Timeline(duration=dur, subjects=subjects, prompt="two people in a park", fps=16).validate()


@dataclass
class Context:
    """Everything a block sees at one video size, for the conditional (c) and the negative (u) CFG pass."""

    hidden: torch.Tensor
    ctx_c: torch.Tensor
    ctx_u: torch.Tensor
    tproj: torch.Tensor
    rot: tuple
    ref: object
    tl_c: tuple
    tl_u: tuple
    forward_inputs: dict


@torch.no_grad()
def make_context(scale: Scale, model: ReactIDTransformer, dtype, latent=None, ref=None) -> tuple[Context, float]:
    """Block inputs at `latent` (default: the scale's). Returns the context and the time the reference branch took
    (0 when `ref` is given)."""
    g = torch.Generator().manual_seed(1)
    F_, H, W = latent or scale.latent
    grid = (F_, H // 2, W // 2)
    N = grid[0] * grid[1] * grid[2]
    x = torch.randn(1, 16, F_, H, W, generator=g).to(dtype)
    t = torch.tensor([500.0])
    prompt = torch.randn(1, scale.text_tokens, scale.text_dim, generator=g).to(dtype)
    negative = torch.randn(1, scale.text_tokens, scale.text_dim, generator=g).to(dtype)

    def encode(caps):
        return torch.randn(len(caps), scale.caption_tokens, scale.text_dim, generator=g), torch.ones(len(caps), scale.caption_tokens, dtype=torch.bool)

    tl = build_timeline_conditioning([scene_timeline(scale)], encode).to(dtype=dtype)
    masks = torch.rand(1, scale.subjects, N, generator=g)  # the previous step's predicted masks
    ref_time, refs_out = 0.0, []
    if ref is None:
        h, w = scale.ref_latent
        refs = torch.randn(1, scale.subjects, 16, h, w, generator=g).to(dtype)
        names = torch.randn(1, scale.subjects, scale.name_tokens, scale.text_dim, generator=g).to(dtype)
        ref_time = _timed(lambda: refs_out.append(model.encode_references(refs, torch.arange(scale.subjects).view(1, -1), names, scale.subjects)))
        ref = refs_out[0]
    rot = model.rope(x)
    _, tproj, ctx_c, _ = model.condition_embedder(t, prompt, None)
    _, _, ctx_u, _ = model.condition_embedder(t, negative, None)
    hidden = model.patch_embedding(x).flatten(2).transpose(1, 2).contiguous()
    tl_c = model._timeline_inputs(tl, grid, masks, "cpu", dtype, ref)
    tl_u = model._timeline_inputs(tl.dropped(), grid, None, "cpu", dtype, ref)
    fwd = dict(x=x, t=t, prompt=prompt, negative=negative, tl=tl, masks=masks)
    return Context(hidden, ctx_c, ctx_u, tproj.unflatten(1, (6, -1)), rot, ref, tl_c, tl_u, fwd), ref_time


def _slice_timeline(tl, s, e):
    keys_in, valid, cos_q, sin_q, cos_k, sin_k, attn_mask, *rest = tl
    sl = lambda a: None if a is None else a[..., s:e, :, :]  # noqa: E731  token axis of [B, (S,) N, 1, hd]
    return (keys_in, valid, sl(cos_q), sl(sin_q), cos_k, sin_k, None if attn_mask is None else attn_mask[:, :, s:e], *rest)


def _ref_args(model, ref, j):
    return (ref.kv[j], ref.token_subject, ref.num_subjects)


# ----------------------------------------------------------------------------------------------
# Timed jobs
# ----------------------------------------------------------------------------------------------
def block_job(block, c: Context, kv, s, e, *, pass_="c", ref=None, reactid=False, setup=None):
    """The unmodified block forward on video tokens s:e, its self-attention against `kv` (None: its own keys)."""
    h = c.hidden[:, s:e]
    rot = tuple(r[:, s:e] for r in c.rot)
    ctx = c.ctx_c if pass_ == "c" else c.ctx_u
    tl = _slice_timeline(c.tl_c if pass_ == "c" else c.tl_u, s, e) if reactid else None

    def run():
        if setup is not None:
            setup()
        with full_sequence_kv(block, kv) if kv is not None else contextlib.nullcontext():
            return block(h, ctx, c.tproj, rot, ref, tl) if reactid else block(h, ctx, c.tproj, rot)

    return run


def _queries(block, h):
    """The prompt cross-attention's queries, which the ReactID additions share (the block computes them anyway)."""
    x = block.norm2(h.float()).type_as(h)
    return block.attn2.norm_q(block.attn2.to_q(x)).unflatten(2, (block.attn2.heads, -1))


def additions_job(block, c: Context, s, e, *, pass_, ref, setup, inject=None, timelines=None):
    """`ReactIDBlock._inject` on video tokens s:e: all that a ReactID block computes beyond a Wan block (reference
    attention with its mask head, timeline attention, their output projections and residual adds). `inject`: another
    function of (block, hidden_states, q, ref, timeline) in its place; `timelines`: (conditional, negative) timeline
    inputs of another model than the context's."""
    h = c.hidden[:, s:e]
    q = _queries(block, h)
    tl_c, tl_u = timelines or (c.tl_c, c.tl_u)
    tl = _slice_timeline(tl_c if pass_ == "c" else tl_u, s, e)
    fn = (lambda: block._inject(h, q, ref, tl)) if inject is None else (lambda: inject(block, h, q, ref, tl))

    def run():
        setup()
        return fn()

    return run


def shared_projection_inject(block, hidden_states, q, ref, timeline):
    """What one shared zero-initialised output projection would compute in `_inject`'s place (the pattern of Wan's
    image-to-video, whose image and text context share to_out): the reference and timeline attention outputs summed,
    then projected once by `ref_out`. Not a model option: timed here to see what it would save."""
    kv, token_subject, num_subjects = ref
    out, mask_logits = block._reference_attention(q, kv, token_subject, num_subjects)
    if not (block.skip_empty_timeline and not bool(timeline[1].any())):  # the negative pass: nothing to add
        out = out + block._timeline_attention(q, *timeline)
    return hidden_states + block.ref_out(out), mask_logits


def timeline_inputs(model, c: Context, grid) -> tuple[tuple, tuple]:
    """`model`'s timeline inputs for the context's timeline (conditional pass: with masks; negative: dropped, none)."""
    f = c.forward_inputs
    return (model._timeline_inputs(f["tl"], grid, f["masks"], "cpu", c.hidden.dtype, c.ref),
            model._timeline_inputs(f["tl"].dropped(), grid, None, "cpu", c.hidden.dtype, c.ref))


def component_jobs(wan_block, rblock, mblock, c: Context, kv, s, e, model):
    """The block's parts, each the real module or method on the slice (inputs prepared outside the timing)."""
    h = c.hidden[:, s:e]
    rot = tuple(r[:, s:e] for r in c.rot)
    m = _modulation(wan_block, c.tproj)
    n1 = (wan_block.norm1(h.float()) * (1 + m[1]) + m[0]).type_as(h)
    n2 = wan_block.norm2(h.float()).type_as(h)
    n3 = (wan_block.norm3(h.float()) * (1 + m[4]) + m[3]).type_as(h)
    q = _queries(rblock, h)
    tl_c = _slice_timeline(c.tl_c, s, e)

    def self_attn():
        with full_sequence_kv(wan_block, kv):
            wan_block.attn1(n1, None, None, rot)

    return {
        "self-attention": self_attn,
        "text cross-attention": lambda: wan_block.attn2(n2, c.ctx_c, None, None),
        "feed-forward": lambda: wan_block.ffn(n3),
        "reference attention + output projection": lambda: rblock.ref_out(rblock._reference_attention(q, *_ref_args(model, c.ref, 0))[0]),
        "reference attention + mask mass and head + output projection": lambda: mblock.ref_out(mblock._reference_attention(q, *_ref_args(model, c.ref, len(model.blocks) - 1))[0]),
        "timeline attention + output projection": lambda: rblock.timeline_out(rblock._timeline_attention(q, *tl_c)),
    }


class _NoBlock(nn.Module):
    """Stands in for the block list: returns its input (ReactID blocks also return no mask logits)."""

    def __init__(self, real, reactid: bool):
        super().__init__()
        self.reactid = reactid
        self.backend_name = getattr(real, "backend_name", None)

    def forward(self, x, *args):
        return (x, None) if self.reactid else x


def outside_job(m, c: Context, pass_: str, reactid: bool):
    """The model's own forward with one no-op block in place of its blocks: everything a pass does outside the blocks."""
    f = c.forward_inputs
    ctx = f["prompt"] if pass_ == "c" else f["negative"]
    stand_in = nn.ModuleList([_NoBlock(m.blocks[0], reactid)])

    def run():
        blocks = m.blocks
        m.blocks = stand_in
        try:
            if not reactid:
                return m(f["x"], f["t"], ctx)
            if pass_ == "c":
                return m(f["x"], f["t"], ctx, reference_features=c.ref, timeline=f["tl"], subject_masks=f["masks"])
            return m(f["x"], f["t"], ctx, reference_features=c.ref, timeline=f["tl"].dropped(), subject_masks=None)
        finally:
            m.blocks = blocks

    return run


# CPU time of this process (one thread): on a core shared with other jobs, wall-clock time also counts the time
# the others held the core; `--clock wall` switches to wall-clock time.
CLOCK = {"cpu": time.process_time, "wall": time.perf_counter}
_clock = CLOCK["cpu"]


def _timed(fn) -> float:
    t0 = _clock()
    fn()
    return _clock() - t0


def _median_of(fn, k: int) -> float:
    return statistics.median(_timed(fn) for _ in range(k))


def _extrapolate(t_n: float, t_n0: float, n: int, n0: int, N: int) -> float:
    return t_n0 + (t_n - t_n0) * (N - n0) / (n - n0)


# ----------------------------------------------------------------------------------------------
# The measurement
# ----------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Row:
    model: str  # "wan" | "reactid" | "shared" (its blocks, timed with shared_projection_inject) | "shipped" (SHIPPED_TIMELINE)
    mask: bool = False  # ReactID: the mask block (else a block without the mask head)
    pass_: str = "c"  # "c": conditional pass; "u": the CFG negative pass (prompt empty, captions dropped, no masks)
    skip: bool = True  # ReactIDBlock.skip_empty_timeline
    pool: int = 1  # reference_token_pool of the cached reference keys/values


# whole blocks, timed paired with the Wan block (the default ReactID model)
BLOCKS = {
    "Wan block": Row("wan"),
    "ReactID block, conditional pass": Row("reactid"),
    "ReactID mask block, conditional pass": Row("reactid", True),
    "ReactID block, negative pass": Row("reactid", False, "u"),
    "ReactID mask block, negative pass": Row("reactid", True, "u"),
}
# ReactIDBlock._inject alone (what ReactID adds to a Wan block), for each variant
ADDITIONS = {
    "conditional pass": Row("reactid"),
    "conditional pass, mask block": Row("reactid", True),
    "negative pass": Row("reactid", False, "u"),
    "negative pass, mask block": Row("reactid", True, "u"),
    "negative pass, empty timeline computed": Row("reactid", False, "u", skip=False),
    "negative pass, mask block, empty timeline computed": Row("reactid", True, "u", skip=False),
    "shared projection: conditional pass": Row("shared"),
    "shared projection: conditional pass, mask block": Row("shared", True),
    "shared projection: negative pass": Row("shared", False, "u"),
    "shared projection: negative pass, mask block": Row("shared", True, "u"),
    "reference pool 2x2: conditional pass": Row("reactid", pool=2),
    "reference pool 2x2: conditional pass, mask block": Row("reactid", True, pool=2),
    "reference pool 2x2: negative pass": Row("reactid", False, "u", pool=2),
    "reference pool 2x2: negative pass, mask block": Row("reactid", True, "u", pool=2),
    "shipped timeline options: conditional pass": Row("shipped"),
    "shipped timeline options: conditional pass, mask block": Row("shipped", True),
    "shipped timeline options: negative pass": Row("shipped", False, "u"),
    "shipped timeline options: negative pass, mask block": Row("shipped", True, "u"),
}
# the timeline options of the shipped sprite model (assets/default_model), on top of the paper's defaults
SHIPPED_TIMELINE = dict(timeline_query_clock="per_subject", timeline_kv="separate", timeline_identity_keys=True)
# per-step variants: (group, additions: conditional block, conditional mask block, negative block, negative mask block; reference pool)
STEPS = {
    "ReactID as it was (the negative pass computes its empty timeline attention)": (
        "base", "conditional pass", "conditional pass, mask block", "negative pass, empty timeline computed", "negative pass, mask block, empty timeline computed", 1),
    "ReactID now (the empty timeline attention skipped: the same output)": (
        "base", "conditional pass", "conditional pass, mask block", "negative pass", "negative pass, mask block", 1),
    "+ one shared output projection (not an option: would need its own training)": (
        "shared", "shared projection: conditional pass", "shared projection: conditional pass, mask block",
        "shared projection: negative pass", "shared projection: negative pass, mask block", 1),
    "+ `reference_token_pool=2` (existing option: 4x fewer reference keys; needs training with it)": (
        "pool", "reference pool 2x2: conditional pass", "reference pool 2x2: conditional pass, mask block",
        "reference pool 2x2: negative pass", "reference pool 2x2: negative pass, mask block", 2),
    "the shipped model's timeline options (per-subject clock, own caption keys/values, identity keys)": (
        "shipped", "shipped timeline options: conditional pass", "shipped timeline options: conditional pass, mask block",
        "shipped timeline options: negative pass", "shipped timeline options: negative pass, mask block", 1),
}
GROUPS = ("base", "shared", "pool", "shipped")


def _group(r: Row) -> str:
    return r.model if r.model in ("shared", "shipped") else ("pool" if r.pool != 1 else "base")


@contextlib.contextmanager
def _reference_pool(model, pool: int):
    """encode_references with another reference_token_pool (the same weights): the pooled keys/values to time."""
    old = model.config.reference_token_pool
    model.register_to_config(reference_token_pool=pool)
    try:
        yield
    finally:
        model.register_to_config(reference_token_pool=old)


@torch.no_grad()
def measure(scale: Scale = WAN_1_3B, dtype=torch.float32, repeats: int = 3, validate: bool = False, validate_repeats: int = 2,
            components: bool = True, groups=GROUPS, whole_blocks: bool = True, small_repeats: int = 3, log=None) -> dict:
    """Times blocks and their parts on slices, extrapolates to the scale's token count, assembles per-step ratios."""
    log = log or (lambda *_: None)
    t_build = time.perf_counter()
    base, model = build_models(scale, dtype)
    shipped = build_models(scale, dtype, **SHIPPED_TIMELINE)[1] if "shipped" in groups else None
    log(f"built models in {time.perf_counter() - t_build:.0f} s")
    c, t_encode = make_context(scale, model, dtype)
    log(f"context ready (reference branch {t_encode:.1f} s)")
    # reference keys/values of the main blocks not built here (encode_references made those of the built ones)
    t_kv = _median_of(lambda: model.blocks[0].reference_kv(c.ref.features[-1]), 3)
    t_ref = {1: t_encode + (scale.layers - len(model.blocks)) * t_kv}
    refs = {1: c.ref}
    if "pool" in groups:
        out = []
        h, w = scale.ref_latent
        g = torch.Generator().manual_seed(2)
        lat = torch.randn(1, scale.subjects, 16, h, w, generator=g).to(dtype)
        names = torch.randn(1, scale.subjects, scale.name_tokens, scale.text_dim, generator=g).to(dtype)
        with _reference_pool(model, 2):
            t2 = _timed(lambda: out.append(model.encode_references(lat, torch.arange(scale.subjects).view(1, -1), names, scale.subjects)))
        refs[2] = out[0]
        t_ref[2] = t2 + (scale.layers - len(model.blocks)) * _median_of(lambda: model.blocks[0].reference_kv(refs[2].features[-1]), 3)
    models = {"reactid": model, "shared": model, "shipped": shipped}
    timelines = {"shipped": timeline_inputs(shipped, c, scale.grid)} if shipped is not None else {}
    N, n, n0 = scale.video_tokens, scale.slice_tokens, scale.small_slice
    s = (N - n) // 2  # a slice from the middle of the video

    def block_of(r: Row):
        m = models[r.model]
        j = len(m.blocks) - 1 if r.mask else 0
        return m.blocks[j], _ref_args(m, refs[r.pool], j)

    def setter(blk, skip):
        return lambda: setattr(blk, "skip_empty_timeline", skip)

    block_names = list(BLOCKS) if whole_blocks else ["Wan block"]
    add_names = [k for k, r in ADDITIONS.items() if _group(r) in groups]
    with patched_dispatch():
        kvs = {"wan": capture_kv(base.blocks[0], c.hidden, c.tproj, c.rot)}
        for mask in (False, True):
            j = -1 if mask else 0
            same = all(torch.equal(a, b) for a, b in zip(model.blocks[j].attn1.parameters(), base.blocks[0].attn1.parameters()))
            kvs[mask] = kvs["wan"] if same else capture_kv(model.blocks[j], c.hidden, c.tproj, c.rot)
        log("full-sequence keys/values captured")
        jobs = {}  # (name, size) -> job
        for name in block_names:
            r = BLOCKS[name]
            for size in (n, n0):
                if r.model == "wan":
                    jobs[(name, size)] = block_job(base.blocks[0], c, kvs["wan"], s, s + size)
                else:
                    blk, ref = block_of(r)
                    jobs[(name, size)] = block_job(blk, c, kvs[r.mask], s, s + size, pass_=r.pass_, ref=ref, reactid=True, setup=setter(blk, r.skip))
        for name in add_names:
            r = ADDITIONS[name]
            blk, ref = block_of(r)
            for size in (n, n0):
                jobs[("+ " + name, size)] = additions_job(blk, c, s, s + size, pass_=r.pass_, ref=ref, setup=setter(blk, r.skip),
                                                          inject=shared_projection_inject if r.model == "shared" else None, timelines=timelines.get(r.model))
        if components:
            for size in (n, n0):
                for k, fn in component_jobs(base.blocks[0], model.blocks[0], model.blocks[-1], c, kvs["wan"], s, s + size, model).items():
                    jobs[(k, size)] = fn
        outside_names = []
        for p in ("c", "u"):
            for who, m, rid in (("Wan", base, False), ("ReactID", model, True)):
                outside_names.append(f"outside the blocks, {who}, pass {p}")
                jobs[(outside_names[-1], "full")] = outside_job(m, c, p, reactid=rid)
        for k, fn in jobs.items():  # warm-up: the small slices and the cheap jobs
            if k[1] != n:
                fn()
        times = {k: [] for k in jobs}
        raw = []
        for r in range(repeats):
            # whole blocks at n, paired: Wan, A, Wan, B, ..., Wan; each row over the mean of the Wan times beside it
            seq = ["Wan block"]
            for v in block_names[1:]:
                seq += [v, "Wan block"]
            got = [(name, _timed(jobs[(name, n)])) for name in seq]
            raw.append(got)
            w = [t for name, t in got if name == "Wan block"]
            w_med = statistics.median(w)
            times[("Wan block", n)].append(w_med)
            for i, v in enumerate(block_names[1:]):
                times[(v, n)].append(got[2 * i + 1][1] / ((w[i] + w[i + 1]) / 2) * w_med)
            for k, fn in jobs.items():
                if k[0] in block_names and k[1] == n:
                    continue
                times[k].append(_median_of(fn, small_repeats if (k[0] in block_names or k[0].startswith("+ ")) else 1))
            log(f"round {r + 1}/{repeats} done")
        for m in (model, shipped):
            for b in (m.blocks if m is not None else []):
                b.skip_empty_timeline = True
        validation = _validate(scale, base, model, c.ref, dtype, validate_repeats, log) if validate else None

    def full(name, r=None):  # extrapolated seconds, in round r (None: the median over rounds)
        if r is None:
            return statistics.median(full(name, i) for i in range(repeats))
        if (name, "full") in times:
            return times[(name, "full")][r]
        return _extrapolate(times[(name, n)][r], times[(name, n0)][r], n, n0, N)

    L, M = scale.layers, scale.mask_blocks

    def outside(who, r):
        return full(f"outside the blocks, {who}, pass c", r) + full(f"outside the blocks, {who}, pass u", r)

    def per_step(variant, r=None):
        if r is None:  # medians over rounds
            rounds = [per_step(variant, i) for i in range(repeats)]
            row = {k: statistics.median(x[k] for x in rounds) for k in rounds[0] if k != "variant"}
            row["ratio"] = row["reactid_s"] / row["wan_s"]
            return {"variant": variant, **row, "rounds": [x["ratio"] for x in rounds]}
        _, ac, acm, au, aum, pool = STEPS[variant]
        W = full("Wan block", r)
        wan = 2 * L * W + outside("Wan", r)
        add_c = (L - M) * full("+ " + ac, r) + M * full("+ " + acm, r)
        add_u = (L - M) * full("+ " + au, r) + M * full("+ " + aum, r)
        amort = t_ref[pool] / scale.steps
        rid = 2 * L * W + add_c + add_u + outside("ReactID", r) + amort
        wan_c = L * W + full("outside the blocks, Wan, pass c", r)
        rid_c = L * W + add_c + full("outside the blocks, ReactID, pass c", r) + amort
        return {"variant": variant, "wan_s": wan, "reactid_s": rid, "ratio": rid / wan, "ratio_no_cfg": rid_c / wan_c,
                "additions_s": add_c + add_u, "reference_branch_per_step_s": amort}

    def whole_blocks_step(r=None):
        if r is None:
            rounds = [whole_blocks_step(i) for i in range(repeats)]
            row = {k: statistics.median(x[k] for x in rounds) for k in rounds[0]}
            row["ratio"] = row["reactid_s"] / row["wan_s"]
            return {**row, "rounds": [x["ratio"] for x in rounds]}
        W = full("Wan block", r)
        wan = 2 * L * W + outside("Wan", r)
        rid = ((L - M) * (full("ReactID block, conditional pass", r) + full("ReactID block, negative pass", r))
               + M * (full("ReactID mask block, conditional pass", r) + full("ReactID mask block, negative pass", r))
               + outside("ReactID", r) + t_ref[1] / scale.steps)
        return {"wan_s": wan, "reactid_s": rid, "ratio": rid / wan}

    block_rows = [{"component": k, "ms": 1000 * full(k), "slice_ms": 1000 * statistics.median(times[(k, n)]),
                   "small_slice_ms": 1000 * statistics.median(times[(k, n0)])} for k in block_names]
    add_rows = [{"component": k, "ms": 1000 * full("+ " + k)} for k in add_names]
    comp_rows = [{"component": k, "ms": 1000 * full(k)} for (k, size) in jobs if size == n and k not in block_names and not k.startswith("+ ")]
    out_rows = [{"component": k, "ms": 1000 * full(k)} for k in outside_names]
    steps = [per_step(v) for v in STEPS if STEPS[v][0] in groups]
    return {
        "scale": asdict(scale), "dtype": str(dtype).replace("torch.", ""), "threads": torch.get_num_threads(), "repeats": repeats,
        "video_tokens": N, "reference_tokens": scale.ref_tokens, "timeline_tokens": c.tl_c[0].shape[1],
        "blocks": block_rows, "additions": add_rows, "components": comp_rows, "outside": out_rows,
        "reference_branch_s": t_ref[1], "reference_branch_pool2_s": t_ref.get(2), "reference_branch_measured_s": t_encode, "reference_kv_per_block_s": t_kv,
        "per_step": steps[min(1, len(steps) - 1)], "per_step_variants": steps,
        "whole_blocks_per_step": whole_blocks_step() if whole_blocks else None, "validation": validation,
        "slices": {"n": n, "n0": n0, "start": s}, "raw_rounds": raw, "per_round": {f"{k} @ {size}": v for (k, size), v in times.items()},
    }


def _validate(scale: Scale, base, model, ref, dtype, repeats: int, log) -> list[dict]:
    """The slice prediction against the full, unmodified block forward at scale.validate_latent."""
    c, _ = make_context(scale, model, dtype, latent=scale.validate_latent, ref=ref)
    N = c.hidden.shape[1]
    n, n0 = min(scale.slice_tokens, N // 2), scale.small_slice
    s = (N - n) // 2
    out, jobs = [], {}
    for name in list(BLOCKS)[:3]:
        r = BLOCKS[name]
        blk = base.blocks[0] if r.model == "wan" else model.blocks[-1 if r.mask else 0]
        kw = {} if r.model == "wan" else dict(ref=_ref_args(model, c.ref, len(model.blocks) - 1 if r.mask else 0), reactid=True)
        kv = capture_kv(blk, c.hidden, c.tproj, c.rot)
        full_out = block_job(blk, c, None, 0, N, **kw)()
        sl_out = block_job(blk, c, kv, s, s + n, **kw)()
        full_h, sl_h = (full_out[0], sl_out[0]) if r.model != "wan" else (full_out, sl_out)
        err = ((sl_h.float() - full_h[:, s : s + n].float()).abs().max() / full_h.float().abs().max()).item()
        out.append({"block": name, "slice_output_rel_err": err})
        jobs[(name, "full")] = block_job(blk, c, None, 0, N, **kw)
        jobs[(name, n)] = block_job(blk, c, kv, s, s + n, **kw)
        jobs[(name, n0)] = block_job(blk, c, kv, s, s + n0, **kw)
    log(f"validating at {N} tokens")
    times = {k: [] for k in jobs}
    for i in range(repeats):
        for k, fn in jobs.items():
            times[k].append(_timed(fn))
        log(f"validation round {i + 1}/{repeats} done")
    wan = out[0]["block"]
    for row in out:
        name = row["block"]
        meas = statistics.median(times[(name, "full")])
        pred = _extrapolate(statistics.median(times[(name, n)]), statistics.median(times[(name, n0)]), n, n0, N)
        row.update(tokens=N, slice=n, small_slice=n0, measured_ms=1000 * meas, predicted_ms=1000 * pred, error=pred / meas - 1,
                   measured_rounds_ms=[1000 * t for t in times[(name, "full")]])
        if name != wan:  # against the Wan block of the same round: the ratio the per-step figures rest on
            row["ratio_measured"] = statistics.median(a / b for a, b in zip(times[(name, "full")], times[(wan, "full")]))
            row["ratio_predicted"] = statistics.median(
                _extrapolate(times[(name, n)][i], times[(name, n0)][i], n, n0, N) / _extrapolate(times[(wan, n)][i], times[(wan, n0)][i], n, n0, N)
                for i in range(repeats))
    return out


@torch.no_grad()
def insitu_check(scale: Scale, base, model, ref, dtype, rounds: int, log) -> dict:
    """Does a ReactID block's forward cost a Wan block's plus `_inject` alone? Interleaved, at the n-token slice of the
    scale: the Wan block, the ReactID block (conditional pass), the same ReactID forward with `_inject` made a no-op,
    and `_inject` alone. Medians over rounds (seconds at the slice, not extrapolated)."""
    c, _ = make_context(scale, model, dtype, ref=ref)
    N, n = c.hidden.shape[1], scale.slice_tokens
    s = (N - n) // 2
    blk, args = model.blocks[0], _ref_args(model, c.ref, 0)
    with patched_dispatch():
        kv = capture_kv(base.blocks[0], c.hidden, c.tproj, c.rot)
        rid = block_job(blk, c, kv, s, s + n, pass_="c", ref=args, reactid=True)

        def rid_without_inject():
            blk._inject = lambda h, q, r, t: (h, None)
            try:
                return rid()
            finally:
                del blk._inject

        jobs = {"Wan block": block_job(base.blocks[0], c, kv, s, s + n), "ReactID block": rid,
                "ReactID block with `_inject` a no-op": rid_without_inject,
                "`_inject` alone": additions_job(blk, c, s, s + n, pass_="c", ref=args, setup=lambda: None)}
        for fn in jobs.values():
            fn()
        times = {k: [] for k in jobs}
        for i in range(rounds):
            for k, fn in jobs.items():
                times[k].append(_timed(fn))
            log(f"in-situ round {i + 1}/{rounds} done")
    res = {k: statistics.median(v) for k, v in times.items()}
    res["ReactID block − the same with `_inject` a no-op"] = statistics.median(
        a - b for a, b in zip(times["ReactID block"], times["ReactID block with `_inject` a no-op"]))
    return {"tokens": n, "rounds": rounds, "median_s": res, "per_round_s": times}


@torch.no_grad()
def checks(scale: Scale, dtype, validate_repeats: int, insitu_rounds: int, log) -> dict:
    """--checks-only: the validation at scale.validate_latent and the in-situ check, without the main measurement."""
    base, model = build_models(scale, dtype)
    ins = insitu_check(scale, base, model, None, dtype, insitu_rounds, log) if insitu_rounds else None
    with patched_dispatch():
        val = _validate(scale, base, model, None, dtype, validate_repeats, log) if validate_repeats else None
    return {"validation": val, "insitu": ins}


def checks_table(res: dict) -> str:
    lines = []
    if res.get("validation"):
        lines += ["| validation: full block forward vs slice prediction | tokens | measured ms (rounds) | predicted ms | error | × Wan measured | × Wan predicted |",
                  "|---|---:|---:|---:|---:|---:|---:|"]
        for v in res["validation"]:
            rr = ", ".join(f"{t:,.0f}" for t in v["measured_rounds_ms"])
            lines.append(f"| {v['block']} | {v['tokens']:,} | {v['measured_ms']:,.0f} ({rr}) | {v['predicted_ms']:,.0f} | {100 * v['error']:+.1f}% | "
                         f"{v.get('ratio_measured', 1.0):.3f} | {v.get('ratio_predicted', 1.0):.3f} |")
    if res.get("insitu"):
        ins = res["insitu"]
        lines += ["", f"| in-situ check at {ins['tokens']:,} query tokens, {ins['rounds']} interleaved rounds | median s |", "|---|---:|"]
        lines += [f"| {k} | {v:.3f} |" for k, v in ins["median_s"].items()]
    return "\n".join(lines)


# ----------------------------------------------------------------------------------------------
# Report
# ----------------------------------------------------------------------------------------------
def table(res: dict) -> str:
    sc = res["scale"]
    L, M = sc["layers"], sc["mask_blocks"]
    b = {r["component"]: r["ms"] for r in res["blocks"]}
    add = {r["component"]: r["ms"] for r in res["additions"]}
    comp = {r["component"]: r["ms"] for r in res["components"]}
    out = {r["component"]: r["ms"] for r in res["outside"]}
    W = b["Wan block"]
    lines = [f"| one block at {res['video_tokens']:,} video tokens, {res['dtype']} (ms) | Wan | ReactID | ReactID mask block |", "|---|---:|---:|---:|"]
    if comp:
        sa, tx, ff = comp["self-attention"], comp["text cross-attention"], comp["feed-forward"]
        lines += [
            f"| self-attention ({res['video_tokens']:,} keys) | {sa:,.0f} | same | same |",
            f"| text cross-attention ({sc['text_tokens']} keys) | {tx:,.0f} | same | same |",
            f"| feed-forward | {ff:,.0f} | same | same |",
            f"| norms, modulation, gates, residuals (Wan block − the three above) | {W - sa - tx - ff:,.0f} | same | same |",
            f"| ↳ ReactID: reference attention ({res['reference_tokens']:,} cached keys) + output projection (mask block: + mask mass and head) | – | "
            f"{comp['reference attention + output projection']:,.0f} | {comp['reference attention + mask mass and head + output projection']:,.0f} |",
            f"| ↳ ReactID: timeline attention ({res['timeline_tokens']} keys) + output projection | – | {comp['timeline attention + output projection']:,.0f} | "
            f"{comp['timeline attention + output projection']:,.0f} |",
        ]
    for label, a, m in [("ReactID additions (`_inject`), conditional pass", "conditional pass", "conditional pass, mask block"),
                        ("ReactID additions, negative pass, empty timeline attention computed (before)", "negative pass, empty timeline computed",
                         "negative pass, mask block, empty timeline computed"),
                        ("ReactID additions, negative pass, empty timeline attention skipped (now)", "negative pass", "negative pass, mask block"),
                        ("one shared output projection: additions, conditional pass", "shared projection: conditional pass", "shared projection: conditional pass, mask block"),
                        ("one shared output projection: additions, negative pass", "shared projection: negative pass", "shared projection: negative pass, mask block"),
                        ("`reference_token_pool=2`: additions, conditional pass", "reference pool 2x2: conditional pass", "reference pool 2x2: conditional pass, mask block"),
                        ("`reference_token_pool=2`: additions, negative pass", "reference pool 2x2: negative pass", "reference pool 2x2: negative pass, mask block"),
                        ("shipped timeline options: additions, conditional pass", "shipped timeline options: conditional pass", "shipped timeline options: conditional pass, mask block"),
                        ("shipped timeline options: additions, negative pass", "shipped timeline options: negative pass", "shipped timeline options: negative pass, mask block")]:
        if a in add:
            lines.append(f"| {label} | – | {add[a]:,.0f} ({100 * add[a] / W:.1f}% of Wan) | {add[m]:,.0f} ({100 * add[m] / W:.1f}%) |")
    if len(b) > 1:
        for label, a, m in [("whole block, conditional pass (measured, paired with Wan)", "ReactID block, conditional pass", "ReactID mask block, conditional pass"),
                            ("whole block, negative pass (measured, paired with Wan)", "ReactID block, negative pass", "ReactID mask block, negative pass")]:
            lines.append(f"| **{label}** | **{W:,.0f}** | **{b[a]:,.0f}** (×{b[a] / W:.3f}) | **{b[m]:,.0f}** (×{b[m] / W:.3f}) |")
    else:
        lines.append(f"| **Wan block** | **{W:,.0f}** | | |")
    lines += [
        f"| outside the blocks, conditional / negative pass | {out['outside the blocks, Wan, pass c']:,.0f} / {out['outside the blocks, Wan, pass u']:,.0f} | "
        f"{out['outside the blocks, ReactID, pass c']:,.0f} / {out['outside the blocks, ReactID, pass u']:,.0f} | |",
        f"| reference branch, once per generation ({sc['ref_blocks']} blocks + {L} blocks' reference keys/values) | – | {1000 * res['reference_branch_s']:,.0f} | |",
        "",
        f"| per denoising step: {L} blocks ({M} mask blocks), CFG (2 passes), reference branch / {sc['steps']} steps | Wan s | ReactID s | ReactID / Wan | per round | no CFG |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for ps in res["per_step_variants"]:
        rr = ps["rounds"]
        lines.append(f"| {ps['variant']} | {ps['wan_s']:,.0f} | {ps['reactid_s']:,.0f} | **{ps['ratio']:.3f}** | {min(rr):.3f}–{max(rr):.3f} | {ps['ratio_no_cfg']:.3f} |")
    wb = res.get("whole_blocks_per_step")
    if wb:
        rr = wb["rounds"]
        lines.append(f"| check: ReactID now, from the whole-block measurements | {wb['wan_s']:,.0f} | {wb['reactid_s']:,.0f} | {wb['ratio']:.3f} | {min(rr):.3f}–{max(rr):.3f} | |")
    if res.get("validation"):
        lines += ["", "| validation: full block forward vs slice prediction | tokens | measured ms | predicted ms | error | × Wan measured | × Wan predicted "
                      "| slice output vs full rows (max rel.) |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|"]
        for v in res["validation"]:
            lines.append(f"| {v['block']} | {v['tokens']:,} | {v['measured_ms']:,.0f} | {v['predicted_ms']:,.0f} | {100 * v['error']:+.1f}% | "
                         f"{v.get('ratio_measured', 1.0):.3f} | {v.get('ratio_predicted', 1.0):.3f} | {v['slice_output_rel_err']:.1e} |")
    return "\n".join(lines)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtype", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    ap.add_argument("--slice", type=int, default=WAN_1_3B.slice_tokens, help="n: video-token queries per timed slice")
    ap.add_argument("--small-slice", type=int, default=WAN_1_3B.small_slice, help="n0: the second, small slice (the line's intercept)")
    ap.add_argument("--validate", action="store_true", help="also compare with the full block forward at 8,192 tokens")
    ap.add_argument("--validate-repeats", type=int, default=2)
    ap.add_argument("--no-components", action="store_true")
    ap.add_argument("--no-whole-blocks", action="store_true", help="time only the Wan block and the ReactID additions")
    ap.add_argument("--groups", nargs="+", default=list(GROUPS), choices=list(GROUPS),
                    help="base: Wan and ReactID (before/after the empty-timeline skip); shared: one shared output projection (emulated); "
                         "pool: reference_token_pool=2; shipped: the timeline options of assets/default_model")
    ap.add_argument("--clock", choices=list(CLOCK), default="cpu", help="cpu: this process's CPU time (default); wall: wall-clock time")
    ap.add_argument("--tiny", action="store_true", help="tiny dimensions (seconds; for checking the script)")
    ap.add_argument("--checks-only", action="store_true", help="only the validation (--validate-repeats rounds) and the in-situ check")
    ap.add_argument("--insitu-rounds", type=int, default=8, help="--checks-only: rounds of the in-situ check (0: none)")
    ap.add_argument("--json", help="write the results here")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    global _clock
    _clock = CLOCK[args.clock]
    scale = replace(TINY if args.tiny else WAN_1_3B, slice_tokens=args.slice if not args.tiny else TINY.slice_tokens,
                    small_slice=args.small_slice if not args.tiny else TINY.small_slice)
    cpu = next((line.split(":", 1)[1].strip() for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines() if line.startswith("Model name")), "?")
    results = []
    for d in args.dtype:
        dtype = {"fp32": torch.float32, "bf16": torch.bfloat16}[d]
        log = lambda m: print(f"[{time.strftime('%H:%M:%S')}] {d}: {m}", flush=True)  # noqa: E731
        if args.checks_only:
            res = checks(scale, dtype, args.validate_repeats, args.insitu_rounds, log)
            results.append({**res, "cpu": cpu, "dtype": d, "clock": args.clock})
            print(f"\nCPU: {cpu}; torch {torch.__version__}, {torch.get_num_threads()} thread(s); {d}; {args.clock} time\n")
            print(checks_table(res), flush=True)
            continue
        res = measure(scale, dtype, args.repeats, args.validate, args.validate_repeats, not args.no_components, args.groups, not args.no_whole_blocks,
                      log=log)
        res["cpu"] = cpu
        results.append(res)
        res["clock"] = args.clock
        print(f"\nCPU: {cpu}; torch {torch.__version__}, {torch.get_num_threads()} thread(s); {d}; {args.clock} time; {args.repeats} interleaved rounds; "
              f"slices of {scale.slice_tokens} and {scale.small_slice} query tokens\n")
        print(table(res), flush=True)
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
