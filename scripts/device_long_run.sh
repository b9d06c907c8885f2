#!/usr/bin/env bash
# Level 2u on one borrowed GPU (docs/TRAINING.md "A borrowed GPU"): three training runs side by side from the shipped
# weights, each fitted to a wall-clock budget, and what comes back packed under $OUT (at most 8 files of 16 MiB).
# The same script runs on a CPU machine with small settings, which is how it is tried before a GPU minute is spent:
#   OUT=/tmp/dry BUDGET=20 CLIPS=48 WORKERS=2 EXTRA="optim.batch_size=2 optim.time_budget_calibration_steps=3" \
#     bash scripts/device_long_run.sh
# Environment: BUDGET (training seconds per run), CLIPS, WORKERS (cache processes), RUNS (presets), THREADS (per run),
# EXTRA (more KEY=VALUE overrides for every run), SMOKE (0 skips step 1), PYTHON, RUN_ROOT, COMPILE (0, the default:
# no torch.compile; auto: the smoke tries optim.compile and the runs use it if the smoke passed with it, else they run
# without; 1: always). Compiling costs minutes before the first step (283 s for the smoke and 200 s per run on 2 CPU
# cores, 2026-12-05) and ran a CPU step 1.28x faster after; unmeasured on a GPU, so worth it only for long budgets.
# The runs share the first run's cache: presets whose data differ from it (ladder_l2z's data.reference_size) go in a
# call of their own (a run given a cache built at another reference size stops with "cache error", before training).
set -u
OUT=${OUT:-/tmp/device_out}
mkdir -p "$OUT"
exec > >(tee -a "$OUT/driver.log") 2>&1
PY=${PYTHON:-python3}
BUDGET=${BUDGET:-330}; CLIPS=${CLIPS:-16000}; WORKERS=${WORKERS:-12}; THREADS=${THREADS:-4}
RUNS=${RUNS:-"ladder_l2u ladder_l2u_truth ladder_l2u_deep"}
ROOT=${RUN_ROOT:-runs/device}
export PYTHONUNBUFFERED=1
sets=(); for kv in ${EXTRA:-}; do sets+=(--set "$kv"); done
if compgen -G ".whl/*.whl" >/dev/null; then  # packages the GPU machine's image lacks (diffusers), carried as wheels
  $PY -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site .whl/*.whl || exit 1
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
t0=$(date +%s); stamp() { echo "[$(( $(date +%s) - t0 )) s] $*"; }
nvidia-smi -L 2>/dev/null || echo "no GPU: a CPU dry run"
$PY -c "import torch, diffusers, transformers, accelerate; print('torch', torch.__version__, 'cuda', torch.cuda.is_available(), 'diffusers', diffusers.__version__, 'transformers', transformers.__version__)" || exit 1

first=${RUNS%% *}
COMPILE=${COMPILE:-0}
smoke() {
  rm -rf "$ROOT/smoke"
  $PY -m train --config "$first" --output-dir "$ROOT/smoke" --set data.num_clips=16 --set data.prepare_workers=2 \
    --set optim.time_budget_s=0 --set optim.batch_size=4 "${sets[@]}" "$@" --max-steps 3 --export "$ROOT/smoke/export" --threads "$THREADS"
}
stamp "1. smoke: a 16-clip cache, 3 steps and an export on the device (an import or device error costs seconds)"
if [ "${SMOKE:-1}" != 0 ]; then
  if [ "$COMPILE" != 0 ]; then
    smoke --set optim.compile=true || { stamp "the smoke failed with optim.compile: trying without"; [ "$COMPILE" = 1 ] && exit 1; COMPILE=0; }
  fi
  [ "$COMPILE" != 0 ] || smoke || { stamp "SMOKE FAILED"; exit 1; }
elif [ "$COMPILE" = auto ]; then
  COMPILE=0  # nothing tried it on this machine
fi
[ "$COMPILE" != 0 ] && sets+=(--set optim.compile=true)
stamp "the runs' overrides: ${sets[*]:-none}"

stamp "2. the cache of $CLIPS clips, once, on the CPUs ($WORKERS processes)"
CUDA_VISIBLE_DEVICES= $PY -m train --config "$first" --output-dir "$ROOT/cache" --set data.num_clips="$CLIPS" \
  --set data.prepare_workers="$WORKERS" "${sets[@]}" --prepare-only || { stamp "CACHE FAILED"; exit 1; }
ls -la "$ROOT/cache/cache.pt"

stamp "3. the runs side by side: $RUNS"
pids=()
for r in $RUNS; do
  mkdir -p "$ROOT/$r"
  ln -sf "$(realpath "$ROOT/cache/cache.pt")" "$ROOT/$r/cache.pt"  # same world, clips, VAE and text encoder for all
  $PY -m train --config "$r" --output-dir "$ROOT/$r" --set data.num_clips="$CLIPS" --set optim.time_budget_s="$BUDGET" "${sets[@]}" \
    --threads "$THREADS" --export "$ROOT/$r/export" >"$ROOT/$r/stdout.txt" 2>&1 &
  pids+=($!)
done
(command -v nvidia-smi >/dev/null && nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader -l 30) &
smi=$!
for i in "${!pids[@]}"; do wait "${pids[$i]}"; echo "run ${i}: exit $?"; done
kill $smi 2>/dev/null
stamp "4. pack"
for r in $RUNS; do
  grep -h '"event"' "$ROOT/$r/log.jsonl" | tail -4
  tail -3 "$ROOT/$r/stdout.txt"
  files=(log.jsonl config.json stdout.txt); [ -d "$ROOT/$r/export" ] && files+=(export)
  tar -cf "$OUT/$r.tar" -C "$ROOT/$r" "${files[@]}"
done
# the first run's resumable checkpoint, in parts under 16 MiB: cat "$OUT"/*.part-* > checkpoint.pt
[ -f "$ROOT/$first/checkpoint.pt" ] && split -b 15M "$ROOT/$first/checkpoint.pt" "$OUT/${first}_checkpoint.pt.part-"
ls -la "$OUT"
stamp "done"
