"""Tensors the transformer reads for the timeline and the references, built from timeline documents.

The transformer never sees JSON: the pipeline and the trainer turn timeline documents into a
`TimelineConditioning` (caption tokens + which subject/action each token belongs to + the spans in
latent frames) with `build_timeline_conditioning`, and reference images into latents tagged by subject.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch

from .timeline import Timeline, seconds_to_latent


@dataclass
class TimelineConditioning:
    """Timeline captions for a batch, all actions' tokens concatenated per sample.

    embeds [B, L, text_dim]; token_subject / token_action [B, L] (-1 on padding); valid [B, L];
    spans [B, S, K, 2] (start, end) in latent-frame units, sorted per subject; num_actions [B, S].
    """

    embeds: torch.Tensor
    token_subject: torch.Tensor
    token_action: torch.Tensor
    valid: torch.Tensor
    spans: torch.Tensor
    num_actions: torch.Tensor

    @property
    def num_subjects(self) -> int:
        return self.spans.shape[1]

    def to(self, device=None, dtype=None) -> "TimelineConditioning":
        return TimelineConditioning(
            self.embeds.to(device=device, dtype=dtype),
            self.token_subject.to(device),
            self.token_action.to(device),
            self.valid.to(device),
            self.spans.to(device),
            self.num_actions.to(device),
        )

    def dropped(self, drop: torch.Tensor | None = None) -> "TimelineConditioning":
        """The same layout with the captions of the samples in `drop` ([B] bool; None = all) removed: zero
        embeddings, no valid token, so those samples attend only to the timeline attention's null slot. The
        trainer's caption dropout and the pipeline's negative guidance branch both use this, so the
        unconditional prediction at inference is the one that was trained."""
        B = self.embeds.shape[0]
        keep = torch.zeros(B, dtype=torch.bool, device=self.valid.device) if drop is None else ~drop.to(self.valid.device)
        return TimelineConditioning(self.embeds * keep.view(B, 1, 1).to(self.embeds.dtype), self.token_subject, self.token_action,
                                    self.valid & keep.view(B, 1), self.spans, self.num_actions)

    def repeat(self, n: int) -> "TimelineConditioning":
        r = lambda t: t.repeat_interleave(n, dim=0)  # noqa: E731
        return TimelineConditioning(r(self.embeds), r(self.token_subject), r(self.token_action), r(self.valid), r(self.spans), r(self.num_actions))


# encode_fn(list of captions) -> (embeds [n, Lmax, D], mask [n, Lmax] bool)
EncodeFn = Callable[[list[str]], tuple[torch.Tensor, torch.Tensor]]


def build_timeline_conditioning(timelines: list[Timeline], encode_fn: EncodeFn, max_subjects: int | None = None, time_offset: float = 0.0) -> TimelineConditioning:
    """Encode every action caption separately (paper: each sub-action caption is its own text) and
    lay the valid tokens end to end; spans are converted to latent-frame units.

    `time_offset` (seconds) shifts all spans, for a segment whose latent frames start later.
    """
    B = len(timelines)
    S = max(len(t.subjects) for t in timelines)
    if max_subjects is not None and S > max_subjects:
        raise ValueError(f"this model takes at most {max_subjects} subjects, the timeline has {S}")
    K = max(1, max((len(s.actions) for t in timelines for s in t.subjects), default=1))

    captions: list[str] = []
    owners: list[tuple[int, int, int]] = []  # (batch, subject, action) for each caption
    spans = torch.zeros(B, S, K, 2, dtype=torch.float32)
    num_actions = torch.zeros(B, S, dtype=torch.long)
    for b, tl in enumerate(timelines):
        for s, subj in enumerate(tl.subjects):
            acts = subj.sorted_actions()
            num_actions[b, s] = len(acts)
            for k, a in enumerate(acts):
                spans[b, s, k, 0] = seconds_to_latent(a.start - time_offset, tl.fps)
                spans[b, s, k, 1] = seconds_to_latent(a.end - time_offset, tl.fps)
                captions.append(a.text)
                owners.append((b, s, k))

    if captions:
        emb, mask = encode_fn(captions)
        mask = mask.bool()
    else:
        emb, mask = None, None
    per_sample: list[list[tuple[torch.Tensor, int, int]]] = [[] for _ in range(B)]
    for i, (b, s, k) in enumerate(owners):
        per_sample[b].append((emb[i][mask[i]], s, k))
    L = max([sum(t.shape[0] for t, _, _ in items) for items in per_sample] + [1])
    D = emb.shape[-1] if emb is not None else 1
    dtype = emb.dtype if emb is not None else torch.float32
    embeds = torch.zeros(B, L, D, dtype=dtype)
    token_subject = torch.full((B, L), -1, dtype=torch.long)
    token_action = torch.full((B, L), -1, dtype=torch.long)
    for b, items in enumerate(per_sample):
        pos = 0
        for tok, s, k in items:
            n = tok.shape[0]
            embeds[b, pos : pos + n] = tok
            token_subject[b, pos : pos + n] = s
            token_action[b, pos : pos + n] = k
            pos += n
    return TimelineConditioning(embeds, token_subject, token_action, token_subject >= 0, spans, num_actions)


def masks_to_tokens(masks: torch.Tensor, patch_size: tuple[int, int, int]) -> torch.Tensor:
    """Subject masks at latent resolution [B, S, F', H', W'] -> per-token probabilities [B, S, N]
    (average pooled over each patch; token order matches the transformer's flatten(2))."""
    pt, ph, pw = patch_size
    B, S, F, H, W = masks.shape
    pooled = torch.nn.functional.avg_pool3d(masks.float().reshape(B * S, 1, F, H, W), (pt, ph, pw))
    return pooled.reshape(B, S, -1)


def tokens_to_masks(token_probs: torch.Tensor, grid: tuple[int, int, int]) -> torch.Tensor:
    """[B, S, N] -> [B, S, F', H', W'] on the token grid."""
    B, S, _ = token_probs.shape
    return token_probs.reshape(B, S, *grid)
