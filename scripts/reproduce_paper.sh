#!/usr/bin/env bash
# Reproduce one row group of the paper's table: 4 folds x 1-shot and 5-shot, both stages,
# then the authors' test protocol (1000 episodes x seeds 510, 365, 382, 322, 988).
#
#   scripts/reproduce_paper.sh pascal_resnet50            # one GPU (or CPU, very slowly)
#   GPUS=4 scripts/reproduce_paper.sh coco_resnet101      # DDP on 4 GPUs with torchrun
#   GPUS=3 MICRO_BATCH=2 scripts/reproduce_paper.sh pascal_resnet50   # any count; cap per GPU
#   EVAL_BATCH=16 EVAL_WORKERS=8 AMP=bf16 scripts/reproduce_paper.sh ...  # evaluation settings
#   FEATURE_CACHE=65536 scripts/reproduce_paper.sh ...   # reuse each image's backbone features
#       (MiB; PASCAL fold 0 at 473 px holds every image in about 88 GiB, docs/protocol.md)
#
# Any GPU count trains the authors' global batches (12 in stage 1, 8 in stage 2): when the count
# does not divide a batch, the GPUs' shares differ by one sample and are weighted so the update
# is the whole batch's. MICRO_BATCH (runtime.micro_batch_size) caps the samples a GPU forwards
# at once; larger shares are accumulated over micro-steps. The run header prints the split.
#
# Needs the dataset (msanet-data download pascal|coco) and, for stage 1, the ImageNet weights
# in data/initmodel/ (see README). Every step resumes: run the same command again after an
# interruption. Results: runs/<config>/results_<K>shot.json and the printed tables.
set -euo pipefail
config=${1:?usage: reproduce_paper.sh CONFIG   (pascal_resnet50, pascal_resnet101, pascal_vgg16_bn, coco_resnet50, coco_resnet101, toy)}
gpus=${GPUS:-1}
case $gpus in
  '' | *[!0-9]* | 0) echo "GPUS=$gpus: give the number of GPUs as a positive integer, e.g. GPUS=3" >&2; exit 2 ;;
esac
extra=()
if [ -n "${MICRO_BATCH:-}" ]; then
  case $MICRO_BATCH in
    *[!0-9]* | 0) echo "MICRO_BATCH=$MICRO_BATCH: give a positive integer (samples per GPU at once)" >&2; exit 2 ;;
  esac
  extra=(--set "runtime.micro_batch_size=$MICRO_BATCH")
fi
bin=$(dirname "$(command -v python)")
train() {
  if [ "$gpus" -gt 1 ]; then
    "$bin/torchrun" --standalone --nproc_per_node="$gpus" -m msanet_lib.training "$@"
  else
    "$bin/python" -m msanet_lib.training "$@"
  fi
}
for shots in 1 5; do
  for fold in 0 1 2 3; do
    # stage 1 (base learner) is shared by 1-shot and 5-shot: the second pass reuses it
    train --config "$config" --fold "$fold" --shots "$shots" --out "runs/$config/fold$fold" \
      --resume ${extra[@]+"${extra[@]}"}
  done
  # batched episodes and loader workers: the numbers equal batch 1 (tests/evaluation); AMP=bf16
  # trades a measured accuracy cost for speed
  "$bin/python" -m msanet_lib.evaluation --checkpoint "runs/$config/fold{fold}/meta_${shots}shot/best.pth" \
    --folds 0 1 2 3 --batch-size "${EVAL_BATCH:-8}" --workers "${EVAL_WORKERS:-4}" \
    ${AMP:+--amp "$AMP"} ${FEATURE_CACHE:+--feature-cache "$FEATURE_CACHE"} --json "runs/$config/results_${shots}shot.json"
done
