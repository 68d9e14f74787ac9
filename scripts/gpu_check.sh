#!/usr/bin/env bash
# GPU checks (issues 10 and 13): the 473-px benchmark in float32 (TF32),
# bfloat16 and float16 autocast, each with channels_last, then the CUDA tests. Run from the repository root on a
# machine with a CUDA GPU:
#     scripts/gpu_check.sh [output folder]         (default outputs/gpu_check)
# Writes pytest.log and benchmark_<dtype>.md there and prints both. The project must be importable
# (`make setup`, or PYTHONPATH=. with torch, numpy, pillow, pyyaml, tqdm, matplotlib, pytest).
set -uo pipefail
out="${1:-outputs/gpu_check}"
mkdir -p "$out"
py="${PYTHON:-python3}"
"$py" -c 'import torch, sys; sys.exit(0 if torch.cuda.is_available() else "no CUDA GPU visible")' || exit 2
"$py" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name())' | tee "$out/device.txt"
status=0
for dtype in float32 bfloat16 float16; do
    "$py" scripts/benchmark.py --device cuda --dtype "$dtype" --channels-last --repeats 10 \
        2>&1 | tee "$out/benchmark_$dtype.md" || status=1
done
"$py" -m pytest -q -p no:cacheprovider -m cuda tests/training/test_cuda.py \
    tests/evaluation/test_metrics.py 2>&1 | tee "$out/pytest.log" || status=1
exit $status
