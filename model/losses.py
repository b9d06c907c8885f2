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


def flow_matching_loss(pred: torch.Tensor, noise: torch.Tensor, x0: torch.Tensor) -> torch.Tensor:
    return F.mse_loss(pred.float(), flow_matching_target(noise, x0).float())
