#!/usr/bin/env bash
# `make reference-values`: the reference values of this build, as a message for trustee's
# Reference Value Provider Service (RVPS): `{"version":"0.1.0","type":"sample","payload":…}`
# where the payload is the base64 of `{"<name>": ["<value>", …], …}` (the `sample`
# extractor's provenance; register it with `rvps-tool register --message "$(make -s
# reference-values)"`). The names:
#   guest-components.<binary>.sha256 / .sha384   digest of each installed (stripped) binary
#   coco-extension.root_hash                      dm-verity root hash of the coco extension
#   coco-extension.verity_params                  kata's verity_params for the extension
# With REFERENCE_VALUES_FORMAT=provenance the plain provenance JSON is printed instead.
#
# Variables: BIN_DIR (the binaries; default the release directory of `make build`),
# EXTENSION_DIR (the coco extension's output; default build/coco-extension).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
arch=${ARCH:-$(uname -m)}
[[ "$arch" != ppc64le ]] || arch=powerpc64le
BIN_DIR=${BIN_DIR:-$repo/target/$arch-unknown-linux-${LIBC:-gnu}/release}
EXTENSION_DIR=${EXTENSION_DIR:-$repo/build/coco-extension}
FORMAT=${REFERENCE_VALUES_FORMAT:-message}

die() {
  echo "reference-values: error: $*" >&2
  exit 1
}

binaries=(attestation-agent confidential-data-hub api-server-rest)
[[ -x "$BIN_DIR/attestation-agent-nv" ]] && binaries+=(attestation-agent-nv)
entries=()
for b in "${binaries[@]}"; do
  [[ -f "$BIN_DIR/$b" ]] || die "$BIN_DIR/$b is missing: run 'make build' (or set BIN_DIR)"
  sha256=$(sha256sum "$BIN_DIR/$b" | cut -d' ' -f1)
  sha384=$(sha384sum "$BIN_DIR/$b" | cut -d' ' -f1)
  entries+=("\"guest-components.$b.sha256\":[\"$sha256\"]" "\"guest-components.$b.sha384\":[\"$sha384\"]")
done

params_file="$EXTENSION_DIR/root_hash_coco-extension.txt"
[[ -f "$params_file" ]] || die "$params_file is missing: run 'make coco-extension' (or set EXTENSION_DIR)"
params=$(tr -d '\n' <"$params_file")
root_hash=$(tr ',' '\n' <<<"$params" | sed -n 's/^root_hash=//p')
[[ "$root_hash" =~ ^[0-9a-f]{64}$ ]] || die "no sha256 root_hash in $params_file: '$params'"
entries+=("\"coco-extension.root_hash\":[\"$root_hash\"]" "\"coco-extension.verity_params\":[\"$params\"]")

provenance="{$(IFS=,; echo "${entries[*]}")}"
case "$FORMAT" in
  provenance) printf '%s\n' "$provenance" ;;
  message)
    printf '{"version":"0.1.0","type":"sample","payload":"%s"}\n' \
      "$(printf '%s' "$provenance" | base64 -w0)" ;;
  *) die "REFERENCE_VALUES_FORMAT must be message or provenance, not '$FORMAT'" ;;
esac
