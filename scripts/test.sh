#!/usr/bin/env bash
# Runs every test of the workspace against the real default model, fetching it first if
# needed: unit and integration tests (cargo nextest), then the acceptance suite on network
# namespaces (scripts/acceptance.sh; needs root). Extra arguments go to cargo nextest and
# skip the acceptance suite, e.g. a filter:
#   scripts/test.sh quantizations
set -euo pipefail
cd "$(dirname "$0")/.."
export RBEE_TEST_MODEL="${RBEE_TEST_MODEL:-$(scripts/fetch-model.sh)}"
# A real non-llama file (Gemma 3 270M), and llama.cpp as the reference the worker is checked
# against (llama-cpp-python, compiled once; its quantizer makes the K-quant mixes users pull).
export RBEE_TEST_GEMMA="${RBEE_TEST_GEMMA:-$(scripts/fetch-gemma3.sh)}"
export RBEE_LLAMA_PYTHON="${RBEE_LLAMA_PYTHON:-$(scripts/llama-env.sh)}"
# The queen's OpenAI-compatibility test drives it with the official `openai` SDK.
export RBEE_PYTHON="${RBEE_PYTHON:-$(scripts/python-env.sh)}"
profile=default
[ -n "${CI:-}" ] && profile=ci
# The hive's tests start the worker binary built beside it.
cargo build --workspace --bins --locked
# The acceptance suite has its own runner (cucumber); nextest lists it with no tests.
cargo nextest run --workspace --locked --profile "$profile" "$@"
[ $# -gt 0 ] && exit 0
if [ "$(id -u)" != 0 ]; then
    echo "acceptance suite skipped: it needs root (network namespaces); run scripts/acceptance.sh as root" >&2
    exit 0
fi
scripts/acceptance.sh
