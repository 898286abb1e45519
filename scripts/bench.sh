#!/usr/bin/env bash
# `make bench [BENCH=<name>]`: runs the benchmarks and prints one line per figure,
# `bench <name>: <value> <unit>`. Build output goes to stderr.
set -euo pipefail
cd "$(dirname "$0")/.."

# figure name -> the command that prints it (a command may print several figures)
declare -A bench_cmd=(
  [kbs_cold_fetch_ms]="kbs"
  [kbs_warm_fetch_ms]="kbs"
  [ocicrypt_decrypt_mbps]="ocicrypt"
  [openssl_ctr_hmac_mbps]="openssl"
  [pull_mbps]="pull"
  [pull_peak_rss_mib]="pull"
  [pull_vs_skopeo_umoci]="pull"
  [pull_concurrent3_vs_slowest]="pull_concurrent"
  [pull_concurrent3_vs_slowest_25mibps_link]="pull_concurrent"
  [rest_1000c_failed]="rest"
  [rest_1000c_rps]="rest"
  [rest_1000c_p99_ms]="rest"
  [rest_1000c_peak_rss_mib]="rest"
  [kbs_slow_400c_failed]="kbs_slow"
  [kbs_slow_400c_rps]="kbs_slow"
  [kbs_slow_400c_p99_ms]="kbs_slow"
  [kbs_slow_400c_peak_rss_mib]="kbs_slow"
  [kbs_fault_worst_ms]="kbs_faults"
  [binaries_stripped_mib]="binaries"
  [idle_rss_mib]="footprint"
  [idle_pss_mib]="footprint"
  [rss_after_21_reads_mib]="footprint"
  [repro_differing_bytes]="repro"
  [registry_fault_worst_ms]="registry_faults"
)
# one worst-latency figure per fault of testkit/benches/kbs_faults.rs
for fault in jwe_tag jwe_enc jwe_truncated jwe_foreign_key nonce_empty nonce_oversized \
  nonce_not_a_string nonce_reused http_500_resource http_500_attest http_401_resource \
  http_401_attest reset_mid_body_resource reset_mid_body_attest oversized_resource \
  oversized_declared_resource slowloris_resource slowloris_attest clock_behind_1d \
  clock_ahead_1d restart restart_new_token_key kbs_down; do
  bench_cmd[kbs_fault_worst_ms_$fault]="kbs_faults"
done
order=(binaries footprint kbs kbs_faults kbs_slow ocicrypt openssl pull pull_concurrent rest registry_faults repro)

run() {
  case "$1" in
    kbs)
      cargo build --release --locked --bins -p attestation-agent -p confidential-data-hub -p api-server-rest >&2
      cargo bench --locked -p testkit --bench kbs_fetch -- "${@:2}" ;;
    ocicrypt) cargo bench --locked -p ocicrypt-rs --bench decrypt ;;
    openssl) ./ocicrypt-rs/bench/openssl.sh ;;
    pull) cargo bench --locked -p image-rs --bench pull ;;
    rest)
      cargo build --release --locked --bins -p attestation-agent -p confidential-data-hub -p api-server-rest >&2
      # 1,000 connections for the shim and for wrk
      (ulimit -n "$(ulimit -Hn)" && cargo bench --locked -p testkit --bench rest_load) ;;
    kbs_faults)
      cargo build --release --locked --bins -p attestation-agent -p confidential-data-hub -p api-server-rest >&2
      cargo bench --locked -p testkit --bench kbs_faults ;;
    kbs_slow)
      cargo build --release --locked --bins -p attestation-agent -p confidential-data-hub -p api-server-rest >&2
      (ulimit -n "$(ulimit -Hn)" && cargo bench --locked -p testkit --bench kbs_slow) ;;
    pull_concurrent)
      cargo build --release --locked --bins -p confidential-data-hub >&2
      cargo bench --locked -p confidential-data-hub --bench pull_concurrent ;;
    binaries)
      # the three daemons as `make build` makes them (default TEE_PLATFORM and KBC), stripped
      make -s build >&2
      dir=$(mktemp -d)
      total=0
      for b in attestation-agent confidential-data-hub api-server-rest; do
        strip -o "$dir/$b" "target/$(uname -m)-unknown-linux-gnu/release/$b"
        size=$(stat -c %s "$dir/$b")
        echo "  $b: $size bytes stripped" >&2
        total=$((total + size))
      done
      rm -rf "$dir"
      awk -v b="$total" 'BEGIN { printf "bench binaries_stripped_mib: %.1f MiB\n", b / 1048576 }' ;;
    footprint)
      cargo build --release --locked --bins -p attestation-agent -p confidential-data-hub -p api-server-rest >&2
      cargo bench --locked -p testkit --bench footprint ;;
    # the slowest refusal of image-rs/tests/hostile_registry.rs (a stalled or trickling answer,
    # held for the 2 s low-speed window that test configures)
    registry_faults)
      cargo test --locked -p image-rs --test hostile_registry a_hostile_registry -- --nocapture ;;
    # two full release builds; a difference is a figure, not a failure of the bench run
    repro) ./scripts/repro-check.sh || true ;;
    *) echo "unknown bench command $1" >&2; return 1 ;;
  esac
}

if [ $# -gt 0 ] && [ -n "$1" ]; then
  name=$1
  cmd=${bench_cmd[$name]:-}
  if [ -z "$cmd" ]; then
    echo "unknown benchmark '$name'; known: ${!bench_cmd[*]}" >&2
    exit 2
  fi
  run "$cmd" "$name" | grep -E "^bench $name: "
else
  for cmd in "${order[@]}"; do
    run "$cmd" | grep -E '^bench [a-z0-9_]+: '
  done
fi
