#!/usr/bin/env bash
# Long forms of the load and scale-out tests (crates/filemanager-bin/tests/scale.rs), plus the
# hostile-input corpus, on loopback only.
#
#   scripts/soak.sh                 10 minutes per workload (FM_SOAK_SECS=600), release build
#   FM_SOAK_SECS=3600 scripts/soak.sh
#   scripts/soak.sh -- FILTER       only the scale tests whose name contains FILTER
#                                   (mixed_workload_single_node, scale_out_node_kill,
#                                   cache_coherence_hot_keys_local, cache_read_your_writes…)
#
# Knobs (environment): FM_SOAK_SECS (seconds of workload per test; the scale-out test splits it
# into warm-up / outage / after-recovery as 1/4, 1/2, 1/4), FM_SCALE_CLIENTS (default 32),
# FM_SCALE_L2 (disk | off | bucket: the second cache tier), FM_SOAK_PROFILE (release | debug).
#
# It starts a single-node Garage for the single-instance test when no S3 is configured (the
# scale-out test starts its own 3-node cluster and redis-server), runs every test (including
# any marked #[ignore]), prints each test's report (request counts, mismatches,
# 5xx, failures by phase and class, latency percentiles, peak RSS), and stops what it started.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"

filter=()
if [ "${1:-}" = "--" ]; then shift; filter=("$@"); fi
export FM_SOAK_SECS=${FM_SOAK_SECS:-600}
profile=${FM_SOAK_PROFILE:-release}
cargo_profile=()
[ "$profile" = release ] && cargo_profile=(--release)

command -v redis-server >/dev/null || { echo "soak.sh: redis-server is needed (apt-get install redis-server)" >&2; exit 1; }

state=$(mktemp -d /tmp/fm-soak.XXXXXX)
cleanup() {
  if [ -f "$state/garage/pid" ]; then scripts/garage.sh stop "$state/garage" || true; fi
  rm -rf "$state"
}
trap cleanup EXIT

if [ -z "${APP_BUCKET:-}" ]; then
  scripts/garage.sh start "$state/garage"
  # shellcheck disable=SC1091
  source "$state/garage/env"
fi

echo "== soak: FM_SOAK_SECS=$FM_SOAK_SECS, profile $profile, clients ${FM_SCALE_CLIENTS:-32}, L2 ${FM_SCALE_L2:-disk}" >&2
status=0
cargo test "${cargo_profile[@]}" -p filemanager-bin --test scale -- --include-ignored --nocapture \
  --test-threads=1 "${filter[@]}" || status=$?
if [ ${#filter[@]} -eq 0 ]; then
  cargo test "${cargo_profile[@]}" -p filemanager-bin --test hostile -- --include-ignored || status=$?
fi
exit $status
