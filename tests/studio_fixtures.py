"""Shared helpers for the studio tests: an engine, a launched studio on a free port, small files."""

from __future__ import annotations

import json
import os
import socket
import sys
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))
ARTIFACTS = ROOT / "test-artifacts" / "studio"
CHROMIUM = os.environ.get("REACTID_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-quic"]


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def default_engine():
    """The embedded default model (assets/default_model, committed). Returns (engine, which)."""
    from studio.engine import Engine

    return Engine.default(device="cpu"), "default"


def playwright_or_skip():
    """playwright.sync_api for the browser tests; skips the calling test module when playwright is not
    installed or Debian's chromium is not at CHROMIUM. Call it at module level."""
    import pytest

    sync_api = pytest.importorskip("playwright.sync_api")
    if not Path(CHROMIUM).exists():
        pytest.skip(f"chromium not found at {CHROMIUM}", allow_module_level=True)
    return sync_api


def chromium(sync_api):
    """Headless chromium for a module-scoped fixture: `yield from chromium(sync_api)`."""
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
        yield b
        b.close()


class LaunchedStudio:
    def __init__(self, engine, workdir: Path, extra_tabs=()):
        from studio.app import build_studio

        self.studio = build_studio(engine, workdir=workdir, extra_tabs=list(extra_tabs))
        for attempt in range(3):
            self.port = free_port()
            try:
                self.studio.demo.launch(**self.studio.launch_kwargs(server_port=self.port, prevent_thread_lock=True, quiet=True, ssr_mode=False))
                break
            except ValueError as exc:
                # Gradio probes its own URL a few times with short timeouts; on a loaded 2-core machine the probe
                # can miss and Gradio then refuses to start ("localhost is not accessible"). Try again.
                if "localhost is not accessible" not in str(exc) or attempt == 2:
                    raise
                self.studio.demo.close()
        self.url = f"http://127.0.0.1:{self.port}/"

    def close(self) -> None:
        self.studio.demo.close()


def write_test_files(folder: Path) -> dict[str, Path]:
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    img = np.full((80, 80, 3), 200, np.uint8)
    img[20:60, 20:60] = (30, 190, 60)
    files["green"] = folder / "green.png"
    Image.fromarray(img).save(files["green"])
    files["corrupt"] = folder / "corrupt.png"
    files["corrupt"].write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(400))
    frames = [Image.fromarray(np.full((40, 40, 3), c, np.uint8)) for c in (0, 120, 240)]
    files["gif"] = folder / "animated.gif"
    frames[0].save(files["gif"], save_all=True, append_images=frames[1:], duration=100, loop=0)
    files["broken_json"] = folder / "broken.json"
    files["broken_json"].write_text('{"version": 1, "duration": 4, "subjects": [ {"id": "s1", ', encoding="utf-8")
    files["bad_rules_json"] = folder / "overlap.json"
    files["bad_rules_json"].write_text(json.dumps({
        "version": 1, "duration": 4.0, "fps": 16, "prompt": "x",
        "subjects": [{"id": "s1", "name": "the dog", "kind": "animal", "references": ["/etc/passwd"],
                      "actions": [{"start": 0.0, "end": 2.5, "text": "runs"}, {"start": 2.0, "end": 4.5, "text": "sits"}]}],
    }), encoding="utf-8")
    return files


def big_file(folder: Path, mb: int = 50) -> Path:
    path = folder / f"big-{mb}mb.png"
    if not path.exists():
        with open(path, "wb") as f:
            f.write(b"\x89PNG\r\n\x1a\n")
            f.seek(mb * 1024 * 1024)
            f.write(b"\0")
    return path
