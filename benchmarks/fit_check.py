"""Is a model underfitting or overfitting? (issue 14) Its flow-matching loss on clips it trained on against held-out
clips of the same world, per noise level, with the model's own predicted binding masks (as inference has them).

    python benchmarks/fit_check.py assets/default_model --preset ladder_l2k --n 40

Equal losses mean the model has not memorised its clips: more of the same data will not help, more capacity or a
better recipe may. A training loss well below the held-out one means more clips (or a smaller model) first.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import torch  # noqa: E402

from ladder import held_out  # noqa: E402  (the ladder's held-out scenes; training clips are data.seed + i)


def main() -> int:
    from model.pipeline import ReactIDPipeline
    from train.config import DataConfig, read_config_file
    from train.held_out import held_out_loss
    from train.sprites import WorldConfig, generate_clip

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("export", help="a pipeline directory")
    ap.add_argument("--preset", required=True, help="the training preset whose clips the model saw (its data.seed and world)")
    ap.add_argument("--n", type=int, default=40, help="clips of each kind")
    ap.add_argument("--sigmas", default="0.3,0.6,0.9")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    # the preset's data only, read without the run checks (its warm start need not exist here)
    data = read_config_file(args.preset).get("data", {})
    if data.get("source", "sprites") != "sprites":
        ap.error(f"{args.preset} trains on a dataset directory, not the sprite world")
    n_train = min(args.n, int(data.get("num_clips", args.n)))
    world_keys = dict(data.get("world", {}))
    world = WorldConfig.from_kwargs(**world_keys)
    seed = int(data.get("seed", DataConfig.seed))
    pipe = ReactIDPipeline.from_pretrained(args.export)
    sets = {"trained on": [generate_clip(seed + i, world) for i in range(n_train)],
            "held out": held_out(args.n, world_keys)}
    sigmas = [float(s) for s in args.sigmas.split(",")]
    t0 = time.perf_counter()
    rows = {name: [held_out_loss(pipe, clips, sigmas=(s,)) for s in sigmas] for name, clips in sets.items()}
    print(f"{args.export}: flow loss, {args.n} clips each ({args.preset}'s world), {time.perf_counter() - t0:.0f} s")
    print("| clips | " + " | ".join(f"σ {s:g}" for s in sigmas) + " |")
    print("|---|" + "---:|" * len(sigmas))
    for name, vals in rows.items():
        print(f"| {name} | " + " | ".join(f"{v:.4f}" for v in vals) + " |")
    ratio = [a / b for a, b in zip(rows["trained on"], rows["held out"])]
    print("| trained / held out | " + " | ".join(f"{r:.3f}" for r in ratio) + " |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
