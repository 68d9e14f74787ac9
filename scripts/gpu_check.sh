#!/usr/bin/env bash
# GPU checks (issues 10 and 13), in the order of what is least known:
#   1. the CUDA tests (`pytest -m cuda`: both training stages with fp16 + GradScaler, bf16,
#      channels_last and torch.compile; the sync-free step; the eval forward under autocast; the
#      shipped toy model scored by msanet-eval on the GPU against the CPU; with two GPUs, a
#      2-process NCCL stage-2 run against one GPU);
#   2. the 473-px benchmark in float32 (TF32), bfloat16 and float16 autocast, with channels_last,
#      at batch 1 and at batches that fill the GPU (eval 16 episodes, train 8: the paper's batch);
#   3. if the toy benchmark is in data/toy: the shipped toy models scored with the README's protocol
#      (4 folds, 1000 episodes x seeds 510 365) in IEEE float32, TF32, bf16 and fp16, timed.
# Run from the repository root on a machine with a CUDA GPU:
#     scripts/gpu_check.sh [output folder]         (default outputs/gpu_check)
# Every step writes its log into the output folder as it runs (device.txt, pytest.log,
# benchmark_<dtype>.md, toy_<precision>.json/.log, toy_times.txt), so a run cut short keeps what
# finished. The project must be importable (`make setup`, or PYTHONPATH=. with torch, torchvision,
# numpy, pillow, pyyaml, tqdm, matplotlib, pytest). STEP_TIMEOUT (seconds, default 300) bounds each
# step; WORKERS (default 8) and EPISODES (default 1000) set the toy evaluation.
set -uo pipefail
out="${1:-outputs/gpu_check}"
mkdir -p "$out"
py="${PYTHON:-python3}"
limit="${STEP_TIMEOUT:-300}"
"$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible")' || exit 2
"$py" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())' | tee "$out/device.txt"
status=0

timeout "$limit" "$py" -m pytest -q -p no:cacheprovider -m cuda --durations=0 -s \
    tests/training/test_cuda.py tests/evaluation/test_metrics.py 2>&1 | tee "$out/pytest.log" \
    || status=1

for dtype in float32 bfloat16 float16; do
    timeout "$limit" "$py" scripts/benchmark.py --device cuda --dtype "$dtype" --channels-last \
        --repeats 10 --eval-batches 1 16 --train-batches 1 8 2>&1 | tee "$out/benchmark_$dtype.md" || status=1
done

if [ -d data/toy ]; then
    for precision in fp32 tf32 bf16 fp16; do
        case $precision in
            fp32) flags=(--no-tf32) ;;
            tf32) flags=(--tf32) ;;
            *) flags=(--amp "$precision") ;;
        esac
        start=$(date +%s%N)
        timeout "$limit" "$py" -m msanet_lib.evaluation --checkpoint \
            'checkpoints/toy/fold{fold}/msanet_1shot.pth' --folds 0 1 2 3 --data-root data/toy \
            --device cuda --episodes "${EPISODES:-1000}" --seeds 510 365 --batch-size 64 \
            --workers "${WORKERS:-8}" "${flags[@]}" --json "$out/toy_$precision.json" \
            > "$out/toy_$precision.log" 2>&1 || status=1
        end=$(date +%s%N)
        echo "$precision $(( (end - start) / 1000000 )) ms" | tee -a "$out/toy_times.txt"
        tail -7 "$out/toy_$precision.log"
    done
fi
exit $status
