"""Held-out flow-matching loss of a pipeline on sprite clips, with each clip's own conditioning or with
another clip's references or timeline swapped in: how much a model *uses* each input. A model that
ignored its timeline would score the same with another scene's; the ratio is a cheap signal long before
generated clips follow the timeline (benchmarks/bench_sprite.py sensitivity, tests/test_default_model.py)."""

from __future__ import annotations

import numpy as np
import torch

from model.conditioning import build_timeline_conditioning
from model.losses import add_flow_noise, flow_matching_loss

from .prepare import token_masks


def own_references(clip) -> dict:
    return {s.id: [clip.references_intra[k][0]] for k, s in enumerate(clip.timeline.subjects)}


@torch.no_grad()
def held_out_loss(pipe, clips, refs_from=None, timeline_from=None, sigmas=(0.3, 0.6), per_clip=False, seed: int = 0, binding: str = "predicted"):
    """Mean held-out flow-matching loss; `refs_from` / `timeline_from` (clip lists, one per clip) swap in
    another scene's references or timeline. `binding` sets the subject masks behind the binding labels:
    'predicted' (the model's own from the same noisy input, what inference has), 'ground_truth' (the
    clip's masks: they reveal every subject's path, so a model can score well here while ignoring its
    timeline) or 'none'. The noise is drawn from `seed`, so calls that differ only in the swap see the
    same noise."""
    if binding not in ("predicted", "ground_truth", "none"):
        raise ValueError(f"binding must be 'predicted', 'ground_truth' or 'none', got {binding!r}")
    losses = []
    g = torch.Generator().manual_seed(seed)
    for i, c in enumerate(clips):
        x0, prompt, feats, tl = clip_conditioning(pipe, c, refs_from=refs_from[i] if refs_from else None,
                                                  timeline_from=timeline_from[i] if timeline_from else None)
        ph, pw = pipe.transformer.config.patch_size[1:]
        masks = token_masks(c.masks, x0.shape[2], (x0.shape[3] // ph, x0.shape[4] // pw))[None]
        clip_losses = []
        for sigma in sigmas:
            noise = torch.randn(x0.shape, generator=g)
            x_t = add_flow_noise(x0, noise, torch.tensor([sigma]))
            t = torch.tensor([sigma * 1000])
            if binding == "predicted":
                pred = predict_own_binding(pipe, x_t, t, prompt, feats, tl)
            else:
                bind = masks if binding == "ground_truth" else None
                pred = pipe.transformer(x_t, t, prompt, reference_features=feats, timeline=tl, subject_masks=bind).sample
            clip_losses.append(flow_matching_loss(pred, noise, x0).item())
        losses.append(float(np.mean(clip_losses)))
    return losses if per_clip else float(np.mean(losses))


def conditioning_sensitivity(pipe, clips) -> dict:
    """Loss ratios with the next clip's references (σ 0.3/0.6) and timeline (σ 0.5/0.9, where motion is
    decided) over the clip's own; per clip and on average. The partner is the next clip with as many subjects
    (clips without one are left out), so a swap never leaves a subject without references or actions."""
    def partner(i):
        n = len(clips[i].timeline.subjects)
        for d in range(1, len(clips)):
            j = (i + d) % len(clips)
            if len(clips[j].timeline.subjects) == n:
                return j
        return None

    pairs = [(i, partner(i)) for i in range(len(clips))]
    pairs = [(i, j) for i, j in pairs if j is not None]
    if not pairs:
        raise ValueError("conditioning sensitivity needs at least two clips with the same number of subjects")
    other = [clips[j] for _, j in pairs]
    clips = [clips[i] for i, _ in pairs]
    own_lo = held_out_loss(pipe, clips, per_clip=True)
    refs = held_out_loss(pipe, clips, refs_from=other, per_clip=True)
    own_hi = held_out_loss(pipe, clips, sigmas=(0.5, 0.9), per_clip=True)
    tl = held_out_loss(pipe, clips, timeline_from=other, sigmas=(0.5, 0.9), per_clip=True)
    return {
        "own_loss": float(np.mean(own_lo)), "own_loss_high_sigma": float(np.mean(own_hi)),
        "refs_ratio": float(np.mean(refs) / np.mean(own_lo)), "refs_ratio_min": float(min(r / o for r, o in zip(refs, own_lo))),
        "timeline_ratio": float(np.mean(tl) / np.mean(own_hi)), "timeline_ratio_min": float(min(t / o for t, o in zip(tl, own_hi))),
        "per_clip": {"own": own_lo, "refs": refs, "own_high_sigma": own_hi, "timeline": tl},
    }


def clip_conditioning(pipe, clip, refs_from=None, timeline_from=None):
    """A clip's clean latent and the conditioning inference would give it: (x0, prompt, reference features, timeline).
    `refs_from` / `timeline_from` (another clip with as many subjects) swap in that clip's references (subject by
    subject, in order) or timeline; the prompt stays the clip's own."""
    video = torch.from_numpy(clip.frames).float().div(127.5).sub(1).permute(3, 0, 1, 2)[None]
    x0 = pipe.encode_video(video)
    rc, tc = refs_from or clip, timeline_from or clip
    own = own_references(rc)
    images = pipe.prepare_references(clip.timeline, {s.id: own[r.id] for s, r in zip(clip.timeline.subjects, rc.timeline.subjects)})
    feats = pipe.encode_reference_features(clip.timeline, images, pipe._reference_size(*clip.frames.shape[1:3]))
    tl = build_timeline_conditioning([tc.timeline], lambda caps: pipe.encode_text(caps, max_length=pipe.config.caption_max_length))
    prompt, _ = pipe.encode_text([clip.timeline.prompt])
    return x0, prompt, feats, tl


def predict_own_binding(pipe, x_t, t, prompt, feats, tl):
    """The velocity with the model's own binding from the same noisy input, as at inference."""
    logits = pipe.transformer(x_t, t, prompt, reference_features=feats, timeline=tl).mask_logits
    bind = None if logits is None else torch.sigmoid(logits.float())
    return pipe.transformer(x_t, t, prompt, reference_features=feats, timeline=tl, subject_masks=bind).sample


def x0_channels_of(pipe_or_transformer) -> int:
    """The first channel a model reads as a clean-latent guess (model.reactid.x0_channels_from); refuses a model without."""
    tr = getattr(pipe_or_transformer, "transformer", pipe_or_transformer)
    first = int(getattr(tr.config, "x0_channels_from", 0) or 0)
    if not first:
        raise ValueError("the model has no x0 channels (model.reactid.x0_channels_from is 0)")
    return first


@torch.no_grad()
def x0_channel_share(pipe, clips, sigmas=(0.2, 0.5, 0.8), seed: int = 0) -> dict:
    """For a model whose channels from `x0_channels_from` on predict the clean latent (a latent grown wider, whose new
    channels start at their mean): per noise level, their held-out squared error over their energy (the error of
    guessing 0). 1.0: they have learned nothing; below 1: they draw detail the old channels cannot. Clips' own
    conditioning and the model's own binding, as at inference."""
    first = x0_channels_of(pipe)
    g = torch.Generator().manual_seed(seed)
    err = {s: 0.0 for s in sigmas}
    energy = 0.0
    for c in clips:
        x0, prompt, feats, tl = clip_conditioning(pipe, c)
        energy += float(x0[:, first:].float().pow(2).mean())
        for sigma in sigmas:
            noise = torch.randn(x0.shape, generator=g)
            x_t = add_flow_noise(x0, noise, torch.tensor([sigma]))
            v = predict_own_binding(pipe, x_t, torch.tensor([sigma * 1000]), prompt, feats, tl)
            x0_hat = x_t[:, first:].float() - sigma * v[:, first:].float()
            err[sigma] += float((x0_hat - x0[:, first:].float()).pow(2).mean())
    return {"energy": energy / len(clips), **{f"share@{s}": err[s] / energy for s in sigmas}}
