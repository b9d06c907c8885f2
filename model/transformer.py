"""ReactIDTransformer: diffusers' Wan2.1 transformer plus the three ReactID components (paper §3.3, App. D).

1. Reference branch (Res-Tuning style): reference latents -> their own patch embedding -> a few
   reference blocks built like the base blocks (initialised as copies of the first base blocks),
   run once on clean references (timestep 0). Their features reach every main block through a
   decoupled attention (queries shared with the text cross-attention, new keys/values) whose
   output goes through a zero-initialised projection.
2. Subject-aware cross-attention: in the last `mask_blocks` blocks the video->reference attention
   map is pooled per subject and head and an MLP predicts each subject's mask per video token; the
   prediction is the mean of those blocks' logits. Masks give each video token a subject label used
   as a rotary coordinate in the timeline cross-attention.
3. Temporally-adaptive RoPE: the timeline cross-attention rotates queries/keys by each token's
   rescaled time (every sub-action spans T) and by its subject label.

Every new output path is zero-initialised, so a ReactIDTransformer built from plain Wan weights
computes exactly what Wan computes (tests/test_equivalence.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from diffusers.configuration_utils import register_to_config
from diffusers.models.attention_dispatch import dispatch_attention_fn
from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed, WanTransformer3DModel, WanTransformerBlock
from diffusers.utils import BaseOutput

from . import rope as R
from .conditioning import TimelineConditioning
from .losses import X0_SIGMA_MIN

# Backends that cannot take an attention mask (DESIGN.md §4: flash refuses masks).
MASKLESS_BACKENDS = {"flash", "flash_hub", "flash_varlen", "flash_varlen_hub", "flash_4_hub", "_flash_3", "_flash_varlen_3", "_flash_3_hub", "_flash_3_varlen_hub", "aiter_fa2_hub", "sage", "sage_hub", "sage_blackwell_hub", "sage_varlen", "_native_flash"}

REACTID_CONFIG_KEYS = (
    "use_reference_branch", "num_reference_blocks", "use_timeline", "use_subject_binding", "temporal_mode",
    "rope_rescale_T", "timeline_rope_theta", "timeline_kv", "timeline_query_clock", "timeline_identity_keys", "timeline_identity_values", "velocity_skip", "x0_channels_from", "rope_theta", "mask_threshold", "label_strategy", "label_alpha", "label_beta", "label_rope_theta", "mask_blocks",
    "mask_hidden_dim", "max_subjects", "max_references_per_subject", "reference_token_pool", "reference_null_key",
    "reference_subject_embedding", "reference_binding_bias", "absolute_position_grid", "detail_blocks",
    "reference_offset_bias",
)


@dataclass
class ReferenceFeatures:
    """Output of the reference branch, computed once per generation.

    features: one [B, R, dim] tensor per reference block; token_subject [B, R] (subject index, -1 = padding)."""

    features: list[torch.Tensor]
    token_subject: torch.Tensor
    num_subjects: int
    kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None  # per main block: its keys/values of the references
    token_offset: torch.Tensor | None = None  # [B, R, 2] where each token lies on its subject (reference_offset_bias)

    def repeat(self, n: int) -> "ReferenceFeatures":
        rep = lambda t: t.repeat_interleave(n, 0)  # noqa: E731
        kv = [(rep(k), rep(v)) for k, v in self.kv] if self.kv is not None else None
        off = rep(self.token_offset) if self.token_offset is not None else None
        return ReferenceFeatures([rep(f) for f in self.features], rep(self.token_subject), self.num_subjects, kv, off)


@dataclass
class ReactIDTransformerOutput(BaseOutput):
    sample: torch.Tensor
    mask_logits: torch.Tensor | None = None  # [B, S, N] per-token subject mask logits (mean over mask blocks)


def velocity_skip_coefficients(sigma: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Preconditioning of the velocity output (EDM's c_skip / c_out, for flow matching): with unit-variance
    latents x0 and noise e, x_t = (1 - s) x0 + s e and v = e - x0, the best linear guess of v from x_t is
    c_skip x_t, c_skip = (2s - 1) / ((1 - s)^2 + s^2), and what is left has standard deviation c_out. The
    network then predicts only that unit-variance rest: at s = 1 it no longer has to copy its input through
    every block to output the noise (which a small model trained briefly does badly, and a blotchy guess of
    the noise at high noise is where the layout and the motion of a clip are decided)."""
    s = sigma.float().clamp(0.0, 1.0)
    var_x = (1 - s) ** 2 + s**2
    c_skip = (2 * s - 1) / var_x
    c_out = (2.0 - (2 * s - 1) ** 2 / var_x).clamp_min(1e-6).sqrt()
    return c_skip, c_out


def x0_channels_to_velocity(sample: torch.Tensor, x_t: torch.Tensor, sigma: torch.Tensor, first: int) -> torch.Tensor:
    """x0_channels_from: channels >= `first` of the network's output are read as a clean-latent guess x0_hat and
    turned into the velocity the sampler steps with, v = (x_t - x0_hat) / sigma (x_t = (1 - s) x0 + s e, v = e - x0).
    A zero output is then the channels' mean (0 for normalised latents), not their starting noise: a model grown onto
    a wider latent (model.init_grow_latent) draws what its old channels decode to until it learns the new ones, where
    a zero velocity would leave them at their initial noise. train/loop.py scores these channels by x0's error."""
    B = sample.shape[0]
    s = sigma.float().clamp_min(X0_SIGMA_MIN).view(B, 1, 1, 1, 1)
    v = (x_t[:, first:].float() - sample[:, first:].float()) / s
    return torch.cat([sample[:, :first], v.type_as(sample)], 1)


POSITION_SCALE = 4.0  # absolute_position_grid: embedding added = this x the learned parameter (zero at first)
BIND_GAIN_SCALE = 4.0  # reference_binding_bias: logit bias = this x the learned per-head parameter
OFFSET_GAIN_SCALE = 4.0  # reference_offset_bias: logit bias = -this x the learned per-head parameter x squared offset distance


def subject_token_offsets(subject_masks: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """[B, S, N] per-token subject masks -> [B, S, N, 2]: each video token's centre (row, column) relative to subject
    s's centroid in its latent frame, in units of the subject's size there: the radius of a disc of its area. For a
    disc, as the paths layout binds, that is the unit of `model.references.reference_token_offsets` (the radius that
    holds 95% of the reference's subject); for a star-shaped mask it is smaller."""
    B, S, _ = subject_masks.shape
    T, H, W = grid
    m = subject_masks.float().reshape(B, S, T, H, W)
    yy = torch.arange(H, device=m.device, dtype=m.dtype).view(H, 1) + 0.5
    xx = torch.arange(W, device=m.device, dtype=m.dtype).view(1, W) + 0.5
    mass = m.sum((-1, -2), keepdim=True).clamp_min(1e-3)
    cy, cx = (m * yy).sum((-1, -2), keepdim=True) / mass, (m * xx).sum((-1, -2), keepdim=True) / mass
    r = (mass / math.pi).sqrt().clamp_min(0.5)  # a subject below a quarter of a token reads as that size
    return torch.stack([((yy - cy) / r).expand_as(m), ((xx - cx) / r).expand_as(m)], -1).reshape(B, S, T * H * W, 2)


def offset_distances(video_offsets: torch.Tensor, reference_offsets: torch.Tensor, token_subject: torch.Tensor) -> torch.Tensor:
    """[B, N, R] squared distance between each video token's place on reference r's subject and reference token r's
    place on it (video_offsets [B, S, N, 2], reference_offsets [B, R, 2], token_subject [B, R], -1 = padding)."""
    N = video_offsets.shape[2]
    idx = token_subject.clamp_min(0)[:, :, None, None].expand(-1, -1, N, 2)
    vo = torch.gather(video_offsets, 1, idx)  # [B, R, N, 2]
    return ((vo - reference_offsets[:, :, None, :].to(vo.dtype)) ** 2).sum(-1).transpose(1, 2)


def _zero_linear(n_in: int, n_out: int) -> nn.Linear:
    lin = nn.Linear(n_in, n_out)
    nn.init.zeros_(lin.weight)
    nn.init.zeros_(lin.bias)
    return lin


class SubjectMaskHead(nn.Module):
    """MLP over the per-subject, per-head attention mass of a video token -> mask logit."""

    def __init__(self, heads: int, hidden: int):
        super().__init__()
        self.net = nn.Sequential(nn.Linear(2 * heads, hidden), nn.GELU(), nn.Linear(hidden, 1))

    def forward(self, mass: torch.Tensor) -> torch.Tensor:  # mass [B, N, S, H] -> [B, N, S]
        # log-mass as a second feature: attention mass spans orders of magnitude
        feats = torch.cat([mass, torch.log(mass.clamp_min(1e-6))], dim=-1)
        return self.net(feats.to(self.net[0].weight.dtype)).squeeze(-1)  # features in fp32, the head in the model's dtype (bf16)


class ReactIDBlock(WanTransformerBlock):
    """A Wan block with the reference injection, mask head and timeline cross-attention added."""

    # At inference (no gradients), a batch with no caption token at all (the CFG negative pass drops every caption)
    # attends only to the timeline attention's null slot, whose value is 0: the branch then adds timeline_out(0), the
    # same row for every token, which is computed for one row only (bit for bit the same output; tests/test_transformer.py).
    # Training always computes the attention, so every parameter gets its (zero) gradient as before. False: always
    # compute it (benchmarks/bench_wan_scale.py times both).
    skip_empty_timeline = True

    def __init__(self, dim, ffn_dim, num_heads, qk_norm, cross_attn_norm, eps, *, use_reference: bool, use_timeline: bool, mask_head: bool, mask_hidden_dim: int,
                 timeline_kv: str = "shared", reference_null_key: bool = False, reference_binding_bias: bool = False,
                 reference_offset_bias: bool = False):
        super().__init__(dim, ffn_dim, num_heads, qk_norm, cross_attn_norm, eps, None)
        self.heads = num_heads
        self.head_dim = dim // num_heads
        if use_reference:
            self.ref_to_k = nn.Linear(dim, dim)
            self.ref_to_v = nn.Linear(dim, dim)
            self.ref_norm_k = nn.RMSNorm(dim, eps=eps)
            self.ref_out = _zero_linear(dim, dim)
        if use_timeline:
            self.timeline_out = _zero_linear(dim, dim)
            if timeline_kv == "separate":  # the timeline's own keys/values instead of the prompt's projections
                self.timeline_to_k = nn.Linear(dim, dim)
                self.timeline_to_v = nn.Linear(dim, dim)
                self.timeline_norm_k = nn.RMSNorm(dim, eps=eps)
        self.mask_head = SubjectMaskHead(num_heads, mask_hidden_dim) if (mask_head and use_reference) else None
        if self.mask_head is not None and reference_null_key:
            # A key that belongs to no subject (value 0): with one subject the subjects' shares of the attention
            # always sum to 1, so without it the mass cannot tell the subject from the background. Zero at
            # first, i.e. one more logit of 0 beside the references'.
            self.ref_null_k = nn.Parameter(torch.zeros(num_heads, dim // num_heads))
        if use_reference and reference_binding_bias:
            # A documented addition (issue 14): a learned per-head logit bias toward the references of the subject a
            # token is bound to (the same labels that steer the timeline attention). Zero at first; the parameter is
            # scaled by BIND_GAIN_SCALE so that the optimiser's steps move the bias at a useful rate.
            self.ref_bind_gain = nn.Parameter(torch.zeros(num_heads))
        if use_reference and reference_offset_bias:
            # A documented addition (twentieth session): among the references of the subject a token is bound to, a
            # learned per-head preference for the reference tokens at the same place on the subject (relative to its
            # centre, in units of its size), so that a token can copy the part of the outline it lies on. Zero at
            # first (a warm start keeps its function at step 0); scaled by OFFSET_GAIN_SCALE like the binding gain.
            self.ref_offset_gain = nn.Parameter(torch.zeros(num_heads))

    def init_from_base(self) -> None:
        """New key/value projections start as copies of the text cross-attention's."""
        if hasattr(self, "ref_to_k"):
            self.ref_to_k.load_state_dict(self.attn2.to_k.state_dict())
            self.ref_to_v.load_state_dict(self.attn2.to_v.state_dict())
            self.ref_norm_k.load_state_dict(self.attn2.norm_k.state_dict())
            nn.init.zeros_(self.ref_out.weight)
            nn.init.zeros_(self.ref_out.bias)
        if hasattr(self, "timeline_to_k"):
            self.timeline_to_k.load_state_dict(self.attn2.to_k.state_dict())
            self.timeline_to_v.load_state_dict(self.attn2.to_v.state_dict())
            self.timeline_norm_k.load_state_dict(self.attn2.norm_k.state_dict())
        if hasattr(self, "timeline_out"):
            nn.init.zeros_(self.timeline_out.weight)
            nn.init.zeros_(self.timeline_out.bias)

    def _backend(self):
        return getattr(self.attn2.processor, "_attention_backend", None)

    def backend_name(self) -> str | None:
        b = self._backend()
        return None if b is None else str(getattr(b, "value", b))

    def forward(self, hidden_states, encoder_hidden_states, temb, rotary_emb, ref=None, timeline=None):
        """ref: ((keys, values) or the reference features [B,R,dim], token_subject [B,R], S[, token_assign [B,N]]) or None;
        timeline: (keys_in [B,L,dim], valid [B,L], cos_q, sin_q, cos_k, sin_k, attn_mask) or None.
        Returns (hidden_states, mask_logits [B,N,S] or None)."""
        if temb.ndim == 4:
            mods = (self.scale_shift_table.unsqueeze(0) + temb.float()).chunk(6, dim=2)
            shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = (m.squeeze(2) for m in mods)
        else:
            shift_msa, scale_msa, gate_msa, c_shift_msa, c_scale_msa, c_gate_msa = (self.scale_shift_table + temb.float()).chunk(6, dim=1)

        norm_hidden_states = (self.norm1(hidden_states.float()) * (1 + scale_msa) + shift_msa).type_as(hidden_states)
        attn_output = self.attn1(norm_hidden_states, None, None, rotary_emb)
        hidden_states = (hidden_states.float() + attn_output * gate_msa).type_as(hidden_states)

        # --- cross-attention to the global prompt (exactly Wan's), then the ReactID additions on the
        # same normalised input and the same queries
        x = self.norm2(hidden_states.float()).type_as(hidden_states)
        a2 = self.attn2
        q = a2.norm_q(a2.to_q(x)).unflatten(2, (self.heads, -1))
        k = a2.norm_k(a2.to_k(encoder_hidden_states)).unflatten(2, (self.heads, -1))
        v = a2.to_v(encoder_hidden_states).unflatten(2, (self.heads, -1))
        out = dispatch_attention_fn(q, k, v, attn_mask=None, dropout_p=0.0, is_causal=False, backend=self._backend())
        out = a2.to_out[0](out.flatten(2, 3).type_as(q))
        hidden_states = hidden_states + a2.to_out[1](out)
        hidden_states, mask_logits = self._inject(hidden_states, q, ref, timeline)

        norm_hidden_states = (self.norm3(hidden_states.float()) * (1 + c_scale_msa) + c_shift_msa).type_as(hidden_states)
        ff_output = self.ffn(norm_hidden_states)
        hidden_states = (hidden_states.float() + ff_output.float() * c_gate_msa).type_as(hidden_states)
        return hidden_states, mask_logits

    def _inject(self, hidden_states, q, ref, timeline):
        """All that ReactID adds to a Wan block: the reference and timeline attentions on the prompt
        cross-attention's queries `q`, through their zero-initialised output projections, added to the residual.
        Returns (hidden_states, mask_logits [B,N,S] or None)."""
        mask_logits = None
        if ref is not None and hasattr(self, "ref_out"):
            kv, token_subject, num_subjects, *extra = ref  # extra: (token_assign[, offset distances [B, N, R]])
            if isinstance(kv, torch.Tensor):  # reference features: this block's keys/values are made here, inside its forward (FSDP)
                kv = self.reference_kv(kv)
            ref_out, mask_logits = self._reference_attention(q, kv, token_subject, num_subjects, extra[0] if extra else None,
                                                             extra[1] if len(extra) > 1 else None)
            hidden_states = hidden_states + self.ref_out(ref_out)
        if timeline is not None and hasattr(self, "timeline_out"):
            if self.skip_empty_timeline and not torch.is_grad_enabled() and not bool(timeline[1].any()):
                # no caption token in the batch: every video token attends only to the null slot (value 0)
                hidden_states = hidden_states + self.timeline_out(q.new_zeros(1, 1, q.shape[-2] * q.shape[-1]))
            else:
                hidden_states = hidden_states + self.timeline_out(self._timeline_attention(q, *timeline))
        return hidden_states, mask_logits

    # -- reference injection --------------------------------------------------------------------
    def reference_kv(self, feats: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Keys/values of the reference tokens for this block: they depend on the clean references only,
        so the pipeline computes them once per generation with the reference branch."""
        k = self.ref_norm_k(self.ref_to_k(feats)).unflatten(2, (self.heads, -1))
        v = self.ref_to_v(feats).unflatten(2, (self.heads, -1))
        return k, v

    def _binding_bias(self, token_assign, token_subject, valid, dtype, offset_d2=None) -> torch.Tensor | None:
        """[B, H, N, R] additive logits: gain_h where the token is bound to the reference's subject, minus offset_gain_h x
        the squared offset distance `offset_d2` [B, N, R] (reference_offset_bias) there; -inf on padding."""
        if token_assign is None or not hasattr(self, "ref_bind_gain"):
            return None
        same = (token_assign.unsqueeze(-1) == token_subject.unsqueeze(1)) & (token_assign.unsqueeze(-1) >= 0)  # [B, N, R]
        gain = (BIND_GAIN_SCALE * self.ref_bind_gain).to(dtype).view(1, -1, 1, 1)
        bias = same.unsqueeze(1).to(dtype) * gain
        if offset_d2 is not None and hasattr(self, "ref_offset_gain"):
            near = (OFFSET_GAIN_SCALE * self.ref_offset_gain).to(dtype).view(1, -1, 1, 1)
            bias = bias - (offset_d2 * same).unsqueeze(1).to(dtype) * near
        return bias.masked_fill(~valid.view(valid.shape[0], 1, 1, -1), float("-inf"))

    def _reference_attention(self, q, kv, token_subject, num_subjects, token_assign=None, offset_d2=None):
        k, v = kv
        valid = token_subject >= 0  # [B, R]
        bias = self._binding_bias(token_assign, token_subject, valid, q.dtype, offset_d2)
        if self.mask_head is None:
            mask = bias
            if mask is None and not bool(valid.all()):
                mask = self._additive_mask(valid, q.dtype)
            out = dispatch_attention_fn(q, k, v, attn_mask=mask, dropout_p=0.0, is_causal=False, backend=self._backend() if mask is None else None)
            return out.flatten(2, 3).type_as(q), None
        # Mask blocks need each subject's share of the attention. Appending the subjects' one-hot indicator
        # to the values makes one fused attention call return both the output and that mass (q/k are
        # zero-padded to the same width so the fast kernel applies; the scale stays 1/sqrt(D)).
        B, N, H, D = q.shape
        S = num_subjects
        onehot = (F.one_hot(token_subject.clamp_min(0), S) * valid.unsqueeze(-1)).to(v.dtype)  # [B, R, S]
        width = -(-(D + S) // 8) * 8
        pad_qk = width - D
        vp = torch.cat([v, onehot.unsqueeze(2).expand(-1, -1, H, -1)], -1)
        if hasattr(self, "ref_null_k"):  # the null key: value and subject indicator 0
            k = torch.cat([k, self.ref_null_k.to(k.dtype).expand(B, 1, H, D)], 1)
            vp = torch.cat([vp, vp.new_zeros(B, 1, H, D + S)], 1)
            valid = torch.cat([valid, valid.new_ones(B, 1)], 1)
            if bias is not None:
                bias = F.pad(bias, (0, 1))
        qp = F.pad(q, (0, pad_qk))
        kp = F.pad(k, (0, pad_qk))
        vp = F.pad(vp, (0, width - D - S))
        mask = bias if bias is not None else (None if bool(valid.all()) else self._additive_mask(valid, q.dtype))
        out = dispatch_attention_fn(qp, kp, vp, attn_mask=mask, dropout_p=0.0, is_causal=False, scale=1.0 / math.sqrt(D), backend=None)
        mass = out[..., D : D + S].permute(0, 1, 3, 2)  # [B, N, S, H]
        return out[..., :D].flatten(2, 3).type_as(q), self.mask_head(mass.float())

    # -- timeline cross-attention ---------------------------------------------------------------
    def _timeline_attention(self, q, keys_in, valid, cos_q, sin_q, cos_k, sin_k, attn_mask, key_subject=None, values_in=None):
        """values_in: the value inputs when they differ from the key inputs (identity tags go into keys only)."""
        if hasattr(self, "timeline_to_k"):
            to_k, norm_k, to_v = self.timeline_to_k, self.timeline_norm_k, self.timeline_to_v
        else:
            to_k, norm_k, to_v = self.attn2.to_k, self.attn2.norm_k, self.attn2.to_v
        k = norm_k(to_k(keys_in)).unflatten(2, (self.heads, -1))
        v = to_v(keys_in if values_in is None else values_in).unflatten(2, (self.heads, -1))
        qr, kr = q, k
        scale = None
        if cos_q is not None and cos_q.ndim == 5:
            # one clock per subject (timeline_query_clock='per_subject'): the query is rotated by each subject's
            # rescaled time, the copies laid side by side, and every caption key put in its own subject's slot,
            # so q_s(l) . k_l is the only product that survives and one attention call scores every caption
            # against its own subject's clock (scale stays 1/sqrt(head_dim))
            S = cos_q.shape[1]
            qr = torch.cat([R.apply_rotary_fast(q, cos_q[:, s], sin_q[:, s]) for s in range(S)], -1)
            kr = R.apply_rotary_fast(k, cos_k, sin_k)
            slot = F.one_hot(key_subject.clamp(0, S - 1), S).to(kr.dtype)  # [B, L, S]
            kr = (kr.unsqueeze(-2) * slot[:, :, None, :, None]).flatten(-2)  # [B, L, H, S*d]
            scale = 1.0 / math.sqrt(self.head_dim)
        elif cos_q is not None:
            qr = R.apply_rotary_fast(q, cos_q, sin_q)
            kr = R.apply_rotary_fast(k, cos_k, sin_k)
        # a null slot (zero key, zero value): tokens with nothing relevant can attend to nothing
        B = q.shape[0]
        null = torch.zeros(B, 1, self.heads, kr.shape[-1], dtype=kr.dtype, device=kr.device)
        kr = torch.cat([kr, null], 1)
        v = torch.cat([v, torch.zeros(B, 1, self.heads, self.head_dim, dtype=v.dtype, device=v.device)], 1)
        if scale is not None:  # q/k are wider than v here: native SDPA takes that, the fused kernels may not
            m = None
            if attn_mask is not None or not bool(valid.all()):
                am = attn_mask if attn_mask is not None else valid.view(B, 1, 1, -1)
                full = torch.ones(am.shape[:-1] + (1,), dtype=torch.bool, device=am.device)
                m = torch.where(torch.cat([am.expand(B, *am.shape[1:]), full], -1), 0.0, float("-inf")).to(qr.dtype)
            out = dispatch_attention_fn(qr, kr, v, attn_mask=m, dropout_p=0.0, is_causal=False, scale=scale, backend=None)
            return out.flatten(2, 3).type_as(q)
        if attn_mask is None and not bool(valid.all()):
            attn_mask = valid.view(B, 1, 1, -1)
        if attn_mask is not None:
            full = torch.ones(attn_mask.shape[:-1] + (1,), dtype=torch.bool, device=attn_mask.device)
            attn_mask = torch.cat([attn_mask.expand(B, *attn_mask.shape[1:]), full], -1)
            attn_mask = torch.where(attn_mask, 0.0, float("-inf")).to(qr.dtype)
            out = dispatch_attention_fn(qr, kr, v, attn_mask=attn_mask, dropout_p=0.0, is_causal=False, backend=None)
        else:
            out = dispatch_attention_fn(qr, kr, v, attn_mask=None, dropout_p=0.0, is_causal=False, backend=self._backend())
        return out.flatten(2, 3).type_as(q)

    @staticmethod
    def _additive_mask(valid: torch.Tensor, dtype) -> torch.Tensor:
        return torch.where(valid, 0.0, float("-inf")).to(dtype).view(valid.shape[0], 1, 1, -1)


class ReactIDTransformer(WanTransformer3DModel):
    """Wan2.1 transformer with ReactID's reference branch, subject-aware cross-attention and TA-RoPE.

    The base Wan arguments are unchanged; the ReactID arguments (see `REACTID_CONFIG_KEYS`) switch each
    component on/off and select the paper's ablations:
    temporal_mode: 'ta_rope' (paper) | 'vanilla_rope' | 'attn_mask'; label_strategy: 'uniform' | 'adaptive'.
    """

    _no_split_modules = ["ReactIDBlock"]
    _repeated_blocks = ["ReactIDBlock"]

    @register_to_config
    def __init__(
        self,
        patch_size: tuple[int, ...] = (1, 2, 2),
        num_attention_heads: int = 40,
        attention_head_dim: int = 128,
        in_channels: int = 16,
        out_channels: int = 16,
        text_dim: int = 4096,
        freq_dim: int = 256,
        ffn_dim: int = 13824,
        num_layers: int = 40,
        cross_attn_norm: bool = True,
        qk_norm: str | None = "rms_norm_across_heads",
        eps: float = 1e-6,
        image_dim: int | None = None,
        added_kv_proj_dim: int | None = None,
        rope_max_seq_len: int = 1024,
        pos_embed_seq_len: int | None = None,
        # ---- ReactID
        use_reference_branch: bool = True,
        num_reference_blocks: int = 2,
        use_timeline: bool = True,
        use_subject_binding: bool = True,
        temporal_mode: str = "ta_rope",
        rope_rescale_T: float = 2.0,
        timeline_rope_theta: float = 10000.0,
        timeline_kv: str = "shared",
        timeline_query_clock: str = "assigned",
        timeline_identity_keys: bool = False,
        timeline_identity_values: bool = False,
        velocity_skip: bool = False,
        x0_channels_from: int = 0,
        rope_theta: float = 10000.0,
        mask_threshold: float = 0.5,
        label_strategy: str = "uniform",
        label_alpha: float = 2.0,
        label_beta: float = 20.0,
        label_rope_theta: float = 100.0,
        mask_blocks: int = 5,
        mask_hidden_dim: int = 64,
        max_subjects: int = 6,
        max_references_per_subject: int = 4,
        reference_token_pool: int = 1,
        reference_null_key: bool = False,
        reference_subject_embedding: bool = False,
        reference_binding_bias: bool = False,
        absolute_position_grid: tuple[int, int] | None = None,
        detail_blocks: int = 0,
        reference_offset_bias: bool = False,
    ) -> None:
        if image_dim is not None or added_kv_proj_dim is not None:
            raise ValueError("ReactIDTransformer builds on the text-to-video Wan (no image_dim / added_kv_proj_dim)")
        if temporal_mode not in R.TEMPORAL_MODES:
            raise ValueError(f"temporal_mode must be one of {R.TEMPORAL_MODES}, got {temporal_mode!r}")
        if label_strategy not in R.LABEL_STRATEGIES:
            raise ValueError(f"label_strategy must be one of {R.LABEL_STRATEGIES}, got {label_strategy!r}")
        if use_reference_branch and not 1 <= num_reference_blocks <= num_layers:
            raise ValueError(f"num_reference_blocks must be in 1..num_layers ({num_layers}), got {num_reference_blocks}")
        if reference_token_pool < 1:
            raise ValueError(f"reference_token_pool must be >= 1, got {reference_token_pool}")
        if rope_rescale_T <= 0:
            raise ValueError(f"rope_rescale_T must be > 0, got {rope_rescale_T}")
        if not 0 <= mask_threshold < 1:
            raise ValueError(f"mask_threshold must be in [0, 1), got {mask_threshold}")
        if timeline_kv not in ("shared", "separate"):
            raise ValueError(f"timeline_kv must be 'shared' or 'separate', got {timeline_kv!r}")
        if timeline_query_clock not in ("assigned", "per_subject"):
            raise ValueError(f"timeline_query_clock must be 'assigned' or 'per_subject', got {timeline_query_clock!r}")
        if timeline_identity_keys and not (use_timeline and use_reference_branch):
            raise ValueError("timeline_identity_keys needs both the timeline and the reference branch")
        if timeline_rope_theta <= 1:
            raise ValueError(f"timeline_rope_theta must be > 1, got {timeline_rope_theta}")
        if x0_channels_from and not 0 < x0_channels_from < (out_channels if out_channels is not None else in_channels):
            raise ValueError(f"x0_channels_from must be 0 (off) or a channel index in 1..{(out_channels or in_channels) - 1}, got {x0_channels_from}")
        if detail_blocks and not x0_channels_from:
            raise ValueError("detail_blocks draw the x0 channels: set x0_channels_from too")
        if detail_blocks < 0:
            raise ValueError(f"detail_blocks must be >= 0, got {detail_blocks}")
        if x0_channels_from and velocity_skip:
            raise ValueError("x0_channels_from and velocity_skip are two parametrisations of the same output: choose one")
        if reference_offset_bias and not (use_reference_branch and use_subject_binding and reference_binding_bias):
            raise ValueError("reference_offset_bias needs the reference branch, subject binding and reference_binding_bias "
                             "(it biases a token's attention among the references of the subject it is bound to)")
        if absolute_position_grid is not None and (len(absolute_position_grid) != 2 or min(absolute_position_grid) < 1):
            raise ValueError(f"absolute_position_grid must be [height, width] in tokens, got {absolute_position_grid!r}")
        super().__init__(
            patch_size, num_attention_heads, attention_head_dim, in_channels, out_channels, text_dim, freq_dim, ffn_dim,
            num_layers, cross_attn_norm, qk_norm, eps, None, None, rope_max_seq_len, pos_embed_seq_len,
        )
        if rope_theta != 10000.0:
            if rope_theta <= 1:
                raise ValueError(f"rope_theta must be > 1, got {rope_theta}")
            # Wan's base suits its 30x52x21-token grids; on a 17x4x4 grid only one or two of a 32-dim head's
            # spatial and temporal rotary pairs turn between neighbouring tokens, so attention can hardly tell
            # the token next door from one across the frame
            self.rope = WanRotaryPosEmbed(attention_head_dim, patch_size, rope_max_seq_len, theta=rope_theta)
        inner = num_attention_heads * attention_head_dim
        n_mask = min(mask_blocks, num_layers) if (use_reference_branch and use_subject_binding) else 0
        self.blocks = nn.ModuleList(
            [
                ReactIDBlock(
                    inner, ffn_dim, num_attention_heads, qk_norm, cross_attn_norm, eps,
                    use_reference=use_reference_branch, use_timeline=use_timeline,
                    mask_head=i >= num_layers - n_mask, mask_hidden_dim=mask_hidden_dim, timeline_kv=timeline_kv,
                    reference_null_key=reference_null_key, reference_binding_bias=reference_binding_bias,
                    reference_offset_bias=reference_offset_bias,
                )
                for i in range(num_layers)
            ]
        )
        if use_reference_branch:
            self.ref_patch_embedding = nn.Conv3d(in_channels, inner, kernel_size=patch_size, stride=patch_size)
            self.ref_blocks = nn.ModuleList(
                [WanTransformerBlock(inner, ffn_dim, num_attention_heads, qk_norm, cross_attn_norm, eps, None) for _ in range(num_reference_blocks)]
            )
            if reference_subject_embedding:
                # A documented addition (issue 14): each reference token also carries its subject's slot (the
                # subject's place in the timeline's list). Without it nothing the video can see says which
                # subject is the first one, so a world whose layout follows the subject order (the sprite
                # world's 'canonical' placement) cannot be learned with two or more look-alike-free subjects.
                self.ref_subject_embedding = nn.Embedding(max_subjects, inner)
        if absolute_position_grid is not None:
            # A documented addition (issue 14): Wan's video tokens know only relative positions (3-D RoPE, a 1x1
            # patch embedding), so at high noise a token cannot tell the left column from the right one, which
            # subject a layout puts there, or whose timeline it should read. A learned per-(row, column)
            # embedding, the same in every frame, zero at first (a warm start keeps its function at step 0).
            self.video_position = nn.Parameter(torch.zeros(1, inner, *absolute_position_grid))
        if use_timeline and timeline_identity_keys:
            # each caption's keys also carry its subject's pooled reference features, so a video token can find
            # its own subject's captions by what it looks like, before any mask exists (the first steps)
            self.timeline_identity = nn.Linear(inner, inner)
        # rotary split of the timeline attention's head dim: time | label | unrotated (Wan's t/h/w split)
        hd = attention_head_dim
        self._label_dim = 2 * (hd // 6) if use_subject_binding else 0
        self._time_dim = (hd - 4 * (hd // 6)) if temporal_mode != "attn_mask" else 0
        self.reference_branch_calls = 0  # counted so tests/benchmarks can check "once per generation"
        if detail_blocks:
            # A documented, switchable addition (fifteenth session): the x0 channels of a grown latent get a path of
            # their own — the trunk's last hidden state plus an embedding of those channels' noisy input, through
            # blocks that start as copies of the trunk's last one, into an output layer of their own. Nothing on
            # it reaches the old channels, so training it alone (optim.train_only: [detail_]) cannot change what the
            # old channels draw. Input and output layers start at zero: a grown model's function is unchanged.
            n_new = (out_channels or in_channels) - x0_channels_from
            p_vol = int(patch_size[0] * patch_size[1] * patch_size[2])
            self.detail_patch_embedding = nn.Conv3d(n_new, inner, kernel_size=patch_size, stride=patch_size)
            self.detail_layers = nn.ModuleList(
                [ReactIDBlock(inner, ffn_dim, num_attention_heads, qk_norm, cross_attn_norm, eps,
                              use_reference=use_reference_branch, use_timeline=use_timeline, mask_head=False,
                              mask_hidden_dim=mask_hidden_dim, timeline_kv=timeline_kv, reference_null_key=reference_null_key,
                              reference_binding_bias=reference_binding_bias, reference_offset_bias=reference_offset_bias)
                 for _ in range(detail_blocks)])
            self.detail_proj_out = _zero_linear(inner, p_vol * n_new)
        self.init_reactid_weights()

    # ------------------------------------------------------------------------------------------
    # Construction from Wan weights
    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def init_reactid_weights(self) -> None:
        """(Re)initialise every ReactID module from the base weights: reference blocks copy the first base
        blocks, the reference patch embedding copies the base one, every injection output is zero."""
        for block in self.blocks:
            block.init_from_base()
        self.init_detail_path()
        if self.config.use_reference_branch:
            self.ref_patch_embedding.load_state_dict(self.patch_embedding.state_dict())
            if hasattr(self, "ref_subject_embedding"):  # zero: a warm start keeps its function at step 0
                nn.init.zeros_(self.ref_subject_embedding.weight)
            for i, rb in enumerate(self.ref_blocks):
                base = self.blocks[i]
                own = rb.state_dict()
                rb.load_state_dict({k: v for k, v in base.state_dict().items() if k in own})

    def init_detail_path(self) -> None:
        """detail_blocks: each a copy of the trunk's last block; the path's input and output layers at zero."""
        if not hasattr(self, "detail_layers"):
            return
        last = self.blocks[-1].state_dict()
        for blk in self.detail_layers:
            own = blk.state_dict()
            blk.load_state_dict({k: v for k, v in last.items() if k in own and v.shape == own[k].shape}, strict=False)
        nn.init.zeros_(self.detail_patch_embedding.weight)
        nn.init.zeros_(self.detail_patch_embedding.bias)
        nn.init.zeros_(self.detail_proj_out.weight)
        nn.init.zeros_(self.detail_proj_out.bias)

    @classmethod
    def from_wan(cls, base: WanTransformer3DModel | str | Path, **reactid_kwargs) -> "ReactIDTransformer":
        """Build from a plain Wan transformer (module, or diffusers directory / hub id of one).

        Built from config then `load_state_dict` (not `from_pretrained` on this subclass, which would leave
        the new parameters uninitialised on the meta device)."""
        if not isinstance(base, WanTransformer3DModel):
            sub = "transformer" if (Path(str(base)) / "transformer").is_dir() else None
            base = WanTransformer3DModel.from_pretrained(base, subfolder=sub)
        unknown = set(reactid_kwargs) - set(REACTID_CONFIG_KEYS)
        if unknown:
            raise TypeError(f"unknown ReactID option(s): {', '.join(sorted(unknown))}")
        cfg = {k: v for k, v in base.config.items() if not k.startswith("_")}
        cfg.update(reactid_kwargs)
        model = cls(**cfg)
        if base.dtype != torch.float32:
            model = model.to(dtype=base.dtype)
        missing, unexpected = model.load_state_dict(base.state_dict(), strict=False)
        if unexpected:
            raise ValueError(f"base weights have keys this model lacks: {unexpected[:5]}")
        bad = [k for k in missing if not cls.is_reactid_param(k)]
        if bad:
            raise ValueError(f"base weights are missing Wan keys: {bad[:5]}")
        model.init_reactid_weights()
        return model

    @staticmethod
    def is_reactid_param(name: str) -> bool:
        parts = name.split(".")
        return parts[0] in ("ref_patch_embedding", "ref_blocks", "timeline_identity", "ref_subject_embedding", "video_position", "detail_patch_embedding", "detail_layers", "detail_proj_out") or any(p in ("ref_to_k", "ref_to_v", "ref_norm_k", "ref_out", "timeline_out", "timeline_to_k", "timeline_to_v", "timeline_norm_k", "mask_head", "ref_null_k", "ref_bind_gain", "ref_offset_gain") for p in parts)

    def reactid_config(self) -> dict:
        return {k: self.config[k] for k in REACTID_CONFIG_KEYS}

    def base_config(self) -> dict:
        return {k: v for k, v in self.config.items() if not k.startswith("_") and k not in REACTID_CONFIG_KEYS}

    def reactid_state_dict(self) -> dict[str, torch.Tensor]:
        return {k: v for k, v in self.state_dict().items() if self.is_reactid_param(k)}

    def trainable_parameter_counts(self) -> dict[str, int]:
        new = sum(p.numel() for n, p in self.named_parameters() if self.is_reactid_param(n))
        total = sum(p.numel() for p in self.parameters())
        return {"base": total - new, "reactid": new, "total": total}

    # ------------------------------------------------------------------------------------------
    # Reference branch
    # ------------------------------------------------------------------------------------------
    def encode_references(self, reference_latents: torch.Tensor, reference_subject: torch.Tensor, reference_text: torch.Tensor, num_subjects: int | None = None,
                          reference_offsets: torch.Tensor | None = None, block_kv: bool = True) -> ReferenceFeatures:
        """Run the reference branch once on clean references.

        reference_latents [B, M, C, h, w] (one latent frame per reference image); reference_subject [B, M]
        (subject index per image, -1 = padding); reference_text [B, M, L, text_dim] (the text each
        reference block cross-attends to: the subject's name). block_kv=False leaves each main block's
        keys/values of the references to that block's own forward (kv = None). reference_offsets [B, M, h*w, 2]: where
        each reference token lies on its subject (`model.references.reference_token_offsets`), which
        reference_offset_bias needs."""
        if not self.config.use_reference_branch:
            raise RuntimeError("this model was built without the reference branch")
        self.reference_branch_calls += 1
        B, M, C, h, w = reference_latents.shape
        S = int(num_subjects if num_subjects is not None else int(reference_subject.max().item()) + 1)
        lat = reference_latents.reshape(B * M, C, 1, h, w)
        # every reference image is its own sequence in the reference blocks (spatial RoPE only), so
        # subjects do not mix before the video attends to them
        rot_cos, rot_sin = self.rope(lat)
        x = self.ref_patch_embedding(lat).flatten(2).transpose(1, 2)  # [B*M, P, dim]
        if hasattr(self, "ref_subject_embedding"):
            if S > self.config.max_subjects:
                raise ValueError(f"{S} subjects: this model's reference_subject_embedding has {self.config.max_subjects} slots (max_subjects)")
            slot = self.ref_subject_embedding(reference_subject.clamp_min(0).reshape(B * M))  # padding images are masked out later
            x = x + slot.unsqueeze(1).to(x.dtype)
        P = x.shape[1]
        t0 = torch.zeros(B * M, device=x.device, dtype=x.dtype)
        text = reference_text.reshape(B * M, *reference_text.shape[2:])
        temb, tproj, ctx, _ = self.condition_embedder(t0, text, None)
        tproj = tproj.unflatten(1, (6, -1))
        feats = []
        pool = self.config.reference_token_pool
        hp, wp = h // self.config.patch_size[1], w // self.config.patch_size[2]
        for rb in self.ref_blocks:
            x = rb(x, ctx, tproj, (rot_cos, rot_sin))
            f = x
            if pool > 1:  # fewer reference keys for the video to attend to (the blocks above ran at full size)
                f = F.avg_pool2d(f.transpose(1, 2).reshape(B * M, -1, hp, wp), pool, ceil_mode=True)
                f = f.flatten(2).transpose(1, 2)
            feats.append(f.reshape(B, -1, f.shape[-1]))
        P = feats[0].shape[1] // M
        token_subject = reference_subject.view(B, M, 1).expand(B, M, P).reshape(B, M * P)
        offsets = None
        if reference_offsets is not None:
            offsets = reference_offsets.to(x.device, torch.float32).reshape(B * M, hp, wp, 2)
            if pool > 1:  # the place of a pooled token is the mean of the places it pools
                offsets = F.avg_pool2d(offsets.permute(0, 3, 1, 2), pool, ceil_mode=True).permute(0, 2, 3, 1)
            offsets = offsets.reshape(B, M * P, 2)
        kv = None
        if block_kv:
            n_ref, n = len(self.ref_blocks), len(self.blocks)
            kv = [blk.reference_kv(feats[min(n_ref - 1, j * n_ref // n)]) for j, blk in enumerate(self.blocks)]
        return ReferenceFeatures(feats, token_subject, S, kv, offsets)

    # ------------------------------------------------------------------------------------------
    # Timeline rotary / masks
    # ------------------------------------------------------------------------------------------
    def _timeline_inputs(self, tl: TimelineConditioning, grid: tuple[int, int, int], subject_probs: torch.Tensor | None, device, dtype,
                         reference_features: ReferenceFeatures | None = None):
        cfg = self.config
        B = tl.embeds.shape[0]
        Fp, Hp, Wp = grid
        N = Fp * Hp * Wp
        keys_in = self.condition_embedder.text_embedder(tl.embeds.to(device=device, dtype=dtype))
        values_in = None
        if hasattr(self, "timeline_identity") and reference_features is not None:
            # The identity tag says whose caption a key is, so a subject's tokens find their own captions. In the
            # values it would make one subject's different actions alike (what the caption says is what must flow),
            # so by default it goes into the keys only; timeline_identity_values=True adds it to both (the first design).
            tagged = keys_in + self._identity_keys(reference_features, tl.token_subject.to(device), tl.spans.shape[1], dtype)
            values_in = tagged if cfg.timeline_identity_values else keys_in
            keys_in = tagged
        frames = torch.arange(Fp, device=device, dtype=torch.float64) * self.config.patch_size[0]
        spans = tl.spans.to(device)
        S = spans.shape[1]
        if subject_probs is not None and subject_probs.shape[1] < S:
            raise ValueError(f"subject masks cover {subject_probs.shape[1]} subjects, the timeline has {S}")
        probs = subject_probs[:, :S] if (subject_probs is not None and cfg.use_subject_binding) else None
        # a token belongs to its most likely subject when that subject covers > mask_threshold of it. 0.5 suits
        # Wan-scale grids; where subjects are about one token wide (the sprite world) few tokens reach it
        assign = R.token_subject_assignment(probs, cfg.mask_threshold)  # [B, N] or None
        tok_frame = torch.arange(N, device=device) // (Hp * Wp)

        cos_parts_q, sin_parts_q, cos_parts_k, sin_parts_k = [], [], [], []
        attn_mask = None
        per_subject_clock = cfg.timeline_query_clock == "per_subject" and cfg.temporal_mode != "attn_mask"
        if cfg.temporal_mode in ("ta_rope", "vanilla_rope"):
            if cfg.temporal_mode == "ta_rope":
                per_subject = R.ta_rope_positions(frames, spans, tl.num_actions.to(device), cfg.rope_rescale_T)
            else:
                per_subject = R.vanilla_positions(frames, B, S)
            pos_frame = per_subject[:, :, tok_frame]  # [B, S, N]
            background = pos_frame.mean(1)  # tokens of no subject: mean of the subjects' times
            if per_subject_clock:  # every token, against each subject's captions, at that subject's time
                pos_q = pos_frame
            elif assign is None:
                pos_q = background
            else:
                own = pos_frame.gather(1, assign.clamp_min(0).unsqueeze(1)).squeeze(1)
                pos_q = torch.where(assign >= 0, own, background)
            pos_k = R.caption_positions(spans, tl.token_subject.to(device), tl.token_action.to(device), cfg.temporal_mode, cfg.rope_rescale_T)
            # Wan's base (10000) suits its 44 temporal dims; TA-RoPE positions only span 0..K*T, so with few
            # dims (a small head) a lower base is needed for more than one pair to turn between neighbouring actions
            fr = R.rope_frequencies(self._time_dim, cfg.timeline_rope_theta, device)
            c, s = R.rotary_cos_sin(pos_q, fr)
            cos_parts_q.append(c); sin_parts_q.append(s)
            c, s = R.rotary_cos_sin(pos_k, fr)
            cos_parts_k.append(c); sin_parts_k.append(s)
        else:  # attention mask: a token sees the captions of actions active at its frame
            fq = frames[tok_frame].view(1, N, 1)
            ts, ta = tl.token_subject.to(device), tl.token_action.to(device)
            b = torch.arange(B, device=device).view(B, 1).expand_as(ts)
            span = spans[b, ts.clamp_min(0), ta.clamp_min(0)].to(torch.float64)  # [B, L, 2]
            last = span[..., 1:2].transpose(1, 2) >= frames[-1]
            active = (fq >= span[..., 0].unsqueeze(1)) & ((fq < span[..., 1].unsqueeze(1)) | ((fq <= span[..., 1].unsqueeze(1)) & last))
            attn_mask = (active & tl.valid.to(device).unsqueeze(1)).unsqueeze(1)  # [B, 1, N, L]
        if self._label_dim:
            lab_q = R.token_labels(probs, cfg.label_alpha, cfg.label_beta, cfg.label_strategy, cfg.mask_threshold)
            if lab_q is None:  # no masks yet (first denoising step): uniform binding, no label rotation
                lab_q = torch.zeros(B, N, device=device, dtype=torch.float64)
                lab_k = torch.zeros(tl.token_subject.shape, device=device, dtype=torch.float64)
            else:
                lab_k = R.label_values(S, cfg.label_alpha, cfg.label_beta, device)[tl.token_subject.to(device).clamp_min(0)]
            fr = R.rope_frequencies(self._label_dim, cfg.label_rope_theta, device)
            c, s = R.rotary_cos_sin(lab_q, fr)
            if per_subject_clock:  # the token's own label, the same in every subject's copy of the query
                c, s = c.unsqueeze(1).expand(-1, S, -1, -1), s.unsqueeze(1).expand(-1, S, -1, -1)
            cos_parts_q.append(c); sin_parts_q.append(s)
            c, s = R.rotary_cos_sin(lab_k, fr)
            cos_parts_k.append(c); sin_parts_k.append(s)
        if cos_parts_q:
            hd = self.config.attention_head_dim
            cat = lambda parts: torch.cat(parts, -1).unsqueeze(-2)  # noqa: E731  [B, (S,) N, 1, d]
            cos_q, sin_q = (t.to(dtype) for t in R.full_rotary_tables(cat(cos_parts_q), cat(sin_parts_q), hd))
            cos_k, sin_k = (t.to(dtype) for t in R.full_rotary_tables(cat(cos_parts_k), cat(sin_parts_k), hd))
        else:
            cos_q = sin_q = cos_k = sin_k = None
        key_subject = tl.token_subject.to(device) if (per_subject_clock and cos_q is not None) else None
        return keys_in, tl.valid.to(device), cos_q, sin_q, cos_k, sin_k, attn_mask, key_subject, values_in

    def _video_position(self, grid: tuple[int, int, int], dtype) -> torch.Tensor:
        """[1, F*H*W, dim]: the absolute position embedding, resized (bilinear) to another grid, repeated per frame."""
        pos = self.video_position
        if tuple(pos.shape[-2:]) != tuple(grid[1:]):
            pos = F.interpolate(pos, size=grid[1:], mode="bilinear", align_corners=False)
        pos = (POSITION_SCALE * pos).flatten(2).transpose(1, 2)  # [1, H*W, dim], row-major like the tokens
        return pos.repeat(1, grid[0], 1).to(dtype)

    def _identity_keys(self, ref: ReferenceFeatures, token_subject: torch.Tensor, S: int, dtype) -> torch.Tensor:
        """[B, L, dim]: the projected mean of the last reference block's features over each caption token's subject."""
        feats = ref.features[-1]
        B = token_subject.shape[0]
        if feats.shape[0] != B:
            feats, subj = feats.repeat_interleave(B // feats.shape[0], 0), ref.token_subject.repeat_interleave(B // feats.shape[0], 0)
        else:
            subj = ref.token_subject
        # [B, R, S]: a reference's subject as a one-hot row; -1 (padding) and subjects past S give a zero row. Compared
        # against arange rather than F.one_hot, whose class count would be read off the data (a sync, a graph break)
        onehot = (subj.unsqueeze(-1) == torch.arange(S, device=subj.device)).to(feats.dtype)
        pooled = torch.einsum("brs,brd->bsd", onehot, feats) / onehot.sum(1).clamp_min(1.0).unsqueeze(-1)  # [B, S, dim]
        ident = self.timeline_identity(pooled.to(dtype))
        gathered = ident.gather(1, token_subject.clamp(0, S - 1).unsqueeze(-1).expand(-1, -1, ident.shape[-1]))
        return gathered * (token_subject >= 0).unsqueeze(-1).to(dtype)

    def _require_masked_backend(self, why: str) -> None:
        name = self.blocks[0].backend_name()
        if name in MASKLESS_BACKENDS:
            raise RuntimeError(
                f"attention backend {name!r} cannot take attention masks: {why}. Use 'native' (default) or 'xformers', "
                "or temporal_mode='ta_rope' with one timeline per batch."
            )

    def set_attention_backend(self, backend: str) -> None:
        """diffusers' backend switch, refused up front where masked binding could not run on it."""
        if str(backend) in MASKLESS_BACKENDS and self.config.use_timeline and self.config.temporal_mode == "attn_mask":
            raise RuntimeError(f"attention backend {backend!r} cannot take attention masks, which temporal_mode='attn_mask' needs; use 'native' or 'xformers'")
        super().set_attention_backend(backend)

    # ------------------------------------------------------------------------------------------
    # Forward
    # ------------------------------------------------------------------------------------------
    def forward(
        self,
        hidden_states: torch.Tensor,
        timestep: torch.Tensor,
        encoder_hidden_states: torch.Tensor,
        encoder_hidden_states_image: torch.Tensor | None = None,
        return_dict: bool = True,
        attention_kwargs: dict[str, Any] | None = None,
        *,
        reference_features: ReferenceFeatures | None = None,
        timeline: TimelineConditioning | None = None,
        subject_masks: torch.Tensor | None = None,
        references: tuple | None = None,
    ):
        """Like Wan's forward, plus:

        reference_features: from `encode_references` (compute once per generation, reuse every step);
        references: instead of reference_features, the arguments of `encode_references` (latents, subject,
        text, num_subjects): the branch then runs inside this forward. Training under FSDP needs that: a
        sharded module's parameters are gathered only inside its forward;
        timeline: a `TimelineConditioning`; subject_masks: [B, S, N] per-token subject probabilities that
        set the subject labels (ground truth in training, the previous step's prediction at inference;
        None = no binding yet). Returns `ReactIDTransformerOutput(sample, mask_logits [B, S, N])`.
        """
        if encoder_hidden_states_image is not None:
            raise ValueError("ReactIDTransformer is text-to-video: encoder_hidden_states_image is not supported")
        B, C, Fr, H, W = hidden_states.shape
        p_t, p_h, p_w = self.config.patch_size
        if Fr % p_t or H % p_h or W % p_w:
            raise ValueError(f"latent size {Fr}x{H}x{W} is not divisible by the patch size {self.config.patch_size}")
        grid = (Fr // p_t, H // p_h, W // p_w)
        rotary_emb = self.rope(hidden_states)
        x = self.patch_embedding(hidden_states).flatten(2).transpose(1, 2).contiguous()
        if hasattr(self, "video_position"):
            x = x + self._video_position(grid, x.dtype)

        if (self.config.velocity_skip or self.config.x0_channels_from) and timestep.ndim != 1:
            raise ValueError("velocity_skip and x0_channels_from need one timestep per sample")
        sigma = timestep.float() / 1000.0
        if timestep.ndim == 2:
            ts_seq_len = timestep.shape[1]
            timestep = timestep.flatten()
        else:
            ts_seq_len = None
        temb, timestep_proj, ctx, _ = self.condition_embedder(timestep, encoder_hidden_states, None, timestep_seq_len=ts_seq_len)
        timestep_proj = timestep_proj.unflatten(2 if ts_seq_len is not None else 1, (6, -1))

        ref_inputs = None
        if references is not None and reference_features is None and self.config.use_reference_branch:
            reference_features = self.encode_references(*references, block_kv=False)
        if reference_features is not None and self.config.use_reference_branch:
            if reference_features.features[0].shape[0] != B:
                reference_features = reference_features.repeat(B // reference_features.features[0].shape[0])
            ref_inputs = reference_features
        tl_inputs = None
        if timeline is not None and self.config.use_timeline:
            if timeline.embeds.shape[0] != B:
                timeline = timeline.repeat(B // timeline.embeds.shape[0])
            if subject_masks is not None and subject_masks.shape[0] != B:
                subject_masks = subject_masks.repeat_interleave(B // subject_masks.shape[0], 0)
            tl_inputs = self._timeline_inputs(timeline, grid, subject_masks, x.device, x.dtype, ref_inputs)

        if tl_inputs is not None and (tl_inputs[6] is not None or not bool(tl_inputs[1].all())):
            self._require_masked_backend("this timeline attention needs a mask (temporal_mode='attn_mask' or a padded batch)")

        n_ref = len(self.ref_blocks) if ref_inputs is not None else 0
        ref_assign = None  # reference_binding_bias: each token's bound subject, as the timeline attention uses it
        if ref_inputs is not None and subject_masks is not None and self.config.reference_binding_bias and self.config.use_subject_binding:
            if subject_masks.shape[0] != B:
                subject_masks = subject_masks.repeat_interleave(B // subject_masks.shape[0], 0)
            ref_assign = R.token_subject_assignment(subject_masks[:, : ref_inputs.num_subjects].to(x.device), self.config.mask_threshold)
        offset_d2 = None  # reference_offset_bias: [B, N, R], shared by every block
        if ref_assign is not None and self.config.reference_offset_bias:
            if ref_inputs.token_offset is None:
                raise ValueError("this model has reference_offset_bias: its reference features need token offsets "
                                 "(encode_references(..., reference_offsets=...), as the pipeline and the training loop give)")
            video_offsets = subject_token_offsets(subject_masks[:, : ref_inputs.num_subjects].to(x.device), grid)
            offset_d2 = offset_distances(video_offsets, ref_inputs.token_offset.to(x.device), ref_inputs.token_subject)
        def block_ref(j: int):  # what trunk block j (and a detail block after block j) reads of the references
            if ref_inputs is None:
                return None
            kv = ref_inputs.kv[j] if ref_inputs.kv is not None else ref_inputs.features[min(n_ref - 1, j * n_ref // len(self.blocks))]
            extra = ((ref_assign,) + ((offset_d2,) if offset_d2 is not None else ())) if ref_assign is not None else ()
            return (kv, ref_inputs.token_subject, ref_inputs.num_subjects) + extra

        mask_logits = []
        for j, block in enumerate(self.blocks):
            ref = block_ref(j)
            if torch.is_grad_enabled() and self.gradient_checkpointing:
                x, ml = self._gradient_checkpointing_func(block, x, ctx, timestep_proj, rotary_emb, ref, tl_inputs)
            else:
                x, ml = block(x, ctx, timestep_proj, rotary_emb, ref, tl_inputs)
            if ml is not None:
                mask_logits.append(ml)

        x_detail = None
        if hasattr(self, "detail_layers"):  # the x0 channels' own path (detail_blocks), from the trunk's last state
            first = self.config.x0_channels_from
            x_detail = x + self.detail_patch_embedding(hidden_states[:, first:].to(x.dtype)).flatten(2).transpose(1, 2)
            ref = block_ref(len(self.blocks) - 1)
            for block in self.detail_layers:
                x_detail, _ = block(x_detail, ctx, timestep_proj, rotary_emb, ref, tl_inputs)

        if temb.ndim == 3:
            shift, scale = (self.scale_shift_table.unsqueeze(0).to(temb.device) + temb.unsqueeze(2)).chunk(2, dim=2)
            shift, scale = shift.squeeze(2), scale.squeeze(2)
        else:
            shift, scale = (self.scale_shift_table.to(temb.device) + temb.unsqueeze(1)).chunk(2, dim=1)
        x = (self.norm_out(x.float()) * (1 + scale) + shift).type_as(x)
        x = self.proj_out(x)
        if x_detail is not None:  # added onto the x0 channels' rows (patch, channel; channel fastest)
            d = self.detail_proj_out((self.norm_out(x_detail.float()) * (1 + scale) + shift).type_as(x_detail))
            first, n_ch = self.config.x0_channels_from, x.shape[-1] // (p_t * p_h * p_w)
            x = x.unflatten(-1, (p_t * p_h * p_w, n_ch))
            x = torch.cat([x[..., :first], x[..., first:] + d.unflatten(-1, (p_t * p_h * p_w, n_ch - first))], -1).flatten(-2)
        x = x.reshape(B, *grid, p_t, p_h, p_w, -1).permute(0, 7, 1, 4, 2, 5, 3, 6)
        sample = x.flatten(6, 7).flatten(4, 5).flatten(2, 3)
        if self.config.velocity_skip:
            c_skip, c_out = velocity_skip_coefficients(sigma)
            sample = (c_skip.view(B, 1, 1, 1, 1) * hidden_states.float() + c_out.view(B, 1, 1, 1, 1) * sample.float()).type_as(sample)
        if self.config.x0_channels_from:
            sample = x0_channels_to_velocity(sample, hidden_states, sigma, self.config.x0_channels_from)

        logits = torch.stack(mask_logits, 0).mean(0).transpose(1, 2) if mask_logits else None  # [B, S, N]
        if not return_dict:
            return (sample, logits)
        return ReactIDTransformerOutput(sample=sample, mask_logits=logits)
