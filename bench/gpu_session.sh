#!/usr/bin/env bash
# One GPU session, prepared to run unattended in a few minutes of device time:
#   1. the machine (GPU, torch, nvcc);
#   2. in the background: the rwkv CUDA kernel build (cached under $WEPROMPT_HOME) and the
#      random-weight checkpoints of bench/gpu.py;
#   3. end-to-end checks through the real CLI: `weprompt doctor`, the demo model on
#      `cuda fp16` (head size 32: the plain path, no kernel), a head-64 model on the graph path
#      against --no-graph (same greedy text), and its session resumed on `cpu fp32` and back;
#   4. python bench/gpu.py (all sizes).
# Everything goes to $OUT (the device tool's folder) or bench/results/.
#
#   bash bench/gpu_session.sh            # run from the repository root on a CUDA machine
#   SKIP_CLI=1 bash bench/gpu_session.sh # a rerun: no doctor / demo-model checks, chats without --verbose
set -u
OUT=${OUT:-bench/results}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1 PYTHONPATH="${PYTHONPATH:+$PYTHONPATH:}$PWD"
export WEPROMPT_HOME=${WEPROMPT_HOME:-/tmp/wp-gpu-home}
# Checkpoints (14 GB at 7.2B) go to RAM when /dev/shm has room for them.
if [ "$(df --output=avail -B1G /dev/shm 2>/dev/null | tail -1 | tr -d ' ')" -gt 30 ] 2>/dev/null; then
  export TMPDIR=/dev/shm
fi
PY=${PY:-python3}
LOG="$OUT/gpu-session.log"
say() { echo "== $(date -u +%H:%M:%S) $*" | tee -a "$LOG"; }
run() { say "\$ $*"; "$@" >>"$LOG" 2>&1; echo "   (exit $?)" | tee -a "$LOG"; }

say "machine"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv >>"$LOG" 2>&1
$PY -c "import torch, rwkv, sys; print(sys.version.split()[0], 'torch', torch.__version__, 'cuda', torch.version.cuda)" >>"$LOG" 2>&1
(nvcc --version | tail -1) >>"$LOG" 2>&1
echo "TMPDIR=${TMPDIR:-/tmp} WEPROMPT_HOME=$WEPROMPT_HOME" >>"$LOG"

say "background: kernel build, checkpoints"
$PY - >"$OUT/kernel-build.log" 2>&1 <<'EOF' &
import os, time
from weprompt_cli.hardware.inventory import detect_inventory
from weprompt_cli.hardware.kernel import cuda_kernel_usable, kernel_env
print("kernel usable:", cuda_kernel_usable(detect_inventory()))
os.environ.update(kernel_env(), RWKV_V7_ON="1", RWKV_JIT_ON="1")
start = time.perf_counter()
import rwkv.model  # noqa: E402,F401 - compiles wkv_cuda and wkv7s into the cache
print(f"kernel built in {time.perf_counter() - start:.1f}s")
EOF
KERNEL=$!
$PY bench/gpu.py --build-only >"$OUT/checkpoints.log" 2>&1 &
BUILD=$!
wait $KERNEL; say "kernel build done: $(tail -1 "$OUT/kernel-build.log")"

WP="$PY -m weprompt_cli"
VERBOSE=--verbose
if [ -z "${SKIP_CLI:-}" ]; then
  run $WP doctor
  run $WP chat --persona sql --strategy "cuda fp16" --verbose -t 0 -m "How many orders are pending?"
  run $WP chat --persona sql --strategy "cpu fp32" -t 0 -m "How many orders are pending?"
else
  VERBOSE=  # a rerun checks that a plain chat prints nothing but the answer and the status line
fi

wait $BUILD; say "checkpoints: $(tr '\n' ' ' <"$OUT/checkpoints.log")"
SMALL=$(grep -m1 '12x768' "$OUT/checkpoints.log")
if [ -n "$SMALL" ]; then  # graph vs --no-graph: the same greedy text; each session resumed on the CPU
  run $WP chat --model "$SMALL" --strategy "cuda fp16" --session gpu-graph $VERBOSE -t 0 --max-tokens 40 -m "Hello there, how are you?"
  run $WP chat --model "$SMALL" --strategy "cuda fp16" --session gpu-plain --no-graph $VERBOSE -t 0 --max-tokens 40 -m "Hello there, how are you?"
  run $WP resume gpu-graph --strategy "cpu fp32" -t 0 --max-tokens 16 -m "And now on the CPU?"
  run $WP resume gpu-plain --strategy "cpu fp32" -t 0 --max-tokens 16 -m "And now on the CPU?"
  run $WP resume gpu-graph --strategy "cuda fp16" -t 0 --max-tokens 16 -m "Back on the GPU."
  run $WP list-sessions
fi

say "bench/gpu.py"
$PY bench/gpu.py 2>&1 | tee "$OUT/gpu-bench.txt"
cp bench/results/gpu-2*.txt "$OUT/" 2>/dev/null
say "done"
