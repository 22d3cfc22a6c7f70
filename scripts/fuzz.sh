#!/usr/bin/env bash
# Runs every cargo-fuzz target for a bounded time and reports executions, coverage and
# findings. Exits non-zero if any target crashed (or failed to build or run).
#
#   scripts/fuzz.sh                      all targets, FUZZ_SECONDS (default 60) each
#   FUZZ_SECONDS=300 scripts/fuzz.sh     longer
#   scripts/fuzz.sh location decode_stream   only these targets
#
# Environment:
#   FUZZ_SECONDS    seconds per target (default 60)
#   FUZZ_SANITIZER  address | none | … (default: address when the toolchain ships the ASan
#                   runtime, else none)
#   FUZZ_ARGS       extra libFuzzer arguments, e.g. "-seed=1 -max_len=2048"
#
# Works on stable Rust: nightly-only flags are enabled with RUSTC_BOOTSTRAP=1. The checked-in
# seeds (fuzz/corpus/<target>/) are only read; new inputs go to a working corpus under the fuzz
# crate's target/ (fuzz/target/fuzz-corpus/<target>/), crashes to fuzz/artifacts/<target>/,
# logs to fuzz/target/fuzz-logs/<target>.log. See docs/fuzzing.md.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)
export PATH="$HOME/.cargo/bin:$PATH"

seconds=${FUZZ_SECONDS:-60}
[[ $seconds =~ ^[1-9][0-9]*$ ]] || { echo "FUZZ_SECONDS must be a positive integer" >&2; exit 2; }

# target name -> its fuzz crate
declare -A crate_of=(
  [decode_stream]=crates/filemanager-codec/fuzz
  [parse_header]=crates/filemanager-codec/fuzz
  [location]=crates/filemanager/fuzz
  [presign_verify]=crates/filemanager/fuzz
  [byte_range]=crates/filemanager-bin/fuzz
)
all=(decode_stream parse_header location presign_verify byte_range)
targets=("$@")
[ ${#targets[@]} -gt 0 ] || targets=("${all[@]}")
for t in "${targets[@]}"; do
  [ -n "${crate_of[$t]:-}" ] || { echo "unknown target '$t' (known: ${all[*]})" >&2; exit 2; }
done

say() { printf '\n== %s\n' "$*"; }

if ! command -v cargo-fuzz >/dev/null 2>&1; then
  say "installing cargo-fuzz"
  cargo install cargo-fuzz --locked
fi

# cargo-fuzz passes -Z flags; stable rustc accepts them only with RUSTC_BOOTSTRAP=1.
if ! rustc --version | grep -q nightly; then
  export RUSTC_BOOTSTRAP=1
fi

if [ -z "${FUZZ_SANITIZER:-}" ]; then
  host=$(rustc -vV | sed -n 's/^host: //p')
  if compgen -G "$(rustc --print sysroot)/lib/rustlib/$host/lib/librustc-*_rt.asan.a" >/dev/null; then
    FUZZ_SANITIZER=address
  else
    FUZZ_SANITIZER=none
  fi
fi
echo "cargo-fuzz $(cargo fuzz --version | awk '{print $2}'), $(rustc --version)," \
  "sanitizer=$FUZZ_SANITIZER, ${seconds}s per target"

# Build each fuzz crate once, so build time is not taken from the fuzzing time.
built=()
for t in "${targets[@]}"; do
  dir=${crate_of[$t]}
  [[ " ${built[*]} " == *" $dir "* ]] && continue
  say "building $dir"
  (cd "$dir" && cargo fuzz build --sanitizer "$FUZZ_SANITIZER")
  built+=("$dir")
done

declare -a rows
failed=0
for t in "${targets[@]}"; do
  dir=$root/${crate_of[$t]}
  work=$dir/target/fuzz-corpus/$t
  logs=$dir/target/fuzz-logs
  log=$logs/$t.log
  mkdir -p "$work" "$logs"
  args=(-max_total_time="$seconds" -print_final_stats=1 -timeout=10 -rss_limit_mb=2048)
  [ -f "$dir/dict/$t.dict" ] && args+=(-dict="$dir/dict/$t.dict")
  # shellcheck disable=SC2206
  [ -n "${FUZZ_ARGS:-}" ] && args+=($FUZZ_ARGS)
  say "fuzzing $t for ${seconds}s (log: ${log#"$root"/})"
  rc=0
  (cd "$dir" && cargo fuzz run --sanitizer "$FUZZ_SANITIZER" "$t" "$work" "corpus/$t" -- "${args[@]}") \
    >"$log" 2>&1 || rc=$?
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$log" | tail -1)
  last=$(grep -E '^#[0-9]+' "$log" | grep -E ' cov: ' | tail -1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\)\/.*/\1/p' <<<"$last")
  if [ "$rc" -eq 0 ]; then
    result="no crash"
  else
    failed=1
    artifact=$(sed -n 's/.*Test unit written to \(.*\)$/\1/p' "$log" | tail -1)
    result="CRASH (exit $rc) ${artifact:+-> ${artifact#"$root"/}}"
    grep -E 'panicked at|ERROR: |SUMMARY: ' "$log" | head -5 || true
    echo "  reproduce: (cd ${crate_of[$t]} && RUSTC_BOOTSTRAP=1 cargo fuzz run --sanitizer $FUZZ_SANITIZER $t ${artifact:-ARTIFACT})"
    echo "  minimize:  (cd ${crate_of[$t]} && RUSTC_BOOTSTRAP=1 cargo fuzz tmin --sanitizer $FUZZ_SANITIZER $t ${artifact:-ARTIFACT})"
  fi
  echo "  $t: ${execs:-?} execs (${rate:-?}/s), cov ${cov:-?}, ft ${ft:-?}, corpus ${corp:-?}: $result"
  rows+=("$(printf '%-15s %7ss %12s %8s %6s %6s %7s  %s' "$t" "$seconds" "${execs:-?}" "${rate:-?}" \
    "${cov:-?}" "${ft:-?}" "${corp:-?}" "$result")")
done

say "summary ($(date -u +%Y-%m-%dT%H:%MZ), sanitizer=$FUZZ_SANITIZER)"
printf '%-15s %8s %12s %8s %6s %6s %7s  %s\n' target time execs exec/s cov ft corpus result
printf '%s\n' "${rows[@]}"
exit "$failed"
