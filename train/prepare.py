"""Turn clips into the frozen training cache: VAE latents, reference latents, token-level subject
masks, text embeddings and difficulty scores. Computed once per run directory (`cache.pt`)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model import latents as latent_scale
from model.references import reference_to_array
from model.timeline import TIME_COMPRESSION
from PIL import Image

from .config import TrainConfig
from .loop import build_text_encoder, encode_texts, log_line


def sprite_clips(cfg: TrainConfig):
    from .sprites import WorldConfig, generate_clip

    world = WorldConfig.from_kwargs(height=cfg.height, width=cfg.width, **cfg.data.world)
    return [generate_clip(cfg.data.seed + i, world) for i in range(cfg.data.num_clips)]


def dataset_clips(cfg: TrainConfig):
    """Clips from a dataset directory (docs/DATASET.md); corrupt samples are reported and skipped."""
    from .dataset import ReactIDDataset

    ds = ReactIDDataset(cfg.data.path)
    return ds.clips()


def token_masks(masks: np.ndarray, n_latent: int, grid_hw: tuple[int, int]) -> torch.Tensor:
    """bool [S, F, H, W] video masks -> [S, N] fraction of each token's pixels inside the subject
    (latent frame f <-> video frame 4f)."""
    idx = [min(f * TIME_COMPRESSION, masks.shape[1] - 1) for f in range(n_latent)]
    m = torch.from_numpy(masks[:, idx].astype(np.float32))  # [S, F', H, W]
    m = F.adaptive_avg_pool2d(m, grid_hw)
    return m.reshape(m.shape[0], -1)


@torch.no_grad()
def build_cache(cfg: TrainConfig, vae, log_path: Path | None = None) -> dict:
    from .difficulty import clip_difficulty

    t0 = time.time()
    clips = sprite_clips(cfg) if cfg.data.source == "sprites" else dataset_clips(cfg)
    log_line(log_path, {"event": "clips", "n": len(clips), "s": round(time.time() - t0, 1)})
    text_encoder, tokenizer = build_text_encoder(cfg)
    ref_size = min(cfg.height, cfg.width)
    lat_list, intra_list, inter_list, mask_list = [], [], [], []
    timelines, prompts, names, nsub, d_intra, d_inter = [], [], [], [], [], []
    texts = {""}
    def encode(video, reference=False):  # [B, 3, F, H, W] in [-1, 1] -> normalised latents (model/latents.py)
        return latent_scale.normalise(vae.encode(video).latent_dist.mode(), vae.config, video=not reference)

    for i, clip in enumerate(clips):
        video = torch.from_numpy(clip.frames).float().div(127.5).sub(1).permute(3, 0, 1, 2).unsqueeze(0)
        lat = encode(video)[0]
        lat_list.append(lat.half())
        def refs(images):
            arr = np.stack([reference_to_array(Image.fromarray(im[0] if isinstance(im, list) else im), ref_size) for im in images])
            return encode(torch.from_numpy(arr).unsqueeze(2), reference=True)[:, :, 0].half()  # [S, z, h, w]
        intra_list.append(refs([r[0] for r in clip.references_intra]))
        inter_list.append(refs([r[0] for r in clip.references_inter]))
        ph, pw = cfg.model.patch_size[1:]
        grid = (lat.shape[2] // ph, lat.shape[3] // pw)
        mask_list.append(token_masks(clip.masks, lat.shape[1], grid).half())
        tl = clip.timeline
        timelines.append(tl.to_dict())
        prompts.append(tl.prompt)
        names.append([s.name for s in tl.subjects])
        nsub.append(len(tl.subjects))
        texts.update([tl.prompt] + [s.name for s in tl.subjects] + [a.text for s in tl.subjects for a in s.actions])
        diff = clip_difficulty(clip, weights=tuple(cfg.curriculum.lambdas), stride=4)
        d_intra.append(diff.overall_intra)
        d_inter.append(diff.overall_inter if diff.overall_inter is not None else diff.overall_intra + cfg.curriculum.lambdas[2])
        if i % 100 == 0:
            log_line(log_path, {"event": "encode", "done": i, "of": len(clips), "s": round(time.time() - t0, 1)})
    text = encode_texts(text_encoder, tokenizer, sorted(texts), cfg.text.max_length)
    return {
        "latents": torch.stack(lat_list), "ref_intra": intra_list, "ref_inter": inter_list, "masks": mask_list,
        "timelines": timelines, "prompts": prompts, "names": names, "num_subjects": nsub, "text": text,
        "difficulty_intra": np.asarray(d_intra), "difficulty_inter": np.asarray(d_inter),
    }


def load_or_build_cache(cfg: TrainConfig, vae, log_path: Path | None = None) -> dict:
    path = Path(cfg.output_dir) / "cache.pt"
    if path.is_file():
        cache = torch.load(path, map_location="cpu", weights_only=False)
    else:
        cache = build_cache(cfg, vae, log_path)
        tmp = path.with_suffix(".tmp")
        torch.save(cache, tmp)
        tmp.replace(path)
    cache["latents"] = cache["latents"].float()
    cache["ref_intra"] = [r.float() for r in cache["ref_intra"]]
    cache["ref_inter"] = [r.float() for r in cache["ref_inter"]]
    return cache
