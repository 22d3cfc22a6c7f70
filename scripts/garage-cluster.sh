#!/usr/bin/env bash
# A throw-away 3-node Garage cluster on loopback (replication factor 3, consistent mode: writes
# and reads need 2 of 3 nodes), for the scale-out tests and soak runs. Modelled on garage.sh.
#
#   scripts/garage-cluster.sh start DIR     start nodes 1..3 (state in DIR/node{1,2,3}), connect
#                                           them, assign and apply the layout, import a key,
#                                           create the buckets, write DIR/env
#   scripts/garage-cluster.sh stop DIR      stop every node and remove DIR
#   scripts/garage-cluster.sh kill DIR N    kill -9 node N (simulated crash)
#   scripts/garage-cluster.sh revive DIR N  start node N again on its old state and ports
#   scripts/garage-cluster.sh health DIR    print the cluster health (JSON) as seen by a live
#                                           node; exit 0 only if it is "healthy"
#   scripts/garage-cluster.sh wait-healthy DIR [SECS]
#                                           poll health until healthy (default 60 s)
#
# DIR/env exports the seed's S3 variables pointing at node 1, plus FM_GARAGE_S3_URLS (the
# three S3 endpoints, comma separated) and FM_GARAGE_NODES=3. Ports are picked free at start.
set -euo pipefail

# shellcheck source=garage-common.sh
source "$(dirname "$0")/garage-common.sh"
NODES=3
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop|kill|revive|health|wait-healthy DIR [N]" >&2; exit 2; }


node_dir() { echo "$dir/node$1"; }
g() { local n=$1; shift; garage -c "$(node_dir "$n")/garage.toml" "$@"; }

# Starts the server of node N from its existing config; records its pid.
spawn() {
  local n=$1 d
  d=$(node_dir "$n")
  RUST_LOG=warn nohup garage -c "$d/garage.toml" server >> "$d/server.log" 2>&1 &
  echo $! > "$d/pid"
  for _ in $(seq 1 100); do
    if g "$n" status >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "garage-cluster.sh: node $n did not start; see $d/server.log" >&2
  return 1
}

# A node whose process is alive, for CLI commands (they talk RPC to that node).
live_node() {
  local n
  for n in $(seq 1 $NODES); do
    local p
    p=$(cat "$(node_dir "$n")/pid" 2>/dev/null || true)
    if [ -n "$p" ] && kill -0 "$p" 2>/dev/null; then echo "$n"; return 0; fi
  done
  return 1
}

start() {
  ensure_garage
  rm -rf "$dir"; mkdir -p "$dir"
  local secret s3_urls=""
  secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  for n in $(seq 1 $NODES); do
    local d rpc s3 admin
    d=$(node_dir "$n")
    mkdir -p "$d/meta" "$d/data"
    rpc=$(free_port); s3=$(free_port); admin=$(free_port)
    cat > "$d/garage.toml" <<TOML
metadata_dir = "$d/meta"
data_dir = "$d/data"
db_engine = "sqlite"
metadata_fsync = false
data_fsync = false
replication_factor = 3
consistency_mode = "consistent"
rpc_bind_addr = "127.0.0.1:$rpc"
rpc_public_addr = "127.0.0.1:$rpc"
rpc_secret = "$secret"

[s3_api]
s3_region = "us-east-1"
api_bind_addr = "127.0.0.1:$s3"
root_domain = ".s3.garage.localhost"

[admin]
api_bind_addr = "127.0.0.1:$admin"
TOML
    chmod 600 "$d/garage.toml"
    echo "127.0.0.1:$rpc" > "$d/rpc_addr"
    echo "http://127.0.0.1:$s3" > "$d/s3_url"
    s3_urls="${s3_urls:+$s3_urls,}http://127.0.0.1:$s3"
    spawn "$n"
  done
  # Full mesh from node 1; the others learn the peer list through it.
  local ids=()
  for n in $(seq 1 $NODES); do
    ids+=("$(g "$n" node id -q | cut -d@ -f1)")
  done
  for n in $(seq 2 $NODES); do
    g 1 node connect "${ids[$((n - 1))]}@$(cat "$(node_dir "$n")/rpc_addr")" >/dev/null
  done
  # One zone per node: replication factor 3 puts a copy on each.
  for n in $(seq 1 $NODES); do
    g 1 layout assign -z "dc$n" -c 1G "${ids[$((n - 1))]}" >/dev/null
  done
  g 1 layout apply --version 1 >/dev/null
  local key_id key_secret
  key_id="GK$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  key_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  g 1 key import --yes -n fm-test "$key_id" "$key_secret" >/dev/null
  for bucket in fm-test fm-cache; do
    g 1 bucket create "$bucket" >/dev/null
    g 1 bucket allow --read --write --owner "$bucket" --key fm-test >/dev/null
  done
  wait_healthy 60
  cat > "$dir/env" <<ENV
export APP_BUCKET=fm-test
export S3_CACHE_BUCKET=fm-cache
export S3_URL=$(cat "$(node_dir 1)/s3_url")
export AWS_ACCESS_KEY_ID=$key_id
export AWS_SECRET_ACCESS_KEY=$key_secret
export AWS_REGION=us-east-1
export FM_GARAGE_S3_URLS=$s3_urls
export FM_GARAGE_NODES=$NODES
ENV
  chmod 600 "$dir/env"
  echo "garage-cluster.sh: 3-node Garage is up (S3 on $s3_urls; state in $dir)" >&2
}

stop() {
  for n in $(seq 1 $NODES); do
    local f
    f="$(node_dir "$n")/pid"
    [ -f "$f" ] || continue
    kill "$(cat "$f")" 2>/dev/null || true
  done
  for n in $(seq 1 $NODES); do
    local f
    f="$(node_dir "$n")/pid"
    [ -f "$f" ] || continue
    for _ in $(seq 1 50); do kill -0 "$(cat "$f")" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$(cat "$f")" 2>/dev/null || true
  done
  rm -rf "$dir"
}

node_arg() {
  local n=${1:-}
  [[ "$n" =~ ^[1-9][0-9]*$ ]] && [ "$n" -le $NODES ] || { echo "garage-cluster.sh: node must be 1..$NODES" >&2; exit 2; }
  echo "$n"
}

kill_node() {
  local n pid
  n=$(node_arg "${1:-}")
  pid=$(cat "$(node_dir "$n")/pid")
  kill -9 "$pid" 2>/dev/null || true
  for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
  echo "garage-cluster.sh: node $n killed (pid $pid)" >&2
}

revive() {
  local n
  n=$(node_arg "${1:-}")
  spawn "$n"
  echo "garage-cluster.sh: node $n is running again" >&2
}

health() {
  local n
  n=$(live_node) || { echo '{"status":"unavailable"}'; return 1; }
  local out
  out=$(g "$n" json-api GetClusterHealth 2>/dev/null) || { echo '{"status":"unavailable"}'; return 1; }
  echo "$out"
  echo "$out" | grep -q '"status": *"healthy"'
}

wait_healthy() {
  local secs=${1:-60} i
  for i in $(seq 1 $((secs * 10))); do
    if health >/dev/null 2>&1; then return 0; fi
    sleep 0.1
  done
  echo "garage-cluster.sh: the cluster is not healthy after ${secs}s:" >&2
  health >&2 || true
  return 1
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  kill) kill_node "${3:-}" ;;
  revive) revive "${3:-}" ;;
  health) health ;;
  wait-healthy) wait_healthy "${3:-60}" ;;
  *) echo "usage: $0 start|stop|kill|revive|health|wait-healthy DIR [N]" >&2; exit 2 ;;
esac
