#!/usr/bin/env bash
# Regenerates src/hot-code.txt: the functions the daemon runs in steady state, hottest
# first, which the release build lays out side by side (see src/build.rs). Runs the release
# binary under callgrind (valgrind) against the simulator, with 10 and then 100 targets
# probed every second (one in ten failing), the status-page poller, two email channels with
# routes, a maintenance window, and the page, the API, /healthz and /metrics asked every few
# seconds; counts only the minute after start-up.
#
#   bash benches/hot-code.sh        # about 5 minutes; needs valgrind and python3
set -euo pipefail
cd "$(dirname "$0")/.."
command -v valgrind >/dev/null || { echo "needs valgrind (apt-get install valgrind)" >&2; exit 1; }
cargo build --release --locked
bin=target/release/openai-watch
work=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$work"' EXIT
port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
sim_port=$(port)
"$bin" simulate --listen "127.0.0.1:$sim_port" >"$work/sim.log" 2>&1 &

config() { # N DASHBOARD_PORT
    cat <<T
[agent]
location = "profile"
[storage]
path = "$work/watch.db"
[dashboard]
listen = "127.0.0.1:$2"
[upstream_status]
url = "http://127.0.0.1:$sim_port/_sim/status/summary.json"
interval = "30s"
[alerts]
group_wait = "0s"
[[alerts.email]]
name = "oncall"
smtp_host = "127.0.0.1"
smtp_port = 9
tls = "none"
from = "w@example.com"
to = ["oncall@example.com"]
[[alerts.email]]
name = "security"
smtp_host = "127.0.0.1"
smtp_port = 9
tls = "none"
from = "w@example.com"
to = ["security@example.com"]
[[alerts.routes]]
categories = ["auth"]
channels = ["security"]
continue = true
[[alerts.routes]]
channels = ["oncall"]
[[maintenance]]
name = "weekly"
targets = ["nightly-*"]
weekly = "sun 02:00-04:00"
T
    for ((i = 0; i < $1; i++)); do
        if ((i % 10 == 0)); then p=/s/server_error/v1; else p=/s/ok/v1; fi
        printf '[[targets]]\nname = "t%d"\nbase_url = "http://127.0.0.1:%d%s"\napi_key_env = "K"\n[[targets.probes]]\nkind = "models"\ninterval = "1s"\n' "$i" "$sim_port" "$p"
    done
}

for n in 10 100; do
    rm -f "$work"/watch.db*
    dash=$(port)
    config "$n" "$dash" >"$work/c.toml"
    K=sk-profile-0000 valgrind --tool=callgrind --instr-atstart=no --demangle=no \
        --compress-strings=no --compress-pos=no --callgrind-out-file="$work/cg.$n" \
        "$bin" --config "$work/c.toml" run >"$work/d.$n.log" 2>&1 &
    daemon=$!
    until curl -sf -o /dev/null "http://127.0.0.1:$dash/healthz"; do sleep 1; done
    sleep 5
    callgrind_control -i on "$daemon" >/dev/null
    for _ in $(seq 15); do
        for path in / /api/v1/status /healthz /metrics; do
            curl -s -o /dev/null -H 'accept-encoding: gzip' "http://127.0.0.1:$dash$path"
        done
        sleep 4
    done
    callgrind_control -d "$daemon" >/dev/null
    kill "$daemon"; wait "$daemon" || true
done

python3 - "$bin" "$work"/cg.10.1 "$work"/cg.100.1 >src/hot-code.txt <<'PY'
import collections, subprocess, sys
cost = collections.Counter()
for path in sys.argv[2:]:
    current = None
    for line in open(path, errors="replace"):
        if line.startswith("fn="):
            current = line[3:].strip(); cost[current] += 0
        elif line.startswith("cfn="):
            cost[line[4:].strip()] += 0
        elif current and line[:1].isdigit():
            f = line.split()
            if len(f) >= 2 and f[1].isdigit():
                cost[current] += int(f[1])
defined = set()
for line in subprocess.run(["nm", "--defined-only", sys.argv[1]], capture_output=True, text=True).stdout.splitlines():
    f = line.split()
    if len(f) == 3 and f[1] in "tTwW":
        defined.add(f[2])
for name in sorted((n for n in cost if n in defined), key=lambda n: -cost[n]):
    print(name)
PY
echo "src/hot-code.txt: $(wc -l <src/hot-code.txt) functions"
