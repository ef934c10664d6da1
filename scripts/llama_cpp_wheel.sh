#!/usr/bin/env bash
# Build (once) and install llama-cpp-python, the GGUF backend's binding, into a venv.
#
#   scripts/llama_cpp_wheel.sh PYTHON
#
# llama-cpp-python compiles llama.cpp when it is installed (5-10 minutes on 2 cores). The
# wheel is kept in $WEPROMPT_WHEEL_CACHE (default ~/.cache/weprompt/wheels), under a folder
# named after the version and the CMake flags, so a second setup (or CI on the same
# machine) installs it in seconds. pip's own wheel cache is not used for it: it would
# hand back a wheel built with other flags.
#
# Default flags: portable x86-64 kernels (AVX2, FMA, F16C; no AVX-512, no AMX). A native
# build compiled the AMX kernels, which died with SIGILL on Q8_0/Q4_0 on a machine whose
# CPU flags advertise AMX, and the AVX-512 build of the RWKV-7 kernel computes head sizes
# that are not multiples of 64 wrongly (the demo model's is 32). Other machines:
#   WEPROMPT_LLAMA_CMAKE_ARGS="-DGGML_METAL=on"    Apple GPUs (macOS)
#   WEPROMPT_LLAMA_CMAKE_ARGS="-DGGML_CUDA=on"     NVIDIA GPUs (needs the CUDA toolkit)
#   WEPROMPT_LLAMA_CMAKE_ARGS="-DGGML_VULKAN=on"   Vulkan GPUs (needs the Vulkan SDK)
set -euo pipefail

python=${1:?usage: scripts/llama_cpp_wheel.sh PYTHON}
version=${WEPROMPT_LLAMA_CPP_VERSION:-0.3.36}
case "$(uname -m)" in
  x86_64|amd64)
    default_args="-DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON -DGGML_BMI2=ON \
-DGGML_AVX512=OFF -DGGML_AMX_TILE=OFF -DGGML_AMX_INT8=OFF -DGGML_AMX_BF16=OFF" ;;
  *)
    default_args="-DGGML_NATIVE=OFF" ;;
esac
args=${WEPROMPT_LLAMA_CMAKE_ARGS:-$default_args}
key=$(printf '%s|%s|%s|%s' "$version" "$args" "$("$python" -c 'import sys; print(sys.version_info[:2])')" "$(uname -m)" \
  | sha256sum | cut -c1-16)
cache=${WEPROMPT_WHEEL_CACHE:-$HOME/.cache/weprompt/wheels}/llama-cpp-python-$version-$key
pip=("$python" -m pip --disable-pip-version-check -q)

if ! ls "$cache"/llama_cpp_python-*.whl >/dev/null 2>&1; then
  echo "setup: building llama-cpp-python $version (llama.cpp from source: 5-10 minutes on 2 cores)" >&2
  echo "setup: CMAKE_ARGS=$args" >&2
  mkdir -p "$cache.tmp"
  CMAKE_ARGS="$args" CMAKE_BUILD_PARALLEL_LEVEL="${CMAKE_BUILD_PARALLEL_LEVEL:-$(nproc 2>/dev/null || echo 2)}" \
    "${pip[@]}" wheel --no-deps --no-cache-dir -w "$cache.tmp" "llama-cpp-python==$version"
  rm -rf "$cache" && mv "$cache.tmp" "$cache"
fi
"${pip[@]}" install --force-reinstall --no-deps "$cache"/llama_cpp_python-*.whl
# Its pure-Python dependencies (the wheel's own metadata lists them).
"${pip[@]}" install "$(ls "$cache"/llama_cpp_python-*.whl)"
