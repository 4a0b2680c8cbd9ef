#!/usr/bin/env bash
# Prints the path of a Python interpreter with llama.cpp's Python binding (llama-cpp-python,
# the reference rbee is checked against), compiling it once into ~/.cache/rbee/llama-venv
# (outside the repository; ~11 minutes on two cores the first time).
#
#   RBEE_LLAMA_VENV  the virtual environment (default: ${XDG_CACHE_HOME:-~/.cache}/rbee/llama-venv)
set -euo pipefail
package="llama-cpp-python==0.3.36"
venv="${RBEE_LLAMA_VENV:-${XDG_CACHE_HOME:-$HOME/.cache}/rbee/llama-venv}"
if "$venv/bin/python" -c 'import llama_cpp' 2>/dev/null; then
    echo "$venv/bin/python"
    exit 0
fi
echo "llama-env: building $package into $venv (once, ~11 minutes)" >&2
python3 -m venv "$venv" >&2 || {
    echo "python3 -m venv failed: install python3-venv (apt-get install python3-venv)" >&2
    exit 1
}
# The host's SIMD units, but not AMX: a native build of 0.3.36 enables AMX on CPUs that report
# it and then crashes (SIGSEGV in llama_decode) in VMs that do not grant it.
flags=$(grep -m1 '^flags' /proc/cpuinfo)
cmake="-DGGML_NATIVE=OFF"
for pair in AVX:avx AVX2:avx2 FMA:fma F16C:f16c BMI2:bmi2 AVX_VNNI:avx_vnni AVX512:avx512f AVX512_VNNI:avx512_vnni; do
    if [[ " $flags " == *" ${pair#*:} "* ]]; then cmake+=" -DGGML_${pair%%:*}=ON"; else cmake+=" -DGGML_${pair%%:*}=OFF"; fi
done
CMAKE_ARGS="$cmake" CMAKE_BUILD_PARALLEL_LEVEL="$(nproc)" \
    "$venv/bin/pip" install --quiet --disable-pip-version-check "$package" >&2
echo "$venv/bin/python"
