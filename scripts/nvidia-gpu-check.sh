#!/usr/bin/env bash
# Manual check on a guest with real NVIDIA GPUs in confidential-computing mode (Hopper or
# Blackwell, driver 535 or later): builds `evidence-getter` with the `nvidia-attester`
# feature, asks every GPU for evidence over a fresh random nonce, prints it, and appraises
# it with the checks of trustee's `nvidia` verifier (report parsing, signature, certificate
# chain to NVIDIA's device root, nonce) from attester/tests/nvidia_evidence.rs.
#
#   scripts/nvidia-gpu-check.sh            # NVML found by the loader (libnvidia-ml.so.1)
#   AA_NVML_LIBRARY=/path/libnvidia-ml.so.1 scripts/nvidia-gpu-check.sh
#   NVIDIA_REPORT_DATA=<hex> ...           # a fixed report data instead of a random one
#                                          # (to replay recorded evidence, e.g. the tests'
#                                          # fake libnvidia-ml)
#
# Needs cargo and gcc. Does not change the GPUs' state (no ready-state toggle).
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT

echo "== building evidence-getter with nvidia-attester" >&2
cargo build --quiet -p attester --features nvidia-attester,bin --bin evidence-getter
getter="${CARGO_TARGET_DIR:-target}/debug/evidence-getter"

# 48 random bytes, as a SHA-384 runtime-data digest from the KBS flow would be
report_data=${NVIDIA_REPORT_DATA:-$(od -An -N48 -tx1 /dev/urandom | tr -d ' \n')}
echo "== report data: $report_data" >&2

# the sample attester stands in for the CPU if this build has no CPU attester for it;
# info logs say why an NVIDIA device was left out
RUST_LOG="${RUST_LOG:-attester=info}" "$getter" --allow-sample --report-data "$report_data" \
  > "$work/evidence.txt"
cat "$work/evidence.txt"

if ! grep -q '^nvidia: ' "$work/evidence.txt"; then
  echo "FAIL: no NVIDIA device was attested (see the log above for the reason)" >&2
  exit 1
fi
sed -n 's/^nvidia: //p' "$work/evidence.txt" > "$work/nvidia.json"
gpus=$(grep -o '"uuid"' "$work/nvidia.json" | wc -l)
echo "== $gpus GPU(s); appraising as trustee's verifier does" >&2

NVIDIA_EVIDENCE_FILE="$work/nvidia.json" NVIDIA_REPORT_DATA="$report_data" \
  cargo test --quiet -p attester --features nvidia-attester --test nvidia_evidence \
  -- --ignored --exact real_gpu_evidence --nocapture
echo "OK: the evidence of $gpus GPU(s) passes the verifier checks" >&2
