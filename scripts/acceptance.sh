#!/usr/bin/env bash
# Runs the acceptance suite (crates/rbee-acceptance/features): every user journey of the
# spec on compute nodes built as network namespaces. Needs root and openssh-server.
# Extra arguments go to the cucumber runner, e.g. one scenario by name (a regex):
#   scripts/acceptance.sh --name "Cold start"
# The last line of output is "N passed, N failed".
set -euo pipefail
cd "$(dirname "$0")/.."
export RBEE_TEST_MODEL="${RBEE_TEST_MODEL:-$(scripts/fetch-model.sh)}"
# Ollama's own Python package drives the queen in one scenario.
export RBEE_PYTHON="${RBEE_PYTHON:-$(scripts/python-env.sh)}"
cargo build --workspace --bins --locked
# --workspace: the same feature set as the other tests, so nothing is compiled twice.
cargo test --locked --workspace --test acceptance -- "$@"
