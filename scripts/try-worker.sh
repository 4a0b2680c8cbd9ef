#!/usr/bin/env bash
# From a fresh clone to streamed tokens: fetches the default model, builds the release worker,
# starts it on a free port, streams a completion for PROMPT to the terminal, and stops it.
#
#   scripts/try-worker.sh ["your prompt"]
set -euo pipefail
cd "$(dirname "$0")/.."
prompt=${1:-Write a short story about a cat.}

model=$(scripts/fetch-model.sh)
echo "==> building llm-worker-rbee (release; the first build takes a few minutes)" >&2
cargo build --release --locked -p llm-worker-rbee >&2

log=$(mktemp)
key=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
target/release/llm-worker-rbee --model "$model" --host 127.0.0.1 --port 0 --api-key "$key" 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
until url=$(grep -o 'Listening on http://[0-9.:]*' "$log" | cut -d' ' -f3) && [ -n "$url" ]; do
    kill -0 $pid 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.05
done
echo "==> worker at $url; loading the model" >&2
curl -sfN -H "Authorization: Bearer $key" "$url/v1/loading/progress" >/dev/null
echo "==> streaming" >&2
body=$(python3 -c 'import json,sys; print(json.dumps({"messages":[{"role":"user","content":sys.argv[1]}],"max_tokens":200,"temperature":0}))' "$prompt")
curl -sfN -H "Authorization: Bearer $key" -H 'Content-Type: application/json' \
     "$url/v1/inference" -d "$body" |
python3 -uc '
import json, sys
event = None
for line in sys.stdin:
    line = line.rstrip("\n")
    if line.startswith("event: "):
        event = line[7:]
    elif line.startswith("data: ") and event == "token":
        print(json.loads(line[6:])["t"], end="", flush=True)
    elif line.startswith("data: ") and event == "end":
        end = json.loads(line[6:])
        n, tps, why = end["tokens_out"], end["decode_tokens_per_sec"], end["stop_reason"]
        print(f"\n\n[{n} tokens, {tps:.1f} tok/s, stop: {why}]", file=sys.stderr)
'
