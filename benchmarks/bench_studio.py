"""Studio timings: launch to a ready page, a timeline edit round trip, a default-model generation.

    python benchmarks/bench_studio.py            # prints a table (and --json for machine-readable output)

Measured:
- cold start: `python app.py` as a subprocess until the page answers HTTP 200 (imports + model load +
  building the UI + server start);
- page ready: a fresh chromium page from navigation until the timeline widget has drawn its blocks;
- edit: the Python handler alone (validate + snap + undo bookkeeping), the HTTP round trip through
  gradio_client, and in the browser from releasing a dragged block until Python's validated document
  shows the new time;
- generation: in the browser, from pressing Generate until the status reports the run and the MP4 is
  loaded in the player (default steps, default size, the first example scene).
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
CHROMIUM = os.environ.get("REACTID_CHROMIUM", "/usr/bin/chromium")
ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update", "--disable-sync",
        "--no-first-run", "--disable-quic"]


def log(msg: str) -> None:
    print(f"[bench] {msg}", file=sys.stderr, flush=True)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 180.0) -> float:
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            if urllib.request.urlopen(url, timeout=2).status == 200:
                return time.perf_counter() - t0
        except OSError:
            time.sleep(0.05)
    raise TimeoutError(url)


def cold_start() -> float:
    port = free_port()
    env = dict(os.environ, GRADIO_ANALYTICS_ENABLED="False")
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, str(ROOT / "app.py"), "--port", str(port), "--workdir", tempfile.mkdtemp()],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        wait_http(f"http://127.0.0.1:{port}/")
        return time.perf_counter() - t0
    finally:
        proc.terminate()
        proc.wait(timeout=20)


def engine():
    from studio.engine import Engine

    return Engine.default(device="cpu"), "embedded default"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--edits", type=int, default=30)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    import torch

    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    rows: list[tuple[str, str]] = []

    rows.append(("cold start: `python app.py` -> HTTP 200", f"{cold_start():.2f} s"))
    log(rows[-1])

    from gradio_client import Client
    from playwright.sync_api import sync_playwright

    from studio.app import build_studio

    eng, which = engine()
    t0 = time.perf_counter()
    studio = build_studio(eng, workdir=tempfile.mkdtemp())
    port = free_port()
    studio.demo.launch(**studio.launch_kwargs(server_port=port, prevent_thread_lock=True, quiet=True, ssr_mode=False))
    url = f"http://127.0.0.1:{port}/"
    wait_http(url)
    rows.append(("in-process build + launch -> HTTP 200", f"{time.perf_counter() - t0:.2f} s"))
    log(rows[-1])

    # Edit round trip: handler only, then through HTTP.
    panel = studio.panels["timeline"]
    doc = panel.doc_state.value
    times = []
    for k in range(args.edits):
        edited = json.loads(json.dumps(doc))
        edited["subjects"][0]["actions"][1]["start"] = 2.0 + 0.25 * (k % 4)
        value = json.dumps({"timeline": edited})
        t = time.perf_counter()
        panel.on_widget_input(value, doc, {"past": [], "future": [], "tag": None})
        times.append(time.perf_counter() - t)
    rows.append(("edit: Python handler (validate, snap, undo)", f"{statistics.median(times) * 1e3:.2f} ms (median of {args.edits})"))
    c = Client(url, verbose=False, analytics_enabled=False)
    times = []
    for k in range(args.edits):
        edited = json.loads(json.dumps(doc))
        edited["subjects"][0]["actions"][1]["start"] = 2.0 + 0.25 * (k % 4)
        t = time.perf_counter()
        c.predict(json.dumps({"timeline": edited}), api_name="/timeline_edit")
        times.append(time.perf_counter() - t)
    log("http edits done")
    rows.append(("edit: HTTP round trip (gradio_client, queued)", f"{statistics.median(times) * 1e3:.1f} ms (median of {args.edits})"))

    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=ARGS)
        page_times, drag_times = [], []
        for k in range(3):
            ctx = browser.new_context(viewport={"width": 1400, "height": 1700})
            page = ctx.new_page()
            t = time.perf_counter()
            page.goto(url)
            page.wait_for_function("() => document.querySelectorAll('#rt-timeline .vis-item').length >= 4", timeout=60_000)
            page_times.append(time.perf_counter() - t)
            log(f"page ready {page_times[-1]:.2f}")
            if k == 0:
                for j in range(6):  # even: the block ends where it started, so the timeline stays valid
                    item = page.locator("#rt-timeline .vis-item", has_text="jumps")
                    bb = item.bounding_box()
                    x, y = bb["x"] + bb["width"] / 2, bb["y"] + bb["height"] / 2
                    dx = -40 if j % 2 == 0 else 40
                    page.mouse.move(x, y)
                    page.mouse.down()
                    for s in range(1, 9):
                        page.mouse.move(x + dx * s / 8, y)
                    before = page.locator("#rt-doc-json textarea").input_value()
                    t = time.perf_counter()
                    page.mouse.up()
                    page.wait_for_function("b => document.querySelector('#rt-doc-json textarea').value !== b", arg=before, timeout=10_000)
                    drag_times.append(time.perf_counter() - t)
                    log(f"drag {drag_times[-1]:.3f}")
                # Generation from the button press.
                t = time.perf_counter()
                page.locator("#rt-generate").click()
                page.wait_for_function("() => /Run #1|Not generated|Generation failed|cancelled/.test(document.querySelector('#rt-status').innerText)", timeout=300_000)
                if "❌" in page.locator("#rt-status").inner_text():
                    raise RuntimeError(page.locator("#rt-status").inner_text())
                page.wait_for_function("() => { const v = document.querySelector('#rt-video video'); return v && v.readyState >= 2; }", timeout=60_000)
                gen = time.perf_counter() - t
                status = page.locator("#rt-status").inner_text()
            ctx.close()
        browser.close()
    rows.append(("page ready: navigation -> widget drawn (chromium)", f"{statistics.median(page_times):.2f} s (median of 3, first {page_times[0]:.2f} s)"))
    rows.append(("edit: browser drag release -> validated doc shown", f"{statistics.median(drag_times) * 1e3:.0f} ms (median of {len(drag_times)})"))
    lim = eng.limits()
    rows.append((f"generate: button -> MP4 playing ({which}, {lim.default_steps} steps, {lim.width}x{lim.height}, 4 s)", f"{gen:.2f} s"))
    rows.append(("  of which the pipeline (from the status line)", status.split(" in ")[-1].split(" ·")[0] if " in " in status else status))
    studio.demo.close()

    if args.json:
        print(json.dumps(dict(rows), indent=2))
        return
    w = max(len(r[0]) for r in rows)
    print(f"ReactID Studio benchmark — {os.cpu_count()} CPU cores, torch threads {torch.get_num_threads()}")
    print(f"{'measure'.ljust(w)} | value")
    print(f"{'-' * w}-|{'-' * 30}")
    for name, value in rows:
        print(f"{name.ljust(w)} | {value}")


if __name__ == "__main__":
    main()
