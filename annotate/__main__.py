"""`python -m annotate run ...` (the pipeline, annotate/run.py); `python -m annotate export|import ...`
(the store's exchange formats, annotate/exchange.py)."""

import sys


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m annotate run VIDEOS... --out DATASET [--workers N] [--engine local|ray] ...\n"
              "       python -m annotate export|import ...   (see python -m annotate.exchange --help)")
        return 0 if argv else 2
    if argv[0] == "run":
        from .run import main as run_main

        return run_main(argv[1:])
    if argv[0] in ("export", "import"):
        from .exchange import main as exchange_main

        return exchange_main(argv)
    print(f"unknown command {argv[0]!r}: use run, export or import", file=sys.stderr)
    return 2


if __name__ == "__main__":
    raise SystemExit(main())
