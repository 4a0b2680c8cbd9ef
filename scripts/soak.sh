#!/usr/bin/env bash
# Soak test of ephemeral mode, the way a user runs rbee with no queen running. Each cycle
# runs `rbee infer --prompt "Say hi" --max-tokens 4 --temperature 0`: rbee starts a queen,
# the queen a hive, the hive a worker, and all of them must stop once rbee exits. A cycle
# passes when rbee exits 0 and, within 10 s of its exit, no queen-rbee, rbee-hive or
# llm-worker-rbee process it started is left.
#
# Processes are tracked by PID: those found below the cycle's rbee (through their parents)
# while it runs, and checked by PID and name afterwards, so that daemons of anything else on
# the machine (a test suite running meanwhile) are never counted. Leftovers are reported,
# then stopped (TERM, then KILL after 5 s).
#
#   scripts/soak.sh [cycles]        # default 50
#
# Uses the debug build (cargo build --workspace --bins) and the default model
# (scripts/fetch-model.sh, which fetches it if needed). Every cycle runs as one throwaway
# user (its own HOME, shared by the cycles, as one user running rbee over and over) with a
# free queen port of its own. RBEE_SOAK_TIMEOUT (default 120) bounds a cycle, in seconds.
# Prints a line per cycle, then `soak: 50/50 cycles, 0 leftover processes, median X s per
# cycle`; exits 1 if any cycle failed or left a process behind.
set -euo pipefail
cd "$(dirname "$0")/.."

cycles="${1:-50}"
if ! [[ "$cycles" =~ ^[1-9][0-9]*$ ]]; then
    echo "soak: the number of cycles must be a positive integer, not '$cycles'" >&2
    exit 2
fi
cycle_timeout="${RBEE_SOAK_TIMEOUT:-120}"
daemons="queen-rbee rbee-hive llm-worker-rbee"
bin=target/debug
for b in rbee $daemons; do
    if [ ! -x "$bin/$b" ]; then
        echo "soak: $bin/$b is missing: build it with cargo build --workspace --bins" >&2
        exit 2
    fi
done
model=$(scripts/fetch-model.sh)
cache=$(dirname "$model")

work=$(mktemp -d "${TMPDIR:-/tmp}/rbee-soak.XXXXXX")
home="$work/home"
mkdir -p "$home"
current=""  # the PID of the running cycle, stopped if the script is interrupted
cleanup() {
    if [ -n "$current" ] && kill -0 "$current" 2>/dev/null; then
        kill -TERM "$current" 2>/dev/null || true
    fi
    rm -rf "$work"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# Whether process $1 runs (a zombie does not count).
running() {
    local state
    state=$(ps -o stat= -p "$1" 2>/dev/null) || return 1
    [[ "$state" != *Z* ]]
}

# The name (comm) of process $1, empty if there is none.
name_of() {
    ps -o comm= -p "$1" 2>/dev/null | awk '{ print $1 }' || true
}

# Every rbee daemon below process $1 (its children, theirs, ...), as lines "pid name".
daemons_below() {
    ps -e -o pid=,ppid=,comm= | awk -v root="$1" -v names="$daemons" '
        BEGIN { split(names, n, " "); for (i in n) wanted[n[i]] = 1 }
        { parent[$1] = $2; name[$1] = $3 }
        END {
            below[root] = 1
            for (changed = 1; changed; ) {
                changed = 0
                for (p in parent)
                    if (!(p in below) && (parent[p] in below)) { below[p] = 1; changed = 1 }
            }
            for (p in below) if (p != root && (name[p] in wanted)) print p, name[p]
        }'
}

# Of the processes listed in file $1 ("pid name"), those still running under that name.
still_running() {
    local pid name
    while read -r pid name; do
        if [ "$(name_of "$pid")" = "$name" ] && running "$pid"; then
            echo "$pid $name"
        fi
    done <"$1"
}

# Waits up to $2 seconds for the processes listed in file $1 to stop; prints those that did
# not.
survivors() {
    local deadline=$((SECONDS + $2)) left
    while :; do
        left=$(still_running "$1")
        if [ -z "$left" ] || [ "$SECONDS" -ge "$deadline" ]; then
            break
        fi
        sleep 0.2
    done
    if [ -n "$left" ]; then echo "$left"; fi
}

# Stops the processes listed in file $1, which this script started.
stop() {
    local pid name
    while read -r pid name; do kill -TERM "$pid" 2>/dev/null || true; done <"$1"
    survivors "$1" 5 >"$1.kill"
    while read -r pid name; do kill -KILL "$pid" 2>/dev/null || true; done <"$1.kill"
}

# A loopback port nothing listens on.
free_port() {
    local port
    while :; do
        # Below the kernel's ephemeral range (32768-60999), where outgoing connections take
        # their local ports and could hold the one chosen.
        port=$((20000 + RANDOM % 12000))
        if ! (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            echo "$port"
            return
        fi
    done
}

# Runs one cycle. Sets rc (rbee's exit code) and took (seconds); lists the daemons seen below
# rbee in $work/seen.
run_cycle() {
    local start
    start=$(date +%s.%N)
    env -u XDG_CONFIG_HOME -u XDG_DATA_HOME -u RBEE_CONFIG -u RBEE_QUEEN_API_KEY \
        HOME="$home" RBEE_QUEEN_URL="http://127.0.0.1:$(free_port)" RBEE_MODEL_CACHE="$cache" \
        timeout -k 10 "$cycle_timeout" \
        "$bin/rbee" infer --prompt "Say hi" --max-tokens 4 --temperature 0 \
        </dev/null >"$work/stdout" 2>"$work/stderr" &
    current=$!
    : >"$work/seen"
    while running "$current"; do
        daemons_below "$current" >>"$work/seen"
        sleep 0.1
    done
    rc=0
    wait "$current" || rc=$?
    current=""
    took=$(awk -v s="$start" -v e="$(date +%s.%N)" 'BEGIN { printf "%.2f", e - s }')
    sort -u -o "$work/seen" "$work/seen"
}

echo "soak: $cycles cycles of rbee infer, model $model"
passed=0
leftover=0
durations=()
for ((i = 1; i <= cycles; i++)); do
    run_cycle
    durations+=("$took")
    failed=""
    if [ "$rc" = 124 ]; then
        failed="rbee did not finish within $cycle_timeout s"
    elif [ "$rc" != 0 ]; then
        failed="rbee exited $rc"
    fi
    if ! grep -q " queen-rbee$" "$work/seen"; then
        failed="${failed:+$failed; }no queen-rbee was seen below rbee, so leftovers cannot be told"
    fi
    survivors "$work/seen" 10 >"$work/left"
    if [ -s "$work/left" ]; then
        n=$(wc -l <"$work/left")
        leftover=$((leftover + n))
        failed="${failed:+$failed; }$n processes left behind: $(tr '\n' ' ' <"$work/left")"
        stop "$work/left"
    fi
    if [ -z "$failed" ]; then
        passed=$((passed + 1))
        echo "soak: cycle $i/$cycles ok in $took s"
    else
        echo "soak: cycle $i/$cycles FAILED in $took s: $failed" >&2
        tail -n 20 "$work/stderr" | sed 's/^/    /' >&2
    fi
done

median=$(printf '%s\n' "${durations[@]}" | sort -n | awk '
    { v[NR] = $1 }
    END { m = NR % 2 ? v[(NR + 1) / 2] : (v[NR / 2] + v[NR / 2 + 1]) / 2; printf "%.2f", m }')
echo "soak: $passed/$cycles cycles, $leftover leftover processes, median $median s per cycle"
if [ "$passed" = "$cycles" ] && [ "$leftover" = 0 ]; then
    exit 0
fi
exit 1
