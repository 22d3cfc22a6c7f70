#!/usr/bin/env bash
# Fuzzes the HTTP service against its own OpenAPI document with Schemathesis: every operation
# of /openapi.json gets generated requests (valid and invalid), and each answer must not be a
# server error and must match the documented response schema.
#
#   scripts/schemathesis.sh              a bounded run (default 180 s of fuzzing)
#   FM_FUZZ_SECONDS=60 scripts/schemathesis.sh
#
# It installs Schemathesis with pip if missing, builds the binary, starts `filemanager serve`
# on a temporary data directory (local disk) with a known API key, and stops it at the end.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$HOME/.local/bin:$PATH"
seconds=${FM_FUZZ_SECONDS:-180}

if ! command -v schemathesis >/dev/null 2>&1; then
  echo "schemathesis.sh: installing schemathesis with pip..." >&2
  python3 -m pip install --quiet "schemathesis>=4,<5"
fi

cargo build --quiet -p filemanager-bin
bin=target/debug/filemanager

state=$(mktemp -d /tmp/fm-schemathesis.XXXXXX)
key="schemathesis-$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')"
port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')
base="http://127.0.0.1:$port"

# Local disk only, whatever the calling shell exports (S3, keys, limits).
env -u APP_BUCKET -u S3_URL -u STORAGE_ENCRYPTION_KEY -u STORAGE_ENCRYPTION_KEYS_OLD \
    -u FM_DOMAINS -u FM_MAX_UPLOAD_BYTES -u FM_PUBLIC_URL -u FM_JWT_SECRET -u FM_CORS_ORIGINS \
    FM_DATA_DIR="$state/data" FM_LISTEN="127.0.0.1:$port" FM_API_KEYS="$key" FM_LOG=warn \
    "$bin" serve >"$state/server.log" 2>&1 &
pid=$!
stop() {
  kill -TERM "$pid" 2>/dev/null || true
  wait "$pid" 2>/dev/null || true
  rm -rf "$state"
}
trap stop EXIT

for _ in $(seq 1 100); do
  if python3 -c "import urllib.request,sys; urllib.request.urlopen('$base/healthz', timeout=1)" 2>/dev/null; then
    break
  fi
  if ! kill -0 "$pid" 2>/dev/null; then
    echo "schemathesis.sh: the server did not start:" >&2
    cat "$state/server.log" >&2
    exit 1
  fi
  sleep 0.2
done

# `timeout` is a hard stop in case a run overshoots its time budget.
status=0
timeout $((seconds + 120)) schemathesis run "$base/openapi.json" \
  --checks not_a_server_error,response_schema_conformance \
  --header "Authorization: Bearer $key" \
  --max-time "$seconds" \
  --workers 1 \
  --request-timeout 30 \
  --suppress-health-check all \
  --no-color \
  || status=$?

if [ "$status" -ne 0 ]; then
  echo "schemathesis.sh: failed (exit $status); server log:" >&2
  tail -50 "$state/server.log" >&2
fi
exit "$status"
