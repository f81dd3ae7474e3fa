#!/usr/bin/env bash
# One-shot accelerator benchmark of Mixer bf16 on one GPU: what issue 25 asks a GPU session to
# measure, in one command (docs/performance.md, "Next GPU session" has the exact call).
#
# Needs jax (CUDA), flax, optax and ml_collections (a pure-Python wheel; no TensorFlow, tfds
# or clu); torch + timm only for the optional peer (PEER=1). Stages, most important first;
# each writes $OUT/<name>.json when it finishes; the log (with each stage's table) goes to
# $OUT/log.txt:
#   fwd      Mixer-B/16 inference at batch $BATCH_FWD with the project's defaults (fraction of
#            the same run's matmul peak), --bound (the matmul chain alone), and in the same
#            process the candidate formulation snc_md (`--also`, ratio to the defaults);
#   train    the trainer's Adam step at batch $BATCH_TRAIN with the defaults, --bound
#            (gradient of the chain), the candidate snc_md_gelu_remat (`--also`), and the
#            step with the paper's device augmentation (RandAugment 2/15 + mixup 0.5 on uint8
#            input: train_augment) and the augmentation's share;
#   models   the augmented train step of each of $MODELS (default Mixer-S_16 Mixer-B_32) at
#            batch $BATCH_TRAIN: the img/s a host pipeline must feed;
#   loop     the trainer's loop without TensorFlow (scripts/benchmark_loop.py: prefetch to
#            device from host memory, augmented step, metrics at logging intervals) vs the
#            bare step, Mixer-B/16 at batch $BATCH_TRAIN;
#   host     the host's JPEG decode speed without TensorFlow (perf/decode_rate.py: writes
#            $HOST_IMAGES ImageNet-like JPEGs with all cores, timed, in a temporary folder;
#            PIL decode CPU s per image and img/s with all cores), to carry the TensorFlow
#            host-pipeline numbers measured on the CPU machine over to this host.
# Optional stages: variants (fwd / train with the candidates only), augment (train,
# train_augment), old_defaults (JAX's own XLA flags). PEER=1 adds the timm + torch.compile
# peer to fwd and train (it needs its own 80-100 s).
# Expected wall time on one H100/H200: about 6 minutes; nothing runs past $BUDGET s (480).
#
# STAGES picks a subset (default "fwd train models loop host").
# Dry run on CPU with tiny sizes (what tests/test_perf_benchmark.py does):
#   OUT=/tmp/out DRY_RUN=1 PYTHON=.venv/bin/python bash scripts/gpu_bench.sh
set -u
OUT=${OUT:?set OUT to the output folder}
if [ "${DRY_RUN:-0}" = 1 ]; then
  : "${VARIANT:=Mixer-Ti_16}" "${IMAGE:=32}" "${BATCH_FWD:=4}" "${BATCH_TRAIN:=2}"
  : "${MATMUL:=128}" "${REPEATS:=1}" "${MIN_TIME:=0.01}" "${TIMM_COMPILE:=0}" "${BUDGET:=3000}"
  : "${CAP_SCALE:=10}"  # a shared CPU is slow; the caps below are for a GPU
  : "${MODELS:=Mixer-Ti_16}" "${HOST_IMAGES:=60}" "${HOST_DECODE:=40}" "${LOOP_EVERY:=2}"
fi
VARIANT=${VARIANT:-Mixer-B_16}
IMAGE=${IMAGE:-224}
BATCH_FWD=${BATCH_FWD:-1024}
BATCH_TRAIN=${BATCH_TRAIN:-512}
MATMUL=${MATMUL:-8192}
REPEATS=${REPEATS:-3}
MIN_TIME=${MIN_TIME:-0.5}
TIMM_COMPILE=${TIMM_COMPILE:-1}
BUDGET=${BUDGET:-480}
CAP_SCALE=${CAP_SCALE:-1}
PEER=${PEER:-0}
MODELS=${MODELS:-Mixer-S_16 Mixer-B_32}
HOST_IMAGES=${HOST_IMAGES:-4000}
HOST_DECODE=${HOST_DECODE:-1000}
LOOP_EVERY=${LOOP_EVERY:-10}
PYTHON=${PYTHON:-$(command -v python || command -v python3)}
STAGES=${STAGES:-fwd train models loop host}
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

run_capped() {  # name, cap in seconds, then the command
  local name=$1 cap=$(($2 * CAP_SCALE)); shift 2
  local left=$((END - SECONDS)) t0=$SECONDS
  if [ "$left" -lt 30 ]; then echo "== $name: skipped (budget spent)" >>"$LOG"; return; fi
  [ "$cap" -gt "$left" ] && cap=$left
  echo "== $name (cap ${cap} s): $*" >>"$LOG"
  timeout -k 5 "$cap" "$@" >>"$LOG" 2>&1
  echo "== $name: exit $? after $((SECONDS - t0)) s" >>"$LOG"
}

bench() {  # name, cap in seconds, then benchmark.py arguments
  local name=$1 cap=$2; shift 2
  run_capped "$name" "$cap" "$PYTHON" scripts/benchmark.py --variant "$VARIANT" \
    --image_size "$IMAGE" --dtype bfloat16 --matmul_size "$MATMUL" --repeats "$REPEATS" \
    --min_time "$MIN_TIME" --json "$OUT/$name.json" "$@"
}

peer() {  # timm peer arguments (PEER=1): at most $1 s, never the time the JAX part ($2 s) needs
  [ "$PEER" = 1 ] || return 0
  local t=$(((END - SECONDS - $2 * CAP_SCALE)))
  [ "$t" -gt $(($1 * CAP_SCALE)) ] && t=$(($1 * CAP_SCALE))
  if [ "$t" -ge $((20 * CAP_SCALE)) ]; then
    echo --compare_timm --timm_compile "$TIMM_COMPILE" --timm_timeout "$t"
  fi
}
HOST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/mixer_flax_jpegs.XXXXXX")
trap 'rm -rf "$HOST_DIR"' EXIT
for stage in $STAGES; do
  case $stage in
    # shellcheck disable=SC2046  # word splitting of the peer arguments is intended
    fwd) bench fwd 100 --batch "$BATCH_FWD" --modes forward --bound \
           --also formulation=snc_md $(peer 80 100) ;;
    # shellcheck disable=SC2046
    train) bench train 190 --batch "$BATCH_TRAIN" --modes train,train_augment --bound \
             --also formulation=snc_md_gelu_remat $(peer 100 190) ;;
    models)
      for model in $MODELS; do
        bench "augment_$model" 60 --variant "$model" --batch "$BATCH_TRAIN" --modes train_augment
      done
      ;;
    loop) run_capped loop 70 "$PYTHON" scripts/benchmark_loop.py --variant "$VARIANT" \
            --image_size "$IMAGE" --batch "$BATCH_TRAIN" --dtype bfloat16 --every "$LOOP_EVERY" \
            --json "$OUT/loop.json" ;;
    host) run_capped host 60 "$PYTHON" -m mixer_flax.perf.decode_rate "$HOST_DIR" \
            --num_images "$HOST_IMAGES" --images "$HOST_DECODE" --json "$OUT/host.json" ;;
    # Candidate formulations only, each timed in the process of its own baseline.
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
    *) echo "unknown stage $stage (use: fwd train models loop host variants augment" \
         "old_defaults)" >>"$LOG" ;;
  esac
done
echo "total $SECONDS s" >>"$LOG"
cat "$LOG"
