#!/usr/bin/env bash
# Measures the release worker's prompt and decode speed on the default model.
#
#   scripts/bench-worker.sh [--rounds N] [--threads T] [--tokens N] [--model PATH] [--bin PATH]
#
# Starts llm-worker-rbee, sends one warm-up request, then N identical greedy requests (the
# story prompt, chat template applied) and prints the median prompt and decode tokens/s
# that the worker reports in each `end` event.
set -euo pipefail
cd "$(dirname "$0")/.."

rounds=5 threads=2 tokens=128 model="" bin=""
while [ $# -gt 0 ]; do
    case "$1" in
        --rounds) rounds=$2; shift 2 ;;
        --threads) threads=$2; shift 2 ;;
        --tokens) tokens=$2; shift 2 ;;
        --model) model=$2; shift 2 ;;
        --bin) bin=$2; shift 2 ;;
        -h|--help) sed -n '2,8p' "$0"; exit 0 ;;
        *) echo "bench-worker: unknown argument $1" >&2; exit 1 ;;
    esac
done
[ -n "$model" ] || model=$(scripts/fetch-model.sh)
if [ -z "$bin" ]; then
    cargo build --release --locked -p llm-worker-rbee >&2
    bin=target/release/llm-worker-rbee
fi

log=$(mktemp)
key=bench-$$
"$bin" --model "$model" --host 127.0.0.1 --port 0 --api-key "$key" --threads "$threads" 2>"$log" &
pid=$!
trap 'kill $pid 2>/dev/null; wait $pid 2>/dev/null; rm -f "$log"' EXIT
for _ in $(seq 600); do
    url=$(grep -o 'Listening on http://[0-9.:]*' "$log" | head -1 | cut -d' ' -f3) && [ -n "$url" ] && break
    kill -0 $pid 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.05
done
curl -sfN -H "Authorization: Bearer $key" "$url/v1/loading/progress" >/dev/null

python3 - "$url" "$key" "$rounds" "$tokens" "$threads" "$model" <<'PY'
import json, statistics, sys, urllib.request
url, key, rounds, tokens, threads, model = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4]), sys.argv[5], sys.argv[6]
body = json.dumps({"messages": [{"role": "user", "content": "Write a short story about a cat."}],
                   "max_tokens": tokens, "temperature": 0}).encode()
def run():
    req = urllib.request.Request(url + "/v1/inference", body, {"Authorization": "Bearer " + key, "Content-Type": "application/json"})
    event = None
    with urllib.request.urlopen(req) as resp:
        for raw in resp:
            line = raw.decode().rstrip("\n")
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: ") and event == "end":
                return json.loads(line[6:])
    raise SystemExit("no end event")
run()
ends = [run() for _ in range(rounds)]
prompt = statistics.median(e["prompt_tokens_per_sec"] for e in ends)
decode = statistics.median(e["decode_tokens_per_sec"] for e in ends)
print(f"model={model.rsplit('/', 1)[-1]} threads={threads} rounds={rounds} prompt_tokens={ends[0]['tokens_in']} generated={ends[0]['tokens_out']}")
print(f"prompt  {prompt:8.1f} tok/s (median)")
print(f"decode  {decode:8.1f} tok/s (median)")
PY
