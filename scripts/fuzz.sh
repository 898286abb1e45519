#!/usr/bin/env bash
# The fuzz targets of fuzz/ (one libFuzzer binary per parser of peer input), built on the
# stable toolchain with SanitizerCoverage passed through RUSTFLAGS (what cargo-fuzz does,
# minus the nightly-only sanitizers).
#
#   scripts/fuzz.sh build                     build every target (make lint)
#   scripts/fuzz.sh run [SECONDS] [TARGET…]   fuzz each target SECONDS (default 60)
#   scripts/fuzz.sh list                      the target names
#
# Environment: FUZZ_JOBS (targets at a time, default 2), FUZZ_TARGET_DIR (build directory,
# default $CARGO_TARGET_DIR/fuzz or target/fuzz: the coverage flags would otherwise
# invalidate the main build), CARGO (default cargo).
# Seeds are read from fuzz/corpus/<target>/ (committed); what a run learns goes to
# $FUZZ_TARGET_DIR/corpus/<target>/; crashes to fuzz/artifacts/<target>/ (not committed).
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
FUZZ_DIR=$ROOT/fuzz
CARGO=${CARGO:-cargo}
FUZZ_TARGET_DIR=${FUZZ_TARGET_DIR:-${CARGO_TARGET_DIR:-$ROOT/target}/fuzz}
FUZZ_JOBS=${FUZZ_JOBS:-2}
HOST=$(rustc -vV | sed -n 's/^host: //p')
BIN_DIR=$FUZZ_TARGET_DIR/$HOST/release

# Coverage for libFuzzer (edges, 8-bit counters, PC table, comparison operands), the
# `fuzzing` cfg that turns on the crates' fuzz entry points, and the checks of a debug build.
# With --target, build scripts and proc-macros are built without these flags.
SANCOV_FLAGS="-Cpasses=sancov-module \
-Cllvm-args=-sanitizer-coverage-level=4 \
-Cllvm-args=-sanitizer-coverage-inline-8bit-counters \
-Cllvm-args=-sanitizer-coverage-pc-table \
-Cllvm-args=-sanitizer-coverage-trace-compares \
-Cllvm-args=-sanitizer-coverage-stack-depth \
--cfg fuzzing -Cdebug-assertions -Coverflow-checks"

targets() {
    sed -n 's/^name = "\(.*\)"$/\1/p' "$FUZZ_DIR/Cargo.toml" | grep -v '^coco-fuzz$'
}

# Inputs longer than this are not tried: big enough for every format's seeds.
max_len() {
    case $1 in
        tar_unpack | ccel_eventlog | aael_eventlog) echo 65536 ;;
        *) echo 16384 ;;
    esac
}

build() {
    (cd "$FUZZ_DIR" && CARGO_TARGET_DIR=$FUZZ_TARGET_DIR RUSTFLAGS="$SANCOV_FLAGS" \
        "$CARGO" build --release --target "$HOST" --bins)
}

# One target for $2 seconds; leaves its summary line in $FUZZ_TARGET_DIR/logs/<target>.summary.
run_one() {
    local target=$1 seconds=$2
    local work=$FUZZ_TARGET_DIR/corpus/$target
    local artifacts=$FUZZ_DIR/artifacts/$target
    local logs=$FUZZ_TARGET_DIR/logs
    local scratch
    mkdir -p "$work" "$artifacts" "$logs" "$FUZZ_DIR/corpus/$target"
    scratch=$(mktemp -d "${TMPDIR:-/tmp}/coco-fuzz.XXXXXX")
    local before after status=0 start end
    before=$(find "$artifacts" -type f | wc -l)
    start=$(date +%s)
    TMPDIR=$scratch "$BIN_DIR/$target" "$work" "$FUZZ_DIR/corpus/$target" \
        -max_total_time="$seconds" -max_len="$(max_len "$target")" -timeout=10 \
        -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix="$artifacts/" \
        >"$logs/$target.log" 2>&1 || status=$?
    end=$(date +%s)
    rm -rf "$scratch"
    after=$(find "$artifacts" -type f | wc -l)
    local execs cov ft corp
    execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$logs/$target.log" | tail -1)
    # the last status line: "#N  REDUCE/NEW/pulse  cov: C ft: F corp: K/…"
    cov=$(grep -o 'cov: [0-9]*' "$logs/$target.log" | tail -1 | cut -d' ' -f2)
    ft=$(grep -o 'ft: [0-9]*' "$logs/$target.log" | tail -1 | cut -d' ' -f2)
    corp=$(grep -o 'corp: [0-9]*' "$logs/$target.log" | tail -1 | cut -d' ' -f2)
    local elapsed=$((end - start))
    local rate=$(( ${execs:-0} / (elapsed > 0 ? elapsed : 1) ))
    printf '%-18s %5ss %10s execs %7s/s  cov %-6s ft %-6s corpus %-5s crashes %s%s\n' \
        "$target" "$elapsed" "${execs:-?}" "$rate" "${cov:-?}" "${ft:-?}" "${corp:-?}" \
        "$((after - before))" "$([ "$status" -ne 0 ] && echo " (exit $status, see $logs/$target.log)")" \
        >"$logs/$target.summary"
}

run() {
    local seconds=${1:-60}
    shift || true
    local selected=("$@")
    [ ${#selected[@]} -gt 0 ] || mapfile -t selected < <(targets)
    build
    local t running=0
    for t in "${selected[@]}"; do
        [ -x "$BIN_DIR/$t" ] || { echo "no fuzz target $t (scripts/fuzz.sh list)" >&2; exit 2; }
        rm -f "$FUZZ_TARGET_DIR/logs/$t.summary"
    done
    echo "fuzzing ${#selected[@]} targets for ${seconds}s each, $FUZZ_JOBS at a time"
    for t in "${selected[@]}"; do
        if [ "$running" -ge "$FUZZ_JOBS" ]; then
            wait -n || true
            running=$((running - 1))
        fi
        run_one "$t" "$seconds" &
        running=$((running + 1))
    done
    wait || true
    local failed=0
    printf '%-18s %6s %16s %9s  %-9s %-9s %-12s %s\n' target time execs rate coverage features corpus crashes
    for t in "${selected[@]}"; do
        if [ -f "$FUZZ_TARGET_DIR/logs/$t.summary" ]; then
            cat "$FUZZ_TARGET_DIR/logs/$t.summary"
            grep -q 'crashes 0$' "$FUZZ_TARGET_DIR/logs/$t.summary" || failed=1
        else
            echo "$t: no result"
            failed=1
        fi
    done
    [ "$failed" -eq 0 ] || { echo "crashes in fuzz/artifacts/ (reproduce: $BIN_DIR/<target> <file>)" >&2; exit 1; }
}

case ${1:-} in
    build) build ;;
    run) shift; run "$@" ;;
    list) targets ;;
    *) sed -n '5,8p' "$0" >&2; exit 2 ;;
esac
