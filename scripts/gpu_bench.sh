#!/usr/bin/env bash
# One-shot accelerator benchmark of Mixer (run once on a GPU box; writes JSON to $OUT).
#
# Needs jax (CUDA), flax, optax and ml_collections (a pure-Python wheel; no TensorFlow,
# tfds or clu). Measures, in this order (most important first, so a timeout keeps it):
#   1. B/16 @224 bfloat16: forward and train step (Adam) at batch $BATCH_BF16, with the
#      bf16 matmul peak (8192^3) measured around every timed run;
#   2. B/16 @224 float32 (JAX's default matmul precision): forward and train at $BATCH_F32;
#   3. B/16 @224 bfloat16 forward at a larger batch (inference throughput);
#   4. 1 and 3 again with XLA_FLAGS=--xla_gpu_enable_triton_gemm=false (cuBLAS instead of
#      XLA's Triton GEMMs: +25% inference, +5% training on an H200, docs/performance.md).
# Each step's results go to $OUT/<name>.json as soon as it finishes; the log to $OUT/log.txt.
# Expected wall time on one H100: about 3-4 minutes including compiles.
#
# Sizes can be overridden for a dry run on CPU (what tests/test_benchmark.py does):
#   OUT=/tmp/out VARIANT=Mixer-Ti_16 IMAGE=32 BATCH_BF16=4 BATCH_F32=2 BATCH_BIG=8 \
#     MATMUL=256 REPEATS=1 MIN_TIME=0.05 bash scripts/gpu_bench.sh
set -u
OUT=${OUT:?set OUT to the output folder}
VARIANT=${VARIANT:-Mixer-B_16}
IMAGE=${IMAGE:-224}
BATCH_BF16=${BATCH_BF16:-256}
BATCH_F32=${BATCH_F32:-128}
BATCH_BIG=${BATCH_BIG:-1024}
MATMUL=${MATMUL:-8192}
REPEATS=${REPEATS:-5}
MIN_TIME=${MIN_TIME:-1.0}
PYTHON=${PYTHON:-python}
cd "$(dirname "$0")/.."
# The package from this checkout, installed or not (scripts/ do not edit sys.path).
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
mkdir -p "$OUT"
LOG="$OUT/log.txt"

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
} >>"$LOG"

bench() {  # name, then benchmark.py arguments
  local name=$1; shift
  local t0=$SECONDS
  echo "== $name: $*" >>"$LOG"
  "$PYTHON" scripts/benchmark.py --variant "$VARIANT" --image_size "$IMAGE" \
    --matmul_size "$MATMUL" --repeats "$REPEATS" --min_time "$MIN_TIME" \
    --json "$OUT/$name.json" "$@" >>"$LOG" 2>&1
  echo "== $name: exit $? after $((SECONDS - t0)) s" >>"$LOG"
}

bench bf16 --dtype bfloat16 --batch "$BATCH_BF16" --modes forward,train
bench f32 --dtype float32 --batch "$BATCH_F32" --modes forward,train
bench bf16_big_forward --dtype bfloat16 --batch "$BATCH_BIG" --modes forward
if [ "$("$PYTHON" -c 'import jax; print(jax.default_backend())' 2>/dev/null)" = gpu ]; then
  export XLA_FLAGS="${XLA_FLAGS:+$XLA_FLAGS }--xla_gpu_enable_triton_gemm=false"
  bench bf16_cublas --dtype bfloat16 --batch "$BATCH_BF16" --modes forward,train
  bench bf16_cublas_big_forward --dtype bfloat16 --batch "$BATCH_BIG" --modes forward
fi
echo "total $SECONDS s" >>"$LOG"
cat "$LOG"
