"""Concept pretraining of the small text encoder used by the sprite-world model.

Wan conditions on UMT5, which already knows that "slides to the left" and "moves left" mean the same and
that "left" is not "right". The sprite model cannot download it, and a randomly initialised byte-level
UMT5 barely separates its captions (nearest-neighbour action accuracy of pooled caption embeddings: 0.44
on the 54 sprite captions). The transformer would then have to learn the language from the diffusion
loss alone, which a CPU budget does not allow.

So the project pretrains its own small encoder, as it trains its own VAE: every valid token of a text
predicts the set of world concepts the text names (an action for a caption; colour, texture and shape for a
subject name; all of them plus the background for a scene prompt), through a linear head that is thrown
away afterwards. Token-level targets make every caption token carry its meaning, so the timeline
cross-attention reads the action whichever tokens it attends to. Batches are balanced over concepts, so the
54 captions weigh as much as the thousands of prompts.
"""

from __future__ import annotations

import json
import math
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F


def tokenize(tokenizer, texts: Sequence[str], max_length: int):
    return tokenizer(list(texts), padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")


def seen_texts(tokenizer, texts: Sequence[str], max_length: int) -> list[str]:
    """What the encoder actually reads of each text (long prompts are truncated at max_length tokens)."""
    ids = tokenize(tokenizer, texts, max_length).input_ids
    return [tokenizer.decode(row, skip_special_tokens=True) for row in ids]


def pretrain_text_encoder(encoder, tokenizer, texts: Sequence[str], concepts_fn: Callable[[str], Sequence[str]], *, steps: int,
                          lr: float = 3e-3, batch_size: int = 64, max_length: int = 32, seed: int = 0, log: Callable[[dict], None] | None = None) -> dict:
    """Train `encoder` (a UMT5EncoderModel) in place; returns summary figures. Texts naming no concept are
    left out of the loss (they still pass through the encoder at use)."""
    texts = sorted(set(texts))
    labels = [sorted(set(concepts_fn(t))) for t in seen_texts(tokenizer, texts, max_length)]
    keep = [i for i, ls in enumerate(labels) if ls]
    if not keep:
        raise ValueError("text pretraining: no text names a known concept")
    vocab = sorted({c for i in keep for c in labels[i]})
    col = {c: j for j, c in enumerate(vocab)}
    target = torch.zeros(len(texts), len(vocab))
    for i in keep:
        for c in labels[i]:
            target[i, col[c]] = 1.0
    tok = tokenize(tokenizer, texts, max_length)
    by_concept = [np.array([i for i in keep if target[i, j] > 0]) for j in range(len(vocab))]

    torch.manual_seed(seed)  # head init and the encoder's dropout
    rng = np.random.default_rng(seed)
    head = torch.nn.Linear(encoder.config.d_model, len(vocab))
    params = list(encoder.parameters()) + list(head.parameters())
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.0)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / 20) * 0.5 * (1 + math.cos(math.pi * min(s, steps) / steps)))
    encoder.train()
    t0, loss_v = time.time(), float("nan")
    for step in range(steps):
        # balanced over concepts: draw a concept, then a text that names it
        picks = rng.integers(0, len(vocab), batch_size)
        idx = torch.from_numpy(np.array([rng.choice(by_concept[j]) for j in picks]))
        mask = tok.attention_mask[idx]
        hidden = encoder(input_ids=tok.input_ids[idx], attention_mask=mask).last_hidden_state  # [B, L, D]
        logits = head(hidden)  # every token predicts its text's concepts
        per_tok = F.binary_cross_entropy_with_logits(logits, target[idx].unsqueeze(1).expand_as(logits), reduction="none").mean(-1)
        loss = (per_tok * mask).sum() / mask.sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        sched.step()
        loss_v = loss.item()
        if log is not None and (step % 50 == 0 or step == steps - 1):
            log({"event": "text_pretrain", "step": step + 1, "loss": round(loss_v, 5), "s": round(time.time() - t0, 1)})
    encoder.eval()
    return {"steps": steps, "loss": loss_v, "concepts": len(vocab), "texts": len(keep), "seconds": round(time.time() - t0, 1)}


@torch.no_grad()
def nearest_neighbour_accuracy(encoder, tokenizer, texts: Sequence[str], labels: Sequence[str], max_length: int = 32) -> float:
    """Fraction of texts whose nearest other text (cosine of mean-pooled embeddings, centred) has the same label:
    how well the encoder's outputs separate meanings (e.g. the sprite captions by action)."""
    tok = tokenize(tokenizer, texts, max_length)
    h = encoder(input_ids=tok.input_ids, attention_mask=tok.attention_mask).last_hidden_state
    m = tok.attention_mask.unsqueeze(-1).to(h.dtype)
    pooled = (h * m).sum(1) / m.sum(1)
    pooled = F.normalize(pooled - pooled.mean(0), dim=-1)  # an offset shared by every text carries no meaning
    sim = pooled @ pooled.T
    sim.fill_diagonal_(-2.0)
    lab = np.asarray(labels)
    return float((lab[sim.argmax(1).numpy()] == lab).mean())


def save_text_encoder(encoder, tokenizer, directory: str | Path, summary: dict | None = None) -> Path:
    """Encoder and tokenizer in one directory (what `text.checkpoint` loads)."""
    directory = Path(directory)
    tmp = directory.with_name(directory.name + ".tmp")
    encoder.save_pretrained(tmp)
    tokenizer.save_pretrained(tmp)
    if summary is not None:
        (tmp / "pretrain.json").write_text(json.dumps(summary, indent=2) + "\n")
    if directory.exists():
        import shutil

        shutil.rmtree(directory)
    tmp.replace(directory)  # atomic: a killed run never leaves a half-written encoder that looks complete
    return directory
