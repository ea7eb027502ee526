#!/usr/bin/env bash
# One prepared script for a lent GPU machine: GPU tests, CUDA benchmark, CUDA smoke run of the
# main job. Results go to $OUT (the device tool brings them back). Not used by CI.
set -uo pipefail
OUT=${OUT:-/tmp/pcgraph-gpu}
mkdir -p "$OUT"
if ls .whl/*.whl >/dev/null 2>&1; then python3 -m pip install --no-deps -q .whl/*.whl; fi
export PYTHONPATH=$PWD MPLBACKEND=Agg
{
  nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv
  python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"
} 2>&1 | tee "$OUT/device.txt"
python3 -m pytest tests/test_gpu.py -m gpu -q -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log"
python3 benchmarks/bench_step.py --device cuda --batches 64,256,1024 --T 8 2>&1 | tee "$OUT/bench_cuda.txt"
python3 benchmarks/bench_step.py --device cuda --json > "$OUT/bench_cuda.json" 2>"$OUT/bench_cuda.err"
python3 benchmarks/bench_cuda_graph.py 2>&1 | tee "$OUT/bench_cuda_graph.txt"
python3 examples/decoder_generation.py --quick --device cuda --no-progress --out /tmp/dec_cuda \
  2>&1 | tail -8 | tee "$OUT/decoder_cuda.txt"
cp /tmp/dec_cuda/results.json "$OUT/decoder_cuda_results.json" 2>/dev/null || true
