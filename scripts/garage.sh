#!/usr/bin/env bash
# Runs a throw-away single-node Garage S3 server on loopback for the tests.
#
#   scripts/garage.sh start DIR   install Garage if missing, start it with its state in DIR,
#                                 create a bucket and a key, write DIR/env (S3 variables)
#   scripts/garage.sh stop DIR    stop it and remove DIR
#
# GARAGE_DB_ENGINE=sqlite|lmdb picks Garage's metadata engine (default sqlite; see start()).
#
# Garage is built from crates.io the first time (about 16 minutes on a 2-core machine) and
# reused afterwards. Ports are picked free at start, so several runs can coexist.
set -euo pipefail

# shellcheck source=garage-common.sh
source "$(dirname "$0")/garage-common.sh"
cmd=${1:-}
dir=${2:-}
[ -n "$cmd" ] && [ -n "$dir" ] || { echo "usage: $0 start|stop DIR" >&2; exit 2; }


start() {
  ensure_garage
  rm -rf "$dir"; mkdir -p "$dir/meta" "$dir/data"
  local rpc s3 admin secret
  rpc=$(free_port); s3=$(free_port); admin=$(free_port)
  secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  # SQLite by default: Garage on LMDB answers 503 for object keys past LMDB's key size (the
  # conformance suite's 255-byte directory and 250-byte file name). The benchmark sets
  # GARAGE_DB_ENGINE=lmdb: on SQLite, one part PUT of its 256 MiB uploads got no answer within
  # the client's 120 s timeout, Garage logging "database is locked" as the part began.
  local engine=${GARAGE_DB_ENGINE:-sqlite}
  case $engine in sqlite|lmdb) ;; *) echo "garage.sh: GARAGE_DB_ENGINE must be sqlite or lmdb" >&2; exit 2 ;; esac
  cat > "$dir/garage.toml" <<TOML
metadata_dir = "$dir/meta"
data_dir = "$dir/data"
db_engine = "$engine"
metadata_fsync = false
data_fsync = false
replication_factor = 1
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
  chmod 600 "$dir/garage.toml"
  local g="garage -c $dir/garage.toml"
  RUST_LOG=warn nohup garage -c "$dir/garage.toml" server > "$dir/server.log" 2>&1 &
  echo $! > "$dir/pid"
  for _ in $(seq 1 100); do
    if $g status >/dev/null 2>&1; then break; fi
    sleep 0.1
  done
  $g status >/dev/null || { echo "garage.sh: Garage did not start; see $dir/server.log" >&2; exit 1; }
  local node
  node=$($g node id -q | cut -d@ -f1)
  $g layout assign -z dc1 -c 1G "$node" >/dev/null
  $g layout apply --version 1 >/dev/null
  # Key ids are GK + 24 hex digits, secrets 64 hex digits.
  local key_id key_secret
  key_id="GK$(head -c 12 /dev/urandom | od -An -tx1 | tr -d ' \n')"
  key_secret=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
  $g key import --yes -n fm-test "$key_id" "$key_secret" >/dev/null
  for bucket in fm-test fm-cache; do
    $g bucket create "$bucket" >/dev/null
    $g bucket allow --read --write --owner "$bucket" --key fm-test >/dev/null
  done
  cat > "$dir/env" <<ENV
export APP_BUCKET=fm-test
export S3_CACHE_BUCKET=fm-cache
export S3_URL=http://127.0.0.1:$s3
export AWS_ACCESS_KEY_ID=$key_id
export AWS_SECRET_ACCESS_KEY=$key_secret
export AWS_REGION=us-east-1
ENV
  chmod 600 "$dir/env"
  echo "garage.sh: Garage is up on 127.0.0.1:$s3 (state in $dir)" >&2
}

stop() {
  if [ -f "$dir/pid" ]; then
    kill "$(cat "$dir/pid")" 2>/dev/null || true
    for _ in $(seq 1 50); do kill -0 "$(cat "$dir/pid")" 2>/dev/null || break; sleep 0.1; done
  fi
  rm -rf "$dir"
}

case "$cmd" in
  start) start ;;
  stop) stop ;;
  *) echo "usage: $0 start|stop DIR" >&2; exit 2 ;;
esac
