#!/usr/bin/env bash
# Set up WePrompt in ./.venv: PyTorch first (the CPU build when there is no NVIDIA GPU),
# then WePrompt itself, editable.
#
#   scripts/setup.sh            the chat (the embedded demo model needs nothing else)
#   scripts/setup.sh --server   + the HTTP API (`weprompt serve`)
#   scripts/setup.sh --gguf     + the llama.cpp backend for GGUF models (builds llama.cpp once: 5-10 min)
#   scripts/setup.sh --cluster  + Ray Serve, for many replicas (`weprompt cluster serve`)
#   scripts/setup.sh --dev      everything the test suite needs: test tools, the HTTP API, the GGUF
#                               backend, Ray, the PostgreSQL and MySQL drivers, and (as root, with apt)
#                               PostgreSQL and MariaDB servers
#
#   WEPROMPT_TORCH="torch==2.13.0"     the torch requirement to install (default below)
#   WEPROMPT_TORCH_INDEX=URL           a package index for torch, e.g. PyTorch's CPU or CUDA index
#   WEPROMPT_LLAMA_CMAKE_ARGS="..."    CMake flags for llama.cpp (Metal, CUDA, Vulkan: scripts/llama_cpp_wheel.sh)
set -euo pipefail
cd "$(dirname "$0")/.."

extras=()
gguf=0
db_servers=0
for arg in "$@"; do
  case "$arg" in
    --dev) extras+=(dev server gguf cluster); gguf=1; db_servers=1 ;;
    --server) extras+=(server) ;;
    --gguf) extras+=(gguf); gguf=1 ;;
    --cluster) extras+=(server cluster) ;;
    *) echo "usage: scripts/setup.sh [--server] [--gguf] [--cluster] [--dev]" >&2; exit 2 ;;
  esac
done

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

if [ "$gguf" = 1 ] && ! .venv/bin/python -c "import llama_cpp" 2>/dev/null; then
  bash scripts/llama_cpp_wheel.sh .venv/bin/python
fi

if [ "${#extras[@]}" -gt 0 ]; then
  spec=".[$(printf '%s\n' "${extras[@]}" | sort -u | paste -sd, -)]"
else
  spec="."
fi
"${pip[@]}" install -e "$spec"

# A database server for the tests that need one (as root, with apt); their tests are skipped without it.
apt_server() {  # apt_server PACKAGE NAME
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "setup: installing a $2 server for the database tests (apt-get)" >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$1" >/dev/null 2>&1 \
      || { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
             --no-install-recommends "$1" >/dev/null; } \
      || echo "setup: could not install $2; its tests will be skipped" >&2
  else
    echo "setup: no $2 server found; its tests will be skipped (apt-get install $1)" >&2
  fi
}
if [ "$db_servers" = 1 ]; then
  compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || command -v initdb >/dev/null || apt_server postgresql PostgreSQL
  command -v mariadbd >/dev/null || [ -x /usr/sbin/mariadbd ] || [ -x /usr/sbin/mysqld ] || apt_server mariadb-server MariaDB
fi
echo "setup: done; run .venv/bin/weprompt --help" >&2
