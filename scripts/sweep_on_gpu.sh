#!/usr/bin/env bash
# Several training variants at once on one borrowed GPU: the small model leaves most of an H100
# idle, so four runs side by side cost about what one does. Each is a train_on_gpu.sh run with its
# own extra train options.
#
#   scripts/sweep_on_gpu.sh DATASET RESULTS SECONDS NAME="TRAIN OPTIONS" ...
#
# RESULTS/NAME.safetensors gets each variant's model at its best validation (fp16, about 14 MB:
# four fit what a device call brings back), RESULTS/logs.tar.gz every log without the weights and
# optimizer states, and each variant's validation table is printed last. Environment as for
# train_on_gpu.sh (INIT, PRESET, BATCH, LR, WARMUP, DEVICE); THREADS (4) CPU threads per variant;
# KEEP=model brings back each variant's last model instead (for variants meant to trade token
# loss for something else, such as a heavier KL weight, where the best token loss is the start).
set -uo pipefail
data=$1 results=$2 budget=$3; shift 3
here=$(dirname "$0") logs=$(mktemp -d)
mkdir -p "$results"
pids=()
for spec in "$@"; do
  name=${spec%%=*}
  OMP_NUM_THREADS=${THREADS:-4} OPTS="${spec#*=}" WORK="$logs/$name/work" \
    "$here/train_on_gpu.sh" "$data" "$logs/$name" "$budget" > "$logs/$name.txt" 2>&1 &
  pids+=($!)
done
status=0
for pid in "${pids[@]}"; do wait "$pid" || status=1; done
for spec in "$@"; do
  name=${spec%%=*}
  kept="$logs/$name/${KEEP:-best}.safetensors"
  [ -e "$kept" ] && mv "$kept" "$results/$name.safetensors"
done
tar czf "$results/logs.tar.gz" --exclude='*.safetensors' -C "$logs" .
for spec in "$@"; do
  echo "== ${spec%%=*}: ${spec#*=}"
  tail -n 30 "$logs/${spec%%=*}.txt"
done
exit $status
