"""Command line: `python -m train --config sprite [--resume] [--set optim.steps=100] [--export DIR]`.

Stages (each skipped when its output already exists in the run directory, so a killed run resumes; --prepare-only
stops after stage 2):
1. sprite VAE (train/vae.py) unless vae.checkpoint is given;
   with text.pretrain_steps > 0, the small text encoder's concept pretraining (train/text_encoder.py);
2. the frozen cache (latents, masks, text embeddings, difficulty);
3. the transformer with the curriculum; JSONL log in <output_dir>/log.jsonl;
4. with --export, a self-contained pipeline directory the studio loads.
Stop a run gracefully by creating <output_dir>/STOP (the studio's Stop button does this); creating
<output_dir>/SAVE writes a checkpoint now and keeps it as checkpoints/step-N.pt (the studio's "Save now").
Several processes (`accelerate launch`, train/accelerate/): the main process runs stages 1-2 first, the others
then load what it wrote; only the main process writes the log, checkpoints and exports (train/distributed.py).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from .config import ConfigError, load_config, parse_override
from .loop import Trainer, build_text_encoder, log_line


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(prog="python -m train", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--config", required=True, help="YAML file or preset name (train/presets/NAME.yaml, e.g. sprite, ladder_l2f, wan1.3b_8gpu)")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override a config key, e.g. optim.steps=100")
    ap.add_argument("--output-dir", help="overrides output_dir")
    ap.add_argument("--resume", action="store_true", help="continue from <output_dir>/checkpoint.pt")
    ap.add_argument("--max-steps", type=int, help="stop after this many steps (the schedule still spans optim.steps)")
    ap.add_argument("--export", help="write a pipeline directory here when training ends")
    ap.add_argument("--prepare-only", action="store_true", help="stop after the cache (stages 1-2): build it on CPUs before a GPU job")
    ap.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = torch default)")
    args = ap.parse_args(argv)
    try:
        overrides: dict = {}
        for s in args.set:
            from .config import _merge

            overrides = _merge(overrides, parse_override(s))
        if args.output_dir:
            overrides["output_dir"] = args.output_dir
        cfg = load_config(args.config, overrides)
    except ConfigError as exc:
        print(f"config error: {exc}", file=sys.stderr)
        return 2
    if args.threads:
        torch.set_num_threads(args.threads)
    from accelerate import PartialState

    state = PartialState(cpu=not torch.cuda.is_available())  # one process, or this one of `accelerate launch`'s
    main_process = state.is_main_process
    out = Path(cfg.output_dir)
    if args.resume and (out / "checkpoint.pt").is_file():  # a corrupt checkpoint is named before any work, and kept
        from .checkpoints import CheckpointError, read_checkpoint

        try:
            read_checkpoint(out / "checkpoint.pt")
        except CheckpointError as exc:
            print(f"checkpoint error: {exc}", file=sys.stderr)
            return 2
    out.mkdir(parents=True, exist_ok=True)
    log_path = out / "log.jsonl" if main_process else None
    if main_process:
        (out / "STOP").unlink(missing_ok=True)
        (out / "SAVE").unlink(missing_ok=True)
        (out / "config.json").write_text(json.dumps(cfg.to_dict(), indent=2) + "\n")
    t0 = time.time()
    with state.main_process_first():  # the others load what the main process built
        vae = _vae(cfg, out, log_path)
        _pretrained_text_encoder(cfg, out, log_path)
        from .prepare import CacheMismatch, load_or_build_cache

        try:
            cache = load_or_build_cache(cfg, vae, log_path)
        except CacheMismatch as exc:
            print(f"cache error: {exc}", file=sys.stderr)
            return 2
        cache["latents_std"] = list(vae.config.latents_std)  # what optim.channel_loss_power weighs by (not saved)
    if args.prepare_only:
        if main_process:
            log_line(log_path, {"event": "prepared", "clips": len(cache["prompts"]), "seconds": round(time.time() - t0, 1)})
        _end_processes(state)
        return 0
    from .distributed import SetupError

    try:
        trainer = Trainer(cfg, cache, log_path)
    except SetupError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if main_process:
        (out / "curriculum.json").write_text(json.dumps(trainer.curriculum.schedule_description(), indent=2) + "\n")
    result = trainer.run(resume=args.resume, max_steps=args.max_steps, stop_flag=out / "STOP", save_flag=out / "SAVE")
    final = trainer.final_model() if args.export else None  # FSDP: gathered by every process
    if main_process:
        log_line(log_path, {"event": "done", "step": result["step"], "seconds": round(time.time() - t0, 1)})
        if args.export:
            export_pipeline(cfg, final, vae, Path(args.export), text_len=next(iter(cache["text"].values()))[0].shape[0])
            log_line(log_path, {"event": "exported", "path": args.export})
    _end_processes(state)
    return 0


def _end_processes(state) -> None:
    """Several processes: wait for the main one's export, then close the process group. A process that simply
    exited with its gloo group open was sometimes aborted at exit ('terminate called without an active exception'),
    which failed the whole launch after the training itself had finished."""
    if state.num_processes > 1:
        state.wait_for_everyone()
        state.destroy_process_group()  # accelerate's: only a group that is open
        # Everything is written and the group is closed; the interpreter's own teardown of torch's native threads
        # still aborted a finished process now and then ('terminate called without an active exception', SIGABRT,
        # which fails the whole launch): end this process here, after flushing what Python holds.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


def _vae(cfg, out: Path, log_path: Path):
    from model.framevae import load_vae

    if cfg.vae.checkpoint:
        return load_vae(cfg.vae.checkpoint)
    vae_dir = out / "vae"
    if (vae_dir / "config.json").is_file():
        return load_vae(vae_dir)
    from .prepare import sprite_clips
    from .vae import reconstruction_psnr, train_vae

    v = cfg.vae
    sub = cfg.data.num_clips
    small = type(cfg)(**{**cfg.__dict__})
    small.data = type(cfg.data)(**{**cfg.data.__dict__, "num_clips": min(sub, 400)})
    videos = np.stack([c.frames for c in sprite_clips(small)])
    vae = train_vae(videos, vae_dir, z_dim=v.z_dim, base_dim=v.base_dim, steps=v.steps, batch_size=v.batch_size, lr=v.lr, kl_weight=v.kl_weight,
                    snippet_frames=v.snippet_frames, seed=cfg.seed, log=lambda line: log_line(log_path, json.loads(line)), kind=v.kind, fg_weight=v.fg_weight, linear_path=v.linear_path,
                    res_blocks=v.res_blocks, arch=v.arch, decoder_context=v.decoder_context,
                    linear_lr_scale=v.linear_lr_scale)
    log_line(log_path, {"event": "vae_done", "psnr_db": round(reconstruction_psnr(vae, videos[:8]), 2)})
    return vae


def _pretrained_text_encoder(cfg, out: Path, log_path: Path) -> None:
    """With text.pretrain_steps (and no text.checkpoint): pretrain the small encoder once into
    <output_dir>/text_encoder and point text.checkpoint there, so the cache, the trainer's prompts and the
    exported pipeline all use it."""
    if cfg.text.checkpoint or not cfg.text.pretrain_steps:
        return
    directory = out / "text_encoder"
    if not (directory / "config.json").is_file():
        from .sprites import WorldConfig, generate_clip, text_concepts
        from .text_encoder import pretrain_text_encoder, save_text_encoder

        t = cfg.text
        encoder, tokenizer = build_text_encoder(cfg)
        texts = {""}
        world = WorldConfig.from_kwargs(height=cfg.height, width=cfg.width, **cfg.data.world)
        for i in range(cfg.data.num_clips):  # the run's own texts (the cache renders the same seeds)
            tl = generate_clip(cfg.data.seed + i, world).timeline
            texts.update([tl.prompt] + [s.name for s in tl.subjects] + [a.text for s in tl.subjects for a in s.actions])
        summary = pretrain_text_encoder(encoder, tokenizer, sorted(texts), text_concepts, steps=t.pretrain_steps, lr=t.pretrain_lr,
                                        batch_size=t.pretrain_batch_size, max_length=t.max_length, seed=cfg.seed, log=lambda r: log_line(log_path, r))
        save_text_encoder(encoder, tokenizer, directory, summary)
        log_line(log_path, {"event": "text_pretrain_done", **summary})
    cfg.text.checkpoint = str(directory)


SPRITE_WORLD_FILE = "sprite_world.json"


def training_fps(cfg) -> int:
    """The frame rate the exported pipeline generates at: the sprite world's (a world defined in frames, so the
    ladder's 4 s clips at 8 fps are the same token sequences as 2 s at 16); Wan's 16 for dataset directories."""
    if cfg.data.source == "sprites":
        return int(dict(cfg.data.world).get("fps", 16))
    return 16


def export_pipeline(cfg, transformer, vae, directory: Path, text_len: int | None = None) -> Path:
    from model.pipeline import ReactIDPipeline
    from model.tiny import flow_scheduler

    from .prepare import reference_side

    text_encoder, tokenizer = build_text_encoder(cfg)
    pipe = ReactIDPipeline(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer.float().eval(), scheduler=flow_scheduler(3.0),
                           max_sequence_length=cfg.text.max_length, default_height=cfg.height, default_width=cfg.width, default_fps=training_fps(cfg),
                           reference_size=reference_side(cfg), max_frames=81, caption_max_length=text_len, name_max_length=text_len,
                           prompt_mode=cfg.data.prompt_mode)
    pipe.save_pretrained(directory)
    if cfg.data.source == "sprites":  # the world the model knows: its tests, benchmarks and examples build scenes from it
        world = {"height": cfg.height, "width": cfg.width, **dict(cfg.data.world)}
        (Path(directory) / SPRITE_WORLD_FILE).write_text(json.dumps(world, indent=1) + "\n", encoding="utf-8")
    return directory


if __name__ == "__main__":
    sys.exit(main())
