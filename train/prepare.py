"""Turn clips into the frozen training cache: VAE latents, reference latents, token-level subject
masks, text embeddings and difficulty scores. Computed once per run directory (`cache.pt`)."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model import latents as latent_scale
from model.references import reference_to_array, reference_token_offsets
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


def reference_side(cfg: TrainConfig) -> int:
    """The side references are encoded at (data.reference_size, 0 = the frame's shorter side)."""
    return cfg.data.reference_size or min(cfg.height, cfg.width)


def _encode_clip(clip, vae, cfg: TrainConfig) -> dict:
    """One clip's share of the cache: half-precision latents, reference latents and token masks, its timeline and
    texts, and its difficulty scores."""
    from .difficulty import clip_difficulty

    ref_size = reference_side(cfg)

    def encode(video, reference=False):  # [B, 3, F, H, W] in [-1, 1] -> normalised latents (model/latents.py)
        return latent_scale.normalise(vae.encode(video).latent_dist.mode(), vae.config, video=not reference)

    def refs(images):
        arr = np.stack([reference_to_array(Image.fromarray(im[0] if isinstance(im, list) else im), ref_size) for im in images])
        return encode(torch.from_numpy(arr).unsqueeze(2), reference=True)[:, :, 0].half()  # [S, z, h, w]

    video = torch.from_numpy(clip.frames).float().div(127.5).sub(1).permute(3, 0, 1, 2).unsqueeze(0)
    lat = encode(video)[0]
    ph, pw = cfg.model.patch_size[1:]
    grid = (lat.shape[2] // ph, lat.shape[3] // pw)
    tl = clip.timeline
    diff = clip_difficulty(clip, weights=tuple(cfg.curriculum.lambdas), stride=4)
    return {
        "latent": lat.half(), "ref_intra": refs([r[0] for r in clip.references_intra]),
        "ref_inter": refs([r[0] for r in clip.references_inter]), "mask": token_masks(clip.masks, lat.shape[1], grid).half(),
        "timeline": tl.to_dict(), "prompt": tl.prompt, "names": [s.name for s in tl.subjects], "num_subjects": len(tl.subjects),
        "texts": [tl.prompt] + [s.name for s in tl.subjects] + [a.text for s in tl.subjects for a in s.actions],
        "d_intra": diff.overall_intra,
        "d_inter": diff.overall_inter if diff.overall_inter is not None else diff.overall_intra + cfg.curriculum.lambdas[2],
    }


_WORKER: dict = {}  # what a forked cache worker inherits: the config and the VAE


@torch.no_grad()
def _encode_sprite_range(bounds: tuple[int, int]) -> list[dict]:
    """A worker's slice of the sprite clips, rendered and encoded; tensors travel back as numpy arrays (torch's own
    pickling would hand each one over as a shared-memory file, and a cache has tens of thousands)."""
    from .sprites import WorldConfig, generate_clip

    torch.set_num_threads(1)
    cfg, vae = _WORKER["cfg"], _WORKER["vae"]
    world = WorldConfig.from_kwargs(height=cfg.height, width=cfg.width, **cfg.data.world)
    out = []
    for i in range(*bounds):
        rec = _encode_clip(generate_clip(cfg.data.seed + i, world), vae, cfg)
        out.append({k: v.numpy() if torch.is_tensor(v) else v for k, v in rec.items()})
    return out


def _parallel_sprite_records(cfg: TrainConfig, vae):
    """data.prepare_workers forked processes (Linux), each rendering and encoding a contiguous slice of the seeds; the
    records come back in seed order: the one-process cache's clips and timelines, its latents to float rounding
    (one thread per worker against the parent's several)."""
    import multiprocessing as mp

    n, workers = cfg.data.num_clips, cfg.data.prepare_workers
    chunk = max(1, min(200, -(-n // workers)))
    slices = [(a, min(n, a + chunk)) for a in range(0, n, chunk)]
    _WORKER.update(cfg=cfg, vae=vae)
    try:
        with mp.get_context("fork").Pool(workers) as pool:
            for part in pool.imap(_encode_sprite_range, slices):
                for rec in part:
                    yield {k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v for k, v in rec.items()}
    finally:
        _WORKER.clear()


@torch.no_grad()
def build_cache(cfg: TrainConfig, vae, log_path: Path | None = None) -> dict:
    t0 = time.time()
    parallel = cfg.data.source == "sprites" and cfg.data.prepare_workers > 1
    if parallel:
        records = _parallel_sprite_records(cfg, vae)
        total = cfg.data.num_clips
    else:
        clips = sprite_clips(cfg) if cfg.data.source == "sprites" else dataset_clips(cfg)
        log_line(log_path, {"event": "clips", "n": len(clips), "s": round(time.time() - t0, 1)})
        records = (_encode_clip(clip, vae, cfg) for clip in clips)
        total = len(clips)
    text_encoder, tokenizer = build_text_encoder(cfg)
    keys = ("latent", "ref_intra", "ref_inter", "mask", "timeline", "prompt", "names", "num_subjects", "d_intra", "d_inter")
    cols: dict[str, list] = {k: [] for k in keys}
    texts = {""}
    for i, rec in enumerate(records):
        for k in keys:
            cols[k].append(rec[k])
        texts.update(rec["texts"])
        if i % 100 == 0 or i == total - 1:
            log_line(log_path, {"event": "encode", "done": i + 1, "of": total, "s": round(time.time() - t0, 1)})
    text = encode_texts(text_encoder, tokenizer, sorted(texts), cfg.text.max_length)
    return {
        "latents": torch.stack(cols["latent"]), "ref_intra": cols["ref_intra"], "ref_inter": cols["ref_inter"], "masks": cols["mask"],
        "timelines": cols["timeline"], "prompts": cols["prompt"], "names": cols["names"], "num_subjects": cols["num_subjects"], "text": text,
        "difficulty_intra": np.asarray(cols["d_intra"]), "difficulty_inter": np.asarray(cols["d_inter"]),
    }


class CacheMismatch(ValueError):
    """A cache.pt on disk that was built for other settings than the run's (the message says which)."""


def load_or_build_cache(cfg: TrainConfig, vae, log_path: Path | None = None) -> dict:
    path = Path(cfg.output_dir) / "cache.pt"
    if path.is_file():
        cache = torch.load(path, map_location="cpu", weights_only=False)
        # a cache shared between runs (scripts/device_long_run.sh links one) must have their references' size
        built = int(cache["ref_intra"][0].shape[-1]) * int(getattr(vae.config, "scale_factor_spatial", 8) or 8)
        if built != reference_side(cfg):
            raise CacheMismatch(f"{path}: its references were encoded at {built} px, this run's data.reference_size asks "
                                f"for {reference_side(cfg)} px; give the run its own cache (remove or move this file)")
    else:
        cache = build_cache(cfg, vae, log_path)
        tmp = path.with_suffix(".tmp")
        torch.save(cache, tmp)
        tmp.replace(path)
    cache["latents"] = cache["latents"].float()
    cache["ref_intra"] = [r.float() for r in cache["ref_intra"]]
    cache["ref_inter"] = [r.float() for r in cache["ref_inter"]]
    if cfg.model.reactid.get("reference_offset_bias"):
        add_reference_offsets(cache, vae, cfg, log_path)
    return cache


@torch.no_grad()
def add_reference_offsets(cache: dict, vae, cfg: TrainConfig, log_path: Path | None = None, batch: int = 512) -> None:
    """cache["ref_off_intra"] / ["ref_off_inter"]: per clip, [S, h*w, 2] where each reference token lies on its subject
    (model.reactid.reference_offset_bias), read from the references decoded from their cached latents. Any cache can
    be used this way, whenever it was built; the pipeline reads the same from the reference images themselves."""
    t0 = time.time()
    ph, pw = cfg.model.patch_size[1:]
    for key in ("ref_intra", "ref_inter"):
        refs = cache[key]
        counts = [int(r.shape[0]) for r in refs]
        flat = torch.cat(refs)  # [M, z, h, w]
        grid = (flat.shape[-2] // ph, flat.shape[-1] // pw)
        out = []
        for a in range(0, flat.shape[0], batch):
            raw = latent_scale.denormalise_reference(flat[a:a + batch].unsqueeze(2), vae.config)
            images = vae.decode(raw).sample[:, :, 0].clamp(-1, 1).numpy()  # [m, 3, s, s]
            out.extend(reference_token_offsets(im, grid) for im in images)
        offs = torch.from_numpy(np.stack(out))
        cache["ref_off_" + key.split("_")[1]] = list(offs.split(counts))
    log_line(log_path, {"event": "reference_offsets", "references": sum(int(r.shape[0]) for r in cache["ref_intra"] + cache["ref_inter"]),
                        "s": round(time.time() - t0, 1)})
