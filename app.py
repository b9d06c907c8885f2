"""ReactID Studio entry point.

    python app.py                                   # embedded default model, http://127.0.0.1:7860
    python app.py --model Wan-AI/Wan2.1-T2V-1.3B-Diffusers --reactid-checkpoint ckpt/ --device cuda
    python app.py --host 0.0.0.0 --port 7860 --share

On a Hugging Face Space this file is the app: with no flags it serves the embedded default model
(or set REACTID_MODEL / REACTID_CHECKPOINT in the Space's variables).
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="app.py", description="ReactID Studio: timeline-controlled personalised video generation.")
    p.add_argument("--model", default=os.environ.get("REACTID_MODEL") or None,
                   help="Wan2.1 diffusers directory or hub id, or an exported ReactID pipeline directory such as assets/ladder_l2 "
                        "(default: the embedded default model in assets/)")
    p.add_argument("--reactid-checkpoint", default=os.environ.get("REACTID_CHECKPOINT") or None,
                   help="ReactID weights to load on top of --model")
    p.add_argument("--device", default="auto", help="auto (cuda if available), cpu, cuda, cuda:1 ...")
    p.add_argument("--dtype", default="auto", choices=["auto", "bf16", "fp16", "fp32"], help="weights dtype for --model")
    p.add_argument("--host", default=os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"), help="address to listen on (0.0.0.0 for all)")
    p.add_argument("--port", type=int, default=int(os.environ.get("GRADIO_SERVER_PORT", "7860")))
    p.add_argument("--share", action="store_true", help="also open a temporary public gradio.live link")
    p.add_argument("--workdir", default=None, help="where uploads and generated videos are kept (default: a folder in the temp dir)")
    p.add_argument("--llm-path", default=None, help="a local transformers causal LM for 'Plan from prompt' (else REACTID_LLM_PATH)")
    p.add_argument("--annotation-db", default=os.environ.get("REACTID_ANNOTATION_DB") or None,
                   help="the annotation store the review tabs open (default: <workdir>/annotations/annotations.db; "
                        "python -m annotate run ... --out DIR writes DIR/annotations.db)")
    p.add_argument("--sam2-model", default=os.environ.get("REACTID_SAM2_MODEL") or None,
                   help="a local SAM2 model directory for mask propagation in the Mask review tab (optional; OpenCV flow otherwise)")
    return p.parse_args(argv)


def make_engine(args: argparse.Namespace):
    from studio.engine import Engine

    if args.model and (Path(args.model) / "reactid_pipeline.json").is_file():
        # an exported ReactID pipeline (`python -m train ... --export DIR`, e.g. assets/ladder_l2): small, runs on the CPU
        device = "cpu" if args.device == "auto" else args.device
        return Engine.default(device=device, directory=args.model)
    if args.model:
        return Engine.from_pretrained(args.model, args.reactid_checkpoint, device=args.device, dtype=args.dtype).load()
    device = "cpu" if args.device == "auto" else args.device
    if device.startswith("cuda"):
        import torch

        if not torch.cuda.is_available():
            print(f"[studio] --device {device} asked for, but no CUDA GPU is available; the embedded default model runs on the CPU.", file=sys.stderr)
            device = "cpu"
    try:
        return Engine.default(device=device)
    except Exception as exc:  # noqa: BLE001 - start the editor anyway and say why generation is off
        return Engine(None, name="embedded default", device=device, unavailable=f"The embedded default model could not be loaded: {exc}")


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter("[studio] %(message)s"))
    logging.getLogger("reactid").addHandler(handler)
    logging.getLogger("reactid").setLevel(logging.INFO)
    from model.planner import PlannerConfig
    from studio.app import build_studio

    engine = make_engine(args)
    if not engine.available:
        print(f"[studio] {engine.unavailable}", file=sys.stderr)
    else:
        print(f"[studio] model: {engine.describe()}")
    planner = PlannerConfig.from_env()
    if args.llm_path:
        planner.local_path = args.llm_path
    from studio.label_review import label_review_tab
    from studio.mask_review import mask_review_tab
    from studio.review_common import ReviewContext, resolve_db_path
    from studio.training_tab import training_tab

    review = ReviewContext(resolve_db_path(args.annotation_db, args.workdir), args.workdir, sam2_model=args.sam2_model)
    print(f"[studio] annotation database: {review.db_path}")
    tabs = [training_tab(engine, args.workdir), mask_review_tab(review), label_review_tab(review)]
    studio = build_studio(engine, workdir=args.workdir, planner_config=planner, extra_tabs=tabs)
    studio.demo.launch(**studio.launch_kwargs(server_name=args.host, server_port=args.port, share=args.share, ssr_mode=False))


if __name__ == "__main__":
    main()
