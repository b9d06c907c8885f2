"""ReactIDPipeline: timeline document + reference images -> video, in diffusers style.

    pipe = ReactIDPipeline.from_pretrained("path/to/Wan2.1-T2V-1.3B-Diffusers", reactid_checkpoint="ckpt/")
    out = pipe(timeline, references={"s1": ["man.png"]}, num_inference_steps=50, guidance_scale=5.0, seed=0)
    export_mp4(out.frames, "out.mp4", out.fps)

Inputs are checked before any model work. Per generation the reference branch runs once; each step
feeds the subject masks predicted at the previous step back as the binding labels (the first step has
none: uniform binding). Classifier-free guidance drops the prompt and the timeline in the negative
branch and keeps the references, so guidance strengthens what the text asks, not the identity.
Long videos run segment by segment, each segment's first latent frames pinned to the re-encoded end of
the previous segment (paper E.6).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from diffusers import AutoencoderKLWan, DiffusionPipeline, FlowMatchEulerDiscreteScheduler
from PIL import Image

from . import latents as latent_scale
from .conditioning import build_timeline_conditioning
from .framevae import load_vae
from .layout import DEFAULT_RADIUS as DEFAULT_LAYOUT_RADIUS
from .layout import STEPS_BY_LAYOUT
from .layout import LAYOUTS, layout_pixel_masks, layout_token_masks
from .references import ReferenceError, load_reference_image, reference_to_array, reference_token_offsets
from .timeline import TIME_COMPRESSION, Timeline, flatten_to_prompt, num_latent_frames, split_segments
from .transformer import ReactIDTransformer

PIPELINE_CONFIG = "reactid_pipeline.json"


class GenerationCancelled(RuntimeError):
    """Raised when the caller's cancel_event is set; nothing half-made is returned."""


@dataclass
class ReactIDPipelineOutput:
    frames: np.ndarray  # uint8 [F, H, W, 3]
    masks: np.ndarray  # float32 [S, F, H, W], predicted subject masks in 0..1
    fps: int
    timeline: Timeline
    segments: list[tuple[int, int]] = field(default_factory=list)  # (start_frame, end_frame) per segment
    seeds: list[int] = field(default_factory=list)  # seed used per segment (re-roll keeps the others)
    latents: torch.Tensor | None = None


def _check_scale(name: str, value) -> None:
    """A guidance scale from a config or an argument: a number >= 0, or None (not set)."""
    if value is not None and not (isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0):
        raise ValueError(f"{name} must be a number >= 0 or null, got {value!r}")


def _check_redraw(value) -> None:
    """first_frame_redraw: the share of the schedule over which the first latent frame is drawn again, in [0, 1]."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        raise ValueError(f"first_frame_redraw must be a share of the steps in [0, 1] (0: off), got {value!r}")


REDRAW_INITS = ("own", "next_frame")


def _check_redraw_init(value) -> None:
    """Where the first frame's redraw starts: its own finished latents, or the second video frame's picture."""
    if value not in REDRAW_INITS:
        raise ValueError(f"first_frame_redraw_init must be one of {', '.join(REDRAW_INITS)}, got {value!r}")


class ReactIDPipeline(DiffusionPipeline):
    model_cpu_offload_seq = "text_encoder->transformer->vae"

    def __init__(self, vae, text_encoder, tokenizer, transformer: ReactIDTransformer, scheduler: FlowMatchEulerDiscreteScheduler,
                 max_sequence_length: int = 512, default_height: int = 480, default_width: int = 832, default_fps: int = 16,
                 reference_size: int | None = None, max_frames: int = 81, caption_max_length: int | None = None,
                 name_max_length: int | None = None, prompt_mode: str = "prompt", default_layout: str | None = None,
                 first_frame_guidance: float | None = None, default_guidance_scale: float | None = None,
                 first_frame_redraw: float = 0.0, first_frame_redraw_init: str = "own",
                 x0_channel_guidance: float | None = None):
        super().__init__()
        if default_layout is not None and default_layout not in LAYOUTS:
            raise ValueError(f"default_layout must be one of {', '.join(LAYOUTS)} or null, got {default_layout!r}")
        _check_scale("first_frame_guidance", first_frame_guidance)
        _check_scale("default_guidance_scale", default_guidance_scale)
        _check_scale("x0_channel_guidance", x0_channel_guidance)
        _check_redraw(first_frame_redraw)
        _check_redraw_init(first_frame_redraw_init)
        self.register_modules(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, scheduler=scheduler)
        self.register_to_config(max_sequence_length=max_sequence_length, default_height=default_height, default_width=default_width,
                                default_fps=default_fps, reference_size=reference_size, max_frames=max_frames,
                                caption_max_length=caption_max_length, name_max_length=name_max_length, prompt_mode=prompt_mode,
                                default_layout=default_layout, first_frame_guidance=first_frame_guidance,
                                default_guidance_scale=default_guidance_scale, first_frame_redraw=first_frame_redraw,
                                first_frame_redraw_init=first_frame_redraw_init, x0_channel_guidance=x0_channel_guidance)
        self.vae_scale_spatial = int(getattr(vae.config, "scale_factor_spatial", 8) or 8)
        self.vae_scale_temporal = int(getattr(vae.config, "scale_factor_temporal", 4) or 4)

    # ---- convenience attributes the studio reads -------------------------------------------------
    @property
    def default_height(self) -> int:
        return self.config.default_height

    @property
    def default_width(self) -> int:
        return self.config.default_width

    @property
    def default_fps(self) -> int:
        return self.config.default_fps

    @property
    def max_subjects(self) -> int:
        return self.transformer.config.max_subjects

    @property
    def size_multiple(self) -> int:
        return self.vae_scale_spatial * self.transformer.config.patch_size[1]

    # ------------------------------------------------------------------------------------------
    # Loading / saving
    # ------------------------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, pretrained: str | Path, reactid_checkpoint: str | Path | None = None, device: str | torch.device = "cpu",
                        torch_dtype: torch.dtype | None = None, **kwargs) -> "ReactIDPipeline":
        """A directory saved by `save_pretrained` (the embedded default), or a Wan2.1 diffusers directory /
        hub id plus an optional ReactID checkpoint (without one, ReactID starts from its zero-initialised
        state and reproduces plain Wan)."""
        path = Path(str(pretrained))
        if (path / PIPELINE_CONFIG).is_file():
            return cls._load_reactid_dir(path, device, torch_dtype)
        from transformers import AutoTokenizer, UMT5EncoderModel
        from diffusers import WanTransformer3DModel

        dtype = torch_dtype or torch.float32
        vae = AutoencoderKLWan.from_pretrained(pretrained, subfolder="vae", torch_dtype=torch.float32)
        text_encoder = UMT5EncoderModel.from_pretrained(pretrained, subfolder="text_encoder", torch_dtype=dtype)
        tokenizer = AutoTokenizer.from_pretrained(pretrained, subfolder="tokenizer")
        base = WanTransformer3DModel.from_pretrained(pretrained, subfolder="transformer", torch_dtype=dtype)
        if reactid_checkpoint is not None:
            from .weights import build_reactid_from_checkpoint

            transformer = build_reactid_from_checkpoint(base, reactid_checkpoint)
        else:
            transformer = ReactIDTransformer.from_wan(base)
        del base
        scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(pretrained, subfolder="scheduler") if (path / "scheduler").is_dir() else FlowMatchEulerDiscreteScheduler(shift=3.0)
        pipe = cls(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, scheduler=scheduler, **kwargs)
        return pipe.to(device)

    def save_pretrained(self, directory: str | Path, **kwargs) -> None:  # noqa: D401
        """Our own self-contained layout (component subfolders + reactid_pipeline.json)."""
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        self.vae.save_pretrained(directory / "vae")
        self.text_encoder.save_pretrained(directory / "text_encoder")
        self.tokenizer.save_pretrained(directory / "tokenizer")
        self.transformer.save_pretrained(directory / "transformer")
        self.scheduler.save_pretrained(directory / "scheduler")
        cfg = {k: v for k, v in self.config.items() if not k.startswith("_") and k not in ("vae", "text_encoder", "tokenizer", "transformer", "scheduler")}
        cfg["tokenizer_class"] = type(self.tokenizer).__name__
        (directory / PIPELINE_CONFIG).write_text(json.dumps(cfg, indent=2) + "\n")

    @classmethod
    def _load_reactid_dir(cls, path: Path, device, torch_dtype) -> "ReactIDPipeline":
        import transformers
        from transformers import UMT5EncoderModel

        cfg = json.loads((path / PIPELINE_CONFIG).read_text())
        tok_cls = getattr(transformers, cfg.pop("tokenizer_class", "AutoTokenizer"))
        vae = load_vae(path / "vae")
        text_encoder = UMT5EncoderModel.from_pretrained(path / "text_encoder").eval()
        tokenizer = tok_cls.from_pretrained(path / "tokenizer")
        transformer = ReactIDTransformer.from_pretrained(path / "transformer").eval()
        scheduler = FlowMatchEulerDiscreteScheduler.from_pretrained(path / "scheduler")
        pipe = cls(vae=vae, text_encoder=text_encoder, tokenizer=tokenizer, transformer=transformer, scheduler=scheduler, **cfg)
        if torch_dtype is not None:
            pipe.transformer.to(torch_dtype)
        return pipe.to(device)

    # ------------------------------------------------------------------------------------------
    # Text
    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_text(self, texts: list[str], max_length: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> (embeddings [n, L, D] with padding zeroed as Wan does, mask [n, L])."""
        L = max_length or self.config.max_sequence_length
        tok = self.tokenizer([t.strip() for t in texts], padding="max_length", max_length=L, truncation=True, add_special_tokens=True, return_attention_mask=True, return_tensors="pt")
        ids, mask = tok.input_ids.to(self.device), tok.attention_mask.to(self.device)
        emb = self.text_encoder(input_ids=ids, attention_mask=mask).last_hidden_state
        emb = emb * mask.unsqueeze(-1).to(emb.dtype)
        return emb.to(self.transformer.dtype), mask.bool()

    # ------------------------------------------------------------------------------------------
    # Input checks (all before heavy work)
    # ------------------------------------------------------------------------------------------
    def check_inputs(self, timeline: Timeline, references, height: int, width: int, num_inference_steps: int, guidance_scale: float):
        if not isinstance(timeline, Timeline):
            raise TypeError(f"timeline must be a model.timeline.Timeline, got {type(timeline).__name__}")
        timeline.validate()
        m = self.size_multiple
        if height % m or width % m or height < m or width < m:
            raise ValueError(f"height and width must be positive multiples of {m} for this model (VAE x{self.vae_scale_spatial}, patch x{self.transformer.config.patch_size[1]}); got {height}x{width}")
        if len(timeline.subjects) > self.max_subjects:
            raise ValueError(f"this model takes at most {self.max_subjects} subjects; the timeline has {len(timeline.subjects)}")
        if timeline.num_frames > self.config.max_frames and not getattr(self, "_segmenting", False):
            raise ValueError(f"{timeline.duration:.2f}s is {timeline.num_frames} frames; this model generates at most {self.config.max_frames} frames at once — pass segment_seconds to generate it segment by segment")
        if num_inference_steps < 1:
            raise ValueError(f"num_inference_steps must be >= 1, got {num_inference_steps}")
        if guidance_scale < 0:
            raise ValueError(f"guidance_scale must be >= 0, got {guidance_scale}")

    def prepare_references(self, timeline: Timeline, references: dict | None) -> dict[str, list[Image.Image]]:
        """Resolve and load every subject's references, naming the subject and the file on any problem."""
        ids = [s.id for s in timeline.subjects]
        if references is None:
            references = {s.id: list(s.references) for s in timeline.subjects}
        unknown = [k for k in references if k not in ids]
        if unknown:
            raise ReferenceError(f"references given for unknown subject(s) {', '.join(map(repr, unknown))}; the timeline's subjects are {', '.join(map(repr, ids))}")
        limit = self.transformer.config.max_references_per_subject
        out: dict[str, list[Image.Image]] = {}
        for s in timeline.subjects:
            refs = references.get(s.id) or []
            if isinstance(refs, (str, Path, Image.Image, np.ndarray)):
                refs = [refs]
            if not refs:
                raise ReferenceError(f"subject {s.id!r} ({s.name}) has no reference image; add 1 to {limit}")
            if len(refs) > limit:
                raise ReferenceError(f"subject {s.id!r} ({s.name}) has {len(refs)} reference images; at most {limit}")
            out[s.id] = [load_reference_image(r, label=f"subject {s.id!r} ({s.name}), reference {i + 1}" + (f" ({Path(r).name})" if isinstance(r, (str, Path)) else "")) for i, r in enumerate(refs)]
        return out

    # ------------------------------------------------------------------------------------------
    # Latent helpers
    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def encode_video(self, video: torch.Tensor, reference: bool = False) -> torch.Tensor:
        """[B, 3, F, H, W] in [-1, 1] -> normalised latents (model/latents.py; `reference`: reference images)."""
        vae_dtype = self.vae.dtype
        lat = self.vae.encode(video.to(self.device, vae_dtype)).latent_dist.mode()
        return latent_scale.normalise(lat, self.vae.config, video=not reference).to(self.transformer.dtype)

    @torch.no_grad()
    def decode_latents(self, latents: torch.Tensor) -> torch.Tensor:
        """normalised latents -> [B, 3, F, H, W] in [-1, 1]."""
        lat = latent_scale.denormalise(latents.float(), self.vae.config)
        return self.vae.decode(lat.to(self.vae.dtype)).sample.float().clamp(-1, 1)

    @torch.no_grad()
    def encode_reference_features(self, timeline: Timeline, images: dict[str, list[Image.Image]], size: int):
        """Reference images -> VAE latents -> the reference branch (once per generation)."""
        arrays, subject_idx, names = [], [], []
        for i, s in enumerate(timeline.subjects):
            for img in images[s.id]:
                arrays.append(reference_to_array(img, size))
                subject_idx.append(i)
                names.append(s.name)
        video = torch.from_numpy(np.stack(arrays)).unsqueeze(2)  # [M, 3, 1, size, size]
        lat = self.encode_video(video, reference=True)  # [M, z, 1, h, w]
        lat = lat[:, :, 0].unsqueeze(0)  # [1, M, z, h, w]
        name_emb, _ = self.encode_text(names, max_length=self.config.name_max_length or min(32, self.config.max_sequence_length))
        offsets = None
        if self.transformer.config.get("reference_offset_bias", False):  # where each reference token lies on its subject
            p = self.transformer.config.patch_size
            grid = (lat.shape[-2] // p[1], lat.shape[-1] // p[2])
            offsets = torch.from_numpy(np.stack([reference_token_offsets(a, grid) for a in arrays]))[None]
        return self.transformer.encode_references(lat, torch.tensor([subject_idx], device=self.device), name_emb.unsqueeze(0),
                                                  num_subjects=len(timeline.subjects), reference_offsets=offsets)

    def _reference_size(self, height: int, width: int) -> int:
        if self.config.reference_size:
            return int(self.config.reference_size)
        m = self.size_multiple
        return max(m, (min(height, width) // m) * m)

    # ------------------------------------------------------------------------------------------
    # Generation
    # ------------------------------------------------------------------------------------------
    @torch.no_grad()
    def __call__(self, timeline: Timeline, references: dict | None = None, negative_prompt: str = "", num_inference_steps: int = 50,
                 guidance_scale: float = 5.0, seed: int | None = None, generator: torch.Generator | None = None,
                 height: int | None = None, width: int | None = None, callback_on_step_end: Callable | None = None,
                 cancel_event: threading.Event | None = None, progress: bool = True, segment_seconds: float | None = None,
                 overlap_latent_frames: int = 2, reroll_segment: int | None = None, previous: ReactIDPipelineOutput | None = None,
                 mask_feedback: bool | str = True, binding_masks: torch.Tensor | None = None, init_video: np.ndarray | None = None,
                 strength: float = 1.0, binding_masks_steps: int | None = None, layout: str | None = None,
                 layout_steps: int | None = None, layout_radius: float = DEFAULT_LAYOUT_RADIUS,
                 layout_boxes=None, first_frame_guidance: float | None = None,
                 first_frame_redraw: float | None = None, first_frame_redraw_init: str | None = None) -> ReactIDPipelineOutput:
        """mask_feedback sets the subject masks behind the binding labels at each denoising step: True or
        'previous' (the previous step's predicted masks, one forward per step), 'fresh' (a no-binding forward on the
        current latents first, as training's predicted binding does; one more forward per step) or False / 'none'.
        binding_masks [S, N] (each subject's share of each video token, in the transformer's token order) replaces
        them at every step: masks known beforehand, e.g. drawn by a person or, in benchmarks, the truth's, to
        measure how much the predicted masks cost. One window only (no segment_seconds).
        binding_masks_steps K: binding_masks bind only the first K denoising steps (where the layout is decided),
        then mask_feedback's masks take over (None: every step).
        layout ('columns', 'boxes' or 'paths', model/layout.py): a start layout binds the first layout_steps steps
        (None: model/layout.py STEPS_BY_LAYOUT, 10, or 16 for paths) instead: subject i in the i-th of S columns at
        mid-height (a disc of layout_radius of the frame's shorter side), or layout_boxes, one (x0, y0, x1, y1) box
        per subject in fractions of the frame, or the columns' discs moved along the paths the captions command.
        None: the model decides.
        With segment_seconds the layout binds the first window; later windows continue from its overlap.
        first_frame_guidance: the guidance scale of each window's first latent frame (the lone first video frame,
        which has its own latent space); None: the export's `first_frame_guidance`, and if that is null
        guidance_scale. The shipped sprite model says 1: at CFG 3 its first frame came out 30% smaller and blocky.
        first_frame_redraw r in [0, 1] (None: the export's, else 0, off): after the schedule, run its last r of the
        steps again on the first latent frame alone, the others pinned to their finished latents noised to each
        step's level; first_frame_redraw_init (None: the export's, else 'own') starts it from its own finished
        latents ('own') or from the second video frame's picture encoded as a first frame ('next_frame'). The shipped
        sprite model says 0.3 from 'next_frame': its first frame had come out blocky and fragmented. Not with
        init_video, nor in a later segment window (its first frame is the pinned overlap).
        init_video (uint8 [F, H, W, 3], the timeline's frame count and size) with strength s in (0, 1]: redraw a clip
        instead of drawing from noise (diffusers' video-to-video): its latents are noised to the schedule's level at
        the last s of the steps and only those steps run; s 1 ignores the clip's content. One window only."""
        if mask_feedback not in (True, False, "previous", "fresh", "none"):
            raise ValueError(f"mask_feedback must be True, False, 'previous', 'fresh' or 'none', got {mask_feedback!r}")
        height = self.default_height if height is None else int(height)
        width = self.default_width if width is None else int(width)
        self._segmenting = segment_seconds is not None
        try:
            self.check_inputs(timeline, references, height, width, num_inference_steps, guidance_scale)
        finally:
            self._segmenting = False
        if reroll_segment is not None and previous is None:
            raise ValueError("reroll_segment needs previous= (the output whose segment is re-rolled)")
        if binding_masks is not None and layout is not None:
            raise ValueError("give binding_masks or a layout, not both")
        if first_frame_guidance is None:
            first_frame_guidance = getattr(self.config, "first_frame_guidance", None)
        _check_scale("first_frame_guidance", first_frame_guidance)
        # (the lone first latent frame's guidance scale, every other frame's)
        frame_guidance = (float(guidance_scale if first_frame_guidance is None else first_frame_guidance), float(guidance_scale))
        if first_frame_redraw is None:
            first_frame_redraw = getattr(self.config, "first_frame_redraw", None) or 0.0
        _check_redraw(first_frame_redraw)
        if first_frame_redraw_init is None:
            first_frame_redraw_init = getattr(self.config, "first_frame_redraw_init", None) or "own"
        _check_redraw_init(first_frame_redraw_init)
        if binding_masks is not None:
            binding_masks = self._check_binding_masks(binding_masks, timeline, height, width, segment_seconds)
        layout_pixels = None
        if layout is not None:
            if layout_steps is None:
                layout_steps = STEPS_BY_LAYOUT.get(layout, 0)
            if not (isinstance(layout_steps, int) and layout_steps >= 0):
                raise ValueError(f"layout_steps must be a whole number of steps >= 0, got {layout_steps!r}")
            layout_pixels = layout_pixel_masks(layout, len(timeline.subjects), height, width, layout_radius, layout_boxes,
                                               timeline=timeline)
            binding_masks_steps = layout_steps
        if binding_masks_steps is not None and not (isinstance(binding_masks_steps, int) and binding_masks_steps >= 0):
            raise ValueError(f"binding_masks_steps must be a whole number of steps >= 0, got {binding_masks_steps!r}")
        init_latents = None
        if init_video is not None:
            init_latents = self.encode_video(self._check_init_video(init_video, strength, timeline, height, width, segment_seconds))
        images = self.prepare_references(timeline, references)
        if seed is None:
            seed = int(generator.initial_seed()) if generator is not None else int(torch.randint(0, 2**31 - 1, (1,)).item())

        ref_size = self._reference_size(height, width)
        ref_feats = self.encode_reference_features(timeline, images, ref_size)
        # a model trained without timeline modules reads the timeline from its prompt (the paper's baseline)
        prompt_text = flatten_to_prompt(timeline) if self.config.prompt_mode == "flattened" else timeline.prompt
        prompt_emb, _ = self.encode_text([prompt_text])
        x0_guidance = getattr(self.config, "x0_channel_guidance", None) if getattr(self.transformer.config, "x0_channels_from", 0) else None
        neg_emb, _ = self.encode_text([negative_prompt]) if max(frame_guidance + (x0_guidance or 0.0,)) > 1.0 else (None, None)

        if segment_seconds is None:
            windows = [(0.0, timeline)]
        else:
            step = TIME_COMPRESSION / timeline.fps
            seg = max(2 * step, round(segment_seconds / step) * step)
            overlap = (overlap_latent_frames - 1) * step if overlap_latent_frames > 1 else 0.0
            windows = split_segments(timeline, seg, overlap)
        seeds = [seed + i for i in range(len(windows))]
        if previous is not None and reroll_segment is not None:
            if not 0 <= reroll_segment < len(windows) or len(previous.seeds) != len(windows):
                raise ValueError(f"reroll_segment must be in 0..{len(previous.seeds) - 1} for this output")
            seeds = list(previous.seeds)
            seeds[reroll_segment] = seed

        all_frames: list[np.ndarray] = []
        last_latents = None
        all_masks: list[np.ndarray] = []
        segments: list[tuple[int, int]] = []
        prev_video = None
        total_steps = num_inference_steps * len(windows)
        bar = self.progress_bar(total=total_steps) if progress else None
        try:
            for wi, (offset, sub) in enumerate(windows):
                keep_prev = previous is not None and reroll_segment is not None and wi < reroll_segment
                if keep_prev:
                    s0, s1 = previous.segments[wi]
                    video_np = previous.frames[s0:s1]
                    all_frames.append(video_np)
                    all_masks.append(previous.masks[:, s0:s1])
                    segments.append((s0, s1))
                    prev_video = self._frames_to_tensor(previous.frames[:s1])
                    if bar is not None:
                        bar.update(num_inference_steps)
                    continue
                ctx_latents = None
                n_ctx_frames = 0
                if wi > 0 and overlap_latent_frames > 0 and prev_video is not None:
                    n_ctx_frames = TIME_COMPRESSION * (overlap_latent_frames - 1) + 1
                    ctx_latents = self.encode_video(prev_video[:, :, -n_ctx_frames:])
                window_masks = binding_masks
                if layout_pixels is not None:  # the layout places the subjects in the first window; later ones continue it
                    if wi == 0 and layout == "paths" and sub.num_frames != timeline.num_frames:
                        layout_pixels = layout_pixel_masks(layout, len(sub.subjects), height, width, layout_radius, timeline=sub)
                    window_masks = self._layout_tokens(layout_pixels, sub, height, width) if wi == 0 else None
                frames_t, masks_t = self._denoise(
                    sub, ref_feats, prompt_emb, neg_emb, height, width, num_inference_steps, frame_guidance, seeds[wi],
                    ctx_latents, callback_on_step_end, cancel_event, bar, wi * num_inference_steps, mask_feedback, window_masks,
                    init_latents, strength, binding_masks_steps, first_frame_redraw, first_frame_redraw_init)
                last_latents = self._last_latents
                video = frames_t  # [1, 3, F, H, W] in [-1, 1]
                start = n_ctx_frames if wi > 0 else 0
                prev_video = video if prev_video is None else torch.cat([prev_video, video[:, :, start:]], 2)
                seg_frames = ((video[0, :, start:].permute(1, 2, 3, 0).cpu().numpy() + 1) * 127.5).round().clip(0, 255).astype(np.uint8)
                f0 = sum(len(f) for f in all_frames)
                all_frames.append(seg_frames)
                all_masks.append(masks_t[:, start:])
                segments.append((f0, f0 + len(seg_frames)))
        finally:
            if bar is not None:
                bar.close()
        frames = np.concatenate(all_frames, 0)
        masks = np.concatenate(all_masks, 1)
        return ReactIDPipelineOutput(frames=frames, masks=masks, fps=timeline.fps, timeline=timeline, segments=segments, seeds=seeds,
                                     latents=last_latents if len(windows) == 1 and len(all_frames) == 1 else None)

    @staticmethod
    def _frames_to_tensor(frames: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(frames).float().div(127.5).sub(1).permute(3, 0, 1, 2).unsqueeze(0)

    def _denoise(self, timeline: Timeline, ref_feats, prompt_emb, neg_emb, height, width, steps, guidance, seed, ctx_latents,
                 callback, cancel_event, bar, step_offset, mask_feedback, binding_masks=None, init_latents=None, strength=1.0,
                 binding_masks_steps=None, first_frame_redraw: float = 0.0, first_frame_redraw_init: str = "own"):
        device, dtype = self.device, self.transformer.dtype
        n_lat = num_latent_frames(timeline.num_frames)
        h, w = height // self.vae_scale_spatial, width // self.vae_scale_spatial
        z = self.transformer.config.in_channels
        gen = torch.Generator(device="cpu").manual_seed(int(seed))
        latents = torch.randn(1, z, n_lat, h, w, generator=gen, dtype=torch.float32).to(device, dtype)
        noise_ctx = None
        if ctx_latents is not None:
            n_ctx = ctx_latents.shape[2]
            noise_ctx = torch.randn(ctx_latents.shape, generator=gen, dtype=torch.float32).to(device, dtype)
        cap_len = self.config.caption_max_length or min(64, self.config.max_sequence_length)
        tl_cond = build_timeline_conditioning([timeline], lambda caps: self.encode_text(caps, max_length=cap_len),
                                              max_subjects=self.max_subjects).to(device)
        tl_cond.embeds = tl_cond.embeds.to(dtype)
        tl_null = tl_cond.dropped()
        self.scheduler.set_timesteps(steps, device=device)
        timesteps = self.scheduler.timesteps
        if init_latents is not None:  # redraw: start at the level the last `strength` of the schedule begins with
            start = steps - max(1, min(steps, round(steps * strength)))
            timesteps = timesteps[start:]
            self.scheduler.set_begin_index(start)
            sigma0 = self.scheduler.sigmas[start].to(dtype)
            latents = (1 - sigma0) * init_latents.to(device, dtype) + sigma0 * latents
        masks = None
        p = self.transformer.config.patch_size
        grid = (n_lat // p[0], h // p[1], w // p[2])
        # per latent frame: the lone first frame's own scale, then the rest's
        frame_scale = torch.full((1, 1, n_lat, 1, 1), guidance[1], device=device, dtype=dtype)
        frame_scale[:, :, 0] = guidance[0]
        x0_from = getattr(self.transformer.config, "x0_channels_from", 0)
        x0_guidance = getattr(self.config, "x0_channel_guidance", None)
        if x0_from and x0_guidance is not None:
            # a grown latent's x0 channels at their own scale (the export's x0_channel_guidance): the difference
            # between the two branches' guesses of a faint detail channel is mostly noise, which a high scale
            # paints over the whole frame
            frame_scale = frame_scale.expand(1, latents.shape[1], n_lat, 1, 1).clone()
            frame_scale[:, x0_from:] = float(x0_guidance)
        def predict(latents, i, t, masks, scale):
            """One denoising step's guided prediction and the masks the next step binds with."""
            tt = t.expand(1).to(device)
            given = binding_masks is not None and (binding_masks_steps is None or i < binding_masks_steps)
            if mask_feedback == "fresh" and not given:
                logits = self.transformer(latents, tt, prompt_emb, reference_features=ref_feats, timeline=tl_cond).mask_logits
                masks = None if logits is None else torch.sigmoid(logits.float())
            if given:
                bind = binding_masks
            else:
                bind = masks if mask_feedback not in (False, "none") else None
            out = self.transformer(latents, tt, prompt_emb, reference_features=ref_feats, timeline=tl_cond, subject_masks=bind)
            pred = out.sample
            if neg_emb is not None and float(scale.max()) > 1.0:
                # the negative branch is what caption dropout trained: empty prompt, timeline captions dropped (the
                # attention's null slot), references kept, no binding labels
                unc = self.transformer(latents, tt, neg_emb, reference_features=ref_feats, timeline=tl_null, subject_masks=None).sample
                pred = unc + scale * (pred - unc)
            if out.mask_logits is not None and mask_feedback != "fresh":
                masks = torch.sigmoid(out.mask_logits.float())
            return pred, masks

        for i, t in enumerate(timesteps):
            if cancel_event is not None and cancel_event.is_set():
                raise GenerationCancelled("generation cancelled")
            if ctx_latents is not None:  # pin the overlap to the previous segment's end, noised to this level
                sigma = self.scheduler.sigmas[i].to(dtype)
                latents[:, :, :n_ctx] = (1 - sigma) * ctx_latents + sigma * noise_ctx
            pred, masks = predict(latents, i, t, masks, frame_scale)
            latents = self.scheduler.step(pred, t, latents, return_dict=False)[0]
            if callback is not None:
                ret = callback(self, step_offset + i, t, {"latents": latents}) or {}
                latents = ret.get("latents", latents)
            if bar is not None:
                bar.update(1)
        if first_frame_redraw > 0 and n_lat > 1 and ctx_latents is None and init_latents is None:
            latents, masks = self._redraw_first_frame(latents, masks, predict, frame_scale[:, :, :1], steps, first_frame_redraw,
                                                      first_frame_redraw_init, gen, cancel_event)
        if ctx_latents is not None:
            latents[:, :, :n_ctx] = ctx_latents
        self._last_latents = latents.detach().float().cpu()
        video = self.decode_latents(latents)
        F_ = video.shape[2]
        if masks is None:
            S = len(timeline.subjects)
            mask_video = np.zeros((S, F_, height, width), dtype=np.float32)
        else:
            mask_video = self._masks_to_video(masks, grid, F_, height, width)
        return video, mask_video

    def _redraw_first_frame(self, latents, masks, predict, first_scale, steps, share, init, gen, cancel_event):
        """Redraw the lone first latent frame with the rest pinned (RePaint-style replacement): from the level the
        last `share` of the schedule begins with, the other frames are the finished ones noised to each step's level,
        so the first frame is drawn to agree with them. `init` 'next_frame' starts it from the second video frame as
        the finished latents draw it (one frame apart: nearly the same picture), encoded as a first frame."""
        device, dtype = latents.device, latents.dtype
        start = steps - max(1, min(steps, round(steps * share)))
        self.scheduler.set_timesteps(steps, device=device)
        self.scheduler.set_begin_index(start)
        known = latents.clone()
        noise = torch.randn(known.shape, generator=gen, dtype=torch.float32).to(device, dtype)
        sigma0 = self.scheduler.sigmas[start].to(dtype)
        latents = (1 - sigma0) * known + sigma0 * noise
        if init == "next_frame":  # latent frame 2 is the learned decoder's context for the second frame
            second = self.decode_latents(known[:, :, :3])[:, :, 1:2]
            latents[:, :, :1] = (1 - sigma0) * self.encode_video(second).to(device, dtype) + sigma0 * noise[:, :, :1]
        for i in range(start, steps):
            if cancel_event is not None and cancel_event.is_set():
                raise GenerationCancelled("generation cancelled")
            t = self.scheduler.timesteps[i]
            sigma = self.scheduler.sigmas[i].to(dtype)
            latents[:, :, 1:] = (1 - sigma) * known[:, :, 1:] + sigma * noise[:, :, 1:]
            pred, masks = predict(latents, i, t, masks, first_scale)
            latents = self.scheduler.step(pred, t, latents, return_dict=False)[0]
        latents[:, :, 1:] = known[:, :, 1:]
        return latents, masks

    def _check_init_video(self, video, strength: float, timeline: Timeline, height: int, width: int, segment_seconds) -> torch.Tensor:
        if segment_seconds is not None:
            raise ValueError("init_video covers one window: redraw without segment_seconds")
        if not (isinstance(strength, (int, float)) and 0 < strength <= 1):
            raise ValueError(f"strength must be in (0, 1], got {strength!r}")
        v = np.asarray(video)
        want = (timeline.num_frames, height, width, 3)
        if v.shape != want:
            raise ValueError(f"init_video must be [frames, height, width, 3] = {list(want)} for this timeline and size, got {list(v.shape)}")
        if v.dtype != np.uint8:
            raise ValueError(f"init_video must be uint8 frames (0..255), got {v.dtype}")
        return self._frames_to_tensor(v)

    def _layout_tokens(self, pixels: np.ndarray, timeline: Timeline, height: int, width: int) -> torch.Tensor:
        """[1, S, N] binding masks of a start layout for one window's timeline."""
        p = self.transformer.config.patch_size
        grid = (height // self.vae_scale_spatial // p[1], width // self.vae_scale_spatial // p[2])
        tokens = layout_token_masks(pixels, num_latent_frames(timeline.num_frames) // p[0], grid)
        return self._check_binding_masks(tokens, timeline, height, width, None)

    def _check_binding_masks(self, masks, timeline: Timeline, height: int, width: int, segment_seconds) -> torch.Tensor:
        if segment_seconds is not None:
            raise ValueError("binding_masks cover one window: generate without segment_seconds")
        p = self.transformer.config.patch_size
        n_lat = num_latent_frames(timeline.num_frames)
        n = (n_lat // p[0]) * (height // self.vae_scale_spatial // p[1]) * (width // self.vae_scale_spatial // p[2])
        m = torch.as_tensor(masks, dtype=torch.float32)
        S = len(timeline.subjects)
        if m.ndim != 2 or m.shape != (S, n):
            raise ValueError(f"binding_masks must be [subjects, tokens] = [{S}, {n}] for this timeline and size, got {list(m.shape)}")
        if not bool(torch.isfinite(m).all()) or float(m.min()) < 0 or float(m.max()) > 1:
            raise ValueError("binding_masks must hold each subject's share of a token, in [0, 1]")
        return m.unsqueeze(0).to(self.device)

    @staticmethod
    def _masks_to_video(token_probs: torch.Tensor, grid, n_frames: int, height: int, width: int) -> np.ndarray:
        """[1, S, N] token probabilities -> [S, F, H, W] at video resolution (latent frame f covers video
        frames 4f-3..4f; frame 0 is latent frame 0)."""
        S = token_probs.shape[1]
        m = token_probs[0].reshape(S, *grid).float()  # [S, F', H', W']
        m = F.interpolate(m, size=(height, width), mode="bilinear", align_corners=False)  # per frame, spatial
        idx = torch.tensor([0] + [(f + TIME_COMPRESSION - 1) // TIME_COMPRESSION for f in range(1, n_frames)])
        idx = idx.clamp_max(m.shape[1] - 1)
        return m[:, idx].clamp(0, 1).cpu().numpy().astype(np.float32)
