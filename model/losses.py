"""Training losses: flow matching (Wan's objective) and the focal loss on predicted subject masks."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def focal_loss(logits: torch.Tensor, targets: torch.Tensor, alpha: float = 0.25, gamma: float = 2.0, valid: torch.Tensor | None = None) -> torch.Tensor:
    """Binary focal loss (Lin et al. 2017): mean over valid elements of
    -alpha_t * (1 - p_t)^gamma * log(p_t), p_t = p if y = 1 else 1 - p, alpha_t = alpha if y = 1 else 1 - alpha.
    `targets` may be soft (patch-averaged masks); `valid` (broadcastable, bool) drops padded subjects."""
    targets = targets.to(logits.dtype)
    ce = F.binary_cross_entropy_with_logits(logits, targets, reduction="none")  # = -log(p_t) for hard targets
    p = torch.sigmoid(logits)
    p_t = p * targets + (1 - p) * (1 - targets)
    alpha_t = alpha * targets + (1 - alpha) * (1 - targets)
    loss = alpha_t * (1 - p_t).pow(gamma) * ce
    if valid is not None:
        w = valid.to(loss.dtype).expand_as(loss)
        return (loss * w).sum() / w.sum().clamp_min(1.0)
    return loss.mean()


def flow_matching_target(noise: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    """Velocity target of rectified flow, x_t = (1 - s) x0 + s * noise: v = noise - x0."""
    return noise - x0


def add_flow_noise(x0: torch.Tensor, noise: torch.Tensor, sigma: torch.Tensor) -> torch.Tensor:
    s = sigma.view(-1, *([1] * (x0.ndim - 1))).to(x0.dtype)
    return (1 - s) * x0 + s * noise


def flow_matching_loss(pred: torch.Tensor, noise: torch.Tensor, x0: torch.Tensor, weight: torch.Tensor | None = None) -> torch.Tensor:
    """MSE to the velocity target; `weight` (broadcastable to the latents, >= 0) makes it a weighted mean."""
    se = (pred.float() - flow_matching_target(noise, x0).float()).pow(2)
    if weight is None:
        return se.mean()
    w = weight.to(se.dtype).expand_as(se)
    return (se * w).sum() / w.sum().clamp_min(1e-12)


def temporal_difference_loss(pred: torch.Tensor, noise: torch.Tensor, x0: torch.Tensor, weight: torch.Tensor | None = None,
                             skip_first: bool = True) -> torch.Tensor:
    """Mean square of the velocity error's change between neighbouring latent frames: the part of the error that
    differs from frame to frame (a subject whose outline wobbles), where the flow loss counts a steady error and a
    flickering one alike. [B, C, F, H, W]; `weight` as for flow_matching_loss (taken at the later frame of each pair);
    skip_first leaves out the pair with the lone first latent frame, which is drawn apart from the rest."""
    e = pred.float() - flow_matching_target(noise, x0).float()
    a = 1 if skip_first else 0
    if e.shape[2] - a < 2:
        raise ValueError(f"a temporal difference needs two latent frames after the first, got {e.shape[2]} frames")
    d = (e[:, :, a + 1:] - e[:, :, a:-1]).pow(2)
    if weight is None:
        return d.mean()
    w = weight.to(d.dtype).expand_as(e)[:, :, a + 1:]
    return (d * w).sum() / w.sum().clamp_min(1e-12)


def first_frame_loss_weight(weight: torch.Tensor | None, latents_shape, gain: float) -> torch.Tensor | None:
    """`weight` (or ones, broadcastable to [B, C, F, H, W] latents) with the lone first latent frame's share
    multiplied by `gain`. That frame is 1 of F latent frames (1/9 of the tokens of a 4 s clip at 8 fps) and has its
    own latent space (model/framevae.py first_frame 'own'), so the plain mean leaves it drawn worst: the shipped
    model drew its sprites 30% smaller there than in the frames after, and the sprite benchmark read a move that
    starts at frame 0 as 'grow'. gain 1: `weight` unchanged."""
    if gain == 1.0:
        return weight
    B, C, F, H, W = latents_shape
    w = torch.ones(1, 1, F, 1, 1) if weight is None else weight.float()
    w = w.expand(*w.shape[:2], F, *w.shape[3:]).clone()
    w[:, :, 0] = w[:, :, 0] * gain
    return w


X0_SIGMA_MIN = 1e-3  # x0_channels_from: the noise level a division by sigma is floored at (model and loss alike)


def x0_channel_loss_weight(sigma: torch.Tensor, channels: int, first: int) -> torch.Tensor:
    """[B, C, 1, 1, 1] flow-loss weight for a model with x0_channels_from = `first`: 1 on the velocity channels,
    sigma^2 on the x0 ones. Their velocity error is (x0_hat - x0) / sigma, so this makes their loss x0's squared error,
    even across noise levels, where the plain velocity loss would weigh the nearly clean samples by 1 / sigma^2."""
    B = sigma.shape[0]
    w = torch.ones(B, channels, 1, 1, 1)
    w[:, first:] = sigma.float().clamp_min(X0_SIGMA_MIN).pow(2).view(B, 1, 1, 1, 1).cpu()
    return w


def channel_loss_weight(latents_std, power: float) -> torch.Tensor:
    """Per-channel flow loss weight [1, C, 1, 1, 1] = std_c ** power, scaled to mean 1.

    The model works on latents normalised to unit variance per channel, so a plain MSE weighs an error in every channel
    alike; through a linear decoder (the PCA latent) an error in channel c is drawn std_c times larger. Power 2 is the
    loss the decoder's pixels see; power 1 is between."""
    std = torch.as_tensor(latents_std, dtype=torch.float32)
    if std.ndim != 1 or not bool((std > 0).all()):
        raise ValueError(f"latents_std must be positive numbers, one per channel, got {latents_std!r}")
    w = std.pow(float(power))
    return (w / w.mean()).view(1, -1, 1, 1, 1)


def foreground_loss_weight(token_masks: torch.Tensor, grid: tuple[int, int, int], patch: tuple[int, int, int], strength: float,
                           time_dilation: int = 0) -> torch.Tensor:
    """Per-latent weight 1 + strength * (share of the token covered by any subject).

    token_masks [B, S, N] (N = F' * Hp * Wp patch tokens) -> [B, 1, F'*pt, Hp*ph, Wp*pw]. Subjects cover a
    small share of a frame, so under a plain mean the background's (often unpredictable) texture
    dominates the gradient; this keeps every latent in the loss and tilts it towards the subjects.
    `time_dilation` k > 0 takes each token's coverage as its maximum over latent frames t-k..t+k: the background a
    sprite has just left (or is about to enter) weighs as much as the sprite, so a trail or a smear left behind a
    moving sprite, which the scorer reads as growing, costs what a wrongly drawn sprite does."""
    B = token_masks.shape[0]
    cover = token_masks.float().amax(1).clamp(0, 1).view(B, 1, *grid)
    if time_dilation > 0:
        k = int(time_dilation)
        cover = torch.nn.functional.max_pool3d(cover, kernel_size=(2 * k + 1, 1, 1), stride=1, padding=(k, 0, 0))
    for axis, rep in zip((2, 3, 4), patch):
        if rep > 1:
            cover = cover.repeat_interleave(rep, dim=axis)
    return 1.0 + strength * cover
