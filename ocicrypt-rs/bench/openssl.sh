#!/usr/bin/env bash
# The baseline for `bench ocicrypt_decrypt_mbps`: what OpenSSL reaches on this machine for
# the same work, AES-256-CTR plus HMAC-SHA256 over the same bytes, at 16 KiB blocks.
# Prints `bench openssl_ctr_hmac_mbps: <value> MB/s`, the combined rate 1/(1/ctr + 1/hmac).
set -euo pipefail
command -v openssl >/dev/null || { echo "openssl is required (apt-get install -y openssl)" >&2; exit 1; }
SECS=${OPENSSL_BENCH_SECONDS:-2}
# `openssl speed -mr` prints machine-readable lines: +F:<n>:<name>:<rate per block size...>
# (bytes per second for 16, 64, 256, 1024, 8192, 16384 byte blocks); take the 16 KiB one.
rate() { openssl speed -mr -seconds "$SECS" "$@" 2>/dev/null | awk -F: '/^\+F:/ {print $NF; exit}'; }
ctr=$(rate -evp aes-256-ctr)
hmac=$(rate -hmac sha256)
[ -n "$ctr" ] && [ -n "$hmac" ] || { echo "could not read openssl speed output" >&2; exit 1; }
awk -v c="$ctr" -v h="$hmac" 'BEGIN { printf "bench openssl_ctr_hmac_mbps: %.1f MB/s\n", 1 / (1 / c + 1 / h) / 1e6 }'
