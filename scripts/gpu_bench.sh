#!/usr/bin/env bash
# One-shot accelerator benchmark of Mixer-B/16 bf16: ours / matmul-only bound / timm peer.
#
# Needs jax (CUDA), flax, optax and ml_collections (a pure-Python wheel; no TensorFlow, tfds
# or clu); torch + timm for the peer (without them its rows say why they are missing).
# Stages, most important first; each writes $OUT/<name>.json when it finishes, and the
# log (with each stage's table) goes to $OUT/log.txt:
#   fwd      inference at batch $BATCH_FWD with the project's default XLA flags, the matmul
#            peak around every timed run, --bound (the matmul chain alone) and
#            --compare_timm (timm + torch.compile, bf16 autocast, in a subprocess first);
#   train    the trainer's Adam step at batch $BATCH_TRAIN, --bound (gradient of the chain),
#            --compare_timm (AdamW step);
#   augment  the train step at batch $BATCH_TRAIN with and without RandAugment 2/15 + mixup 0.5
#            on the device (uint8 input), and the augmentation's share of the step;
#   variants the defaults, then in the same process the candidate formulations
#            (models/formulations.py CANDIDATES): snc_md (forward) and snc_md_gelu_remat
#            (train step; snc_md's training program is the default's): `--also` rows with
#            their ratio to the baseline;
#   old_defaults  fwd and train again with MIXER_FLAX_XLA_DEFAULTS=0 (JAX's own XLA flags),
#            only while the budget lasts.
# Expected wall time on one H100/H200: about 5 minutes; nothing runs past $BUDGET s (300) and
# the timm peer (80 s / 100 s at most, torch.compile included) only gets time that leaves the
# JAX part of its stage enough.
#
# STAGES picks a subset (default "fwd train augment old_defaults"; e.g. "fwd train variants").
# Dry run on CPU with tiny sizes (what tests/test_perf_benchmark.py does):
#   OUT=/tmp/out DRY_RUN=1 PYTHON=.venv/bin/python bash scripts/gpu_bench.sh
set -u
OUT=${OUT:?set OUT to the output folder}
if [ "${DRY_RUN:-0}" = 1 ]; then
  : "${VARIANT:=Mixer-Ti_16}" "${IMAGE:=32}" "${BATCH_FWD:=4}" "${BATCH_TRAIN:=2}"
  : "${MATMUL:=128}" "${REPEATS:=1}" "${MIN_TIME:=0.01}" "${TIMM_COMPILE:=0}" "${BUDGET:=3000}"
  : "${CAP_SCALE:=10}"  # a shared CPU is slow; the caps below are for a GPU
fi
VARIANT=${VARIANT:-Mixer-B_16}
IMAGE=${IMAGE:-224}
BATCH_FWD=${BATCH_FWD:-1024}
BATCH_TRAIN=${BATCH_TRAIN:-512}
MATMUL=${MATMUL:-8192}
REPEATS=${REPEATS:-3}
MIN_TIME=${MIN_TIME:-0.5}
TIMM_COMPILE=${TIMM_COMPILE:-1}
BUDGET=${BUDGET:-300}
CAP_SCALE=${CAP_SCALE:-1}
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
STAGES=${STAGES:-fwd train augment old_defaults}
cd "$(dirname "$0")/.."
# The package from this checkout, installed or not (scripts/ do not edit sys.path).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
LOG="$OUT/log.txt"
END=$((SECONDS + BUDGET))

# ml_collections is pure Python: if it is not installed, import it straight from the wheel
# (carry .whl/, which .gitignore excludes: run(..., carry=[".whl"])). Needs absl-py and
# PyYAML, which optax / orbax already pull in.
if ! "$PYTHON" -c 'import ml_collections' 2>/dev/null; then
  for whl in .whl/ml_collections-*.whl shared/ml_collections-*.whl; do
    if [ -f "$whl" ]; then
      export PYTHONPATH="$PWD/$whl${PYTHONPATH:+:$PYTHONPATH}"
      echo "ml_collections from $whl" >>"$LOG"
      break
    fi
  done
fi

{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv 2>&1 || true
  "$PYTHON" -c 'import jax, flax, optax; print("jax", jax.__version__, "flax", flax.__version__,
"optax", optax.__version__, jax.devices())' 2>&1
  "$PYTHON" -c 'import torch; print("torch", torch.__version__)' 2>&1 | tail -n 1
} >>"$LOG"

bench() {  # name, cap in seconds, then benchmark.py arguments
  local name=$1 cap=$(($2 * CAP_SCALE)); shift 2
  local left=$((END - SECONDS)) t0=$SECONDS
  if [ "$left" -lt 30 ]; then echo "== $name: skipped (budget spent)" >>"$LOG"; return; fi
  [ "$cap" -gt "$left" ] && cap=$left
  echo "== $name (cap ${cap} s): $*" >>"$LOG"
  timeout -k 5 "$cap" "$PYTHON" scripts/benchmark.py --variant "$VARIANT" --image_size "$IMAGE" \
    --dtype bfloat16 --matmul_size "$MATMUL" --repeats "$REPEATS" --min_time "$MIN_TIME" \
    --json "$OUT/$name.json" "$@" >>"$LOG" 2>&1
  echo "== $name: exit $? after $((SECONDS - t0)) s" >>"$LOG"
}

peer() {  # timm peer arguments: at most $1 s, and never the time the JAX part ($2 s) needs
  local t=$(((END - SECONDS - $2 * CAP_SCALE)))
  [ "$t" -gt $(($1 * CAP_SCALE)) ] && t=$(($1 * CAP_SCALE))
  if [ "$t" -ge $((20 * CAP_SCALE)) ]; then
    echo --compare_timm --timm_compile "$TIMM_COMPILE" --timm_timeout "$t"
  fi
}
for stage in $STAGES; do
  case $stage in
    # shellcheck disable=SC2046  # word splitting of the peer arguments is intended
    fwd) bench fwd 130 --batch "$BATCH_FWD" --modes forward --bound $(peer 80 120) ;;
    # shellcheck disable=SC2046
    train) bench train 170 --batch "$BATCH_TRAIN" --modes train --bound $(peer 100 70) ;;
    # Candidate formulations, each timed in the process of its own baseline.
    variants)
      bench fwd_levers 90 --batch "$BATCH_FWD" --modes forward --also formulation=snc_md
      bench train_levers 120 --batch "$BATCH_TRAIN" --modes train \
        --also formulation=snc_md_gelu_remat
      ;;
    # The train step with and without the paper's device augmentation (uint8 in), same run.
    augment) bench augment 70 --batch "$BATCH_TRAIN" --modes train,train_augment ;;
    old_defaults)
      MIXER_FLAX_XLA_DEFAULTS=0 bench old_defaults_fwd 40 --batch "$BATCH_FWD" --modes forward
      MIXER_FLAX_XLA_DEFAULTS=0 bench old_defaults_train 60 --batch "$BATCH_TRAIN" --modes train
      ;;
    *) echo "unknown stage $stage (use: fwd train augment variants old_defaults)" >>"$LOG" ;;
  esac
done
echo "total $SECONDS s" >>"$LOG"
cat "$LOG"
