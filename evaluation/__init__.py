"""The evaluation suite: measure generated videos the way the ReactID paper does (docs/EVALUATION.md).

`python -m evaluation eval <dir> [--out results]` prints the paper's table layout (OpenS2V-Eval columns, the
sprite benchmark, timeline metrics) and writes results.json, CSV files and a plotly chart. Imports model/ and
train/sprite_eval.py, never studio/.
"""
