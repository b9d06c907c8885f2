"""The training loop: flow matching + focal mask loss, curriculum sampling, exact resume.

Data order, noise and timesteps at step k are pure functions of (seed, k), and a checkpoint holds the
model, optimizer, LR schedule and step, written atomically. So a run killed with -9 and resumed with
`--resume` continues with the same batches and the same losses as an uninterrupted run.

Expensive, frozen inputs (VAE latents of clips and references, text embeddings, subject masks on the
token grid, difficulty scores) are computed once into `cache.pt`, as one does for Wan-scale training.
"""

from __future__ import annotations

import inspect
import json
import math
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from model.conditioning import build_timeline_conditioning
from model.rope import binding_recall
from model.losses import (X0_SIGMA_MIN, add_flow_noise, channel_loss_weight, x0_channel_loss_weight, first_frame_loss_weight, flow_matching_loss, focal_loss,
                          foreground_loss_weight, temporal_difference_loss)
from model.timeline import Timeline
from model.transformer import ReactIDTransformer

from . import distributed as dp
from .config import TrainConfig
from .curriculum import Curriculum, CurriculumConfig


def log_line(path: Path | None, record: dict) -> None:
    line = json.dumps(record)
    print(line, flush=True)
    if path is not None:
        with open(path, "a") as f:
            f.write(line + "\n")


# --------------------------------------------------------------------------------------------------
# Components
# --------------------------------------------------------------------------------------------------
def build_text_encoder(cfg: TrainConfig):
    from transformers import ByT5Tokenizer, UMT5EncoderModel

    from model.tiny import tiny_text_encoder

    if cfg.text.checkpoint:
        from transformers import AutoTokenizer

        d = Path(cfg.text.checkpoint)
        # a pipeline directory's text_encoder/ keeps its tokenizer beside it, in tokenizer/
        tok_dir = d if (d / "tokenizer_config.json").is_file() or not (d.parent / "tokenizer" / "tokenizer_config.json").is_file() else d.parent / "tokenizer"
        conf = tok_dir / "tokenizer_config.json"
        # the byte-level tokenizer of a project-trained encoder has no fast version for AutoTokenizer to build
        byt5 = conf.is_file() and json.loads(conf.read_text()).get("tokenizer_class") == "ByT5Tokenizer"
        return UMT5EncoderModel.from_pretrained(d).eval(), (ByT5Tokenizer.from_pretrained(tok_dir) if byt5 else AutoTokenizer.from_pretrained(tok_dir))
    torch.manual_seed(cfg.seed + 17)  # frozen random encoder: deterministic given the seed
    return tiny_text_encoder(cfg.text.d_model, cfg.text.layers, cfg.text.heads), ByT5Tokenizer()


def build_transformer(cfg: TrainConfig, in_channels: int, text_dim: int, log_path: Path | None = None) -> ReactIDTransformer:
    if cfg.model.base:
        return ReactIDTransformer.from_wan(cfg.model.base, **cfg.model.reactid)
    reactid = {"num_reference_blocks": 2, "mask_blocks": min(5, cfg.model.layers), "mask_hidden_dim": 32, "max_subjects": 6}
    reactid.update(cfg.model.reactid)
    torch.manual_seed(cfg.seed)
    model = ReactIDTransformer(
        patch_size=tuple(cfg.model.patch_size), num_attention_heads=cfg.model.heads, attention_head_dim=cfg.model.head_dim, in_channels=in_channels,
        out_channels=in_channels, text_dim=text_dim, freq_dim=64, ffn_dim=cfg.model.ffn_dim, num_layers=cfg.model.layers,
        rope_max_seq_len=256, **reactid,
    )
    loaded = set()
    if cfg.model.init_from:
        report = warm_start(model, cfg.model.init_from, cfg.model.init_block_map, grow_latent=cfg.model.init_grow_latent)
        log_line(log_path, report)
        loaded = {k for k in model.state_dict() if k not in report["kept_own_init"]}
    if cfg.model.init_offset_gain:
        from model.transformer import OFFSET_GAIN_SCALE

        with torch.no_grad():
            for name, p in model.named_parameters():
                if name.endswith("ref_offset_gain") and name not in loaded:
                    p.fill_(cfg.model.init_offset_gain / OFFSET_GAIN_SCALE)
    return model


# the layers that read or write the latent's channels: input layers [D, C, p_t, p_h, p_w], output rows ordered (patch, C)
LATENT_INPUT_LAYERS = ("patch_embedding.weight", "ref_patch_embedding.weight")
LATENT_OUTPUT_LAYERS = ("proj_out.weight", "proj_out.bias")


def grow_latent_layers(state: dict, own: dict, patch_volume: int) -> tuple[dict, list[str]]:
    """`state`'s latent layers widened to `own`'s channel count: the loaded weights in the leading channels, zeros in
    the new ones (model.init_grow_latent). Any other shape difference is left for warm_start to refuse."""
    state, grown = dict(state), []
    for k in LATENT_INPUT_LAYERS + LATENT_OUTPUT_LAYERS:
        if k not in state or k not in own or state[k].shape == own[k].shape:
            continue
        old, new = state[k], torch.zeros_like(own[k])
        if k in LATENT_INPUT_LAYERS:
            if old.shape[0] != new.shape[0] or old.shape[2:] != new.shape[2:] or old.shape[1] > new.shape[1]:
                continue
            new[:, : old.shape[1]] = old
        else:  # rows (p_t, p_h, p_w, C), C fastest, as the forward unpatchifies them
            c_old, c_new = old.shape[0] // patch_volume, new.shape[0] // patch_volume
            if old.shape[1:] != new.shape[1:] or c_old * patch_volume != old.shape[0] or c_old > c_new:
                continue
            new.view(patch_volume, c_new, *new.shape[1:])[:, :c_old] = old.view(patch_volume, c_old, *old.shape[1:])
        state[k] = new
        grown.append(k)
    return state, grown


def warm_start(model: ReactIDTransformer, directory: str | Path, block_map: list | None = None, grow_latent: bool = False) -> dict:
    """Seed `model` with the transformer weights of a pipeline directory (or a transformer folder).

    Parameters the other model lacks (an ablation that drops a module, or adds one) keep their own
    initialisation and are reported; a parameter present in both with another shape is refused.
    block_map (model.init_block_map) grows a model deeper: block i loads the other's block block_map[i]; a None
    entry is a new block that starts as the identity (grow_block_map)."""
    from safetensors.torch import load_file

    d = Path(directory)
    d = d / "transformer" if (d / "transformer").is_dir() else d
    files = sorted(d.glob("*.safetensors"))
    if not files:
        raise ValueError(f"model.init_from: no .safetensors weights in {d}")
    state = {}
    for f in files:
        state.update(load_file(str(f)))
    new_blocks = []
    if block_map is not None:
        state, new_blocks = grow_block_map(state, block_map)
    own = model.state_dict()
    grown = []
    if grow_latent:
        p = model.config.patch_size
        state, grown = grow_latent_layers(state, own, int(p[0] * p[1] * p[2]))
    bad = [f"{k}: {tuple(v.shape)} there, {tuple(own[k].shape)} here" for k, v in state.items() if k in own and v.shape != own[k].shape]
    if bad:
        hint = ""
        if not grow_latent and any(b.split(":")[0] in LATENT_INPUT_LAYERS + LATENT_OUTPUT_LAYERS for b in bad):
            hint = " (a wider latent whose leading channels are the old one's: model.init_grow_latent: true)"
        raise ValueError(f"model.init_from {d}: weights do not fit this model config — " + "; ".join(bad[:5]) + (" ..." if len(bad) > 5 else "") + hint)
    result = model.load_state_dict({k: v for k, v in state.items() if k in own}, strict=False)
    with torch.no_grad():  # separate timeline projections new to this model start as copies of the loaded prompt ones
        for i, block in enumerate(model.blocks):
            if hasattr(block, "timeline_to_k") and f"blocks.{i}.timeline_to_k.weight" not in state:
                block.timeline_to_k.load_state_dict(block.attn2.to_k.state_dict())
                block.timeline_to_v.load_state_dict(block.attn2.to_v.state_dict())
                block.timeline_norm_k.load_state_dict(block.attn2.norm_k.state_dict())
        if hasattr(model, "detail_layers") and not any(k.startswith("detail_") for k in state):
            model.init_detail_path()  # the x0 channels' path starts from the loaded trunk's last block
        for i in new_blocks:  # every path back into the residual stream starts at zero: the block adds nothing yet
            blk = model.blocks[i]
            for lin in (blk.attn1.to_out[0], blk.attn2.to_out[0], blk.ffn.net[-1], getattr(blk, "ref_out", None), getattr(blk, "timeline_out", None)):
                if lin is not None:
                    torch.nn.init.zeros_(lin.weight)
                    torch.nn.init.zeros_(lin.bias)
    report = {"event": "warm_start", "from": str(d), "loaded": len(state) - len(set(state) - set(own)),
              "kept_own_init": sorted(result.missing_keys), "ignored": sorted(set(state) - set(own))}
    if block_map is not None:
        report["block_map"] = list(block_map)
    if grow_latent:
        report["grown_latent"] = grown
    return report


def grow_block_map(state: dict, block_map: list) -> tuple[dict, list[int]]:
    """Rename the loaded weights' `blocks.<j>.` to the blocks that load them. A None entry copies the nearest
    loaded block before it (its attention and FFN see features like the ones they were trained on) and is
    listed, so warm_start zeroes its residual outputs. Returns (state, new block indices)."""
    prefix = re.compile(r"^blocks\.(\d+)\.")
    per_block: dict[int, dict[str, torch.Tensor]] = {}
    rest = {}
    for k, v in state.items():
        m = prefix.match(k)
        if m:
            per_block.setdefault(int(m.group(1)), {})[k[m.end():]] = v
        else:
            rest[k] = v
    missing = sorted({j for j in block_map if j is not None} - set(per_block))
    if missing:
        have = f"blocks 0-{max(per_block)}" if per_block else "no blocks"
        raise ValueError(f"model.init_block_map names block {missing[0]}, which the loaded model ({have}) lacks")
    out, new, last = dict(rest), [], None
    for i, j in enumerate(block_map):
        if j is None:
            new.append(i)
            j = last
        last = j
        out.update({f"blocks.{i}.{name}": v.clone() for name, v in per_block[j].items()})
    return out, new


@torch.no_grad()
def encode_texts(text_encoder, tokenizer, texts: list[str], max_length: int) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    out = {}
    uniq = sorted(set(texts))
    for i in range(0, len(uniq), 64):
        chunk = uniq[i : i + 64]
        tok = tokenizer(chunk, padding="max_length", max_length=max_length, truncation=True, return_tensors="pt")
        emb = text_encoder(input_ids=tok.input_ids, attention_mask=tok.attention_mask).last_hidden_state
        emb = emb * tok.attention_mask.unsqueeze(-1)
        for t, e, m in zip(chunk, emb, tok.attention_mask.bool()):
            out[t] = (e.clone(), m.clone())
    return out


# --------------------------------------------------------------------------------------------------
# Curriculum (train/curriculum.py): which samples a step may draw, and with which reference kind
# --------------------------------------------------------------------------------------------------
@dataclass
class StepPlan:
    indices: np.ndarray
    inter: np.ndarray  # bool per sample: use the inter-clip reference
    phase: int
    threshold: float


def make_curriculum(cfg: TrainConfig, intra_scores, inter_scores, processes: int = 1, total_steps: int | None = None) -> Curriculum:
    """The step's global batch: optim.batch_size per process (train/distributed.py). Its phases span total_steps
    (optim.steps unless a time budget shortened the schedule)."""
    c = cfg.curriculum
    cc = CurriculumConfig(total_steps=total_steps or cfg.optim.steps, phase_ratios=tuple(c.phase_ratios), inter_ratios=tuple(c.inter_ratios), mode=c.mode,
                          flat_inter_ratio=c.flat_inter_ratio, batch_size=cfg.optim.batch_size * processes, seed=cfg.seed)
    return Curriculum(list(intra_scores), list(inter_scores), cc)


def plan_step(curriculum: Curriculum, step: int) -> StepPlan:
    pairs = curriculum.sample(step)
    return StepPlan(np.array([i for i, _ in pairs]), np.array([x for _, x in pairs]), curriculum.phase_at(step), float(curriculum.threshold_at(step)))


# --------------------------------------------------------------------------------------------------
# The trainer
# --------------------------------------------------------------------------------------------------
class Trainer:
    def __init__(self, cfg: TrainConfig, cache: dict, log_path: Path | None = None):
        from accelerate import Accelerator

        self.cfg = cfg
        self.cache = cache
        self.path_masks_by_clip: dict[int, torch.Tensor] = {}  # optim.binding_layout 'paths' (path_layout_masks)
        self.log_path = log_path
        self.out = Path(cfg.output_dir)
        self.accelerator = Accelerator(mixed_precision=cfg.optim.mixed_precision, cpu=not torch.cuda.is_available(), **dp.accelerator_kwargs())
        dp.refuse_unsupported(self.accelerator)
        self.sharded = dp.enable_cpu_fsdp(self.accelerator) or dp.is_sharded(self.accelerator)
        if not self.accelerator.is_main_process:  # one log, written by the main process
            self.log_path = log_path = None
        z = cache["latents"].shape[1]
        self.channel_weight = None
        if cfg.optim.channel_loss_power:
            if "latents_std" not in cache:  # set by `python -m train` from the VAE the latents came from
                raise ValueError("optim.channel_loss_power needs the VAE's latents_std (cache['latents_std'])")
            if len(cache["latents_std"]) != z:
                raise ValueError(f"optim.channel_loss_power: the VAE has {len(cache['latents_std'])} latent channels, the latents {z}")
            self.channel_weight = channel_loss_weight(cache["latents_std"], cfg.optim.channel_loss_power)
        text_dim = next(iter(cache["text"].values()))[0].shape[-1]
        self.model = build_transformer(cfg, z, text_dim, log_path)
        if cfg.optim.gradient_checkpointing:
            self.model.enable_gradient_checkpointing()
        params = [p for n, p in self.model.named_parameters() if cfg.optim.train_base or ReactIDTransformer.is_reactid_param(n)]
        if not cfg.optim.train_base:
            for n, p in self.model.named_parameters():
                p.requires_grad_(ReactIDTransformer.is_reactid_param(n))
        if cfg.optim.train_only:  # only the parameters under these name prefixes train; the rest is frozen
            chosen = {n for n, _ in self.model.named_parameters() if any(n.startswith(pre) for pre in cfg.optim.train_only)}
            if not chosen:
                raise ValueError(f"optim.train_only {cfg.optim.train_only}: no parameter of this model has a name starting so")
            params = [p for n, p in self.model.named_parameters() if n in chosen]
            for n, p in self.model.named_parameters():
                p.requires_grad_(n in chosen)
        self.optimizer = torch.optim.AdamW(optimizer_groups(self.model, params, cfg.optim), lr=cfg.optim.lr, weight_decay=cfg.optim.weight_decay, betas=(0.9, 0.99))
        # the schedule's length: optim.steps, or fewer once optim.time_budget_s has measured how many fit (run())
        self.total_steps, warm = cfg.optim.steps, cfg.optim.warmup_steps
        self.schedule_fitted = False  # set once a time budget has fitted the schedule; a resumed run keeps it
        self.lr_lambda = lambda s: min(1.0, (s + 1) / max(1, warm)) * (0.1 + 0.9 * 0.5 * (1 + math.cos(math.pi * min(s, self.total_steps) / self.total_steps)))
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(self.optimizer, self.lr_lambda)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(self.model, self.optimizer, self.scheduler)
        # optim.compile: the training forward runs through a compiled wrapper sharing self.model's parameters, so
        # checkpoints, held-out scores and exports keep using the plain module
        self.forward_model = torch.compile(self.model, dynamic=True) if cfg.optim.compile else self.model
        self.curriculum = make_curriculum(cfg, cache["difficulty_intra"], cache["difficulty_inter"], self.accelerator.num_processes)
        # Global prompts are encoded here at text.max_length (the cache holds captions and names): the
        # flattened-timeline ablation needs longer prompts than the captions.
        prompts = list(cache["prompts"])
        if cfg.data.prompt_mode == "flattened":
            from model.timeline import flatten_to_prompt

            prompts = [flatten_to_prompt(Timeline.from_dict(t, validate=False)) for t in cache["timelines"]]
        enc, tok = build_text_encoder(cfg)
        table = encode_texts(enc, tok, sorted(set(prompts) | {""}), cfg.text.max_length)
        self.prompt_embeds = torch.stack([table[p][0] for p in prompts])
        self.empty_prompt = table[""][0]
        del enc
        self.step = 0

    # ---- checkpoints ------------------------------------------------------------------------------
    def save_checkpoint(self) -> Path:
        ck = self.out / "checkpoint.pt"
        tmp = self.out / "checkpoint.pt.tmp"
        # FSDP: every process takes part in gathering the whole state; the file has the single-process layout
        gathered = dp.gather_training_state(self.accelerator, self.model, self.optimizer) if self.sharded else None
        if not self.accelerator.is_main_process:
            return ck
        model_state, optim_state = gathered or (self.accelerator.unwrap_model(self.model).state_dict(), self.optimizer.state_dict())
        state = {
            "step": self.step,
            "model": model_state,
            "optimizer": optim_state,
            "scheduler": self.scheduler.state_dict(),
            "total_steps": self.total_steps,
            "schedule_fitted": self.schedule_fitted,
            "model_config": dict(self.accelerator.unwrap_model(self.model).config),
        }
        torch.save(state, tmp)
        os.replace(tmp, ck)  # atomic: a kill during the save leaves the previous checkpoint intact
        return ck

    def load_checkpoint(self) -> bool:
        ck = self.out / "checkpoint.pt"
        if not ck.is_file():
            return False
        state = torch.load(ck, map_location="cpu", weights_only=False)
        model = self.accelerator.unwrap_model(self.model)
        want = {k: v for k, v in dict(model.config).items() if not k.startswith("_")}
        have = {k: v for k, v in state["model_config"].items() if not k.startswith("_")}
        # an option added after the checkpoint was written means what it meant then: its default
        defaults = {k: p.default for k, p in inspect.signature(type(model).__init__).parameters.items() if p.default is not inspect.Parameter.empty}
        have.update({k: defaults[k] for k in set(want) - set(have) if k in defaults})
        diffs = [f"{k}: checkpoint {have.get(k)!r}, config {want.get(k)!r}" for k in sorted(set(want) | set(have)) if _norm(want.get(k)) != _norm(have.get(k))]
        if diffs:
            raise ValueError(f"{ck}: checkpoint does not match the model config — " + "; ".join(diffs))
        if self.sharded:
            dp.load_training_state(self.model, self.optimizer, state["model"], state["optimizer"])
        else:
            model.load_state_dict(state["model"])
            self.optimizer.load_state_dict(state["optimizer"])
        self.scheduler.load_state_dict(state["scheduler"])
        self.step = int(state["step"])
        self.set_total_steps(int(state.get("total_steps", self.cfg.optim.steps)))  # a time budget's schedule stays as measured
        self.schedule_fitted = bool(state.get("schedule_fitted", False))
        return True

    # ---- one batch -------------------------------------------------------------------------------
    def batch(self, plan: StepPlan):
        c = self.cache
        lat = c["latents"][plan.indices]  # [B, z, F', h, w]
        S = max(c["num_subjects"][i] for i in plan.indices)
        refs, ref_subj, ref_text, masks, offsets = [], [], [], [], []
        zr = c["ref_intra"][plan.indices[0]].shape[1:]
        with_offsets = "ref_off_intra" in c  # reference_offset_bias (train/prepare.py add_reference_offsets)
        name_len = next(iter(c["text"].values()))[0].shape[0]
        for b, i in enumerate(plan.indices):
            n = c["num_subjects"][i]
            src = c["ref_inter"][i] if plan.inter[b] else c["ref_intra"][i]
            r = torch.zeros(S, *zr)
            r[:n] = src[:n]
            refs.append(r)
            if with_offsets:
                src_off = c["ref_off_inter"][i] if plan.inter[b] else c["ref_off_intra"][i]
                o = torch.zeros(S, *src_off.shape[1:])
                o[:n] = src_off[:n]
                offsets.append(o)
            ref_subj.append(torch.tensor([s if s < n else -1 for s in range(S)]))
            names = torch.zeros(S, name_len, ref_text_dim(c))
            for s in range(n):
                names[s] = c["text"][c["names"][i][s]][0]
            ref_text.append(names)
            m = torch.zeros(S, c["masks"][i].shape[-1])
            m[:n] = c["masks"][i][:n].float()
            masks.append(m)
        timelines = [Timeline.from_dict(c["timelines"][i], validate=False) for i in plan.indices]
        tl = build_timeline_conditioning(timelines, lambda caps: _lookup(c["text"], caps))
        prompts = self.prompt_embeds[torch.as_tensor(plan.indices)]
        offsets = torch.stack(offsets) if with_offsets else None
        return lat, torch.stack(refs), torch.stack(ref_subj), torch.stack(ref_text), torch.stack(masks), tl, prompts, offsets

    def binding_masks(self, model, x_t, timestep, prompts, refs: dict, tl, gt_masks, g: torch.Generator, refs_valid=None,
                      plan_masks=None):
        """The subject masks that set the binding labels this step (optim.binding_masks).

        'ground_truth' (the paper's reading): the clip's own masks. They tell the model where every subject
        is in every frame, which it cannot know at inference, where the labels come from the masks it
        predicted at the previous step: a small model then learns to draw each subject where its labels
        are instead of where its captions say. 'predicted' gives it only what inference has: the masks it
        predicts itself from this x_t with no binding (one extra forward pass without gradients), or, with
        probability optim.binding_none_prob, no masks at all (the first denoising step). 'none': never.
        plan_masks: the start layout's masks for optim.binding_layout 'paths' (Trainer.path_layout_masks)."""
        mode = self.cfg.optim.binding_masks
        if mode == "ground_truth":
            return gt_masks
        if mode == "none" or bool(torch.rand((), generator=g) < self.cfg.optim.binding_none_prob):
            return None
        with torch.no_grad():
            pre = model(x_t, timestep, prompts, timeline=tl, subject_masks=None, **refs)
        if pre.mask_logits is None:
            return None
        bind = torch.sigmoid(pre.mask_logits.float()).detach()
        if self.cfg.optim.binding_layout_prob > 0:
            bind = self.layout_binding(bind, x_t.shape, timestep / 1000, refs_valid, g, gt_masks if plan_masks is None else plan_masks)
        return bind

    def layout_binding(self, bind: torch.Tensor, latent_shape, sigma: torch.Tensor, valid: torch.Tensor, g: torch.Generator,
                       truth: torch.Tensor | None = None) -> torch.Tensor:
        """optim.binding_layout_prob: samples at sigma >= binding_layout_sigma are bound, with that probability, to a
        plan, as the first steps are at inference with a start layout: optim.binding_layout 'columns' (the columns
        layout of their subject count, model/layout.py), 'truth' (the clip's own masks `truth`, whose places are those
        the 'paths' layout plans for a sprite-world clip) or 'paths' (`truth` is then the paths layout's masks, from
        Trainer.path_layout_masks: discs, as at inference)."""
        from model.layout import layout_pixel_masks, layout_token_masks

        o = self.cfg.optim
        p = self.accelerator.unwrap_model(self.model).config.patch_size
        grid = (latent_shape[2] // p[0], latent_shape[3] // p[1], latent_shape[4] // p[2])
        pick = (torch.rand(bind.shape[0], generator=g) < o.binding_layout_prob).to(sigma.device) & (sigma >= o.binding_layout_sigma)
        out = bind.clone()
        for b in torch.nonzero(pick).flatten().tolist():
            n = int(valid[b].sum())
            if n == 0:
                continue
            if o.binding_layout in ("truth", "paths"):
                out[b] = truth[b].to(out)
                continue
            px = layout_pixel_masks("columns", n, self.cfg.height, self.cfg.width)
            out[b] = 0
            out[b, :n] = layout_token_masks(px, grid[0], grid[1:]).to(out)
        return out

    def path_layout_masks(self, indices, num_subjects: int, latent_shape) -> torch.Tensor:
        """[B, num_subjects, N] the 'paths' start layout (model/layout.py) of each clip's timeline, per video token: what
        inference binds its first steps with (optim.binding_layout 'paths'). Kept per clip: a clip's plan never changes."""
        from model.layout import path_pixel_masks, layout_token_masks

        p = self.accelerator.unwrap_model(self.model).config.patch_size
        grid = (latent_shape[2] // p[0], latent_shape[3] // p[1], latent_shape[4] // p[2])
        memo = self.path_masks_by_clip
        out = torch.zeros(len(indices), num_subjects, grid[0] * grid[1] * grid[2])
        for b, i in enumerate(indices):
            i = int(i)
            if i not in memo:
                tl = Timeline.from_dict(self.cache["timelines"][i], validate=False)
                # half precision: shares in [0, 1], and 16,000 clips' plans stay near 50 MB
                memo[i] = layout_token_masks(path_pixel_masks(tl, self.cfg.height, self.cfg.width), grid[0], grid[1:]).half()
            out[b, : memo[i].shape[0]] = memo[i]
        return out

    def train_step(self, plan: StepPlan) -> dict:
        cfg = self.cfg.optim
        model = self.forward_model
        # several processes: draw for the global batch, keep this process's share (train/distributed.py)
        G = len(plan.indices)
        share = dp.shard(G, self.accelerator.process_index, self.accelerator.num_processes)
        local = dp.shard_plan(plan, share)
        lat, refs, ref_subj, ref_text, masks, tl, prompts, ref_offsets = self.batch(local)
        B = lat.shape[0]
        g = torch.Generator().manual_seed(int(self.cfg.seed * 1_000_003 + self.step))
        noise = torch.randn((G, *lat.shape[1:]), generator=g)[share]
        # logit-normal sigmas (SD3/Wan practice) concentrate on mid noise levels, where structure is decided
        sigma = torch.sigmoid(torch.randn(G, generator=g))
        drop = (torch.rand(G, generator=g) < cfg.cond_dropout)[share]
        sigma = shift_sigmas(sigma, per_sample_shift(cfg.sigma_shift, G, g))[share]
        x_t = add_flow_noise(lat, noise, sigma)
        empty = self.empty_prompt
        prompts = torch.where(drop.view(B, 1, 1), empty.unsqueeze(0), prompts)
        unwrapped = self.accelerator.unwrap_model(model)
        dev = self.accelerator.device
        with self.accelerator.autocast():  # mixed precision where the device supports it
            ref_args = (refs.to(dev), ref_subj.to(dev), ref_text.to(dev), refs.shape[1], None if ref_offsets is None else ref_offsets.to(dev))
            if self.sharded:  # FSDP: the branch runs inside the forward, where the shards are gathered
                ref_kw = {"references": ref_args}
            else:  # once per step, shared by the binding pass and the forward
                ref_kw = {"reference_features": unwrapped.encode_references(*ref_args)}
            # the timeline is dropped with the prompt (as in the negative branch at inference)
            tl = tl.dropped(drop).to(dev)
            plan_masks = None
            if cfg.binding_layout == "paths" and cfg.binding_layout_prob > 0:
                plan_masks = self.path_layout_masks(local.indices, masks.shape[1], lat.shape).to(dev)
            bind = self.binding_masks(model, x_t.to(dev), (sigma * 1000).to(dev), prompts.to(dev), ref_kw, tl, masks.to(dev), g,
                                      refs_valid=ref_subj >= 0, plan_masks=plan_masks)
            out = model(x_t.to(dev), (sigma * 1000).to(dev), prompts.to(dev), timeline=tl, subject_masks=bind, **ref_kw)
            weight = None
            if cfg.fg_loss_weight > 0:
                grid = tuple(s // p for s, p in zip(lat.shape[2:], unwrapped.config.patch_size))
                weight = foreground_loss_weight(masks, grid, tuple(unwrapped.config.patch_size), cfg.fg_loss_weight,
                                                cfg.fg_time_dilation).to(dev)
            if self.channel_weight is not None:
                weight = self.channel_weight.to(dev) if weight is None else weight * self.channel_weight.to(dev)
            x0_from = getattr(unwrapped.config, "x0_channels_from", 0)
            if x0_from:
                w0 = x0_channel_loss_weight(sigma, lat.shape[1], x0_from).to(dev)
                weight = w0 if weight is None else weight * w0
            weight = first_frame_loss_weight(weight, lat.shape, cfg.first_frame_loss_weight)
            weight = weight.to(dev) if weight is not None else None
            fm = flow_matching_loss(out.sample, noise.to(dev), lat.to(dev), weight)
            valid = (ref_subj >= 0).to(dev).unsqueeze(-1)
            fl = torch.zeros((), device=dev)
            if out.mask_logits is not None:
                fl = mask_head_loss(out.mask_logits.float(), masks.to(dev), cfg.mask_loss, cfg.focal_alpha, cfg.focal_gamma, valid)
            if self.accelerator.num_processes > 1:  # each process's share of the global weighted means (train/distributed.py)
                fm = fm * dp.global_share(self.accelerator, weight.expand(out.sample.shape).sum() if weight is not None else out.sample.numel(), 1e-12)
                if out.mask_logits is not None:
                    fl = fl * dp.global_share(self.accelerator, valid.expand(out.mask_logits.shape).sum(), 1.0)
            loss = fm + cfg.mask_loss_weight * fl
            td = None
            if cfg.temporal_loss_weight > 0:  # the error's change between latent frames (a wobbling outline)
                td = temporal_difference_loss(out.sample, noise.to(dev), lat.to(dev), weight)
                loss = loss + cfg.temporal_loss_weight * td
        self.optimizer.zero_grad(set_to_none=True)
        self.accelerator.backward(loss)
        gn = self.accelerator.clip_grad_norm_(model.parameters(), cfg.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        stats = {"loss": loss.item(), "flow": fm.item(), "focal": fl.item(), "grad_norm": float(gn)}
        if x0_from:  # the x0 channels' own clean-latent error (unweighted): what a grown latent's new channels learn
            with torch.no_grad():
                s0 = sigma.to(dev).float().clamp_min(X0_SIGMA_MIN).view(B, 1, 1, 1, 1)
                x0_hat = x_t.to(dev)[:, x0_from:].float() - s0 * out.sample[:, x0_from:].float()
                x0_new = lat.to(dev)[:, x0_from:].float()
                stats["x0_mse"] = (x0_hat - x0_new).pow(2).mean().item()
                stats["x0_energy"] = x0_new.pow(2).mean().item()  # the error of guessing 0: x0_mse / this < 1 is learning
        if td is not None:
            stats["temporal"] = td.item()
        # share of true subject tokens the binding labels reach (docs/MODEL.md); one process only, since a process
        # whose share has no subject token has no value, and the stats averaged over processes must have the same keys
        if out.mask_logits is not None and self.accelerator.num_processes == 1:
            recall = binding_recall(torch.sigmoid(out.mask_logits.detach().float()), masks.to(dev), unwrapped.config.mask_threshold)
            if recall is not None:
                stats["bind_recall"] = recall
        return stats

    def run(self, resume: bool = False, max_steps: int | None = None, stop_flag: Path | None = None, save_flag: Path | None = None) -> dict:
        self.out.mkdir(parents=True, exist_ok=True)
        if resume and self.load_checkpoint() and self.accelerator.is_main_process:
            log_line(self.log_path, {"event": "resumed", "step": self.step})
        self.model.train()
        t0, seen = time.time(), 0
        last = {}
        budget = 0.0 if self.schedule_fitted else self.cfg.optim.time_budget_s
        calib, start_step, t_calib = self.cfg.optim.time_budget_calibration_steps, self.step, None
        end = lambda: self.total_steps if max_steps is None else min(self.total_steps, max_steps)  # noqa: E731
        while self.step < end():
            if budget and self.step == start_step + 1:  # the first step (allocations, kernel choice) is not timed
                t_calib = time.time()
            if budget and t_calib is not None and self.step == start_step + 1 + calib:
                self.fit_schedule_to_budget(budget - (time.time() - t0), calib / max(1e-9, time.time() - t_calib))
            plan = plan_step(self.curriculum, self.step)
            ts = time.time()
            stats = dp.mean_over_processes(self.accelerator, self.train_step(plan))
            seen += len(plan.indices)
            self.step += 1
            last = stats
            if (self.step % self.cfg.optim.log_every == 0 or self.step == end() or self.step == 1) and self.accelerator.is_main_process:
                log_line(self.log_path, {"step": self.step, **{k: round(v, 6) for k, v in stats.items()}, "lr": self.scheduler.get_last_lr()[0],
                                         "threshold": plan.threshold, "phase": plan.phase + 1, "inter_frac": float(plan.inter.mean()),
                                         "samples_per_s": round(len(plan.indices) / max(1e-6, time.time() - ts), 2)})
            stop, save = dp.read_flags(self.accelerator, stop_flag, save_flag)
            if self.step % self.cfg.optim.checkpoint_every == 0 or self.step == end() or stop or save:
                self.save_checkpoint()
            if save and self.accelerator.is_main_process:  # "save now": keep this one beside the rolling checkpoint.pt
                kept = dp.keep_checkpoint(self.out / "checkpoint.pt", self.step)
                save_flag.unlink(missing_ok=True)
                log_line(self.log_path, {"event": "saved", "step": self.step, "path": str(kept)})
            if stop:
                if self.accelerator.is_main_process:
                    log_line(self.log_path, {"event": "stopped", "step": self.step})
                break
        return {"step": self.step, "seconds": time.time() - t0, **last}

    def set_total_steps(self, total: int) -> None:
        """The schedule's length: the learning rate's decay and the curriculum's phases both span it."""
        if total != self.total_steps:
            self.total_steps = total
            self.curriculum = make_curriculum(self.cfg, self.cache["difficulty_intra"], self.cache["difficulty_inter"],
                                              self.accelerator.num_processes, total)

    def fit_schedule_to_budget(self, seconds_left: float, steps_per_s: float) -> None:
        """optim.time_budget_s: end the schedule at the step the measured rate reaches when the budget runs out
        (never later than optim.steps, never before the next step), so the cosine decay completes in time. Several
        processes: the slowest one's fit, so all of them stop at the same step."""
        fit = dp.min_over_processes(self.accelerator, self.step + max(1, int(seconds_left * steps_per_s)))
        self.set_total_steps(min(self.cfg.optim.steps, fit))
        self.schedule_fitted = True
        if self.accelerator.is_main_process:
            log_line(self.log_path, {"event": "time_budget", "step": self.step, "steps_per_s": round(steps_per_s, 3),
                                     "seconds_left": round(seconds_left, 1), "total_steps": self.total_steps})

    def final_model(self) -> ReactIDTransformer | None:
        """The trained model, whole. FSDP: a collective (every process calls it); the main process gets a copy
        built from the gathered state, the others None."""
        model = self.accelerator.unwrap_model(self.model)
        if not self.sharded:
            return model.eval()
        state = dp.gather_model_state(self.accelerator, self.model)
        if not self.accelerator.is_main_process:
            return None
        whole = type(model).from_config({k: v for k, v in dict(model.config).items() if not k.startswith("_")})  # as train/checkpoints.py
        whole.load_state_dict(state)
        return whole.eval()


def optimizer_groups(model, params: list, optim) -> list:
    """One group at optim.lr, or (optim.timeline_lr_scale != 1) a second for the timeline attention's own weights:
    its output starts at zero, so at first they see gradients far smaller than the base's. One group when the scale
    is 1 keeps checkpoints written before the option existed resumable."""
    if optim.timeline_lr_scale == 1.0:
        return params
    is_tl = {id(p) for n, p in model.named_parameters() if ".timeline_" in f".{n}"}
    return [{"params": [p for p in params if id(p) not in is_tl]},
            {"params": [p for p in params if id(p) in is_tl], "lr": optim.lr * optim.timeline_lr_scale}]


def mask_head_loss(logits, targets, kind: str, alpha: float, gamma: float, valid) -> torch.Tensor:
    """The subject-mask head's loss (optim.mask_loss): 'focal' (the paper) or 'bce' (calibrated: p tracks coverage)."""
    if kind == "focal":
        return focal_loss(logits, targets, alpha, gamma, valid=valid)
    ce = F.binary_cross_entropy_with_logits(logits, targets.to(logits.dtype), reduction="none")
    w = valid.to(ce.dtype).expand_as(ce)
    return (ce * w).sum() / w.sum().clamp_min(1.0)


def shift_sigmas(sigma: torch.Tensor, shift: float | torch.Tensor) -> torch.Tensor:
    """The timestep shift of flow-matching schedulers (SD3, Wan): s -> shift*s / (1 + (shift-1)*s). Applied to the
    training noise levels it matches where a sampler with the same shift spends its steps: with shift 3 half the
    steps lie above s = 0.75, where a plain logit-normal puts a fifth of its samples. `shift` may be one per sample."""
    if not torch.is_tensor(shift) and shift == 1.0:
        return sigma
    return shift * sigma / (1 + (shift - 1) * sigma)


def per_sample_shift(setting: float | list, n: int, g: torch.Generator) -> float | torch.Tensor:
    """optim.sigma_shift -> the shift of each of n samples: a number as it is; a list: each sample draws one of its
    entries uniformly (no random draw for a number, so single-shift runs keep their noise streams)."""
    if not isinstance(setting, list):
        return float(setting)
    choices = torch.tensor([float(v) for v in setting])
    return choices[torch.randint(len(choices), (n,), generator=g)]


def ref_text_dim(cache: dict) -> int:
    return next(iter(cache["text"].values()))[0].shape[-1]


def _lookup(text: dict, captions: list[str]):
    embs = torch.stack([text[c][0] for c in captions])
    masks = torch.stack([text[c][1] for c in captions])
    return embs, masks


def _norm(v):
    return list(v) if isinstance(v, tuple) else v
