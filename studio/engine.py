"""The one place the studio talks to the model.

Everything the UI needs from `model/` goes through `Engine`: loading (embedded default or Wan weights),
the model's limits (size, fps, subjects, references, frames), reference loading and the crop the model
sees, generation with progress and cancel, segment re-roll. If the model API changes, this file is the
adaptation point.

On a Hugging Face ZeroGPU Space the GPU work runs inside `spaces.GPU`; without the `spaces` package the
decorator is a no-op.
"""

from __future__ import annotations

import os
import random
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

try:  # Hugging Face Spaces (ZeroGPU): the GPU is attached only inside functions decorated with spaces.GPU
    import spaces  # type: ignore

    _spaces_gpu = spaces.GPU
except Exception:  # noqa: BLE001  (not installed, or not on a Space)
    _spaces_gpu = None

from model.timeline import Timeline

MAX_SEED = 2**31 - 1


def gpu(duration: int = 300) -> Callable:
    """`spaces.GPU(duration=...)` when the `spaces` package imports, else a no-op decorator."""

    def wrap(fn: Callable) -> Callable:
        if _spaces_gpu is None:
            return fn
        return _spaces_gpu(duration=duration)(fn)

    return wrap


@gpu(duration=300)
def _run_pipeline(pipe: Any, timeline: Timeline, kwargs: dict) -> Any:
    """The GPU job: one pipeline call (module level so ZeroGPU can wrap it at import time)."""
    return pipe(timeline, **kwargs)


class EngineUnavailable(RuntimeError):
    """The model cannot run here (e.g. a Wan model asked for on a machine without a GPU)."""


@dataclass(frozen=True)
class Limits:
    """What the loaded model accepts; the UI builds its controls from this."""

    height: int
    width: int
    fps: int
    max_subjects: int
    max_references: int
    size_multiple: int
    max_frames: int  # frames generated in one pass
    default_steps: int
    max_steps: int = 100
    default_guidance: float = 5.0  # the model's `default_guidance_scale` (reactid_pipeline.json), else Wan's 5
    sizes: tuple[tuple[int, int], ...] = ()

    @property
    def single_pass_seconds(self) -> float:
        return (self.max_frames - 1) / self.fps

    @property
    def max_duration(self) -> float:
        """Longest video the studio offers (longer than one pass -> segment by segment)."""
        return float(min(60.0, max(self.single_pass_seconds, 6 * self.single_pass_seconds)))

    def size_label(self, h: int, w: int) -> str:
        return f"{w}x{h}"

    def size_choices(self) -> list[str]:
        return [self.size_label(h, w) for h, w in (self.sizes or ((self.height, self.width),))]

    def parse_size(self, label: str | None) -> tuple[int, int]:
        if not label:
            return self.height, self.width
        try:
            w, h = (int(x) for x in str(label).lower().split("x"))
        except ValueError:
            raise ValueError(f"size {label!r} is not WIDTHxHEIGHT") from None
        m = self.size_multiple
        if h % m or w % m or h < m or w < m:
            raise ValueError(f"size {label}: width and height must be positive multiples of {m} for this model")
        return h, w


@dataclass
class GenerationRequest:
    timeline: Timeline
    negative_prompt: str = ""
    steps: int = 20
    guidance: float = 5.0
    seed: int | None = None
    height: int | None = None
    width: int | None = None
    segment_seconds: float | None = None
    reroll_segment: int | None = None
    previous: Any = None  # ReactIDPipelineOutput whose segment is re-rolled
    layout: str = "auto"  # start layout (model/layout.py): "auto" (the model's default_layout), "paths", "columns" or "none"
    extra: dict = field(default_factory=dict)


def random_seed() -> int:
    return random.randint(0, MAX_SEED)


class Engine:
    """Wraps a ReactIDPipeline (loaded now, or lazily by `loader`)."""

    def __init__(
        self,
        pipe: Any = None,
        *,
        loader: Callable[[], Any] | None = None,
        name: str = "model",
        device: str = "cpu",
        is_default: bool = False,
        unavailable: str | None = None,
        default_steps: int | None = None,
    ):
        self._pipe = pipe
        self._loader = loader
        self._lock = threading.Lock()  # one generation at a time in this process (the queue also enforces it)
        self._load_lock = threading.Lock()
        self.name = name
        self.device = device
        self.is_default = is_default
        self.unavailable = unavailable
        self._default_steps = default_steps
        self.last_threads: int | None = None  # torch threads of the last CPU generation

    # ---- construction ----------------------------------------------------------------------
    @classmethod
    def default(cls, device: str = "cpu", directory: str | Path | None = None) -> "Engine":
        """The embedded default model shipped in assets/ (small; runs on a laptop CPU), or another exported
        pipeline directory of the same kind (`directory`, e.g. a ladder model)."""
        from model.default import load_default_pipeline

        pipe = load_default_pipeline(device=device, directory=directory)
        if directory is None:
            return cls(pipe, name="embedded default (sprite world)", device=device, is_default=True)
        return cls(pipe, name=f"{Path(directory).name} (sprite world)", device=device, is_default=True)  # same kind of model: same sizes and steps

    @classmethod
    def from_pretrained(cls, model: str, reactid_checkpoint: str | None = None, device: str = "auto", dtype: str = "auto") -> "Engine":
        """Wan2.1 weights (+ a ReactID checkpoint). Without a GPU this returns an engine that explains why
        it cannot generate, unless `device="cpu"` is asked for explicitly."""
        import torch

        on_zero_gpu = _spaces_gpu is not None and bool(os.environ.get("SPACE_ID"))
        has_cuda = torch.cuda.is_available() or on_zero_gpu
        if device == "auto":
            device = "cuda" if has_cuda else "cpu"
            if not has_cuda:
                return cls(
                    None,
                    name=str(model),
                    device="cpu",
                    unavailable=(
                        f"The model {model!r} (Wan2.1) needs a CUDA GPU and none was found on this machine. "
                        "Editing works, but generation is disabled. Start without --model to use the embedded default "
                        "model, or pass --device cpu to run it on the CPU anyway (very slow, tens of GB of memory)."
                    ),
                )
        elif device.startswith("cuda") and not has_cuda:
            return cls(None, name=str(model), device=device, unavailable=f"--device {device} was asked for, but no CUDA GPU is available here; generation is disabled.")
        torch_dtype = {"auto": torch.bfloat16 if device.startswith("cuda") else torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16, "fp32": torch.float32}[dtype]

        def load() -> Any:
            from model.pipeline import ReactIDPipeline

            return ReactIDPipeline.from_pretrained(model, reactid_checkpoint=reactid_checkpoint, device=device, torch_dtype=torch_dtype)

        return cls(None, loader=load, name=str(model), device=device, default_steps=50)

    # ---- the pipeline ------------------------------------------------------------------------
    @property
    def available(self) -> bool:
        return self.unavailable is None

    @property
    def pipe(self) -> Any:
        if self.unavailable:
            raise EngineUnavailable(self.unavailable)
        if self._pipe is None:
            with self._load_lock:
                if self._pipe is None:
                    if self._loader is None:
                        raise EngineUnavailable("no model is loaded")
                    try:
                        self._pipe = self._loader()
                    except Exception as exc:  # noqa: BLE001 - loading errors become a message, not a crash
                        self.unavailable = f"The model {self.name!r} could not be loaded: {exc}"
                        raise EngineUnavailable(self.unavailable) from exc
        return self._pipe

    def use_pipeline(self, pipe: Any, name: str) -> None:
        """Generate with another loaded pipeline from now on (the training tab's "use this checkpoint"). Waits
        for a generation in progress to finish."""
        with self._lock:
            self._pipe, self._loader, self.name, self.unavailable = pipe, None, name, None

    def load(self) -> "Engine":
        """Load now (app start) rather than on the first generation."""
        if self.available:
            try:
                self.pipe
            except EngineUnavailable:
                pass
        return self

    def limits(self) -> Limits:
        pipe = self._pipe
        if pipe is None and self.available and self._loader is not None:
            try:
                pipe = self.pipe
            except EngineUnavailable:
                pipe = None
        if pipe is None:  # Wan2.1 defaults, so the editor still works without a model
            return Limits(480, 832, 16, 6, 4, 16, 81, self._default_steps or 50, sizes=((480, 832), (832, 480), (480, 480)))
        h, w, fps = int(pipe.default_height), int(pipe.default_width), int(pipe.default_fps)
        cfg = getattr(pipe, "config", {})
        max_frames = int(getattr(cfg, "max_frames", None) or (cfg.get("max_frames") if isinstance(cfg, dict) else None) or 81)
        tcfg = getattr(getattr(pipe, "transformer", None), "config", None)
        max_refs = int(getattr(tcfg, "max_references_per_subject", 4) or 4)
        multiple = int(getattr(pipe, "size_multiple", 16) or 16)
        sizes = [(h, w)]
        if h != w:
            sizes.append((w, h))
        if not self.is_default:
            for cand in ((480, 832), (832, 480), (480, 480), (720, 1280), (1280, 720)):
                if cand not in sizes and cand[0] % multiple == 0 and cand[1] % multiple == 0:
                    sizes.append(cand)
        steps = self._default_steps or int(getattr(pipe, "default_num_inference_steps", 0) or (20 if self.is_default else 50))
        guidance = getattr(cfg, "default_guidance_scale", None) or (cfg.get("default_guidance_scale") if isinstance(cfg, dict) else None)
        return Limits(h, w, fps, int(pipe.max_subjects), max_refs, multiple, max_frames, steps, sizes=tuple(sizes),
                      default_guidance=float(guidance) if guidance is not None else 5.0)

    def describe(self) -> str:
        if self.unavailable:
            return f"{self.name} (unavailable)"
        lim = self.limits()
        return f"{self.name} on {self.device} · {lim.width}x{lim.height} at {lim.fps} fps · up to {lim.max_subjects} subjects"

    # ---- references --------------------------------------------------------------------------
    @staticmethod
    def load_reference(src: Any, label: str | None = None):
        """Validated RGB PIL image, or model.references.ReferenceError with a message naming the file."""
        from model.references import load_reference_image

        return load_reference_image(src, label=label)

    def reference_crop(self, image: Any, size: int | None = None):
        """What the model sees of a reference image."""
        from model.references import crop_reference

        if size is None:
            pipe = self._pipe
            lim = self.limits()
            if pipe is not None and hasattr(pipe, "_reference_size"):
                size = int(pipe._reference_size(lim.height, lim.width))
            else:
                size = min(lim.height, lim.width)
        return crop_reference(image, size)

    # ---- generation --------------------------------------------------------------------------
    def generate(
        self,
        req: GenerationRequest,
        *,
        cancel_event: threading.Event | None = None,
        on_step: Callable[[int, int, int, int], None] | None = None,
    ) -> Any:
        """Run the pipeline. `on_step(done, total, segment, n_segments)` reports progress after each step.
        Raises ValueError / TimelineError / ReferenceError for bad input (before heavy work),
        model.pipeline.GenerationCancelled when `cancel_event` is set, EngineUnavailable if no model."""
        pipe = self.pipe
        lim = self.limits()
        steps = int(req.steps)
        if not 1 <= steps <= lim.max_steps:
            raise ValueError(f"steps must be between 1 and {lim.max_steps}, got {steps}")
        if req.timeline.duration > lim.max_duration + 1e-6:
            raise ValueError(f"the video is {req.timeline.duration:g}s long; this model makes at most {lim.max_duration:g}s (segment by segment)")
        segment_seconds = req.segment_seconds or None
        if segment_seconds is None and req.timeline.num_frames > lim.max_frames:
            segment_seconds = lim.single_pass_seconds  # long video: segment by segment
        n_segments = count_segments(req.timeline, segment_seconds)
        total = steps * n_segments

        def callback(_pipe, step_index, _timestep, kwargs):
            if on_step is not None:
                on_step(int(step_index) + 1, total, int(step_index) // steps, n_segments)
            return {}

        kwargs = dict(
            references=None,
            negative_prompt=req.negative_prompt or "",
            num_inference_steps=steps,
            guidance_scale=float(req.guidance),
            seed=req.seed,
            height=req.height or lim.height,
            width=req.width or lim.width,
            callback_on_step_end=callback,
            cancel_event=cancel_event,
            progress=False,
            segment_seconds=segment_seconds,
        )
        layout = req.layout
        if layout == "auto":
            layout = getattr(getattr(pipe, "config", None), "default_layout", None) or "none"
        if layout not in ("columns", "paths", "none"):
            raise ValueError(f"unknown start layout {req.layout!r}: choose auto, paths, columns or none")
        if layout != "none":
            kwargs.update(layout=layout)
        if req.reroll_segment is not None:
            kwargs.update(reroll_segment=int(req.reroll_segment), previous=req.previous)
        with self._lock:
            if str(self.device).startswith("cpu"):
                from .cpu import use_generation_threads

                self.last_threads = use_generation_threads()  # the cores free now, not all of them
            return _run_pipeline(pipe, req.timeline, kwargs)


def save_output(out: Any, path: str | Path) -> Path:
    """Keep what a later re-roll of one segment needs from a multi-segment output (frames, masks, segment
    bounds, per-segment seeds), so a run loaded from the history can be re-rolled too."""
    import numpy as np

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, frames=out.frames, masks=np.asarray(out.masks, dtype=np.float16), fps=int(out.fps),
                 segments=np.asarray(out.segments, dtype=np.int64).reshape(-1, 2), seeds=np.asarray(out.seeds, dtype=np.int64))
    return path


def load_output(path: str | Path, timeline: Timeline) -> Any:
    """The output `save_output` kept, as the pipeline's output type (`previous=` of a segment re-roll)."""
    import numpy as np

    from model.pipeline import ReactIDPipelineOutput

    with np.load(path) as z:
        return ReactIDPipelineOutput(
            frames=z["frames"], masks=z["masks"].astype(np.float32), fps=int(z["fps"]), timeline=timeline,
            segments=[(int(a), int(b)) for a, b in z["segments"]], seeds=[int(x) for x in z["seeds"]],
        )


def count_segments(timeline: Timeline, segment_seconds: float | None, overlap_latent_frames: int = 2) -> int:
    """How many segments the pipeline cuts `timeline` into (mirrors ReactIDPipeline.__call__)."""
    if not segment_seconds:
        return 1
    from model.timeline import TIME_COMPRESSION, split_segments

    step = TIME_COMPRESSION / timeline.fps
    seg = max(2 * step, round(segment_seconds / step) * step)
    overlap = (overlap_latent_frames - 1) * step if overlap_latent_frames > 1 else 0.0
    return len(split_segments(timeline, seg, overlap))


def resolve_seed(seed: Any, randomize: bool) -> int:
    if randomize or seed is None or seed == "":
        return random_seed()
    try:
        value = int(float(seed))
    except (TypeError, ValueError):
        raise ValueError(f"the seed must be a whole number between 0 and {MAX_SEED}, got {seed!r}") from None
    if not 0 <= value <= MAX_SEED:
        raise ValueError(f"the seed must be between 0 and {MAX_SEED}, got {value}")
    return value
