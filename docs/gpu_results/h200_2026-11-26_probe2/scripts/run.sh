#!/usr/bin/env bash
# Issue 10 + 14 probe on one GPU: every stage writes as it goes; nothing runs past BUDGET s.
set -u
OUT=${OUT:?}
BUDGET=${BUDGET:-420}
PY=${PYTHON:-python}
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
if ! "$PY" -c 'import ml_collections' 2>/dev/null; then
  export PYTHONPATH="$PWD/$(ls .whl/ml_collections-*.whl | head -1):$PYTHONPATH"
fi
mkdir -p "$OUT"
LOG="$OUT/log.txt"
END=$((SECONDS + BUDGET))
{
  date -u +%FT%TZ
  nvidia-smi --query-gpu=name,memory.total,clocks.max.sm,power.limit --format=csv 2>&1
  git log --oneline -1 2>&1; git status --short 2>&1 | head -20
} >>"$LOG"
P=.gpu/probe2
PALLAS_CONFIGS=${PALLAS_CONFIGS:-'[]'}

stage() {  # name, cap s, XLA_FLAGS ('-' = project defaults), command...
  local name=$1 cap=$2 flags=$3; shift 3
  local left=$((END - SECONDS)) t0=$SECONDS
  if [ "$left" -lt 25 ]; then echo "== $name: skipped (budget)" >>"$LOG"; return; fi
  [ "$cap" -gt "$left" ] && cap=$left
  echo "== $name (cap $cap s, XLA_FLAGS=$flags): $*" | tee -a "$LOG"
  if [ "$flags" = - ]; then
    TAG=$name OUT=$OUT timeout -k 5 "$cap" "$@" >>"$LOG" 2>&1
  else
    TAG=$name OUT=$OUT XLA_FLAGS="$flags" timeout -k 5 "$cap" "$@" >>"$LOG" 2>&1
  fi
  echo "== $name: exit $? after $((SECONDS - t0)) s" | tee -a "$LOG"
}

V="$PY $P/variants.py ${VARGS:-}"
for s in ${STAGES:-base aug cudnn2 pallas_sweep lt cudnn3}; do
  case $s in
    base) stage base 140 - $V --what "model,bound,fn2d,beta,grad_hlo,train" \
            --train_modes train,train_augment ;;
    aug) stage aug 90 - "$PY" $P/aug_components.py ${AARGS:---batch 512 --size 224 --repeats 7 --only "^(histogram_|affine|apply_lut|smooth|one_layer_select|randaugment_batch_(select|compact)|randaugment_batch_switch_scatter|mixup|train_inputs_auto)"} \
           --json "$OUT/aug.json" ;;
    pallas_sweep) stage pallas_sweep 130 - "$PY" $P/pallas_probe.py ${PARGS:---budget 70 --model B_16,1024} \
                    --json "$OUT/pallas.json" ;;
    pallas_model) stage pallas_model 70 - $V --what "model,pallas" \
                    --pallas_configs "$PALLAS_CONFIGS" ;;
    lt) stage lt 60 "--xla_gpu_enable_triton_gemm=false --xla_gpu_enable_cublaslt=true" \
          $V --what "model,fn2d,beta,train" ;;
    cudnn2) stage cudnn2 60 "--xla_gpu_enable_triton_gemm=true --xla_gpu_cudnn_gemm_fusion_level=2" \
              $V --what "model,train" ;;
    cudnn3) stage cudnn3 60 "--xla_gpu_enable_triton_gemm=true --xla_gpu_cudnn_gemm_fusion_level=3" \
              $V --what "model,train" ;;
  esac
done
echo "total $SECONDS s" | tee -a "$LOG"
