#!/usr/bin/env bash
# Set up WePrompt in ./.venv: PyTorch first (the CPU build when there is no NVIDIA GPU),
# then WePrompt itself, editable. `--server` adds the HTTP API (`weprompt serve`);
# `--dev` adds the test tools and the HTTP API.
#
#   WEPROMPT_TORCH="torch==2.13.0"   the torch requirement to install (default below)
#   WEPROMPT_TORCH_INDEX=URL         a package index for torch, e.g. PyTorch's CPU or CUDA index
set -euo pipefail
cd "$(dirname "$0")/.."

extras=""
case "${1:-}" in
  --dev) extras="[dev,server]" ;;
  --server) extras="[server]" ;;
  "") ;;
  *) echo "usage: scripts/setup.sh [--dev | --server]" >&2; exit 2 ;;
esac

python=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$python" -m venv .venv
fi
pip=(.venv/bin/python -m pip --disable-pip-version-check -q)

if ! .venv/bin/python -c "import torch" 2>/dev/null; then
  index=()
  [ -n "${WEPROMPT_TORCH_INDEX:-}" ] && index=(--index-url "$WEPROMPT_TORCH_INDEX")
  if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    # An NVIDIA GPU: PyPI's default Linux wheel is a CUDA build.
    echo "setup: NVIDIA GPU found, installing a CUDA build of PyTorch" >&2
    "${pip[@]}" install "${index[@]}" "${WEPROMPT_TORCH:-torch>=2.1}"
  else
    echo "setup: no NVIDIA GPU, installing the CPU build of PyTorch" >&2
    "${pip[@]}" install "${index[@]}" "${WEPROMPT_TORCH:-torch==2.13.0}"
  fi
fi

"${pip[@]}" install -e ".${extras}"
echo "setup: done; run .venv/bin/weprompt --help" >&2
