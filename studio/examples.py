"""Ready scenes in assets/examples/: reference images + a timeline document per scene.

Each scene is a folder with `scene.json` (a timeline document whose reference paths are relative to
the folder, plus a title) and `refs/*.png`. The PNGs are sprites of the world the embedded default
model was trained on (coloured, solid shapes on a plain background), drawn by
`train.sprites.render_identity`, so the default model knows them. Regenerate with
`python -m studio.examples`.
"""

from __future__ import annotations

import json
from pathlib import Path

from model.timeline import Timeline

EXAMPLES_DIR = Path(__file__).resolve().parents[1] / "assets" / "examples"

# slug -> (title, scene prompt, [(shape, colour, texture, kind, [(start, end, caption), ...]), ...])
SCENES: dict[str, tuple[str, str, list]] = {
    # Each scene stays inside the default model's world (docs/BENCHMARKS.md, ladder level 2): solid shapes on a flat
    # background, 1-3 subjects, 1-2 actions each from "moves left/right/up/down", "jumps" and "stays still".
    "circle-and-square": (
        "Circle and square",
        "a red circle and a blue square on a light grey background",
        [
            ("circle", "red", "solid", [(0.0, 2.0, "moves to the right"), (2.0, 4.0, "jumps")]),
            ("square", "blue", "solid", [(0.0, 1.5, "stays still"), (1.5, 4.0, "moves up")]),
        ],
    ),
    "up-and-down": (
        "Up and down",
        "a green triangle and an orange star on a light grey background",
        [
            ("triangle", "green", "solid", [(0.0, 2.0, "moves up"), (2.0, 4.0, "moves down")]),
            ("star", "orange", "solid", [(0.0, 2.5, "moves to the left"), (2.5, 4.0, "stays still")]),
        ],
    ),
    "three-shapes": (
        "Three shapes",
        "a magenta diamond, a yellow cross and a cyan circle on a light grey background",
        [
            ("diamond", "magenta", "solid", [(0.0, 2.0, "moves up"), (2.0, 4.0, "moves down")]),
            ("cross", "yellow", "solid", [(0.0, 1.5, "stays still"), (1.5, 4.0, "jumps")]),
            ("circle", "cyan", "solid", [(0.0, 2.0, "moves to the right"), (2.0, 4.0, "stays still")]),
        ],
    ),
}


def list_scenes() -> list[tuple[str, str]]:
    """(title, slug) of every scene on disk, in a stable order."""
    out = []
    for slug in sorted(p.name for p in EXAMPLES_DIR.iterdir() if (p / "scene.json").is_file()) if EXAMPLES_DIR.is_dir() else []:
        meta = json.loads((EXAMPLES_DIR / slug / "scene.json").read_text(encoding="utf-8"))
        out.append((meta.get("title", slug), slug))
    return out


def load_scene(slug: str) -> dict:
    """The scene's timeline document with absolute reference paths (validated)."""
    folder = (EXAMPLES_DIR / slug).resolve()
    if folder.parent != EXAMPLES_DIR.resolve() or not (folder / "scene.json").is_file():
        raise ValueError(f"there is no example scene {slug!r}")
    meta = json.loads((folder / "scene.json").read_text(encoding="utf-8"))
    doc = meta["timeline"]
    for s in doc["subjects"]:
        s["references"] = [str((folder / r).resolve()) for r in s.get("references", [])]
    return Timeline.from_dict(doc).to_dict()


def example_references() -> list[tuple[str, str]]:
    """(label, absolute path) of every example reference image, for the 'pick an example' menus."""
    out = []
    for _, slug in list_scenes():
        meta = json.loads((EXAMPLES_DIR / slug / "scene.json").read_text(encoding="utf-8"))
        for s in meta["timeline"]["subjects"]:
            for k, r in enumerate(s.get("references", [])):
                path = str((EXAMPLES_DIR / slug / r).resolve())
                label = f"{s['name']} ({k + 1})"
                if all(p != path for _, p in out):
                    out.append((label, path))
    return out


def build_example_assets(size: int = 96) -> list[Path]:
    """Draw the reference PNGs and write every scene.json (run once; the results are committed)."""
    import numpy as np
    from PIL import Image

    from train.sprites import Identity, render_identity

    written = []
    for slug, (title, prompt, subjects) in SCENES.items():
        folder = EXAMPLES_DIR / slug
        (folder / "refs").mkdir(parents=True, exist_ok=True)
        doc_subjects = []
        for i, (shape, colour, texture, actions) in enumerate(subjects):
            ident = Identity(shape, colour, texture)
            refs = []
            for k, angle in enumerate((0.0, 20.0)):
                img = render_identity(ident, size=size, scale=0.36, angle=angle, background="light grey", style="flat", rng=np.random.default_rng(k))
                rel = f"refs/{colour}_{texture}_{shape}_{k + 1}.png"
                Image.fromarray(img).save(folder / rel)
                written.append(folder / rel)
                refs.append(rel)
            doc_subjects.append({"id": f"s{i + 1}", "name": ident.name, "kind": "object", "references": refs,
                                 "actions": [{"start": a, "end": b, "text": t} for a, b, t in actions]})
        doc = {"version": 1, "duration": 4.0, "fps": 8, "prompt": prompt, "subjects": doc_subjects}
        Timeline.from_dict(doc)  # validate before writing
        (folder / "scene.json").write_text(json.dumps({"title": title, "timeline": doc}, indent=2) + "\n", encoding="utf-8")
        written.append(folder / "scene.json")
    return written


if __name__ == "__main__":
    for p in build_example_assets():
        print(p.relative_to(EXAMPLES_DIR.parent.parent))
