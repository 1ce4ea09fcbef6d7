#!/usr/bin/env bash
# tcp mode throughput, side by side in one run: direct (routed through the lb namespace, no program),
# sticky tcp mode in the kernel, sticky tcp mode in user space (--no-ebpf). Topology and placement as
# shared/perf-baseline.md rows 3b0-3b2: three private namespaces, RFC 2544 addresses, no default route;
# wrk and the nginx backend pinned to cpu0, sticky to cpu1.
#   usage: sudo tests/bench/l4-throughput.sh [RUNS] [SECONDS]     (needs a release build: cargo xtask build)
set -euo pipefail
RUNS=${1:-3}; SECS=${2:-5}
cd "$(dirname "$0")/../.."
BIN=$PWD/target/release/sticky
[ -x "$BIN" ] || { echo "build first: cargo xtask build" >&2; exit 1; }
WORK=$(mktemp -d); P=l4b$$
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  sleep 0.3
  for n in cli lb srv; do ip netns pids $P$n 2>/dev/null | xargs -r kill -9 2>/dev/null || true; ip netns del $P$n 2>/dev/null || true; done
  rm -rf "$WORK"
}
trap cleanup EXIT
for n in cli lb srv; do ip netns add $P$n; ip -n $P$n link set lo up; done
ip -n ${P}cli link add c0 type veth peer name l1 netns ${P}lb
ip -n ${P}lb link add l2 type veth peer name s0 netns ${P}srv
ip -n ${P}cli addr add 198.18.1.1/24 dev c0; ip -n ${P}cli link set c0 up
ip -n ${P}lb addr add 198.18.1.2/24 dev l1; ip -n ${P}lb link set l1 up
ip -n ${P}lb addr add 198.18.2.1/24 dev l2; ip -n ${P}lb link set l2 up
ip -n ${P}srv addr add 198.18.2.2/24 dev s0; ip -n ${P}srv link set s0 up
ip -n ${P}cli route add 198.18.2.0/24 via 198.18.1.2
ip -n ${P}cli route add 198.19.0.0/24 via 198.18.1.2
ip -n ${P}srv route add 198.18.1.0/24 via 198.18.2.1
ip netns exec ${P}lb sysctl -qw net.ipv4.ip_forward=1
mkdir -p "$WORK/logs" "$WORK/tmp"
cat > "$WORK/nginx.conf" <<NGINX
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/logs/err warn;
events { worker_connections 4096; }
http {
  access_log off; keepalive_requests 1000000; keepalive_timeout 60s; default_type text/plain;
  client_body_temp_path $WORK/tmp/b; proxy_temp_path $WORK/tmp/p; fastcgi_temp_path $WORK/tmp/f;
  uwsgi_temp_path $WORK/tmp/u; scgi_temp_path $WORK/tmp/s;
  server { listen 198.18.2.2:8081; location / { return 200 "b1\n"; } }
}
NGINX
ip netns exec ${P}srv taskset -c 0 nginx -p "$WORK/" -e "$WORK/logs/startup.err" -c "$WORK/nginx.conf" -g 'daemon off;' &
PIDS+=($!)
sleep 0.5

# median req/s of RUNS runs after a 2 s warm-up; the body is checked once (the network rule: only our namespaces answer "b1")
measure() { # name url
  local name=$1 url=$2 body
  body=$(ip netns exec ${P}cli curl -s -m 2 "$url")
  [ "$body" = "b1" ] || { echo "$name: unexpected body '$body'" >&2; exit 1; }
  ip netns exec ${P}cli taskset -c 0 wrk -t1 -c64 -d2s "$url" >/dev/null
  local all=()
  for _ in $(seq "$RUNS"); do
    all+=("$(ip netns exec ${P}cli taskset -c 0 wrk -t1 -c64 -d${SECS}s "$url" | awk '/Requests\/sec/ {print $2}')")
  done
  local sorted; sorted=$(printf '%s\n' "${all[@]}" | sort -n)
  printf '%-28s median %9.0f req/s   runs: %s\n' "$name" "$(echo "$sorted" | sed -n "$(( (RUNS + 1) / 2 ))p")" "$(echo "${all[@]}")"
}

wait_vip() { for _ in $(seq 50); do ip netns exec ${P}cli curl -s -m 1 http://198.19.0.100/ >/dev/null && return; sleep 0.1; done; echo "VIP never answered" >&2; exit 1; }

echo "wrk -t1 -c64 -d${SECS}s, $RUNS runs each (median), $(nproc) CPUs, kernel $(uname -r)"
measure "direct (routed, no program)" http://198.18.2.2:8081/

ip netns exec ${P}lb taskset -c 1 "$BIN" run --mode tcp --listen 198.19.0.100:80 --backend 198.18.2.2:8081 \
  --iface l1 --iface l2 2>"$WORK/logs/kernel.log" &
PIDS+=($!); KPID=$!
wait_vip
grep -q "tcp mode in the kernel" "$WORK/logs/kernel.log" || { cat "$WORK/logs/kernel.log"; exit 1; }
measure "sticky tcp, kernel (tc)" http://198.19.0.100/
kill $KPID; wait $KPID 2>/dev/null || true

ip -n ${P}lb addr add 198.19.0.100/32 dev lo
ip netns exec ${P}lb taskset -c 1 "$BIN" run --mode tcp --no-ebpf --listen 198.19.0.100:80 --backend 198.18.2.2:8081 \
  2>"$WORK/logs/fallback.log" &
PIDS+=($!)
wait_vip
measure "sticky tcp, user space" http://198.19.0.100/
