#!/usr/bin/env bash
# Runs every test of the workspace (unit, integration, end-to-end) against the real default
# model, fetching it first if needed. Extra arguments go to cargo nextest, e.g. a filter:
#   scripts/test.sh quantizations
set -euo pipefail
cd "$(dirname "$0")/.."
export RBEE_TEST_MODEL="${RBEE_TEST_MODEL:-$(scripts/fetch-model.sh)}"
profile=default
[ -n "${CI:-}" ] && profile=ci
# The hive's tests start the worker binary built beside it.
cargo build --workspace --bins --locked
cargo nextest run --workspace --locked --profile "$profile" "$@"
