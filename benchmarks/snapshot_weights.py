"""Keep the transformer weights of a running training run at chosen steps, as warm-start folders for
`model.init_from` (used for the ablations' common warm start, docs/BENCHMARKS.md).

    python benchmarks/snapshot_weights.py runs/final 1200 2400 3600    # -> runs/final/snap2400/transformer/...
"""
import os, sys, time, torch
from pathlib import Path
from safetensors.torch import save_file
run = Path(sys.argv[1]); want = {int(s) for s in sys.argv[2:]}
seen = 0
while want:
    ck = run / "checkpoint.pt"
    if ck.is_file() and ck.stat().st_mtime != seen:
        seen = ck.stat().st_mtime
        try:
            st = torch.load(ck, map_location="cpu", weights_only=False)
        except Exception as e:
            time.sleep(5); continue
        s = int(st["step"])
        if s in want:
            d = run / f"snap{s}" / "transformer"; d.mkdir(parents=True, exist_ok=True)
            save_file({k: v.contiguous() for k, v in st["model"].items()}, str(d / "diffusion_pytorch_model.safetensors"))
            torch.save(st, run / f"snap{s}" / "checkpoint.pt")
            print("saved", s, flush=True); want.discard(s)
        if s > max(want, default=0): break
    time.sleep(15)
