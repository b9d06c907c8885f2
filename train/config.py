"""Training configuration: YAML in, validated dataclasses out. Unknown keys and impossible values fail
before any work starts, with the key's dotted path in the message."""

from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any

import yaml

PRESETS_DIR = Path(__file__).with_name("presets")


class ConfigError(ValueError):
    """A config problem; the message starts with the key's dotted path."""


@dataclass
class DataConfig:
    source: str = "sprites"  # 'sprites' (generated from seeds) or 'dir' (a dataset directory, docs/DATASET.md)
    path: str | None = None  # dataset directory for source='dir'
    num_clips: int = 1200
    world: dict = field(default_factory=dict)  # train.sprites.WorldConfig options
    seed: int = 1234
    prompt_mode: str = "prompt"  # 'prompt' | 'flattened' (the timeline written into the prompt: the no-timeline-modules ablation)
    # processes that render and encode the sprite clips of the cache (train/prepare.py): the same clips for any count
    prepare_workers: int = 1
    # side in pixels the references are resized to before the VAE encodes them (0 = the frame's shorter side, the
    # shipped models' choice); the export's reference_size. The sprite world's reference crops are 32 px, so at 64
    # a sprite spans twice the tokens it spans in the video (docs/BENCHMARKS.md "Where shapes are lost")
    reference_size: int = 0


@dataclass
class VAEConfig:
    checkpoint: str | None = None  # a VAE directory (AutoencoderKLWan or FrameGroupVAE); None -> train one (sprite world)
    kind: str = "framegroup"  # 'framegroup' (model/framevae.py: Wan's latent layout without recurrence) | 'wan'
    z_dim: int = 8
    base_dim: int = 16
    steps: int = 1200
    batch_size: int = 8
    lr: float = 2e-3
    kl_weight: float = 1e-6
    snippet_frames: int = 5
    fg_weight: float = 10.0  # extra loss weight on pixels far from the frame's median colour (the subjects)
    linear_path: bool = False  # framegroup: a PCA-initialised linear path beside the conv stacks (model/framevae.py)
    res_blocks: int = 0  # framegroup: residual blocks after each resolution change of the conv stacks
    linear_lr_scale: float = 1.0  # learning rate of the PCA path relative to vae.lr (train/vae.py: a full rate scrambles it)
    decoder_context: int = 0  # framegroup: neighbouring latent frames on each side the group decoder sees (model/framevae.py)
    arch: str = "pyramid"  # framegroup: 'pyramid' (convs at every resolution) | 'blocks' (all convs on the 8x8-block grid, 2*base_dim wide) | 'linear' (the PCA path alone: nothing to train)


@dataclass
class TextConfig:
    checkpoint: str | None = None  # a UMT5 encoder directory; None -> a small frozen random UMT5 (sprite world)
    d_model: int = 64
    layers: int = 2
    heads: int = 4
    max_length: int = 32
    # Concept pretraining of the small encoder (train/text_encoder.py): 0 keeps it frozen at random init.
    # A random byte-level encoder barely separates "moves left" from "moves right" (caption 1-NN 0.44), so
    # the sprite preset teaches it the world's concepts first, as a real UMT5 knows its words.
    pretrain_steps: int = 0
    pretrain_lr: float = 3e-3
    pretrain_batch_size: int = 64


@dataclass
class ModelConfig:
    base: str | None = None  # a Wan2.1 diffusers directory / hub id to start from; None -> build from the sizes below
    init_from: str | None = None  # warm start: a pipeline directory (or its transformer/ folder) whose weights seed the model
    # Growing a warm-started model deeper: for each block of this model, the init_from block it loads, or null for a
    # new block that starts as the identity (the previous loaded block's weights with its residual outputs zeroed), so
    # the grown model computes exactly what the smaller one did at step 0. null (the option) = block i loads block i.
    init_block_map: list | None = None
    # Growing a warm-started model's latent: init_from was trained on a latent whose channels are the leading channels
    # of this one (a PCA latent refitted with more components on the same clips is nested exactly). The latent's input
    # and output layers load into their leading channels and the new channels start at zero, so the grown model's
    # prediction of the old channels is exactly the smaller one's at step 0, and the new channels' is zero.
    init_grow_latent: bool = False
    # reference_offset_bias: the per-head gain (the logit bias per unit of squared offset distance) its gains start at
    # where this model has them and init_from has not. 0 keeps the warm start's function exactly; the gain's own steps
    # are slow (at lr 3e-4 it moved by 0.02 in 50 steps), so level 2ob starts it where a probe found it useful.
    init_offset_gain: float = 0.0
    heads: int = 4
    head_dim: int = 32
    layers: int = 6
    ffn_dim: int = 256
    # video pixels per token = VAE factor x patch: (1, 2, 2) on the x8 VAE is Wan's layout (16 px tokens);
    # (1, 1, 1) gives 8 px tokens, so a sprite spans several (docs/BENCHMARKS.md, the learnability ladder)
    patch_size: list = field(default_factory=lambda: [1, 2, 2])
    reactid: dict = field(default_factory=dict)  # ReactIDTransformer options (REACTID_CONFIG_KEYS)


@dataclass
class CurriculumConfig:
    mode: str = "curriculum"  # 'curriculum' | 'none' (all data from step 0) | 'random' (random expansion ablation)
    phase_ratios: list = field(default_factory=lambda: [4, 2, 1, 1])
    inter_ratios: list = field(default_factory=lambda: [0.0, 0.0, 0.11, 0.33])
    lambdas: list = field(default_factory=lambda: [0.5, 1.0, 1.0])  # (sub, app, sam)
    flat_inter_ratio: float | None = None  # mode 'none': None = step-weighted mean of inter_ratios


@dataclass
class OptimConfig:
    steps: int = 2000
    batch_size: int = 16
    lr: float = 1e-3
    warmup_steps: int = 100
    weight_decay: float = 0.01
    # learning rate of the timeline attention's own weights (timeline_to_k/v, timeline_out, timeline_identity) relative
    # to lr: its output starts at zero, so for hundreds of steps its weights see gradients 30-100x smaller than the base's
    timeline_lr_scale: float = 1.0
    grad_clip: float = 1.0
    mask_loss_weight: float = 0.5
    fg_loss_weight: float = 0.0  # flow loss weight per latent = 1 + this * subject-mask coverage (0 = Wan's plain MSE)
    fg_time_dilation: int = 0  # coverage for that weight = its max over +-this many latent frames (0 = the frame's own)
    # Flow loss weight per latent channel = (the VAE's latents_std of that channel) ** this, scaled to mean 1
    # (model/losses.py channel_loss_weight). 0 = every normalised channel alike (Wan's practice); 2 = the error as the
    # decoder draws it when the decoder is linear (the PCA latent), 1 = between the two.
    channel_loss_power: float = 0.0
    # The subject-mask head's loss: 'focal' (the paper: alpha 0.25, gamma 2) pulls probabilities far below the
    # coverage (p ~ 0.16 at 33% coverage), so a coverage threshold binds almost nothing; 'bce' makes the
    # probability track the token's coverage, so model.reactid.mask_threshold means what it says.
    mask_loss: str = "focal"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0
    cond_dropout: float = 0.1  # drop prompt + timeline so classifier-free guidance works
    # Shift of the logit-normal training noise levels (train/loop.py shift_sigmas); match the sampler's. A list (e.g.
    # [1, 3]) is a mixture: each sample of every batch draws one of the shifts, so the layout (learnt at high noise)
    # and the drawing (mid noise) are trained together rather than in two phases.
    sigma_shift: float | list = 1.0
    # Which subject masks set the binding labels in training (train/loop.py Trainer.binding_masks):
    # 'ground_truth' (the paper's reading) | 'predicted' (the model's own, as at inference) | 'none'
    binding_masks: str = "ground_truth"
    binding_none_prob: float = 0.25  # 'predicted': share of steps with no masks at all (the first denoising step)
    # 'predicted': share of the samples at sigma >= binding_layout_sigma bound with the 'columns' start layout instead
    # (model/layout.py), as the first steps are at inference when a layout is given (0 = never)
    binding_layout_prob: float = 0.0
    # ... bound to 'columns', to the clip's own masks ('truth', where 'paths' puts its discs but in the sprite's outline)
    # or to the 'paths' layout of the clip's timeline (discs of the layout's radius, exactly what inference binds with
    # layout='paths'; with model.reactid.reference_offset_bias a token's place on its subject is then measured in the
    # same unit as at inference: model/transformer.py subject_token_offsets)
    binding_layout: str = "columns"
    # weight of model/losses.py temporal_difference_loss (the velocity error's change between latent frames; 0 = off)
    temporal_loss_weight: float = 0.0
    # the flow loss's weight on the lone first latent frame relative to the others (model/losses.py first_frame_loss_weight)
    first_frame_loss_weight: float = 1.0
    binding_layout_sigma: float = 0.75
    mixed_precision: str = "no"  # 'no' | 'bf16' | 'fp16' (accelerate)
    gradient_checkpointing: bool = False
    # torch.compile the training forward (dynamic shapes: subject counts and caption lengths vary by batch). The first
    # step pays the compilation (about 100 s on 2 CPU cores) and is never timed by time_budget_s; after it a step of the
    # shipped recipe's model ran 1.25x faster on 2 CPU cores (docs/BENCHMARKS.md). Checkpoints are the same either way.
    compile: bool = False
    train_base: bool = True  # False: train only ReactID's new modules (fine-tuning a real Wan)
    train_only: list = field(default_factory=list)  # parameter-name prefixes: only these train (e.g. [detail_])
    log_every: int = 10
    checkpoint_every: int = 200
    # wall-clock budget of the run in seconds (0 = none): once the step rate is measured (time_budget_calibration_steps
    # after the start) the schedule is shortened to the steps that fit, so the learning rate still decays to its end
    time_budget_s: float = 0.0
    time_budget_calibration_steps: int = 30


@dataclass
class TrainConfig:
    output_dir: str = "runs/sprite"
    seed: int = 0
    height: int = 64
    width: int = 64
    data: DataConfig = field(default_factory=DataConfig)
    vae: VAEConfig = field(default_factory=VAEConfig)
    text: TextConfig = field(default_factory=TextConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    curriculum: CurriculumConfig = field(default_factory=CurriculumConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)

    def to_dict(self) -> dict:
        return asdict(self)


def _build(cls, obj: Any, path: str):
    if obj is None:
        return cls()
    if not isinstance(obj, dict):
        raise ConfigError(f"{path or 'config'}: expected a mapping, got {type(obj).__name__}")
    known = {f.name: f for f in fields(cls)}
    unknown = sorted(set(obj) - set(known))
    if unknown:
        where = f"{path}." if path else ""
        raise ConfigError(f"{where}{unknown[0]}: unknown key (known here: {', '.join(sorted(known))})")
    kwargs = {}
    for name, value in obj.items():
        f = known[name]
        sub = f.default_factory
        if sub is not MISSING and is_dataclass(sub):
            kwargs[name] = _build(sub, value, f"{path}.{name}" if path else name)
        else:
            kwargs[name] = value
    return cls(**kwargs)


def _check(cfg: TrainConfig) -> TrainConfig:
    def bad(key, msg):
        raise ConfigError(f"{key}: {msg}")

    o = cfg.optim
    for key in ("steps", "batch_size"):
        if not isinstance(getattr(o, key), int) or getattr(o, key) < 1:
            bad(f"optim.{key}", f"must be a positive integer, got {getattr(o, key)!r}")
    if not o.lr > 0:
        bad("optim.lr", f"must be > 0, got {o.lr}")
    if o.warmup_steps < 0:
        bad("optim.warmup_steps", "must be >= 0")
    if o.mixed_precision not in ("no", "bf16", "fp16"):
        bad("optim.mixed_precision", f"must be 'no', 'bf16' or 'fp16', got {o.mixed_precision!r}")
    if not (isinstance(o.fg_loss_weight, (int, float)) and o.fg_loss_weight >= 0):
        bad("optim.fg_loss_weight", f"must be a number >= 0, got {o.fg_loss_weight!r}")
    if not (isinstance(o.fg_time_dilation, int) and not isinstance(o.fg_time_dilation, bool) and o.fg_time_dilation >= 0):
        bad("optim.fg_time_dilation", f"must be a whole number of latent frames >= 0, got {o.fg_time_dilation!r}")
    if not isinstance(o.compile, bool):
        bad("optim.compile", f"must be true or false, got {o.compile!r}")
    if not isinstance(o.train_only, list) or not all(isinstance(x, str) and x for x in o.train_only):
        bad("optim.train_only", f"must be a list of parameter-name prefixes, got {o.train_only!r}")
    if isinstance(o.channel_loss_power, bool) or not isinstance(o.channel_loss_power, (int, float)) or not 0 <= o.channel_loss_power <= 4:
        bad("optim.channel_loss_power", f"must be a number in [0, 4], got {o.channel_loss_power!r}")
    if not (isinstance(o.timeline_lr_scale, (int, float)) and o.timeline_lr_scale > 0):
        bad("optim.timeline_lr_scale", f"must be a number > 0, got {o.timeline_lr_scale!r}")
    if o.mask_loss not in ("focal", "bce"):
        bad("optim.mask_loss", f"must be 'focal' or 'bce', got {o.mask_loss!r}")
    if o.binding_masks not in ("ground_truth", "predicted", "none"):
        bad("optim.binding_masks", f"must be 'ground_truth', 'predicted' or 'none', got {o.binding_masks!r}")
    if not 0 <= o.binding_none_prob <= 1:
        bad("optim.binding_none_prob", f"must be in [0, 1], got {o.binding_none_prob!r}")
    if not (isinstance(o.binding_layout_prob, (int, float)) and 0 <= o.binding_layout_prob <= 1):
        bad("optim.binding_layout_prob", f"must be in [0, 1], got {o.binding_layout_prob!r}")
    if not (isinstance(o.temporal_loss_weight, (int, float)) and not isinstance(o.temporal_loss_weight, bool) and 0 <= o.temporal_loss_weight <= 10):
        bad("optim.temporal_loss_weight", f"must be a number in [0, 10], got {o.temporal_loss_weight!r}")
    if not (isinstance(o.first_frame_loss_weight, (int, float)) and not isinstance(o.first_frame_loss_weight, bool) and 0 < o.first_frame_loss_weight <= 20):
        bad("optim.first_frame_loss_weight", f"must be a number in (0, 20], got {o.first_frame_loss_weight!r}")
    if o.binding_layout not in ("columns", "truth", "paths"):
        bad("optim.binding_layout", f"must be 'columns', 'truth' or 'paths', got {o.binding_layout!r}")
    if not (isinstance(o.binding_layout_sigma, (int, float)) and 0 <= o.binding_layout_sigma <= 1):
        bad("optim.binding_layout_sigma", f"must be in [0, 1], got {o.binding_layout_sigma!r}")
    if o.binding_layout_prob > 0 and o.binding_masks != "predicted":
        bad("optim.binding_layout_prob", "a start layout replaces predicted masks: needs optim.binding_masks 'predicted'")
    shifts = o.sigma_shift if isinstance(o.sigma_shift, list) else [o.sigma_shift]
    if not shifts or not all(isinstance(v, (int, float)) and not isinstance(v, bool) and v > 0 for v in shifts):
        bad("optim.sigma_shift", f"must be a number > 0 or a non-empty list of them, got {o.sigma_shift!r}")
    if not 0 <= o.cond_dropout < 1:
        bad("optim.cond_dropout", "must be in [0, 1)")
    ps = cfg.model.patch_size
    if not (isinstance(ps, (list, tuple)) and len(ps) == 3 and all(isinstance(p, int) and p >= 1 for p in ps) and ps[0] == 1):
        bad("model.patch_size", f"must be three positive integers [1, ph, pw] (time is never patched), got {ps!r}")
    mult = 8 * ps[1]
    if cfg.height % mult or cfg.width % mult:
        bad("height" if cfg.height % mult else "width", f"must be a multiple of {mult} (VAE x8, patch x{ps[1]})")
    d = cfg.data
    if d.prompt_mode not in ("prompt", "flattened"):
        bad("data.prompt_mode", f"must be 'prompt' or 'flattened', got {d.prompt_mode!r}")
    if d.source not in ("sprites", "dir"):
        bad("data.source", f"must be 'sprites' or 'dir', got {d.source!r}")
    if d.source == "dir" and (not d.path or not Path(d.path).is_dir()):
        bad("data.path", f"dataset directory not found: {d.path!r}")
    if d.source == "sprites" and (not isinstance(d.num_clips, int) or d.num_clips < 1):
        bad("data.num_clips", f"must be a positive integer, got {d.num_clips!r}")
    if isinstance(d.prepare_workers, bool) or not isinstance(d.prepare_workers, int) or d.prepare_workers < 1:
        bad("data.prepare_workers", f"must be a whole number of processes >= 1, got {d.prepare_workers!r}")
    if isinstance(d.reference_size, bool) or not isinstance(d.reference_size, int) or d.reference_size < 0 or d.reference_size % mult:
        bad("data.reference_size", f"must be 0 (the frame's shorter side) or a multiple of {mult} pixels, got {d.reference_size!r}")
    if isinstance(o.time_budget_s, bool) or not isinstance(o.time_budget_s, (int, float)) or o.time_budget_s < 0:
        bad("optim.time_budget_s", f"must be a number of seconds >= 0 (0 = no budget), got {o.time_budget_s!r}")
    if isinstance(o.time_budget_calibration_steps, bool) or not isinstance(o.time_budget_calibration_steps, int) or o.time_budget_calibration_steps < 2:
        bad("optim.time_budget_calibration_steps", f"must be a whole number of steps >= 2, got {o.time_budget_calibration_steps!r}")
    c = cfg.curriculum
    if c.mode not in ("curriculum", "none", "random"):
        bad("curriculum.mode", f"must be 'curriculum', 'none' or 'random', got {c.mode!r}")
    if len(c.phase_ratios) != 4 or any(r <= 0 for r in c.phase_ratios):
        bad("curriculum.phase_ratios", f"must be four positive numbers, got {c.phase_ratios}")
    if len(c.inter_ratios) != 4 or any(not 0 <= r <= 1 for r in c.inter_ratios):
        bad("curriculum.inter_ratios", f"must be four numbers in [0, 1], got {c.inter_ratios}")
    if len(c.lambdas) != 3 or any(x < 0 for x in c.lambdas):
        bad("curriculum.lambdas", f"must be three non-negative weights (sub, app, sam), got {c.lambdas}")
    if cfg.vae.kind not in ("framegroup", "wan"):
        bad("vae.kind", f"must be 'framegroup' or 'wan', got {cfg.vae.kind!r}")
    if not (isinstance(cfg.vae.linear_lr_scale, (int, float)) and cfg.vae.linear_lr_scale >= 0):
        bad("vae.linear_lr_scale", f"must be a number >= 0, got {cfg.vae.linear_lr_scale!r}")
    if not (isinstance(cfg.vae.decoder_context, int) and cfg.vae.decoder_context >= 0):
        bad("vae.decoder_context", f"must be an integer >= 0, got {cfg.vae.decoder_context!r}")
    if cfg.vae.arch not in ("pyramid", "blocks", "linear"):
        bad("vae.arch", f"must be 'pyramid', 'blocks' or 'linear', got {cfg.vae.arch!r}")
    if cfg.vae.arch == "linear" and not cfg.vae.linear_path:
        bad("vae.linear_path", "must be true for vae.arch 'linear' (the PCA autoencoder alone)")
    if not (isinstance(cfg.vae.res_blocks, int) and cfg.vae.res_blocks >= 0):
        bad("vae.res_blocks", f"must be an integer >= 0, got {cfg.vae.res_blocks!r}")
    if cfg.vae.checkpoint is None and cfg.vae.steps < 1:
        bad("vae.steps", "must be >= 1 when no vae.checkpoint is given")
    if cfg.vae.checkpoint is not None and not Path(cfg.vae.checkpoint).is_dir():
        bad("vae.checkpoint", f"directory not found: {cfg.vae.checkpoint}")
    t = cfg.text
    if not (isinstance(t.pretrain_steps, int) and t.pretrain_steps >= 0):
        bad("text.pretrain_steps", f"must be an integer >= 0, got {t.pretrain_steps!r}")
    if t.pretrain_steps and not (isinstance(t.pretrain_lr, (int, float)) and t.pretrain_lr > 0):
        bad("text.pretrain_lr", f"must be > 0, got {t.pretrain_lr!r}")
    if t.pretrain_steps and not (isinstance(t.pretrain_batch_size, int) and t.pretrain_batch_size >= 2):
        bad("text.pretrain_batch_size", f"must be an integer >= 2, got {t.pretrain_batch_size!r}")
    if t.pretrain_steps and t.checkpoint is None and d.source != "sprites":
        bad("text.pretrain_steps", "concept pretraining needs the sprite world's labels (data.source: sprites); give text.checkpoint for real data")
    if t.checkpoint is not None and not Path(t.checkpoint).is_dir():
        bad("text.checkpoint", f"directory not found: {t.checkpoint}")
    if cfg.model.init_from is not None and not Path(cfg.model.init_from).is_dir():
        bad("model.init_from", f"directory not found: {cfg.model.init_from}")
    if cfg.model.init_from is not None and cfg.model.base is not None:
        bad("model.init_from", "give either model.base (a Wan directory) or model.init_from (a ReactID pipeline), not both")
    if cfg.model.init_offset_gain and not cfg.model.reactid.get("reference_offset_bias"):
        bad("model.init_offset_gain", "starts reference_offset_bias's gains, which model.reactid does not switch on")
    if cfg.model.init_grow_latent and cfg.model.init_from is None:
        bad("model.init_grow_latent", "grows the latent of model.init_from, which is not set")
    bm = cfg.model.init_block_map
    if bm is not None:
        if cfg.model.init_from is None:
            bad("model.init_block_map", "maps the blocks of model.init_from, which is not set")
        if not isinstance(bm, list) or len(bm) != cfg.model.layers:
            bad("model.init_block_map", f"must list one entry per block (model.layers = {cfg.model.layers}), got {bm!r}")
        if any(b is not None and (isinstance(b, bool) or not isinstance(b, int) or b < 0) for b in bm):
            bad("model.init_block_map", f"entries are block indices (>= 0) or null, got {bm!r}")
        if bm[0] is None:
            bad("model.init_block_map", "the first block must load one (a new block copies the loaded block before it)")
    from model.transformer import REACTID_CONFIG_KEYS

    unknown = sorted(set(cfg.model.reactid) - set(REACTID_CONFIG_KEYS))
    if unknown:
        bad(f"model.reactid.{unknown[0]}", f"unknown ReactID option (known: {', '.join(REACTID_CONFIG_KEYS)})")
    if cfg.model.reactid.get("reference_offset_bias") and not cfg.model.reactid.get("reference_binding_bias"):
        bad("model.reactid.reference_offset_bias", "needs reference_binding_bias: true (it ranks the references of the subject a token is bound to)")
    if cfg.model.ffn_dim < 1 or cfg.model.layers < 1 or cfg.model.heads < 1:
        bad("model", "heads, layers and ffn_dim must be positive")
    return cfg


def load_config(source: str | Path | dict, overrides: dict | None = None) -> TrainConfig:
    """A YAML path, a preset name (train/presets/NAME.yaml) or a dict -> validated TrainConfig.

    A config may start from another with `base: NAME` (a preset name, or a YAML path relative to the file that
    names it): the base is read first and this config's keys are merged over it, mappings key by key."""
    if isinstance(source, dict):
        obj = resolve_base(source, PRESETS_DIR)
    else:
        obj = read_config_file(source)
    if overrides:
        obj = _merge(obj, overrides)
    return _check(_build(TrainConfig, obj, ""))


def _find_config_file(source: str | Path, here: Path | None = None) -> Path:
    path = Path(source)
    if here is not None and not path.is_absolute() and (here / path).is_file():
        return here / path
    if not path.is_file() and (PRESETS_DIR / f"{source}.yaml").is_file():
        return PRESETS_DIR / f"{source}.yaml"
    if not path.is_file():
        raise ConfigError(f"config: file not found: {source}")
    return path


def read_config_file(source: str | Path, here: Path | None = None, _chain: tuple = ()) -> dict:
    """The YAML mapping of a config file or preset, with its `base:` chain merged in."""
    path = _find_config_file(source, here)
    try:
        obj = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"config: {path.name} is not valid YAML: {exc}") from None
    if not isinstance(obj, dict):
        raise ConfigError(f"config: {path.name} must be a YAML mapping, got a {type(obj).__name__}")
    return resolve_base(obj, path.parent, _chain + (path.resolve(),))


def resolve_base(obj: dict, here: Path, _chain: tuple = ()) -> dict:
    """Merge `obj` over the config its `base:` key names (recursively); a dict without `base` comes back as is."""
    if "base" not in obj:
        return obj
    base = obj["base"]
    if not isinstance(base, str) or not base:
        raise ConfigError(f"base: must be a preset name or a YAML path, got {base!r}")
    base_path = _find_config_file(base, here).resolve()
    if base_path in _chain:
        names = " -> ".join(p.stem for p in _chain + (base_path,))
        raise ConfigError(f"base: configs name each other in a loop ({names})")
    rest = {k: v for k, v in obj.items() if k != "base"}
    return _merge(read_config_file(base_path, None, _chain), rest)


def _merge(a: dict, b: dict) -> dict:
    out = dict(a)
    for k, v in b.items():
        out[k] = _merge(out[k], v) if isinstance(v, dict) and isinstance(out.get(k), dict) else v
    return out


def parse_override(text: str) -> dict:
    """'optim.steps=10' -> {'optim': {'steps': 10}} (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key.path=value")
    key, value = text.split("=", 1)
    out: dict = {}
    cur = out
    parts = key.strip().split(".")
    for p in parts[:-1]:
        cur = cur.setdefault(p, {})
    cur[parts[-1]] = yaml.safe_load(value)
    return out
