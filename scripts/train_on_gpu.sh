#!/usr/bin/env bash
# One training run sized to a time budget, for a borrowed GPU machine (or, with DEVICE=cpu and a
# small budget, to rehearse the same run on a laptop first).
#
#   scripts/train_on_gpu.sh DATASET RESULTS [SECONDS]
#
# Times 40 steps, sizes the run so that training takes about SECONDS (default 420), trains from
# INIT with a fresh optimizer, then copies the model at its best validation (fp16, about 14 MB),
# the latest model, the log and the config into RESULTS and prints the validation table last.
# The optimizer state stays in WORK: it is not a product. A run killed by its guard still leaves
# its best model. Environment: INIT (default checkpoints/default.safetensors, "none" for a fresh
# model), PRESET (small), BATCH (64), LR (4e-4), WARMUP (100), DEVICE (auto), WORK (a temp folder),
# OPTS (more train options, e.g. "--labelled-share 1 --transpose 3"). Several runs with different
# OPTS can share one GPU at once: the small model leaves most of it idle.
set -euo pipefail
data=$1 results=$2 budget=${3:-420}
init=${INIT:-checkpoints/default.safetensors} preset=${PRESET:-small} batch=${BATCH:-64}
lr=${LR:-4e-4} warmup=${WARMUP:-100} device=${DEVICE:-auto}
work=${WORK:-$(mktemp -d)}
mkdir -p "$results" "$work"
opts=(--preset "$preset" --batch "$batch" --lr "$lr" --warmup "$warmup" --device "$device" --checkpoint-every 250)
[ "$init" != none ] && opts+=(--init "$init" --kl-warmup 1)
read -ra extra <<< "${OPTS:-}"
opts+=("${extra[@]}")
train() { python3 -m emocompose train "$data" "${opts[@]}" "$@"; }

train --out "$work/probe" --steps 40 > "$work/probe.txt" 2>&1 || { tail -20 "$work/probe.txt"; exit 1; }
steps=$(python3 - "$work/probe/log.jsonl" "$budget" <<'PY'
import json, sys
recs = {r["step"]: r for r in map(json.loads, open(sys.argv[1])) if "elapsed_s" in r}
per_step = (recs[40]["elapsed_s"] - recs[10]["elapsed_s"]) / 30
print(max(50, int(float(sys.argv[2]) / per_step)))
print(f"{per_step:.3f} s a step: {int(float(sys.argv[2]) / per_step)} steps fit", file=sys.stderr)
PY
)
echo "training $steps steps of $batch windows on $device"
status=0
timeout $((budget + 60)) python3 -m emocompose train "$data" "${opts[@]}" --out "$work/run" --steps "$steps" \
  > "$work/train.txt" 2>&1 || status=$?
tail -3 "$work/train.txt"
for f in best.safetensors model.safetensors log.jsonl config.json; do
  [ -e "$work/run/$f" ] && cp "$work/run/$f" "$results/"
done
python3 - "$work/run/log.jsonl" <<'PY'
import json, sys
print(f"{'step':>6} {'epoch':>6} {'val token loss':>15} {'q arousal':>10} {'q valence':>10}")
for r in map(json.loads, open(sys.argv[1])):
    if "val_rec" in r:
        print(f"{r['step']:>6} {r['epoch']:>6} {r['val_rec']:>15.4f} {r.get('val_acc_arousal', 0):>10.3f} {r.get('val_acc_valence', 0):>10.3f}")
PY
exit $status
