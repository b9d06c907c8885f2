"""Where the studio keeps reference images: validated once, stored as RGB PNGs named by content, with
the crop the model sees next to them. Timeline documents point at these files."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from PIL import Image

from .engine import Engine


class ReferenceStore:
    def __init__(self, root: str | Path, engine: Engine, extra_roots: list[str | Path] = ()):
        self.root = Path(root).resolve()
        self.refs = self.root / "refs"
        self.crops = self.root / "crops"
        self.refs.mkdir(parents=True, exist_ok=True)
        self.crops.mkdir(parents=True, exist_ok=True)
        self.engine = engine
        self.extra_roots = [Path(r).resolve() for r in extra_roots]

    @property
    def allowed_roots(self) -> list[Path]:
        """Reference paths a timeline may name (uploads kept here, and the shipped examples)."""
        return [self.refs, *self.extra_roots]

    def is_allowed(self, path: str | Path) -> bool:
        try:
            p = Path(path).resolve()
        except OSError:
            return False
        return p.is_file() and any(r == p.parent or r in p.parents for r in self.allowed_roots)

    def ingest(self, src: Any, label: str | None = None) -> str:
        """Validate (model.references rules: corrupt, too large, animated...) and store; returns the stored
        path. Raises model.references.ReferenceError with a message naming the file."""
        img = self.engine.load_reference(src, label=label)
        if isinstance(src, (str, Path)) and self.is_allowed(src):
            return str(Path(src).resolve())  # already kept here, or a shipped example: use it in place
        digest = hashlib.sha1(img.tobytes() + repr(img.size).encode()).hexdigest()[:16]
        path = self.refs / f"{digest}.png"
        if not path.exists():
            img.save(path)
        return str(path)

    def crop_of(self, ref_path: str | Path) -> str:
        """The model's view of a stored or example reference (cached PNG)."""
        ref_path = Path(ref_path).resolve()
        key = hashlib.sha1(f"{ref_path}:{ref_path.stat().st_mtime_ns}".encode()).hexdigest()[:16]
        out = self.crops / f"{key}.png"
        if not out.exists():
            with Image.open(ref_path) as im:
                img = im.convert("RGB")
            self.engine.reference_crop(img).save(out)
        return str(out)
