"""The sprite world: a seeded generator of short clips with exact ground truth (DESIGN.md §5).

No video weights can be downloaded here, so the project trains its embedded default model on this
world and uses the same world as a benchmark. Every clip comes with what the real pipeline
(ReactID-Data) would only estimate: per-frame per-subject visible masks, a per-subject timeline of
sub-actions on the model's latent grid, and two kinds of reference image (intra-clip crops and
inter-clip re-renders, the paper's D_sam cue).

Conventions: frames uint8 [F, H, W, 3]; masks bool [S, F, H, W]; image y grows downwards; a
subject's position is its (integer) centre pixel, so translations are exact pixel shifts and the
evaluator can measure them without interpolation noise. Everything is numpy + PIL, deterministic
given the seed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, fields, replace

import numpy as np
from PIL import Image

from model.actions import ACTIONS, keyword_action, normalise_text
from model.references import crop_subject  # the same subject-region crop D_app compares against
from model.timeline import (
    TIME_COMPRESSION,
    Action,
    Subject,
    Timeline,
    num_video_frames,
    snap_to_grid,
)

# --------------------------------------------------------------------------------------------
# Catalogue
# --------------------------------------------------------------------------------------------
SHAPES = ("circle", "square", "triangle", "diamond", "star", "cross")
TEXTURES = ("solid", "stripes", "dots", "checker")
TEXTURE_ADJECTIVES = {"solid": "", "stripes": "striped", "dots": "dotted", "checker": "checkered"}

# Saturated hues >= ~29 degrees apart, max channel <= 230 so a brightness of up to 1.1 never clips
# (clipping would shift the hue, which is what the evaluator tracks by).
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (220, 40, 40),
    "orange": (230, 125, 25),
    "yellow": (220, 215, 30),
    "green": (40, 190, 60),
    "cyan": (30, 190, 200),
    "blue": (40, 80, 220),
    "magenta": (200, 40, 200),
}
SHADE = 0.55  # texture colour = SHADE * body colour: same hue and saturation, darker

# Backgrounds are low-saturation tones, so they never share a subject's colour (saturation >= 0.8)
# even with their gradient / noise added.
BACKGROUNDS: dict[str, tuple[int, int, int]] = {
    "light grey": (200, 200, 200),
    "grey": (140, 140, 140),
    "dark grey": (70, 72, 75),
    "beige": (215, 205, 185),
    "slate": (80, 86, 96),
    "sand": (190, 180, 160),
    "stone": (160, 165, 160),
}
BACKGROUND_STYLES = ("flat", "gradient", "noise")

ACTION_CAPTIONS: dict[str, tuple[str, ...]] = {
    "move_left": ("moves to the left", "slides to the left", "moves left", "goes left", "drifts to the left", "travels left"),
    "move_right": ("moves to the right", "slides to the right", "moves right", "goes right", "drifts to the right", "travels right"),
    "move_up": ("moves up", "rises", "floats upward", "goes up", "slides up", "drifts upward"),
    "move_down": ("moves down", "sinks", "slides down", "goes down", "drifts downward", "descends"),
    "jump": ("jumps", "hops", "jumps up and lands", "bounces once", "leaps", "does a jump"),
    "spin": ("spins", "rotates", "spins around", "turns around in place", "twirls", "rotates in place"),
    "grow": ("grows", "gets bigger", "grows larger", "expands", "swells up", "becomes bigger"),
    "shrink": ("shrinks", "gets smaller", "shrinks down", "contracts", "becomes smaller", "dwindles"),
    "stay": ("stays still", "stays in place", "rests", "stays put", "remains still", "waits"),
}

_CAPTION_INDEX = {c: a for a, cs in ACTION_CAPTIONS.items() for c in cs}


def text_concepts(text: str) -> list[str]:
    """The world's concepts a text names: the action of a caption, the colour / texture / shape words of a
    subject name or scene prompt, and a prompt's background. The labels of the text encoder's concept
    pretraining (train/text_encoder.py)."""
    norm = normalise_text(text)
    found = []
    action = caption_to_action(norm)
    if action is not None:
        found.append(f"action:{action}")
    bg = re.search(r"\bon an? ([a-z ]+?) background\b", norm)
    if bg and bg.group(1) in BACKGROUNDS:
        found.append(f"background:{bg.group(1)}")
        norm = norm[: bg.start()]  # "light grey" is a background, not a subject's colour
    words = set(norm.split())
    found += [f"colour:{c}" for c in COLOURS if c in words]
    found += [f"shape:{s}" for s in SHAPES if s in words]
    found += [f"texture:{t}" for t, adj in TEXTURE_ADJECTIVES.items() if adj and adj in words]
    return found


def caption_to_action(text: str) -> str | None:
    """The canonical action a caption describes, or None when it names none or several.

    Exact paraphrases from ACTION_CAPTIONS always map back; other wordings go through keywords."""
    norm = normalise_text(text)
    if not norm:
        return None
    if norm in _CAPTION_INDEX:
        return _CAPTION_INDEX[norm]
    return keyword_action(norm)


@dataclass(frozen=True)
class Identity:
    """What makes a subject recognisable: shape, colour and texture."""

    shape: str
    colour: str
    texture: str = "solid"

    def __post_init__(self):
        for key, value, allowed in (("shape", self.shape, SHAPES), ("colour", self.colour, COLOURS), ("texture", self.texture, TEXTURES)):
            if value not in allowed:
                raise ValueError(f"identity {key} must be one of {', '.join(allowed)}, got {value!r}")

    @property
    def description(self) -> str:
        adj = TEXTURE_ADJECTIVES[self.texture]
        return " ".join(w for w in (self.colour, adj, self.shape) if w)

    @property
    def name(self) -> str:
        return f"the {self.description}"

    @property
    def rgb(self) -> np.ndarray:
        return np.array(COLOURS[self.colour], dtype=np.float32)

    @property
    def shade_rgb(self) -> np.ndarray:
        return self.rgb * SHADE

    @property
    def rotation_invisible(self) -> bool:
        """A solid circle looks the same at every angle, so a spin could not be seen."""
        return self.shape == "circle" and self.texture == "solid"

    def to_dict(self) -> dict:
        return {"shape": self.shape, "colour": self.colour, "texture": self.texture}

    @classmethod
    def from_dict(cls, d: dict) -> "Identity":
        return cls(d["shape"], d["colour"], d.get("texture", "solid"))


def all_identities() -> list[Identity]:
    return [Identity(s, c, t) for s in SHAPES for c in COLOURS for t in TEXTURES]


# --------------------------------------------------------------------------------------------
# Rasteriser: shapes and textures as implicit functions of local coordinates (circumradius <= 1)
# --------------------------------------------------------------------------------------------
def _polygon(angles_deg, radii):
    a = np.deg2rad(np.asarray(angles_deg, dtype=np.float64)) % (2 * np.pi)
    order = np.argsort(a)
    return a[order], np.asarray(radii, dtype=np.float64)[order]


def _star_polygon(points: int, outer: float, inner: float, phase: float = -90.0):
    angles = [phase + k * 180.0 / points for k in range(2 * points)]
    radii = [outer if k % 2 == 0 else inner for k in range(2 * points)]
    return _polygon(angles, radii)


def _cross_polygon(arm: float, half_width: float):
    # 12 vertices of a plus sign, listed by angle: star-shaped around the centre.
    pts = [(half_width, arm), (-half_width, arm), (-half_width, half_width), (-arm, half_width), (-arm, -half_width),
           (-half_width, -half_width), (-half_width, -arm), (half_width, -arm), (half_width, -half_width),
           (arm, -half_width), (arm, half_width), (half_width, half_width)]
    return _polygon([math.degrees(math.atan2(y, x)) for x, y in pts], [math.hypot(x, y) for x, y in pts])


_POLYGONS = {
    "square": _polygon([45, 135, 225, 315], [0.99] * 4),
    "triangle": _polygon([-90, 30, 150], [1.0] * 3),  # apex up (y grows downwards)
    "diamond": _polygon([0, 90, 180, 270], [0.62, 1.0, 0.62, 1.0]),  # taller than wide
    "star": _star_polygon(5, 1.0, 0.45),
    "cross": _cross_polygon(0.94, 0.33),
}
CIRCLE_RADIUS = 0.85


def _inside_polygon(u: np.ndarray, v: np.ndarray, poly) -> np.ndarray:
    """Point-in-polygon for polygons star-shaped around the origin, vectorised: find the edge
    whose angular sector holds the point and test which side of it the point is."""
    angles, radii = poly
    phi = np.arctan2(v, u) % (2 * np.pi)
    k = np.searchsorted(angles, phi) % len(angles)
    j = (k - 1) % len(angles)
    x1, y1 = radii[j] * np.cos(angles[j]), radii[j] * np.sin(angles[j])
    x2, y2 = radii[k] * np.cos(angles[k]), radii[k] * np.sin(angles[k])
    cross = (x2 - x1) * (v - y1) - (y2 - y1) * (u - x1)
    return cross >= -1e-9


def shape_inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    if shape == "circle":
        return u * u + v * v <= CIRCLE_RADIUS**2
    return _inside_polygon(u, v, _POLYGONS[shape])


def texture_shade(texture: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """True where the texture uses the darker shade (pattern fixed to the body, so it turns with it)."""
    if texture == "solid":
        return np.zeros(u.shape, dtype=bool)
    if texture == "stripes":
        return (np.floor((u + 2.0) / 0.42) % 2) == 1
    if texture == "dots":
        fu, fv = (u * 2.2) % 1.0 - 0.5, (v * 2.2) % 1.0 - 0.5
        return fu * fu + fv * fv < 0.36**2
    if texture == "checker":
        return (np.floor(u * 2.0 + 8) + np.floor(v * 2.0 + 8)) % 2 == 1
    raise ValueError(f"unknown texture {texture!r}")


def rasterise(identity: Identity, cx: float, cy: float, radius_px: float, angle_deg: float, height: int, width: int):
    """Pixels covered by a sprite: returns (y0, x0, inside bool [h, w], shade bool [h, w]) for its
    bounding box (clipped to the image), or None if it misses the image."""
    r = radius_px + 1.0
    x0, x1 = max(0, int(math.floor(cx - r))), min(width, int(math.ceil(cx + r)) + 1)
    y0, y1 = max(0, int(math.floor(cy - r))), min(height, int(math.ceil(cy + r)) + 1)
    if x0 >= x1 or y0 >= y1:
        return None
    ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float64)
    dx, dy = (xs - cx) / radius_px, (ys - cy) / radius_px
    t = math.radians(angle_deg)
    c, s = math.cos(t), math.sin(t)
    u, v = c * dx + s * dy, -s * dx + c * dy  # rotate the sample grid by -angle = rotate the body by +angle
    inside = shape_inside(identity.shape, u, v)
    return y0, x0, inside, texture_shade(identity.texture, u, v) & inside


def make_background(rng: np.random.Generator, height: int, width: int, name: str | None = None, style: str | None = None,
                    styles: tuple[str, ...] = BACKGROUND_STYLES) -> tuple[np.ndarray, str, str]:
    """A static background: a flat low-saturation tone, a gentle linear gradient, or smooth noise."""
    name = name or str(rng.choice(list(BACKGROUNDS)))
    style = style or str(rng.choice(styles))
    base = np.array(BACKGROUNDS[name], dtype=np.float32)
    img = np.broadcast_to(base, (height, width, 3)).copy()
    if style == "gradient":
        theta = rng.uniform(0, 2 * np.pi)
        ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
        ramp = (np.cos(theta) * (xs / max(1, width - 1) - 0.5) + np.sin(theta) * (ys / max(1, height - 1) - 0.5))
        img += (ramp * rng.uniform(14, 24))[..., None]
    elif style == "noise":
        coarse = rng.normal(0, 1, size=(4, 4)).astype(np.float32)
        smooth = np.asarray(Image.fromarray(coarse, mode="F").resize((width, height), Image.BICUBIC))
        img += (smooth * rng.uniform(4, 7))[..., None]
    elif style != "flat":
        raise ValueError(f"unknown background style {style!r}")
    return np.clip(np.round(img), 0, 255).astype(np.uint8), name, style


def render_identity(identity: Identity, size: int = 32, *, scale: float = 0.4, angle: float = 0.0, brightness: float = 1.0,
                    background: str = "light grey", style: str = "flat", rng: np.random.Generator | None = None) -> np.ndarray:
    """One subject alone on a background, uint8 [size, size, 3]: what an inter-clip reference (and
    the studio's sample references) look like. `scale` = circumradius / size."""
    rng = rng if rng is not None else np.random.default_rng(0)
    bg, _, _ = make_background(rng, size, size, background, style)
    img = bg.astype(np.float32)
    c = (size - 1) / 2.0
    y0, x0, inside, shade = rasterise(identity, c, c, scale * size, angle, size, size)
    h, w = inside.shape
    patch = img[y0:y0 + h, x0:x0 + w]
    patch[inside] = identity.rgb
    patch[shade] = identity.shade_rgb
    return np.clip(np.round(img * brightness), 0, 255).astype(np.uint8)


# --------------------------------------------------------------------------------------------
# World configuration and the clip record
# --------------------------------------------------------------------------------------------
@dataclass(frozen=True)
class WorldConfig:
    height: int = 64
    width: int = 64
    fps: int = 16
    duration: float = 4.0
    min_subjects: int = 1
    max_subjects: int = 3
    min_actions: int = 1
    max_actions: int = 3
    min_span_slots: int = 2  # shortest sub-action in latent frames (each = 4 video frames); >= 1
    gap_prob: float = 0.2  # chance of a one-latent-frame pause before/between/after actions
    unit_range: tuple[float, float] = (0.09, 0.15)  # sprite circumradius as a fraction of the short side
    move_range: tuple[float, float] = (0.15, 0.30)  # move distance as a fraction of the frame side
    jump_range: tuple[float, float] = (0.15, 0.25)  # jump height as a fraction of the frame height
    grow_range: tuple[float, float] = (1.45, 1.75)  # linear scale factor
    shrink_range: tuple[float, float] = (0.55, 0.68)
    spin_speed: float = 180.0  # degrees per second: 45 per latent frame, so a x4-in-time latent sees each pose (at 360 a square turns 90 degrees per latent frame and looks the same)
    scale_limits: tuple[float, float] = (0.5, 1.9)
    min_separation: float = 0.9  # centres kept >= this * (r_i + r_j) apart when possible (0 = don't care)
    ref_size: int = 32
    n_intra: int = 1
    n_inter: int = 1
    actions: tuple[str, ...] = ACTIONS
    textures: tuple[str, ...] = TEXTURES  # the learnability ladder's easy worlds use ("solid",)
    background_styles: tuple[str, ...] = BACKGROUND_STYLES  # ... and ("flat",)
    # 'random': start positions drawn anywhere the motion fits. 'canonical': subject i of S starts with its path
    # centred on the i-th of S columns at mid-height (clamped to fit), so a scene is a function of its
    # references, timeline and sizes: the layout is no longer something a small model must learn to sample.
    placement: str = "random"
    # relative weight of each of SHAPES when a subject's shape is drawn (None: all alike, the benchmark's worlds). A
    # training world can oversample the shapes a model draws worst (stars and crosses come out as round blobs).
    shape_weights: tuple[float, ...] | None = None

    def validate(self) -> "WorldConfig":
        def bad(key, msg):
            raise ValueError(f"{key}: {msg}")

        if self.height < 16 or self.width < 16:
            bad("height" if self.height < 16 else "width", "frames must be at least 16 pixels on each side")
        if self.fps < 1:
            bad("fps", "must be >= 1")
        if self.duration <= 0:
            bad("duration", "must be positive")
        if not 1 <= self.min_subjects <= self.max_subjects <= len(COLOURS):
            bad("max_subjects", f"need 1 <= min_subjects <= max_subjects <= {len(COLOURS)} (one colour each)")
        if not 1 <= self.min_actions <= self.max_actions:
            bad("max_actions", "need 1 <= min_actions <= max_actions")
        if self.min_span_slots < 1:
            bad("min_span_slots", "must be >= 1 (one latent frame)")
        unknown = [a for a in self.actions if a not in ACTIONS]
        if unknown or not self.actions:
            bad("actions", f"unknown action(s) {unknown}; known: {', '.join(ACTIONS)}")
        bad_tex = [t for t in self.textures if t not in TEXTURES]
        if bad_tex or not self.textures:
            bad("textures", f"unknown texture(s) {bad_tex}; known: {', '.join(TEXTURES)}")
        bad_bg = [b for b in self.background_styles if b not in BACKGROUND_STYLES]
        if bad_bg or not self.background_styles:
            bad("background_styles", f"unknown style(s) {bad_bg}; known: {', '.join(BACKGROUND_STYLES)}")
        if self.placement not in ("random", "canonical"):
            bad("placement", f"must be 'random' or 'canonical', got {self.placement!r}")
        if self.ref_size < 8:
            bad("ref_size", "must be >= 8")
        if self.shape_weights is not None:
            w = list(self.shape_weights)
            if len(w) != len(SHAPES) or not all(isinstance(x, (int, float)) and x >= 0 for x in w):
                bad("shape_weights", f"need {len(SHAPES)} weights >= 0, one per shape in the order {', '.join(SHAPES)}; got {w}")
            # a scene's subjects take distinct shapes (while there are enough), so that many must be possible
            if sum(x > 0 for x in w) < min(self.max_subjects, len(SHAPES)):
                bad("shape_weights", f"{sum(x > 0 for x in w)} shape(s) weighted above 0, but scenes have up to "
                    f"{self.max_subjects} subjects of distinct shapes")
        return self

    @property
    def num_frames(self) -> int:
        return num_video_frames(self.duration, self.fps)

    @property
    def clip_duration(self) -> float:
        """The duration the frames actually cover ((F-1)/fps, on the latent grid)."""
        return (self.num_frames - 1) / self.fps

    @property
    def num_slots(self) -> int:
        return (self.num_frames - 1) // TIME_COMPRESSION

    @classmethod
    def from_kwargs(cls, **kwargs) -> "WorldConfig":
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(kwargs) - known)
        if unknown:
            raise TypeError(f"unknown world option(s) {unknown}; known: {', '.join(sorted(known))}")
        conv = {k: tuple(v) if isinstance(v, list) else v for k, v in kwargs.items()}
        return cls(**conv).validate()

    def to_dict(self) -> dict:
        return {f.name: (list(getattr(self, f.name)) if isinstance(getattr(self, f.name), tuple) else getattr(self, f.name)) for f in fields(self)}


@dataclass
class Segment:
    """One planned motion of one subject, in video frames [f0, f1] (f1 = first frame of the next)."""

    action: str
    f0: int
    f1: int
    amount: float = 0.0  # pixels (moves, jump), scale factor (grow/shrink), degrees (spin)
    labelled: bool = True  # False for the implicit 'stay' filling a gap in the timeline


@dataclass
class SpriteClip:
    frames: np.ndarray  # uint8 [F, H, W, 3]
    masks: np.ndarray  # bool [S, F, H, W], visible pixels
    timeline: Timeline
    identities: list[Identity]
    references_intra: list[list[np.ndarray]]  # per subject, uint8 [r, r, 3] crops from this clip
    references_inter: list[list[np.ndarray]]  # per subject, re-renders (other scale/angle/light/background)
    actions: list[list[str]]  # per subject, canonical action names in timeline order
    seed: int
    world: WorldConfig = field(default_factory=WorldConfig)
    states: dict[str, np.ndarray] = field(default_factory=dict)  # x, y, scale(px radius), angle: [S, F]
    segments: list[list[Segment]] = field(default_factory=list)
    background: np.ndarray | None = None
    background_name: str = ""
    intra_frames: list[list[int]] = field(default_factory=list)  # frame each intra reference was cut from

    @property
    def fps(self) -> int:
        return self.timeline.fps

    @property
    def num_subjects(self) -> int:
        return len(self.identities)


# --------------------------------------------------------------------------------------------
# Planning
# --------------------------------------------------------------------------------------------
def _sample_slots(rng: np.random.Generator, n_actions: int, n_slots: int, min_slots: int, gap_prob: float) -> list[tuple[int, int]]:
    """Random contiguous-or-gapped action spans in latent-frame slots, covering most of the clip."""
    n_actions = max(1, min(n_actions, n_slots // min_slots))
    gaps = (rng.random(n_actions + 1) < gap_prob).astype(int)
    while gaps.sum() and n_actions * min_slots + gaps.sum() > n_slots:
        gaps[np.flatnonzero(gaps)[-1]] = 0
    free = n_slots - n_actions * min_slots - int(gaps.sum())
    cuts = np.sort(rng.integers(0, free + 1, size=n_actions - 1))
    extra = np.diff(np.concatenate([[0], cuts, [free]]))
    spans, t = [], int(gaps[0])
    for k in range(n_actions):
        length = min_slots + int(extra[k])
        spans.append((t, t + length))
        t += length + int(gaps[k + 1])
    return spans


def _choose_actions(rng: np.random.Generator, n: int, identity: Identity, world: WorldConfig) -> list[str]:
    lo, hi = world.scale_limits
    scale, out = 1.0, []
    for _ in range(n):
        options = [a for a in world.actions if not (out and a == out[-1])]
        if identity.rotation_invisible:
            options = [a for a in options if a != "spin"]
        options = [a for a in options if not (a == "grow" and scale * world.grow_range[1] > hi)]
        options = [a for a in options if not (a == "shrink" and scale * world.shrink_range[0] < lo)]
        if not options:
            options = ["stay"]
        a = str(rng.choice(options))
        if a == "grow":
            scale *= world.grow_range[1]
        elif a == "shrink":
            scale *= world.shrink_range[0]
        out.append(a)
    return out


def _segments_for(actions: list[str], frame_spans: list[tuple[int, int]], rng: np.random.Generator, world: WorldConfig,
                  num_frames: int) -> list[Segment]:
    """Timeline actions plus implicit 'stay' segments for the gaps; amounts drawn per action."""
    segs: list[Segment] = []
    t = 0
    for a, (f0, f1) in zip(actions, frame_spans):
        if f0 > t:
            segs.append(Segment("stay", t, f0, labelled=False))
        if a in ("move_left", "move_right"):
            amount = rng.uniform(*world.move_range) * world.width
        elif a in ("move_up", "move_down"):
            amount = rng.uniform(*world.move_range) * world.height
        elif a == "jump":
            amount = rng.uniform(*world.jump_range) * world.height
        elif a == "grow":
            amount = rng.uniform(*world.grow_range)
        elif a == "shrink":
            amount = rng.uniform(*world.shrink_range)
        elif a == "spin":
            amount = world.spin_speed / world.fps * (f1 - f0) * (1 if rng.random() < 0.5 else -1)
        else:
            amount = 0.0
        segs.append(Segment(a, f0, f1, float(amount)))
        t = f1
    if t < num_frames - 1:
        segs.append(Segment("stay", t, num_frames - 1, labelled=False))
    return segs


def trajectory(segments: list[Segment], num_frames: int, angle0: float = 0.0) -> dict[str, np.ndarray]:
    """Relative state per frame (x, y offsets in px from the start, scale factor, angle in degrees)
    implied by the segments: moves are linear, a jump is y0 - h*sin(pi*u), grow/shrink scale
    linearly, a spin turns at constant speed."""
    x = np.zeros(num_frames)
    y = np.zeros(num_frames)
    s = np.ones(num_frames)
    ang = np.full(num_frames, float(angle0))
    cx, cy, cs, ca = 0.0, 0.0, 1.0, float(angle0)
    for seg in sorted(segments, key=lambda g: g.f0):
        f = np.arange(seg.f0, seg.f1 + 1)
        u = (f - seg.f0) / max(1, seg.f1 - seg.f0)
        px, py, ps, pa = np.full(len(f), cx), np.full(len(f), cy), np.full(len(f), cs), np.full(len(f), ca)
        if seg.action == "move_left":
            px = cx - seg.amount * u
        elif seg.action == "move_right":
            px = cx + seg.amount * u
        elif seg.action == "move_up":
            py = cy - seg.amount * u
        elif seg.action == "move_down":
            py = cy + seg.amount * u
        elif seg.action == "jump":
            py = cy - seg.amount * np.sin(np.pi * u)
            py[-1] = cy  # land exactly
        elif seg.action in ("grow", "shrink"):
            ps = cs * (1 + (seg.amount - 1) * u)
        elif seg.action == "spin":
            pa = ca + seg.amount * u
        x[f], y[f], s[f], ang[f] = px, py, ps, pa
        cx, cy, cs, ca = px[-1], py[-1], ps[-1], pa[-1]
        x[seg.f1:], y[seg.f1:], s[seg.f1:], ang[seg.f1:] = cx, cy, cs, ca
    return {"x": x, "y": y, "scale": s, "angle": ang}


def _start_range(rel: np.ndarray, radius: np.ndarray, size: int) -> tuple[int, int]:
    """Integer start coordinates that keep the whole sprite inside [0, size-1] at every frame."""
    lo = math.ceil(float(np.max(radius - rel)) + 0.5)
    hi = math.floor(float(np.min(size - 1 - radius - rel)) - 0.5)
    return lo, hi


@dataclass
class _SubjectPlan:
    identity: Identity
    unit_px: float
    segments: list[Segment]
    rel: dict[str, np.ndarray]
    xr: tuple[int, int] = (0, 0)
    yr: tuple[int, int] = (0, 0)


def _plan_subject(rng, identity, actions, frame_spans, world, num_frames, unit_px) -> _SubjectPlan | None:
    for _ in range(30):
        segs = _segments_for(actions, frame_spans, rng, world, num_frames)
        rel = trajectory(segs, num_frames, angle0=float(rng.uniform(0, 360)))
        radius = unit_px * rel["scale"]
        xr = _start_range(rel["x"], radius, world.width)
        yr = _start_range(rel["y"], radius, world.height)
        if xr[0] <= xr[1] and yr[0] <= yr[1]:
            return _SubjectPlan(identity, unit_px, segs, rel, xr, yr)
    return None


def _place(rng, plans: list[_SubjectPlan], world: WorldConfig, tries: int = 40) -> list[tuple[int, int]]:
    """Start positions inside the frame; among `tries` draws keep the one whose subjects come
    least close (occlusion stays possible, but rare and small by default). World placement 'canonical':
    no draw, each subject's path centred on its own column (WorldConfig.placement)."""
    if world.placement == "canonical":
        S = len(plans)
        pos = []
        for i, p in enumerate(plans):
            x = world.width * (i + 0.5) / S - 0.5 * float(p.rel["x"].min() + p.rel["x"].max())
            y = world.height / 2 - 0.5 * float(p.rel["y"].min() + p.rel["y"].max())
            pos.append((int(np.clip(round(x), p.xr[0], p.xr[1])), int(np.clip(round(y), p.yr[0], p.yr[1]))))
        return pos
    best, best_sep = None, -1.0
    for _ in range(tries):
        pos = [(int(rng.integers(p.xr[0], p.xr[1] + 1)), int(rng.integers(p.yr[0], p.yr[1] + 1))) for p in plans]
        sep = np.inf
        for i in range(len(plans)):
            for j in range(i + 1, len(plans)):
                pi, pj = plans[i], plans[j]
                d = np.hypot(pos[i][0] + pi.rel["x"] - pos[j][0] - pj.rel["x"], pos[i][1] + pi.rel["y"] - pos[j][1] - pj.rel["y"])
                r = pi.unit_px * pi.rel["scale"] + pj.unit_px * pj.rel["scale"]
                sep = min(sep, float(np.min(d / r)))
        if sep > best_sep:
            best, best_sep = pos, sep
        if sep >= world.min_separation:
            break
    return best


# --------------------------------------------------------------------------------------------
# Rendering
# --------------------------------------------------------------------------------------------
def render_states(identities: list[Identity], states: dict[str, np.ndarray], background: np.ndarray):
    """Draw subjects in order (later on top) over a static background.
    states: x, y (centre px), radius (px), angle (deg), each [S, F]. Returns frames, masks, drawn
    (bool [S, F]-indexed pixel counts of each unoccluded body)."""
    S, F = states["x"].shape
    H, W, _ = background.shape
    frames = np.broadcast_to(background, (F, H, W, 3)).copy()
    masks = np.zeros((S, F, H, W), dtype=bool)
    drawn = np.zeros((S, F), dtype=np.int64)
    colours = [(ident.rgb.round().astype(np.uint8), ident.shade_rgb.round().astype(np.uint8)) for ident in identities]
    for f in range(F):
        frame = frames[f]
        for s, ident in enumerate(identities):
            r = rasterise(ident, states["x"][s, f], states["y"][s, f], states["radius"][s, f], states["angle"][s, f], H, W)
            if r is None:
                continue
            y0, x0, inside, shade = r
            h, w = inside.shape
            drawn[s, f] = int(inside.sum())
            win = (slice(y0, y0 + h), slice(x0, x0 + w))
            frame[win][inside] = colours[s][0]
            frame[win][shade] = colours[s][1]
            masks[:s, f][(slice(None),) + win] &= ~inside  # visible pixels only: earlier subjects lose what is covered
            masks[s, f][win] |= inside
    return frames, masks, drawn


def _pick_intra_frames(rng, visible: np.ndarray, drawn: np.ndarray, n: int) -> list[int]:
    frac = np.where(drawn > 0, visible / np.maximum(drawn, 1), 0.0)
    best = np.flatnonzero(frac >= frac.max() - 1e-9)
    if len(best) < n:
        best = np.argsort(-frac, kind="stable")[: max(n, 1)]
    return sorted(int(i) for i in rng.choice(best, size=min(n, len(best)), replace=False))


def _inter_reference(rng, identity: Identity, world: WorldConfig, clip_background: str) -> np.ndarray:
    others = [b for b in BACKGROUNDS if b != clip_background]
    return render_identity(
        identity,
        world.ref_size,
        scale=float(rng.uniform(0.28, 0.46)),
        angle=float(rng.uniform(0, 360)),
        brightness=float(rng.uniform(0.75, 1.1)),
        background=str(rng.choice(others)),
        style=str(rng.choice(world.background_styles)),
        rng=rng,
    )


def _scene_prompt(identities: list[Identity], background: str) -> str:
    names = [("an " if i.description[0] in "aeiou" else "a ") + i.description for i in identities]
    joined = names[0] if len(names) == 1 else ", ".join(names[:-1]) + " and " + names[-1]
    return f"{joined} on a {background} background"


def _assemble(seed: int, rng: np.random.Generator, world: WorldConfig, plans: list[_SubjectPlan], captions: list[list[str]]) -> SpriteClip:
    F = world.num_frames
    background, bg_name, _ = make_background(rng, world.height, world.width, styles=world.background_styles)
    positions = _place(rng, plans, world)
    S = len(plans)
    states = {
        "x": np.stack([np.round(px + p.rel["x"]) for (px, _), p in zip(positions, plans)]),
        "y": np.stack([np.round(py + p.rel["y"]) for (_, py), p in zip(positions, plans)]),
        "radius": np.stack([p.unit_px * p.rel["scale"] for p in plans]),
        "angle": np.stack([p.rel["angle"] for p in plans]),
    }
    identities = [p.identity for p in plans]
    frames, masks, drawn = render_states(identities, states, background)

    fps = world.fps
    subjects = []
    actions_per_subject = []
    for s, p in enumerate(plans):
        labelled = [g for g in p.segments if g.labelled]
        acts = [Action(snap_to_grid(g.f0 / fps, fps), snap_to_grid(g.f1 / fps, fps), cap) for g, cap in zip(labelled, captions[s])]
        subjects.append(Subject(f"s{s + 1}", p.identity.name, "object", [], acts))
        actions_per_subject.append([g.action for g in labelled])
    tl = Timeline(duration=world.clip_duration, subjects=subjects, prompt=_scene_prompt(identities, bg_name), fps=fps).validate()

    refs_intra, refs_inter, intra_frames = [], [], []
    for s in range(S):
        visible = masks[s].reshape(F, -1).sum(1)
        picks = _pick_intra_frames(rng, visible, drawn[s], world.n_intra)
        intra_frames.append(picks)
        refs_intra.append([crop_subject(frames[f], masks[s, f], world.ref_size) for f in picks])
        refs_inter.append([_inter_reference(rng, identities[s], world, bg_name) for _ in range(world.n_inter)])
    return SpriteClip(
        frames=frames, masks=masks, timeline=tl, identities=identities, references_intra=refs_intra, references_inter=refs_inter,
        actions=actions_per_subject, seed=int(seed), world=world, states=states, segments=[p.segments for p in plans],
        background=background, background_name=bg_name, intra_frames=intra_frames,
    )


def generate_clip(seed: int, world: WorldConfig | None = None, **world_kwargs) -> SpriteClip:
    """A random clip, identical for the same seed and world. World options may be given as a
    WorldConfig or as keyword arguments (e.g. duration=2.0, max_subjects=2)."""
    world = replace(world, **world_kwargs).validate() if world is not None else WorldConfig.from_kwargs(**world_kwargs)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x5B1E]))
    F, n_slots, step = world.num_frames, world.num_slots, TIME_COMPRESSION
    side = min(world.height, world.width)
    S = int(rng.integers(world.min_subjects, world.max_subjects + 1))
    colours = rng.choice(list(COLOURS), size=S, replace=False)  # distinct colours: the evaluator tracks by hue
    if world.shape_weights is None:  # the same draw as before the option existed: held-out scenes stay the same
        shapes = rng.choice(SHAPES, size=S, replace=S > len(SHAPES))
    else:
        p = np.asarray(world.shape_weights, dtype=np.float64)
        shapes = rng.choice(SHAPES, size=S, replace=S > len(SHAPES), p=p / p.sum())
    plans, captions = [], []
    for s in range(S):
        identity = Identity(str(shapes[s]), str(colours[s]), str(rng.choice(world.textures)))
        unit_px = float(rng.uniform(*world.unit_range)) * side
        plan = None
        for _ in range(10):
            n = int(rng.integers(world.min_actions, world.max_actions + 1))
            slots = _sample_slots(rng, n, n_slots, world.min_span_slots, world.gap_prob)
            actions = _choose_actions(rng, len(slots), identity, world)
            plan = _plan_subject(rng, identity, actions, [(a * step, b * step) for a, b in slots], world, F, unit_px)
            if plan is not None:
                break
            unit_px *= 0.85  # too big for these motions: try smaller
        if plan is None:  # give up on motion: one still span always fits
            plan = _plan_subject(rng, identity, ["stay"], [(0, F - 1)], world, F, unit_px)
        plans.append(plan)
        captions.append([str(rng.choice(ACTION_CAPTIONS[g.action])) for g in plan.segments if g.labelled])
    return _assemble(seed, rng, world, plans, captions)


def clip_from_timeline(timeline: Timeline, identities: list[Identity], seed: int = 0, world: WorldConfig | None = None, **world_kwargs) -> SpriteClip:
    """Ground-truth clip for a given timeline (captions read with caption_to_action): what a perfect
    model would render. Used by the benchmark. Raises ValueError naming the subject and action
    whose caption names no known action."""
    timeline.validate()
    base = world or WorldConfig()
    world = replace(base, fps=timeline.fps, duration=timeline.duration, **world_kwargs).validate()
    if len(identities) != len(timeline.subjects):
        raise ValueError(f"identities: got {len(identities)} for {len(timeline.subjects)} subjects")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x71E]))
    F = world.num_frames
    side = min(world.height, world.width)
    plans, captions = [], []
    for subj, identity in zip(timeline.subjects, identities):
        acts = subj.sorted_actions()
        names = []
        for j, a in enumerate(acts):
            name = caption_to_action(a.text)
            if name is None:
                raise ValueError(f"subject {subj.id!r} ({subj.name}), action {j + 1} {a.text!r}: names no sprite action ({', '.join(ACTIONS)})")
            names.append(name)
        spans = [(int(round(a.start * world.fps)), min(F - 1, int(round(a.end * world.fps)))) for a in acts]
        unit_px = float(rng.uniform(*world.unit_range)) * side
        plan = None
        for _ in range(10):
            plan = _plan_subject(rng, identity, names, spans, world, F, unit_px)
            if plan is not None:
                break
            unit_px *= 0.85
        if plan is None:
            raise ValueError(f"subject {subj.id!r} ({subj.name}): its motions do not fit in a {world.width}x{world.height} frame")
        plans.append(plan)
        captions.append([a.text for a in acts])
    clip = _assemble(seed, rng, world, plans, captions)
    for s_new, s_old in zip(clip.timeline.subjects, timeline.subjects):
        s_new.id, s_new.name, s_new.kind = s_old.id, s_old.name, s_old.kind
    clip.timeline.prompt = timeline.prompt or clip.timeline.prompt
    return clip


__all__ = [
    "ACTIONS", "ACTION_CAPTIONS", "BACKGROUNDS", "COLOURS", "SHAPES", "TEXTURES", "Identity", "Segment", "SpriteClip",
    "WorldConfig", "all_identities", "caption_to_action", "text_concepts", "clip_from_timeline", "crop_subject", "generate_clip",
    "make_background", "rasterise", "render_identity", "render_states", "trajectory",
]
