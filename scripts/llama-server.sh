#!/usr/bin/env bash
# Prints the path of llama.cpp's own HTTP server, `llama-server`, built once from the same PyPI
# source distribution the reference binding comes from (llama-cpp-python==0.3.36 carries
# vendor/llama.cpp) into ~/.cache/rbee/llama-server, outside the repository (~15 minutes on
# two cores the first time). `scripts/bench serve` runs it side by side with rbee.
#
#   RBEE_LLAMA_SERVER_DIR  where it is built (default: ${XDG_CACHE_HOME:-~/.cache}/rbee/llama-server)
set -euo pipefail
package="llama-cpp-python==0.3.36"
dir="${RBEE_LLAMA_SERVER_DIR:-${XDG_CACHE_HOME:-$HOME/.cache}/rbee/llama-server}"
bin="$dir/build/bin/llama-server"
if [[ -x "$bin" ]]; then
    echo "$bin"
    exit 0
fi
for tool in c++ python3; do
    command -v "$tool" >/dev/null || {
        echo "llama-server: \`$tool\` is missing (apt-get install g++ python3-venv)" >&2
        exit 1
    }
done
echo "llama-server: building llama.cpp's server from $package into $dir (once, ~15 minutes)" >&2
mkdir -p "$dir"
# CMake from PyPI when the system has none, as pip does when it builds the binding.
cmake=$(command -v cmake || true)
if [[ -z "$cmake" ]]; then
    [[ -x "$dir/venv/bin/cmake" ]] || {
        python3 -m venv "$dir/venv" >&2
        "$dir/venv/bin/pip" install --quiet --disable-pip-version-check cmake >&2
    }
    cmake="$dir/venv/bin/cmake"
fi
if [[ ! -d "$dir/src/vendor/llama.cpp" ]]; then
    # The source archive itself, found on PyPI's simple index and checked against its
    # sha256 there (`pip download` would first build the package's build tools from source).
    mkdir -p "$dir/sdist"
    python3 - "$dir/sdist" "${package%%==*}" "${package##*==}" <<'PY' >&2
import hashlib, os, re, sys, urllib.request
out, name, version = sys.argv[1:]
index = os.environ.get("PIP_INDEX_URL", "https://pypi.org/simple").rstrip("/")
with urllib.request.urlopen(f"{index}/{name}/") as resp:
    page = resp.read().decode()
file = f"{name.replace('-', '_')}-{version}.tar.gz"
url, digest = re.search(rf'href="([^"]*/{re.escape(file)})#sha256=([0-9a-f]+)"', page).groups()
path = os.path.join(out, file)
urllib.request.urlretrieve(url, path)
if hashlib.sha256(open(path, "rb").read()).hexdigest() != digest:
    os.remove(path)
    sys.exit(f"{file}: sha256 differs from the index's")
PY
    mkdir -p "$dir/src"
    tar -xzf "$dir"/sdist/llama_cpp_python-*.tar.gz -C "$dir/src" --strip-components=1
fi
# The same instruction sets as the reference binding (scripts/llama-env.sh), and no AMX.
flags=$(grep -m1 '^flags' /proc/cpuinfo)
cmake_args=(-DGGML_NATIVE=OFF -DCMAKE_BUILD_TYPE=Release -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF
    -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON)
for pair in AVX:avx AVX2:avx2 FMA:fma F16C:f16c BMI2:bmi2 AVX_VNNI:avx_vnni AVX512:avx512f AVX512_VNNI:avx512_vnni; do
    if [[ " $flags " == *" ${pair#*:} "* ]]; then cmake_args+=("-DGGML_${pair%%:*}=ON"); else cmake_args+=("-DGGML_${pair%%:*}=OFF"); fi
done
"$cmake" -S "$dir/src/vendor/llama.cpp" -B "$dir/build" "${cmake_args[@]}" >&2
"$cmake" --build "$dir/build" --target llama-server -j "$(nproc)" >&2
echo "$bin"
