#!/usr/bin/env bash
# FileManager benchmark suite. NOT part of CI; it never asserts a time.
#
#   bench/run.sh            full run (under 15 minutes on 2 cores), writes BENCHMARKS.md
#   bench/run.sh --quick    a couple of minutes, to shake out the scripts; writes
#                           bench/results/BENCHMARKS-quick.md instead of BENCHMARKS.md
#
# It installs what it needs (wrk, nginx, rclone via apt-get), builds `filemanager` in release
# and the load driver (bench/driver), starts on loopback only: a throw-away Garage
# (scripts/garage.sh), two FileManager services on temp data dirs, nginx with a temp config
# and `rclone serve http` over a crypt remote on the same Garage, then runs every comparison
# A/B interleaved in this one run (round r runs each side once; the order is reversed every
# other round) and writes the report with medians, spread and paired ratios. Everything it
# started is stopped on exit (trap). Raw results: bench/results/{mode}-results.jsonl.
#
# Pinning: for the request-rate tests (cached GETs) every server under test (FileManager
# "hot" instance, nginx, rclone) is pinned to core 0 with one worker (tokio and Go size their
# pools from the affinity mask; nginx worker_processes 1) and wrk to core 1. The transfer
# tests that go through Garage are not pinned: three processes (client, service, Garage)
# share both cores, and the raw side gets the same two cores.
set -euo pipefail

MODE=full
case "${1:-}" in
  --quick) MODE=quick ;;
  "") ;;
  *) echo "usage: $0 [--quick]" >&2; exit 2 ;;
esac

BENCH=$(cd "$(dirname "$0")" && pwd)
ROOT=$(cd "$BENCH/.." && pwd)
if [ "$MODE" = quick ]; then
  ROUNDS=2; DUR=3; LAT_N=50; FRESH_N=20; BIG_N=1; UP_N=1
else
  ROUNDS=5; DUR=8; LAT_N=100; FRESH_N=40; BIG_N=3; UP_N=1
fi
CONNS=64
SERVER_CPU=0
CLIENT_CPU=1

log() { echo "[bench $(date +%H:%M:%S)] $*" >&2; }

# ---------------------------------------------------------------- tools
need_apt=()
command -v wrk >/dev/null || need_apt+=(wrk)
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || need_apt+=(nginx-light)
command -v rclone >/dev/null || need_apt+=(rclone)
command -v taskset >/dev/null || need_apt+=(util-linux)
command -v curl >/dev/null || need_apt+=(curl)
command -v python3 >/dev/null || need_apt+=(python3)
if [ ${#need_apt[@]} -gt 0 ]; then
  log "installing ${need_apt[*]}"
  apt-get update -qq >&2
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need_apt[@]}" >&2
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

# ---------------------------------------------------------------- build
log "building filemanager (release) and the load driver"
(cd "$ROOT" && cargo build --release -q -p filemanager-bin)
FM_BIN="$ROOT/target/release/filemanager"
cargo build --release -q --manifest-path "$BENCH/driver/Cargo.toml"
DRIVER="$BENCH/driver/target/release/fm-bench-driver"
(cd "$ROOT" && cargo bench -q --no-run -p filemanager --bench paired) >&2
if [ "$MODE" = full ]; then
  log "building the criterion benches"
  (cd "$ROOT" && cargo bench -q --no-run -p filemanager --bench overhead \
     && cargo bench -q --no-run -p filemanager-codec && cargo bench -q --no-run -p filemanager-cache) >&2
fi

# ---------------------------------------------------------------- state and cleanup
WORK=$(mktemp -d /tmp/fm-bench.XXXXXX)
mkdir -p "$BENCH/results"
RES="$BENCH/results/$MODE-results.jsonl"
META="$BENCH/results/$MODE-meta.json.lines"
: > "$RES"; : > "$META"
PIDS=()
cleanup() {
  local rc=$?
  set +e
  # A failed run leaves the services' last words on stderr before their logs go with $WORK.
  if [ "$rc" -ne 0 ]; then
    for f in "$WORK"/*.log "$WORK"/garage/server.log; do
      [ -f "$f" ] || continue
      echo "bench: last lines of $(basename "$f"):" >&2
      tail -n 20 "$f" >&2
    done
  fi
  for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null; done
  for pid in "${PIDS[@]}"; do
    for _ in $(seq 1 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
    kill -9 "$pid" 2>/dev/null
  done
  [ -d "$WORK/garage" ] && "$ROOT/scripts/garage.sh" stop "$WORK/garage" >/dev/null 2>&1
  rm -rf "$WORK"
}
trap cleanup EXIT
trap 'exit 130' INT TERM

meta() { # meta KEY VALUE (VALUE is a JSON literal)
  echo "{\"key\":\"$1\",\"value\":$2}" >> "$META"
}
loadavg() { # loadavg WHEN: records the 1/5/15-minute load averages (other work on the machine)
  echo "{\"key\":\"loadavg/$1\",\"value\":\"$(cut -d' ' -f1-3 /proc/loadavg)\"}" >> "$META"
}
jstr() { python3 -c 'import json,sys; print(json.dumps(sys.argv[1]))' "$1"; }
free_port() {
  python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'
}
wait_http() { # wait_http URL
  for _ in $(seq 1 200); do curl -sf -o /dev/null "$1" && return 0; sleep 0.1; done
  echo "bench: $1 did not come up" >&2; return 1
}

# ---------------------------------------------------------------- Garage
log "starting Garage"
# LMDB: see scripts/garage.sh (SQLite once stalled an upload part for 120 s here).
GARAGE_DB_ENGINE=lmdb "$ROOT/scripts/garage.sh" start "$WORK/garage" >&2
# shellcheck disable=SC1091
source "$WORK/garage/env"

# ---------------------------------------------------------------- sample files
mkdir -p "$WORK/www" "$WORK/files"
"$DRIVER" gen "$WORK/files/small4k.bin" 4096
"$DRIVER" gen "$WORK/files/m1.bin" 1048576
"$DRIVER" gen "$WORK/files/big64.bin" 67108864
cp "$WORK/files/small4k.bin" "$WORK/files/m1.bin" "$WORK/www/"
# nginx workers run as nobody: let them read the document root (mktemp made WORK 0700).
chmod 755 "$WORK" "$WORK/www"; chmod 644 "$WORK"/www/*

# ---------------------------------------------------------------- FileManager services
API_KEY=$(head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n')
export STORAGE_ENCRYPTION_KEY
STORAGE_ENCRYPTION_KEY=$(head -c 32 /dev/urandom | od -An -tx1 | tr -d ' \n')
start_fm() { # start_fm NAME PORT CPUSET(or -) [VAR=VALUE...]
  local name=$1 port=$2 cpus=$3; shift 3
  local pin=()
  [ "$cpus" != - ] && pin=(taskset -c "$cpus")
  env "$@" FM_LISTEN=127.0.0.1:$port FM_DATA_DIR="$WORK/$name" FM_API_KEYS="$API_KEY" FM_LOG=warn \
    "${pin[@]}" "$FM_BIN" serve > "$WORK/$name.log" 2>&1 &
  PIDS+=($!)
  echo $!
}
FM_HOT_PORT=$(free_port); FM_S3_PORT=$(free_port)
# Default cache settings (CACHE_MAX_ITEM_BYTES 1 MiB: the 1 MiB file must be cached as it is).
FM_HOT_PID=$(start_fm fm-hot "$FM_HOT_PORT" "$SERVER_CPU")
FM_S3_PID=$(start_fm fm-s3 "$FM_S3_PORT" -)
# `start_fm` ran in a subshell for $(...): record the pids in this shell too.
PIDS+=("$FM_HOT_PID" "$FM_S3_PID")
FM_HOT="http://127.0.0.1:$FM_HOT_PORT"
FM_S3="http://127.0.0.1:$FM_S3_PORT"
wait_http "$FM_HOT/healthz"; wait_http "$FM_S3/healthz"
AUTH="Authorization: Bearer $API_KEY"

fm_put() { # fm_put BASE LOC FILE [QUERY]
  curl -sf -X PUT -H "$AUTH" -H "Content-Type: application/octet-stream" \
    --data-binary @"$3" "$1/v1/files/$2${4:+?$4}" > /dev/null
}
fm_put "$FM_HOT" bench/app/hot/small4k.bin "$WORK/files/small4k.bin"
fm_put "$FM_HOT" bench/app/hot/m1.bin "$WORK/files/m1.bin"
fm_put "$FM_S3" bench/app/s3/small4k-plain.bin "$WORK/files/small4k.bin" "encrypt=false"
fm_put "$FM_S3" bench/app/s3/small4k-enc.bin "$WORK/files/small4k.bin"
fm_put "$FM_S3" bench/app/s3/big64-plain.bin "$WORK/files/big64.bin" "encrypt=false"
fm_put "$FM_S3" bench/app/s3/big64-enc.bin "$WORK/files/big64.bin"

# Presigned FileManager download URL of the cached 4 KiB file.
FM_PRESIGNED=$(curl -sf -X POST -H "$AUTH" -H "Content-Type: application/json" \
  -d '{"domain":"bench","level":"app","filename":"hot/small4k.bin","expires_in":86400}' \
  "$FM_HOT/v1/urls/download" | python3 -c 'import json,sys; print(json.load(sys.stdin)["url"])')

# Raw S3 presigned URLs of the very objects FileManager stored (the S3 key is the storage key).
RAW_SMALL_PLAIN=$("$DRIVER" presign GET bench/app/s3/small4k-plain.bin)
RAW_SMALL_ENC=$("$DRIVER" presign GET bench/app/s3/small4k-enc.bin)
RAW_BIG_PLAIN=$("$DRIVER" presign GET bench/app/s3/big64-plain.bin)
RAW_BIG_ENC=$("$DRIVER" presign GET bench/app/s3/big64-enc.bin)
RAW_PUT=$("$DRIVER" presign PUT bench/app/raw/up256.bin)

# Sanity: the raw objects are what FileManager stored (plain = same bytes).
curl -sf "$RAW_SMALL_PLAIN" | cmp -s - "$WORK/files/small4k.bin" \
  || { echo "bench: raw plain object differs from the file" >&2; exit 1; }
curl -sf -H "$AUTH" "$FM_S3/v1/files/bench/app/s3/big64-enc.bin?cache=false" | cmp -s - "$WORK/files/big64.bin" \
  || { echo "bench: FileManager download differs from the file" >&2; exit 1; }

# ---------------------------------------------------------------- nginx
# Two servers in one nginx process (one worker): a common configuration (`sendfile on`,
# `tcp_nopush on`), and the fastest one found here for these files: open_file_cache (no
# open/fstat/close per request) and, for the 4 KiB file, read+writev instead of sendfile. The
# targets are taken against the faster one; the common one is context.
NGINX_PORT=$(free_port)
NGINX_TUNED_PORT=$(free_port)
mkdir -p "$WORK/nginx/tmp"
cat > "$WORK/nginx/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
  access_log off;
  sendfile on;
  tcp_nopush on;
  tcp_nodelay on;
  keepalive_requests 1000000;
  default_type application/octet-stream;
  client_body_temp_path $WORK/nginx/tmp/body;
  proxy_temp_path $WORK/nginx/tmp/proxy;
  fastcgi_temp_path $WORK/nginx/tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx/tmp/uwsgi;
  scgi_temp_path $WORK/nginx/tmp/scgi;
  server {
    listen 127.0.0.1:$NGINX_PORT;
    root $WORK/www;
  }
  server {
    listen 127.0.0.1:$NGINX_TUNED_PORT;
    root $WORK/www;
    open_file_cache max=1000 inactive=600s;
    open_file_cache_valid 600s;
    location = /small4k.bin { sendfile off; tcp_nopush off; }
  }
}
CONF
taskset -c "$SERVER_CPU" "$NGINX" -p "$WORK/nginx" -c "$WORK/nginx/nginx.conf" 2>"$WORK/nginx/stderr" &
PIDS+=($!)
NGINX_URL="http://127.0.0.1:$NGINX_PORT"
NGINX_TUNED_URL="http://127.0.0.1:$NGINX_TUNED_PORT"
wait_http "$NGINX_URL/small4k.bin"
wait_http "$NGINX_TUNED_URL/small4k.bin"

# A bare reverse proxy in front of Garage (its own nginx, unpinned like everything that goes
# through Garage): what one more HTTP hop costs, the floor under any service that answers from S3.
# A new upstream connection per request: with `keepalive` upstreams nginx meets Garage's 40 ms
# stall on every reused connection (it cannot set TCP_QUICKACK), measured at 44 ms a GET here.
NGINX_PROXY_PORT=$(free_port)
GARAGE_HOSTPORT=${S3_URL#http://}
mkdir -p "$WORK/nginx-proxy/tmp"
cat > "$WORK/nginx-proxy/nginx.conf" <<CONF
worker_processes 1;
daemon off;
pid $WORK/nginx-proxy/nginx.pid;
error_log $WORK/nginx-proxy/error.log warn;
events { worker_connections 1024; }
http {
  access_log off;
  tcp_nodelay on;
  client_body_temp_path $WORK/nginx-proxy/tmp/body;
  proxy_temp_path $WORK/nginx-proxy/tmp/proxy;
  fastcgi_temp_path $WORK/nginx-proxy/tmp/fastcgi;
  uwsgi_temp_path $WORK/nginx-proxy/tmp/uwsgi;
  scgi_temp_path $WORK/nginx-proxy/tmp/scgi;
  server {
    listen 127.0.0.1:$NGINX_PROXY_PORT;
    location / {
      proxy_pass http://$GARAGE_HOSTPORT;
      # The presigned URL was signed for Garage's own host.
      proxy_set_header Host $GARAGE_HOSTPORT;
      proxy_buffering off;
    }
  }
}
CONF
"$NGINX" -p "$WORK/nginx-proxy" -c "$WORK/nginx-proxy/nginx.conf" 2>"$WORK/nginx-proxy/stderr" &
PIDS+=($!)
PROXY_SMALL_PLAIN="http://127.0.0.1:$NGINX_PROXY_PORT${RAW_SMALL_PLAIN#"$S3_URL"}"
PROXY_BIG_PLAIN="http://127.0.0.1:$NGINX_PROXY_PORT${RAW_BIG_PLAIN#"$S3_URL"}"
wait_http "$PROXY_SMALL_PLAIN"
curl -sf "$PROXY_SMALL_PLAIN" | cmp -s - "$WORK/files/small4k.bin" \
  || { echo "bench: the proxied object differs from the file" >&2; exit 1; }

# ---------------------------------------------------------------- the HTTP stack alone
# The driver's `serve-bare`: the service's hyper HTTP/1 server and tokio runtime answering
# every request with the 4 KiB file and the headers of FileManager's cached answer, with no
# handler work at all. Pinned like the servers of group 1; context for pair 1.
BARE_PORT=$(free_port)
taskset -c "$SERVER_CPU" "$DRIVER" serve-bare "127.0.0.1:$BARE_PORT" 4096 > "$WORK/bare.log" 2>&1 &
PIDS+=($!)
BARE_URL="http://127.0.0.1:$BARE_PORT/small4k.bin"
wait_http "$BARE_URL"

# ---------------------------------------------------------------- rclone (crypt over the same Garage)
export RCLONE_CONFIG="$WORK/rclone.conf"
: > "$RCLONE_CONFIG"
export RCLONE_CONFIG_GS3_TYPE=s3 RCLONE_CONFIG_GS3_PROVIDER=Other RCLONE_CONFIG_GS3_ENDPOINT="$S3_URL" \
  RCLONE_CONFIG_GS3_ACCESS_KEY_ID="$AWS_ACCESS_KEY_ID" RCLONE_CONFIG_GS3_SECRET_ACCESS_KEY="$AWS_SECRET_ACCESS_KEY" \
  RCLONE_CONFIG_GS3_REGION="$AWS_REGION" RCLONE_CONFIG_GS3_FORCE_PATH_STYLE=true
export RCLONE_CONFIG_GCRYPT_TYPE=crypt RCLONE_CONFIG_GCRYPT_REMOTE="gs3:$APP_BUCKET/rclone"
RCLONE_CONFIG_GCRYPT_PASSWORD=$(rclone obscure "$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')")
export RCLONE_CONFIG_GCRYPT_PASSWORD
# AWS_CA_BUNDLE (if the environment sets one) breaks rclone 1.60's plain-HTTP S3 client.
rcl() { env -u AWS_CA_BUNDLE rclone "$@"; }
rcl copyto -q "$WORK/files/small4k.bin" gcrypt:small4k.bin
rcl copyto -q "$WORK/files/big64.bin" gcrypt:big64.bin
RCLONE_PORT=$(free_port)
taskset -c "$SERVER_CPU" env -u AWS_CA_BUNDLE rclone serve http gcrypt: --addr "127.0.0.1:$RCLONE_PORT" \
  --vfs-cache-mode full --cache-dir "$WORK/rclone-cache" > "$WORK/rclone.log" 2>&1 &
PIDS+=($!)
RCLONE_PID=$!
RCLONE_URL="http://127.0.0.1:$RCLONE_PORT"
wait_http "$RCLONE_URL/"
# A second rclone without its VFS cache (context for the 64 MiB comparison), unpinned.
RCLONE2_PORT=$(free_port)
env -u AWS_CA_BUNDLE rclone serve http gcrypt: --addr "127.0.0.1:$RCLONE2_PORT" \
  --vfs-cache-mode off > "$WORK/rclone2.log" 2>&1 &
PIDS+=($!)
RCLONE2_URL="http://127.0.0.1:$RCLONE2_PORT"
wait_http "$RCLONE2_URL/"
# Warm its VFS cache with both files, and check it serves the right bytes.
curl -sf "$RCLONE_URL/small4k.bin" | cmp -s - "$WORK/files/small4k.bin" \
  || { echo "bench: rclone serves other bytes" >&2; exit 1; }
curl -sf "$RCLONE_URL/big64.bin" | cmp -s - "$WORK/files/big64.bin" \
  || { echo "bench: rclone serves other bytes" >&2; exit 1; }

# ---------------------------------------------------------------- helpers
xcache() { # xcache URL [HEADER] -> value of X-Cache
  curl -s -o /dev/null -D - ${2:+-H "$2"} "$1" | tr -d '\r' | awk -F': ' 'tolower($1)=="x-cache"{print $2}'
}
CACHE_MISSES=0
check_hit() { # check_hit URL [HEADER]
  local v; v=$(xcache "$@")
  if [ "$v" != hit ]; then CACHE_MISSES=$((CACHE_MISSES + 1)); log "WARNING: X-Cache is '$v' for $1"; fi
}
wrk_run() { # wrk_run LABEL URL [HEADER]
  local label=$1 url=$2; shift 2
  local hdr=()
  [ $# -gt 0 ] && hdr=(-H "$1")
  LABEL=$label OUT=$RES taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d"${DUR}s" --timeout 5s \
    -s "$BENCH/wrk-report.lua" "${hdr[@]}" "$url" > /dev/null
}
order() { # order ROUND ITEMS... -> the items, reversed on odd rounds
  local r=$1; shift
  if [ $((r % 2)) -eq 1 ]; then printf '%s\n' "$@" | tac; else printf '%s\n' "$@"; fi
}

# ---------------------------------------------------------------- group 1: cached 4 KiB, 64 connections
# Pair 1 (FileManager vs nginx), pair 5a (vs rclone), pair 7 (presigned vs bearer).
SMALL_BEARER="$FM_HOT/v1/files/bench/app/hot/small4k.bin"
check_hit "$SMALL_BEARER" "$AUTH"; check_hit "$FM_PRESIGNED"
side_small() {
  case $1 in
    fm_bearer)  check_hit "$SMALL_BEARER" "$AUTH"; wrk_run "small4k/fm_bearer/$2" "$SMALL_BEARER" "$AUTH"
                check_hit "$SMALL_BEARER" "$AUTH" ;;
    fm_presigned) wrk_run "small4k/fm_presigned/$2" "$FM_PRESIGNED"; check_hit "$FM_PRESIGNED" ;;
    nginx)      wrk_run "small4k/nginx/$2" "$NGINX_URL/small4k.bin" ;;
    nginx_tuned) wrk_run "small4k/nginx_tuned/$2" "$NGINX_TUNED_URL/small4k.bin" ;;
    rclone)     wrk_run "small4k/rclone/$2" "$RCLONE_URL/small4k.bin" ;;
    hyper_bare) wrk_run "small4k/hyper_bare/$2" "$BARE_URL" "$AUTH" ;;
  esac
}
loadavg "group1"
log "group 1: cached 4 KiB at $CONNS connections, $ROUNDS rounds x ${DUR}s per side"
# One short untimed warm-up of each server.
for u in "$NGINX_URL/small4k.bin" "$NGINX_TUNED_URL/small4k.bin" "$RCLONE_URL/small4k.bin" "$FM_PRESIGNED" "$BARE_URL"; do
  taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d1s "$u" > /dev/null
done
taskset -c "$CLIENT_CPU" wrk -t1 -c"$CONNS" -d1s -H "$AUTH" "$SMALL_BEARER" > /dev/null
for r in $(seq 1 "$ROUNDS"); do
  for s in $(order "$r" fm_bearer nginx_tuned fm_presigned hyper_bare nginx rclone); do side_small "$s" "$r"; done
done

# ---------------------------------------------------------------- group 2: cached 1 MiB
loadavg "group2"
log "group 2: cached 1 MiB at $CONNS connections"
M1="$FM_HOT/v1/files/bench/app/hot/m1.bin"
curl -sf -o /dev/null -H "$AUTH" "$M1"
check_hit "$M1" "$AUTH"
for r in $(seq 1 "$ROUNDS"); do
  for s in $(order "$r" fm nginx_tuned nginx); do
    case $s in
      fm) wrk_run "m1/fm/$r" "$M1" "$AUTH"; check_hit "$M1" "$AUTH" ;;
      nginx) wrk_run "m1/nginx/$r" "$NGINX_URL/m1.bin" ;;
      nginx_tuned) wrk_run "m1/nginx_tuned/$r" "$NGINX_TUNED_URL/m1.bin" ;;
    esac
  done
done

# ---------------------------------------------------------------- group 3: uncached 4 KiB latency
loadavg "group3"
log "group 3: uncached 4 KiB GET latency, sequential, $LAT_N requests per side per round"
drv_get() { # drv_get LABEL URL COUNT WARMUP [--fresh|--quickack] [HEADER]
  local label=$1 url=$2 n=$3 w=$4; shift 4
  local extra=()
  case "${1:-}" in --fresh|--quickack) extra+=("$1"); shift ;; esac
  [ $# -gt 0 ] && extra+=(-H "$1")
  "$DRIVER" get "$url" --count "$n" --warmup "$w" "${extra[@]}" --label "$label" --out "$RES"
}
FM_SMALL_PLAIN="$FM_S3/v1/files/bench/app/s3/small4k-plain.bin?cache=false"
FM_SMALL_ENC="$FM_S3/v1/files/bench/app/s3/small4k-enc.bin?cache=false"
[ "$(xcache "$FM_SMALL_ENC" "$AUTH")" = miss ] || { echo "bench: cache=false did not miss" >&2; exit 1; }
# The raw peers of the targets (_qa) keep one connection alive and set TCP_QUICKACK after each
# request, as FileManager's client for plain-http endpoints does: Garage's answers on a reused
# connection otherwise stall ~40 ms (raw_enc, reqwest, shows it; raw_enc_fresh avoids it with a
# new connection per request). See BENCHMARKS.md.
for r in $(seq 1 "$ROUNDS"); do
  for s in $(order "$r" fm_plain raw_plain_qa fm_enc raw_enc_qa raw_enc raw_enc_fresh nginx_proxy); do
    case $s in
      nginx_proxy) drv_get "s3small/nginx_proxy/$r" "$PROXY_SMALL_PLAIN" "$LAT_N" 20 ;;
      fm_plain) drv_get "s3small/fm_plain/$r" "$FM_SMALL_PLAIN" "$LAT_N" 20 "$AUTH" ;;
      raw_plain_qa) drv_get "s3small/raw_plain_qa/$r" "$RAW_SMALL_PLAIN" "$LAT_N" 20 --quickack ;;
      fm_enc) drv_get "s3small/fm_enc/$r" "$FM_SMALL_ENC" "$LAT_N" 20 "$AUTH" ;;
      raw_enc_qa) drv_get "s3small/raw_enc_qa/$r" "$RAW_SMALL_ENC" "$LAT_N" 20 --quickack ;;
      raw_enc) drv_get "s3small/raw_enc/$r" "$RAW_SMALL_ENC" "$FRESH_N" 5 ;;
      raw_enc_fresh) drv_get "s3small/raw_enc_fresh/$r" "$RAW_SMALL_ENC" "$FRESH_N" 5 --fresh ;;
    esac
  done
done

# ---------------------------------------------------------------- group 4: 64 MiB downloads
loadavg "group4"
log "group 4: 64 MiB downloads, $BIG_N per side per round"
FM_BIG_PLAIN="$FM_S3/v1/files/bench/app/s3/big64-plain.bin?cache=false"
FM_BIG_ENC="$FM_S3/v1/files/bench/app/s3/big64-enc.bin?cache=false"
# Through the cache: the large-file tier's local copy (the stored, encrypted form), made by the
# first read, as rclone's VFS cache is made by its first read.
FM_BIG_ENC_CACHED="$FM_S3/v1/files/bench/app/s3/big64-enc.bin"
FM_BIG_PLAIN_CACHED="$FM_S3/v1/files/bench/app/s3/big64-plain.bin"
for u in "$FM_BIG_ENC_CACHED" "$FM_BIG_PLAIN_CACHED"; do
  curl -sf -H "$AUTH" "$u" > /dev/null
  # The copy is committed (synced and renamed) just after the first download ends.
  for _ in $(seq 50); do [ "$(xcache "$u" "$AUTH")" = hit ] && break; sleep 0.2; done
  [ "$(xcache "$u" "$AUTH")" = hit ] \
    || { echo "bench: a 64 MiB file is not served from the large-file tier" >&2; exit 1; }
done
for r in $(seq 1 "$ROUNDS"); do
  for s in $(order "$r" fm_plain raw_plain fm_enc raw_enc rclone rclone_nocache fm_enc_cached fm_plain_cached nginx_proxy); do
    case $s in
      fm_plain) drv_get "big64/fm_plain/$r" "$FM_BIG_PLAIN" "$BIG_N" 0 "$AUTH" ;;
      raw_plain) drv_get "big64/raw_plain/$r" "$RAW_BIG_PLAIN" "$BIG_N" 0 ;;
      nginx_proxy) drv_get "big64/nginx_proxy/$r" "$PROXY_BIG_PLAIN" "$BIG_N" 0 ;;
      fm_enc) drv_get "big64/fm_enc/$r" "$FM_BIG_ENC" "$BIG_N" 0 "$AUTH" ;;
      fm_enc_cached) drv_get "big64/fm_enc_cached/$r" "$FM_BIG_ENC_CACHED" "$BIG_N" 0 "$AUTH" ;;
      fm_plain_cached) drv_get "big64/fm_plain_cached/$r" "$FM_BIG_PLAIN_CACHED" "$BIG_N" 0 "$AUTH" ;;
      raw_enc) drv_get "big64/raw_enc/$r" "$RAW_BIG_ENC" "$BIG_N" 0 ;;
      rclone_nocache) drv_get "big64/rclone_nocache/$r" "$RCLONE2_URL/big64.bin" "$BIG_N" 0 ;;
      # The rclone server is pinned to core 0 (group 1); give it both cores here.
      rclone) taskset -a -p -c 0,1 "$RCLONE_PID" > /dev/null
              drv_get "big64/rclone/$r" "$RCLONE_URL/big64.bin" "$BIG_N" 0
              taskset -a -p -c "$SERVER_CPU" "$RCLONE_PID" > /dev/null ;;
    esac
  done
done

# ---------------------------------------------------------------- group 5: 256 MiB uploads
loadavg "group5"
log "group 5: 256 MiB uploads, $UP_N per side per round"
UP_SIZE=$((256 * 1024 * 1024))
vm() { awk -v k="$2:" '$1==k{print $2}' "/proc/$1/status"; }
meta fm_s3_rss_before_uploads_kib "$(vm "$FM_S3_PID" VmRSS)"
fm_upload() { # fm_upload LABEL QUERY
  echo 5 > "/proc/$FM_S3_PID/clear_refs"   # reset VmHWM to the current RSS
  "$DRIVER" put "$FM_S3/v1/files/bench/app/s3/up256.bin?$2" --size "$UP_SIZE" --count "$UP_N" \
    -H "$AUTH" -H "Content-Type: application/octet-stream" --label "$1" --out "$RES"
  meta "vmhwm_kib/$1" "$(vm "$FM_S3_PID" VmHWM)"
}
for r in $(seq 1 "$ROUNDS"); do
  for s in $(order "$r" fm_enc raw fm_enc_zstd os_signed os_unsigned); do
    case $s in
      fm_enc) fm_upload "up256/fm_enc/$r" "encrypt=true&cache=false" ;;
      fm_enc_zstd) fm_upload "up256/fm_enc_zstd/$r" "encrypt=true&compress=true&cache=false" ;;
      # object_store multipart uploads shaped like FileManager's (8 MiB parts, 2 in flight):
      # signed payload (what FileManager's S3 client does) and UNSIGNED-PAYLOAD.
      os_signed) "$DRIVER" s3put bench/app/raw/os256.bin --size "$UP_SIZE" --count "$UP_N" --label "up256/os_signed/$r" --out "$RES" ;;
      os_unsigned) "$DRIVER" s3put bench/app/raw/os256.bin --unsigned --size "$UP_SIZE" --count "$UP_N" --label "up256/os_unsigned/$r" --out "$RES" ;;
      raw) "$DRIVER" put "$RAW_PUT" --size "$UP_SIZE" --count "$UP_N" --label "up256/raw/$r" --out "$RES" ;;
    esac
  done
done

loadavg end
meta cache_misses_seen "$CACHE_MISSES"

# ---------------------------------------------------------------- library overhead, interleaved (pair 6)
log "stopping the HTTP stack before the library benches"
for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
sleep 1
loadavg library
PAIRED_ROUNDS=15; [ "$MODE" = quick ] && PAIRED_ROUNDS=5
log "cargo bench -p filemanager --bench paired ($PAIRED_ROUNDS rounds)"
(cd "$ROOT" && FM_PAIRED_OUT="$RES" FM_PAIRED_ROUNDS=$PAIRED_ROUNDS cargo bench -q -p filemanager --bench paired) >&2
meta paired_rounds "$PAIRED_ROUNDS"

# ---------------------------------------------------------------- criterion benches (full only)
if [ "$MODE" = full ]; then
  loadavg criterion
  export CRITERION_HOME="$WORK/criterion"
  log "cargo bench -p filemanager --bench overhead"
  (cd "$ROOT" && cargo bench -q -p filemanager --bench overhead) > "$WORK/bench-overhead.txt" 2>&1
  log "cargo bench -p filemanager-codec"
  (cd "$ROOT" && cargo bench -q -p filemanager-codec) > "$WORK/bench-codec.txt" 2>&1
  log "cargo bench -p filemanager-cache"
  (cd "$ROOT" && cargo bench -q -p filemanager-cache) > "$WORK/bench-cache.txt" 2>&1
  python3 "$BENCH/criterion_collect.py" "$CRITERION_HOME" >> "$RES"
  grep -h "ratio on the sample" "$WORK"/bench-*.txt | sed 's/^/# /' > "$BENCH/results/full-notes.txt" || true
fi

# ---------------------------------------------------------------- report
meta mode "$(jstr "$MODE")"
meta rounds "$ROUNDS"
meta wrk_duration_s "$DUR"
meta connections "$CONNS"
meta lat_n "$LAT_N"; meta fresh_n "$FRESH_N"; meta big_n "$BIG_N"; meta up_n "$UP_N"
meta nproc "$(nproc)"
meta cpu "$(jstr "$(awk -F': ' '/model name/{print $2; exit}' /proc/cpuinfo)")"
meta date "$(jstr "$(date -u '+%Y-%m-%d %H:%M UTC')")"
meta kernel "$(jstr "$(uname -r)")"
meta versions "$(jstr "$(wrk -v 2>&1 | head -1 | cut -c1-40); $("$NGINX" -v 2>&1); $(rclone version | head -1); $(garage --version 2>/dev/null | head -1 || echo garage) (metadata on LMDB); $(cd "$ROOT" && git rev-parse --short HEAD 2>/dev/null || echo '?')")"
if [ "$MODE" = full ]; then OUTMD="$ROOT/BENCHMARKS.md"; else OUTMD="$BENCH/results/BENCHMARKS-quick.md"; fi
python3 "$BENCH/report.py" "$RES" "$META" "$OUTMD"
log "wrote $OUTMD"
