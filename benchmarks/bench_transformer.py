"""Per-denoising-step cost of ReactID vs base Wan, side by side in one run.

    python benchmarks/bench_transformer.py [--repeats 10] [--device cpu]

Config: width 256 (4 heads x 64), 8 layers, 2 subjects with one reference each, 1280 video tokens.
Rows: base Wan forward; ReactID forward with the reference branch cached (computed once per
generation, as the pipeline does); ReactID forward recomputing the reference branch every step.
Timings are interleaved (A, B, C, A, B, C, ...) so machine noise hits all rows alike; the ratio column
is what to compare across machines. Peak memory is measured in a fresh subprocess per row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402
from diffusers import WanTransformer3DModel  # noqa: E402

from model.conditioning import build_timeline_conditioning  # noqa: E402
from model.timeline import example_timeline  # noqa: E402
from model.transformer import ReactIDTransformer  # noqa: E402

CFG = dict(patch_size=(1, 2, 2), num_attention_heads=4, attention_head_dim=64, in_channels=16, out_channels=16, text_dim=128,
           freq_dim=256, ffn_dim=1024, num_layers=8, rope_max_seq_len=1024)


def build(device, frames: int = 5, layers: int = 8):
    torch.manual_seed(0)
    CFG["num_layers"] = layers
    base = WanTransformer3DModel(**CFG).eval().to(device)
    model = ReactIDTransformer.from_wan(base, num_reference_blocks=2, mask_blocks=5).eval().to(device)
    pooled = ReactIDTransformer.from_wan(base, num_reference_blocks=2, mask_blocks=5, reference_token_pool=2).eval().to(device)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(1, 16, frames, 32, 32, generator=g).to(device)  # frames x 16 x 16 tokens (5 -> 1280)
    t = torch.tensor([500.0], device=device)
    ctx = torch.randn(1, 64, 128, generator=g).to(device)
    refs = torch.randn(1, 2, 16, 32, 32, generator=g).to(device)  # 2 subjects, 256 tokens each
    subj = torch.tensor([[0, 1]], device=device)
    names = torch.randn(1, 2, 8, 128, generator=g).to(device)

    def enc(caps):
        return torch.randn(len(caps), 12, 128, generator=g), torch.ones(len(caps), 12, dtype=torch.bool)

    tl = build_timeline_conditioning([example_timeline()], enc).to(device)
    masks = torch.rand(1, 2, frames * 256, generator=g).to(device)
    return base, (model, pooled), (x, t, ctx, refs, subj, names, tl, masks)


def variants(base, models, inputs):
    model, pooled = models
    x, t, ctx, refs, subj, names, tl, masks = inputs
    with torch.no_grad():
        cached = model.encode_references(refs, subj, names, 2)
        cached_pooled = pooled.encode_references(refs, subj, names, 2)
    return {
        "base Wan": lambda: base(x, t, ctx),
        "ReactID, refs cached": lambda: model(x, t, ctx, reference_features=cached, timeline=tl, subject_masks=masks),
        "ReactID, refs every step": lambda: model(x, t, ctx, reference_features=model.encode_references(refs, subj, names, 2), timeline=tl, subject_masks=masks),
        "ReactID, cached, ref pool 2x2": lambda: pooled(x, t, ctx, reference_features=cached_pooled, timeline=tl, subject_masks=masks),
    }


def peak_memory_row(name: str, device: str, frames: int, layers: int) -> float:
    """Peak resident memory (MB) of a fresh process that builds the models and runs one step of `name`."""
    code = f"""
import sys, torch; sys.path.insert(0, {str(Path(__file__).resolve().parents[1])!r}); sys.path.insert(0, {str(Path(__file__).resolve().parent)!r})
from bench_transformer import build, variants
torch.set_num_threads({torch.get_num_threads()})
b, m, inp = build({device!r}, {frames}, {layers})
v = variants(b, m, inp)
if {device!r} == 'cuda':
    torch.cuda.reset_peak_memory_stats()
with torch.no_grad():
    v[{name!r}]()
if {device!r} == 'cuda':
    print(torch.cuda.max_memory_allocated() / 2**20)
else:
    print([l for l in open('/proc/self/status') if l.startswith('VmHWM')][0].split()[1])
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
    return float(out) if device == "cuda" else float(out) / 1024


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=10)
    ap.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    ap.add_argument("--json", help="also write the rows here")
    ap.add_argument("--frames", type=int, default=5, help="latent frames (x 256 video tokens)")
    ap.add_argument("--layers", type=int, default=8)
    args = ap.parse_args()
    base, model, inputs = build(args.device, args.frames, args.layers)  # model = (ReactID, ReactID with pooled reference tokens)
    v = variants(base, model, inputs)
    times = {k: [] for k in v}
    with torch.no_grad():
        for fn in v.values():  # warm-up
            fn()
        for _ in range(args.repeats):
            for k, fn in v.items():
                if args.device == "cuda":
                    torch.cuda.synchronize()
                t0 = time.perf_counter()
                fn()
                if args.device == "cuda":
                    torch.cuda.synchronize()
                times[k].append(time.perf_counter() - t0)
    counts = model[0].trainable_parameter_counts()
    base_ms = statistics.median(times["base Wan"]) * 1000
    rows = []
    for k in v:
        ms = statistics.median(times[k]) * 1000
        rows.append({"variant": k, "median_ms": round(ms, 1), "ratio_vs_base": round(ms / base_ms, 3), "peak_mb": round(peak_memory_row(k, args.device, args.frames, args.layers), 1)})
    print(f"device: {args.device}, torch threads: {torch.get_num_threads()}, repeats: {args.repeats}")
    print(f"config: width {CFG['num_attention_heads'] * CFG['attention_head_dim']}, {CFG['num_layers']} layers, {args.frames * 256} video tokens, 2 subjects x 256 reference tokens, 5 mask blocks")
    print(f"parameters: base {counts['base']:,}  ReactID adds {counts['reactid']:,} (+{100 * counts['reactid'] / counts['base']:.1f}%)")
    print(f"{'variant':32s} {'median ms/step':>15s} {'x base':>8s} {'peak MB':>9s}")
    for r in rows:
        print(f"{r['variant']:32s} {r['median_ms']:15.1f} {r['ratio_vs_base']:8.3f} {r['peak_mb']:9.1f}")
    if args.json:
        Path(args.json).write_text(json.dumps({"rows": rows, "params": counts}, indent=2))


if __name__ == "__main__":
    main()
