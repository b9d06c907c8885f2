"""python -m evaluation eval <dir> [--out results] [--progress jsonl] [--sprite-scenes N --model NAME=DIR] ...;
python -m evaluation models [--weights DIR]; python -m evaluation sprite-samples --out DIR ..."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

from .layout import LoadError
from .models import WEIGHT_FOLDERS, load_paper_models, weight_paths
from .progress import Reporter


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
    e.add_argument("--progress", default="text", choices=("text", "jsonl"),
                   help="stderr: text lines, or one JSON event per line for a program that shows progress (evaluation/progress.py)")
    e.add_argument("--sprite-scenes", type=int, default=0, metavar="N",
                   help="first write N held-out sprite scenes into DIR (ground truth and each --model), then evaluate DIR")
    _sample_args(e)
    _weight_args(e)
    m = sub.add_parser("models", help="say which of the paper's models are available")
    _weight_args(m)
    g = sub.add_parser("sprite-samples", help="write an evaluation folder from held-out sprite scenes (ground truth + models)")
    g.add_argument("--out", required=True, help="folder to write (one sub-folder per method)")
    g.add_argument("--n", type=int, default=8, help="held-out scenes")
    _sample_args(g)
    return p


def _sample_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--model", action="append", default=[], metavar="NAME=DIR", help="a pipeline directory to generate with (repeatable)")
    p.add_argument("--steps", type=int, default=20, help="sampling steps of the generated scenes")
    p.add_argument("--guidance", type=float, default=3.0)
    p.add_argument("--threads", type=int, default=None, help="torch and OpenCV threads (default: theirs; 1 is faster beside another busy process)")
    p.add_argument("--world", default=None, help='sprite world options as JSON, e.g. \'{"duration": 4.0, "max_subjects": 2}\'')


def _set_threads(n: int | None) -> None:
    if not n:
        return
    import torch

    torch.set_num_threads(n)
    try:
        import cv2

        cv2.setNumThreads(n)
    except ImportError:
        pass


def _models(specs: list[str]) -> dict[str, str]:
    """--model NAME=DIR options; ValueError names the bad one."""
    models = {}
    for spec in specs:
        name, sep, path = spec.partition("=")
        if not sep or not name or not path:
            raise ValueError(f"--model {spec!r}: expected NAME=DIR")
        if not Path(path).is_dir():
            raise ValueError(f"--model {spec!r}: {path} is not a folder")
        models[name] = path
    return models


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

        _set_threads(args.threads)
        try:
            models = _models(args.model)
            world = json.loads(args.world) if args.world else None
            out = write_sprite_samples(args.out, args.n, models, args.steps, args.guidance, world, log=lambda s: print(s, file=sys.stderr))
        except (ValueError, TypeError) as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        print(f"Wrote {out}; now: python -m evaluation eval {out}")
        return 0

    report = Reporter(args.progress)
    try:
        rc = _evaluate(args, report)
    except Exception as exc:  # a program reading the events learns why; the traceback follows on stderr
        if args.progress == "jsonl":
            report("error", message=f"the evaluation failed: {exc.__class__.__name__}: {exc}")
        raise
    return rc


def _evaluate(args, report: Reporter) -> int:
    import json

    from .report import render, write_files
    from .run import evaluate_dir

    _set_threads(args.threads)
    out = Path(args.out)
    try:
        models = _models(args.model)
        if models and args.sprite_scenes < 1:
            raise ValueError("--model generates sprite scenes: give --sprite-scenes N too")
        world = json.loads(args.world) if args.world else None
    except ValueError as exc:
        report("error", message=str(exc))
        return 2
    if args.sprite_scenes > 0:
        from .sprite_samples import write_sprite_samples

        n = args.sprite_scenes
        report("plan", generate=n * len(models), evaluate=n * (len(models) + 1))
        text_lines = report.log if args.progress == "text" else (lambda s: None)  # jsonl: the "generated" events say it
        try:
            write_sprite_samples(args.dir, n, models, args.steps, args.guidance, world, log=text_lines, progress=report.event)
        except (ValueError, TypeError) as exc:
            report("error", message=str(exc))
            return 2
    else:
        report("plan", generate=0, evaluate=None)
    try:
        res = evaluate_dir(args.dir, domain=args.domain, weights=_weights(args), sprite=not args.no_sprite,
                           facesim_dlib=not args.no_facesim_dlib, exclude=[out], log=report.log, progress=report.event)
    except LoadError as exc:
        report("error", message=str(exc))
        return 2
    print(render(res))
    paths = write_files(res, out)
    print(f"\nWrote {', '.join(str(p) for p in paths.values())}", flush=True)
    rc = 0
    if not res.items:
        report("error", message=f"no clips found in {args.dir} (expected <clip>.mp4 with <clip>.json; see docs/EVALUATION.md)")
        rc = 1
    elif not res.evaluated:
        report("error", message="no clip could be evaluated (see the messages above)")
        rc = 1
    report("done", exit=rc, evaluated=res.evaluated, clips=len(res.items), files={k: str(p) for k, p in paths.items()})
    return rc


if __name__ == "__main__":
    sys.exit(main())
