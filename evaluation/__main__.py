"""python -m evaluation eval <dir> [--out results] ... ; python -m evaluation models [--weights DIR]"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .layout import LoadError
from .models import WEIGHT_FOLDERS, load_paper_models, weight_paths


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m evaluation", description="Measure generated videos the way the ReactID paper does (docs/EVALUATION.md).")
    sub = p.add_subparsers(dest="command", required=True)
    e = sub.add_parser("eval", help="evaluate a directory of generated clips")
    e.add_argument("dir", help="folder of clips (<clip>.mp4 + <clip>.json timeline), or of one folder per method")
    e.add_argument("--out", default="results", help="folder for results.json, *.csv and comparison.html (default: ./results)")
    e.add_argument("--domain", default="auto", choices=("auto", "open", "single", "human"),
                   help="OpenS2V domain whose TotalScore weights apply; auto: human when every subject of a clip is human, else open")
    e.add_argument("--no-sprite", action="store_true", help="skip the sprite benchmark and timeline metrics")
    e.add_argument("--no-facesim-dlib", action="store_true", help="skip the offline FaceSim-dlib substitute")
    _weight_args(e)
    m = sub.add_parser("models", help="say which of the paper's models are available")
    _weight_args(m)
    g = sub.add_parser("sprite-samples", help="write an evaluation folder from held-out sprite scenes (ground truth + models)")
    g.add_argument("--out", required=True, help="folder to write (one sub-folder per method)")
    g.add_argument("--n", type=int, default=8, help="held-out scenes")
    g.add_argument("--model", action="append", default=[], metavar="NAME=DIR", help="a pipeline directory to generate with (repeatable)")
    g.add_argument("--steps", type=int, default=20)
    g.add_argument("--guidance", type=float, default=3.0)
    g.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's; 1 is faster beside another busy process)")
    g.add_argument("--world", default=None, help='sprite world options as JSON, e.g. \'{"duration": 4.0, "max_subjects": 2}\'')
    return p


def _weight_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--weights", default=os.environ.get("REACTID_EVAL_WEIGHTS"),
                   help=f"folder with one sub-folder per model ({', '.join(sorted(set(WEIGHT_FOLDERS.values())))}); env REACTID_EVAL_WEIGHTS")
    for col, folder in WEIGHT_FOLDERS.items():
        p.add_argument(f"--{folder}", dest=f"w_{col}", default=None, help=f"weights for the {col.replace('_', ' ')} model (overrides --weights)")


def _weights(args) -> dict:
    return weight_paths(args.weights, **{c: getattr(args, f"w_{c}") for c in WEIGHT_FOLDERS})


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "models":
        from .facesim import load_facesim_dlib

        for s in list(load_paper_models(_weights(args)).values()) + [load_facesim_dlib()]:
            print(f"{s.label:<13} {'available: ' if s.available else ''}{s.detail}")
        return 0

    if args.command == "sprite-samples":
        import json

        from .sprite_samples import write_sprite_samples

        if args.threads:
            import torch

            torch.set_num_threads(args.threads)
        models = {}
        for spec in args.model:
            name, sep, path = spec.partition("=")
            if not sep or not name or not path:
                print(f"error: --model {spec!r}: expected NAME=DIR", file=sys.stderr)
                return 2
            if not Path(path).is_dir():
                print(f"error: --model {spec!r}: {path} is not a folder", file=sys.stderr)
                return 2
            models[name] = path
        try:
            world = json.loads(args.world) if args.world else None
            out = write_sprite_samples(args.out, args.n, models, args.steps, args.guidance, world, log=lambda s: print(s, file=sys.stderr))
        except (ValueError, TypeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"Wrote {out}; now: python -m evaluation eval {out}")
        return 0

    from .report import render, write_files
    from .run import evaluate_dir

    out = Path(args.out)
    try:
        res = evaluate_dir(args.dir, domain=args.domain, weights=_weights(args), sprite=not args.no_sprite,
                           facesim_dlib=not args.no_facesim_dlib, exclude=[out], log=lambda s: print(s, file=sys.stderr, flush=True))
    except LoadError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(render(res))
    paths = write_files(res, out)
    print(f"\nWrote {', '.join(str(p) for p in paths.values())}")
    if not res.items:
        print(f"error: no clips found in {args.dir} (expected <clip>.mp4 with <clip>.json; see docs/EVALUATION.md)", file=sys.stderr)
        return 1
    if not res.evaluated:
        print("error: no clip could be evaluated (see the messages above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
