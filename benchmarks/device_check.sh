#!/usr/bin/env bash
# Issue 19's GPU checks as one prepared command for a lent GPU machine (the workplace's
# `device` tool), which has torch but not this project's other dependencies and no network.
#
#   PARTS="hits imagenet" BUDGET=120 bash benchmarks/device_check.sh
#
# hits:     `sparse-probe tasks build --device cuda` and `--device cpu` on both built-in
#           datasets from the same probe/features, compared with benchmarks/compare_builds.py
#           (and with a CPU build made elsewhere, when DEMO/<kind>/tasks-local-cpu exists).
#           Prepare on a CPU machine: `sparse-probe demo --out D`, copy D/<kind>/{features,
#           models,probe} into $DEMO (default .devdata/demo, git-ignored, carried along);
#           moved run directories are found again through meta.json's *_rel paths.
# imagenet: bench_path_gpu.py --size imagenet (n = 1,281,167, d = 2,048, C = 1,000, float16
#           memmap) with ours and glm_saga each given BUDGET seconds. glm_saga's package is
#           not on the machine: copy it (pure Python) into $SITE (default .devsite), carried.
#           RESIDENT=off streams X from the host on every pass (default auto: one copy on
#           the GPU, fit_path's default there).
# The ImageNet features (4.9 GiB) are written in the background while the HITs are built
# (103 s on one of the H200 machine's cores; now by one process per core, at most 16). Output: $OUT/log.txt, compare-*.json,
# manifests.tar.gz, imagenet.json. results/gpu-check-h200-2026-12-04.txt is a first run.
set -u
cd "$(dirname "$0")/.."
PARTS=${PARTS:-hits imagenet}; BUDGET=${BUDGET:-120}; SIZE=${SIZE:-imagenet}; GPU=${GPU:-cuda}
DEMO=${DEMO:-.devdata/demo}; SITE=${SITE:-.devsite}; DATA=${DATA:-/tmp/gpudata}
export SIZE DATA PYTHONPATH="$PWD:$PWD/$SITE:$PWD/benchmarks" PYTHONUNBUFFERED=1
exec > >(tee "$OUT/log.txt") 2>&1
date; nvidia-smi -L 2>/dev/null; nproc
python3 -c "import torch, numpy; print('torch', torch.__version__, 'numpy', numpy.__version__, 'cuda', torch.cuda.is_available())"
mkdir -p "$DATA"
if [[ " $PARTS " == *" imagenet "* ]]; then
  python3 - > "$DATA/write.log" 2>&1 <<'PY' &
import os, time
from pathlib import Path
from bench_path_gpu import STREAMED, write_deep_features
size = os.environ["SIZE"]
c = STREAMED[size]
t = time.perf_counter()
write_deep_features(Path(os.environ["DATA"]) / f"{size}-float16-seed0", c["n"], c["d"],
                    c["classes"], "float16", 0, progress=False)
print(f"{size} features written in {time.perf_counter() - t:.1f} s")
PY
  WRITER=$!
fi
if [[ " $PARTS " == *" hits "* ]]; then
  for k in shapes toxicity; do
    for dev in $GPU cpu; do
      t0=$(date +%s.%N)
      python3 -m sparse_probe.cli tasks build --probe "$DEMO/$k/probe" \
        --out "/tmp/builds/$k-$dev" --device "$dev" 2>&1 | grep -v "it/s\|s/it\|/feature\]\|█" | tail -3
      echo "build $k $dev: rc ${PIPESTATUS[0]} $(python3 -c "import time; print(f'{time.time() - $t0:.1f}')") s"
    done
    python3 benchmarks/compare_builds.py "/tmp/builds/$k-$GPU" "/tmp/builds/$k-cpu" \
      --json "$OUT/compare-$k-$GPU-vs-cpu.json"
    if [ -d "$DEMO/$k/tasks-local-cpu" ]; then
      python3 benchmarks/compare_builds.py "/tmp/builds/$k-$GPU" "$DEMO/$k/tasks-local-cpu" \
        --json "$OUT/compare-$k-$GPU-vs-local-cpu.json"
    fi
  done
  (cd /tmp/builds && tar czf "$OUT/manifests.tar.gz" */manifest.jsonl)
fi
if [[ " $PARTS " == *" imagenet "* ]]; then
  wait "$WRITER"; cat "$DATA/write.log"
  python3 benchmarks/bench_path_gpu.py --size "$SIZE" --data-dir "$DATA" --our-budget "$BUDGET" \
    --peer-budget "$BUDGET" --checks 3 --no-progress --resident "${RESIDENT:-auto}" \
    --out "$OUT/imagenet.json"
  echo "bench rc $?"
fi
nvidia-smi --query-gpu=memory.used,memory.total --format=csv 2>/dev/null; date
