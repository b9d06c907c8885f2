"""Keep a running training run's transformer weights at chosen steps, as warm-start folders for
`model.init_from` (the ablations' common warm start, docs/BENCHMARKS.md). Run it beside the training:

    python benchmarks/snapshot_weights.py runs/final 1200 2400 3600    # -> runs/final/snap2400/transformer/

The trainer keeps only its latest checkpoint.pt (every optim.checkpoint_every steps), so this polls it and
copies the wanted steps as they pass; the steps must be multiples of checkpoint_every.
"""

import sys
import time
from pathlib import Path

import torch
from safetensors.torch import save_file


def main(run: Path, wanted: set[int], poll_s: float = 15.0) -> None:
    seen = None
    while wanted:
        ck = run / "checkpoint.pt"
        if ck.is_file() and ck.stat().st_mtime != seen:
            seen = ck.stat().st_mtime
            state = torch.load(ck, map_location="cpu", weights_only=False)  # replaced atomically by the trainer
            step = int(state["step"])
            if step in wanted:
                out = run / f"snap{step}" / "transformer"
                out.mkdir(parents=True, exist_ok=True)
                save_file({k: v.contiguous() for k, v in state["model"].items()}, str(out / "diffusion_pytorch_model.safetensors"))
                print(f"saved step {step} -> {out}", flush=True)
                wanted.discard(step)
            if step > max(wanted, default=0):  # the run has passed every step still wanted
                break
        time.sleep(poll_s)
    if wanted:
        print(f"missed steps {sorted(wanted)} (not multiples of checkpoint_every, or the run passed them)", file=sys.stderr)


if __name__ == "__main__":
    main(Path(sys.argv[1]), {int(s) for s in sys.argv[2:]})
