#!/usr/bin/env bash
# Confirm run on merged main: augmentation share of the train step, default-settings rows.
set -u
OUT=${OUT:?}; PY=${PYTHON:-python}; BUDGET=${BUDGET:-230}
cd "$(dirname "$0")/../.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
"$PY" -c 'import ml_collections' 2>/dev/null || export PYTHONPATH="$PWD/$(ls .whl/ml_collections-*.whl | head -1):$PYTHONPATH"
LOG=$OUT/log.txt; END=$((SECONDS + BUDGET))
{ date -u +%FT%TZ; git log --oneline -1; git status --short | head; } >>"$LOG"
st() { local name=$1 cap=$2; shift 2; local left=$((END - SECONDS)) t0=$SECONDS
  [ "$left" -lt 25 ] && { echo "== $name skipped" >>"$LOG"; return; }
  [ "$cap" -gt "$left" ] && cap=$left
  echo "== $name (cap $cap): $*" >>"$LOG"; timeout -k 5 "$cap" "$@" >>"$LOG" 2>&1
  echo "== $name: exit $? after $((SECONDS - t0)) s" >>"$LOG"; }
B="scripts/benchmark.py --variant Mixer-B_16 --dtype bfloat16 --repeats 3 --min_time 0.5"
st aug 45 "$PY" .gpu/probe2/aug_components.py --batch 512 --size 224 --repeats 7 \
  --only '^(randaugment_batch_compact|randaugment_batch_select_onehot|train_inputs)' --json "$OUT/aug.json"
st train_compact 110 "$PY" $B --batch 512 --modes train,train_augment --bound \
  --randaug_mode compact --randaug_histogram onehot --json "$OUT/train_compact.json"
st fwd 50 "$PY" $B --batch 1024 --modes forward --bound --json "$OUT/fwd.json"
st train_select 70 "$PY" $B --batch 512 --modes train_augment --randaug_mode select \
  --randaug_histogram onehot --json "$OUT/train_select.json"
echo "total $SECONDS s" >>"$LOG"
