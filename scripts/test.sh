#!/usr/bin/env bash
# The whole test suite, from a fresh clone: installs and starts what the tests need (Garage
# S3 and Redis on loopback, schemathesis), checks formatting and lints, runs every test, and
# stops what it started.
#
#   scripts/test.sh            everything
#   scripts/test.sh -- ARGS    extra arguments for `cargo test` (e.g. a test name filter)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
extra=()
if [ "${1:-}" = "--" ]; then shift; extra=("$@"); fi

say() { printf '\n== %s\n' "$*"; }

say "tools"
# Redis for the cache's cross-instance tests, from Debian's packages when missing.
if ! command -v redis-server >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ]; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  else
    sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq redis-server >/dev/null
  fi
fi
# The Redis service the package may have started is not used: tests start their own.
redis-server --version

say "formatting"
cargo fmt --all -- --check

say "lints"
cargo clippy --workspace --all-targets --locked -- -D warnings

say "optional backends compile (GCS, Azure)"
cargo check -p filemanager --features gcp,azure --locked

say "starting Garage (S3)"
state=$(mktemp -d /tmp/fm-test.XXXXXX)
cleanup() { scripts/garage.sh stop "$state/garage" || true; rm -rf "$state"; }
trap cleanup EXIT
scripts/garage.sh start "$state/garage"
# shellcheck disable=SC1091
source "$state/garage/env"

say "tests"
cargo test --workspace --locked "${extra[@]}" 2>&1 | tee "$state/cargo-test.log"

say "HTTP API fuzzing against /openapi.json (schemathesis)"
FM_FUZZ_SECONDS=${FM_FUZZ_SECONDS:-60} scripts/schemathesis.sh

# One closing line for whoever reads the end of this log: the totals of every cargo test
# binary above.
awk '/^test result:/ { p += $4; f += $6 } END { printf "summary: %d passed, %d failed\n", p, f }' \
  "$state/cargo-test.log"
