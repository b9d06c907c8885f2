"""Rotary positions for the timeline cross-attention (paper §3.3.2, DESIGN.md §4).

Two rotary coordinates bind a video token to timeline caption tokens:
- time: temporally-adaptive RoPE (TA-RoPE) rescales each subject's real time so that every
  sub-action spans the same length T; vanilla RoPE uses the raw latent-frame index instead;
- subject label: tokens inside subject i's mask carry alpha + beta*i, background 0, and the caption
  tokens of subject i carry the same value, so a subject's actions bind to its own tokens.

All positions are floats; the rotation is the interleaved-pair form Wan uses.
"""

from __future__ import annotations

import torch

TEMPORAL_MODES = ("ta_rope", "vanilla_rope", "attn_mask")
LABEL_STRATEGIES = ("uniform", "adaptive")


def rope_frequencies(dim: int, theta: float, device=None) -> torch.Tensor:
    """Angular frequencies for `dim` rotary channels (dim/2 pairs)."""
    if dim % 2:
        raise ValueError(f"rotary dim must be even, got {dim}")
    if dim == 0:
        return torch.zeros(0, device=device, dtype=torch.float64)
    return 1.0 / (theta ** (torch.arange(0, dim, 2, device=device, dtype=torch.float64) / dim))


def rotary_cos_sin(positions: torch.Tensor, freqs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """positions [...], freqs [d/2] -> cos, sin [..., d] (each angle repeated for its pair)."""
    angles = positions.to(torch.float64).unsqueeze(-1) * freqs
    angles = angles.repeat_interleave(2, dim=-1)
    return angles.cos(), angles.sin()


def apply_rotary(x: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> torch.Tensor:
    """Rotate interleaved pairs of the last dim of x ([B, N, H, d]) by cos/sin ([B, N, 1, d])."""
    x1, x2 = x.float().unflatten(-1, (-1, 2)).unbind(-1)
    c, s = cos[..., 0::2].float(), sin[..., 1::2].float()
    out = torch.stack((x1 * c - x2 * s, x1 * s + x2 * c), dim=-1).flatten(-2)
    return out.type_as(x)


def full_rotary_tables(cos: torch.Tensor, sin: torch.Tensor, head_dim: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Tables for `apply_rotary_fast` over a whole head: cos/sin [..., d] for the first d channels are
    padded to head_dim with (1, 0) and sin gets the pair signs folded in, so rotating is two multiplies
    and one add instead of slicing, stacking and concatenating per block."""
    d = cos.shape[-1]
    signs = torch.tensor([-1.0, 1.0], dtype=sin.dtype, device=sin.device).repeat(d // 2)
    pad = head_dim - d
    cos_full = torch.cat([cos, torch.ones(*cos.shape[:-1], pad, dtype=cos.dtype, device=cos.device)], -1)
    sin_full = torch.cat([sin * signs, torch.zeros(*sin.shape[:-1], pad, dtype=sin.dtype, device=sin.device)], -1)
    return cos_full, sin_full


def apply_rotary_fast(x: torch.Tensor, cos_full: torch.Tensor, sin_full: torch.Tensor) -> torch.Tensor:
    """Same result as `apply_rotary` on the first d channels (identity on the rest), with tables from
    `full_rotary_tables`."""
    swapped = x.unflatten(-1, (-1, 2)).flip(-1).flatten(-2)  # (x1, x2) -> (x2, x1)
    return (x * cos_full + swapped * sin_full).type_as(x)


def ta_rope_positions(frames: torch.Tensor, spans: torch.Tensor, num_actions: torch.Tensor, T: float) -> torch.Tensor:
    """Temporally-adaptive time of each latent frame under each subject's timeline.

    frames: [F] latent-frame coordinates; spans: [B, S, K, 2] (start, end) in latent-frame units,
    sorted per subject; num_actions: [B, S]. Returns [B, S, F]: a frame inside action k maps to
    k*T + T*(f - start_k)/(end_k - start_k); a frame in a gap or after the last action holds the
    position of the preceding boundary ((k+1)*T), a frame before the first action holds 0.
    """
    B, S, K, _ = spans.shape
    f = frames.to(torch.float64).view(1, 1, 1, -1)  # [1,1,1,F]
    start = spans[..., 0].to(torch.float64).unsqueeze(-1)  # [B,S,K,1]
    end = spans[..., 1].to(torch.float64).unsqueeze(-1)
    k_idx = torch.arange(K, device=spans.device, dtype=torch.float64).view(1, 1, K, 1)
    valid = (k_idx < num_actions.to(torch.float64).view(B, S, 1, 1))
    length = (end - start).clamp_min(1e-6)
    frac = ((f - start) / length).clamp(0.0, 1.0)
    # Each action contributes its clamped fraction: frames past action k have completed it (adds T),
    # frames inside add a partial T. Summing over actions gives the piecewise-linear map.
    contrib = torch.where(valid, frac * T, torch.zeros_like(frac))
    return contrib.sum(dim=2)  # [B,S,F]


def vanilla_positions(frames: torch.Tensor, batch: int, subjects: int) -> torch.Tensor:
    """Raw latent-frame index as the time coordinate (no rescaling): [B, S, F]."""
    return frames.to(torch.float64).view(1, 1, -1).expand(batch, subjects, -1)


def caption_positions(spans: torch.Tensor, token_subject: torch.Tensor, token_action: torch.Tensor, mode: str, T: float) -> torch.Tensor:
    """Time coordinate of each caption token [B, L]: TA-RoPE puts action k at k*T + T/2,
    vanilla RoPE at the centre of its span in latent frames."""
    if mode == "ta_rope":
        return token_action.clamp_min(0).to(torch.float64) * T + T / 2
    B = spans.shape[0]
    s = token_subject.clamp_min(0)
    k = token_action.clamp_min(0)
    b = torch.arange(B, device=spans.device).view(B, 1).expand_as(s)
    span = spans[b, s, k].to(torch.float64)  # [B, L, 2]
    return span.mean(-1)


def label_values(num_subjects: int, alpha: float, beta: float, device=None) -> torch.Tensor:
    """Label of subject i (0-based) = alpha + beta * i (paper: (alpha, beta) = (2, 20))."""
    return alpha + beta * torch.arange(num_subjects, device=device, dtype=torch.float64)


def token_labels(subject_probs: torch.Tensor | None, alpha: float, beta: float, strategy: str, threshold: float = 0.5) -> torch.Tensor | None:
    """Per-video-token label from subject mask probabilities [B, S, N] (None -> no binding).

    uniform: every token inside subject i's mask (its most likely subject, prob > threshold) gets
    alpha + beta*i; adaptive: the same value scaled by the token's probability. Background: 0.
    """
    if subject_probs is None:
        return None
    B, S, N = subject_probs.shape
    values = label_values(S, alpha, beta, subject_probs.device)
    best_p, best_s = subject_probs.to(torch.float64).max(dim=1)  # [B, N]
    inside = best_p > threshold
    lab = values[best_s]
    if strategy == "adaptive":
        lab = lab * best_p
    elif strategy != "uniform":
        raise ValueError(f"label strategy must be one of {LABEL_STRATEGIES}, got {strategy!r}")
    return torch.where(inside, lab, torch.zeros_like(lab))


def token_subject_assignment(subject_probs: torch.Tensor | None, threshold: float = 0.5) -> torch.Tensor | None:
    """Hard subject index per video token [B, N] (-1 = background)."""
    if subject_probs is None:
        return None
    best_p, best_s = subject_probs.max(dim=1)
    return torch.where(best_p > threshold, best_s, torch.full_like(best_s, -1))


def binding_recall(subject_probs: torch.Tensor, true_cover: torch.Tensor, threshold: float, majority: float = 0.5) -> float | None:
    """Share of true subject tokens (a subject covers > `majority` of the token) whose assigned label
    (token_subject_assignment at `threshold`) is that subject: how much of each subject the binding reaches.
    subject_probs / true_cover [B, S, N]; padded subjects have zero cover. None when no token qualifies."""
    assign = token_subject_assignment(subject_probs, threshold)  # [B, N]
    best_c, best_s = true_cover.max(dim=1)
    true = best_c > majority
    if not bool(true.any()):
        return None
    return float((assign[true] == best_s[true]).float().mean())
