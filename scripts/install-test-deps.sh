#!/usr/bin/env bash
# Installs what the tests need when it is missing: Debian packages (as root) for the real
# peers the tests run (registry, skopeo, gpg, swtpm, ...). Idempotent and quiet when all is there.
set -euo pipefail

# command -> Debian package
declare -A need=(
  [skopeo]=skopeo
  [docker-registry]=docker-registry
  [swtpm]=swtpm
  [swtpm_setup]=swtpm-tools
  [tpm2_pcrread]=tpm2-tools
  [cryptsetup]=cryptsetup
  [mkfs.ext4]=e2fsprogs
  [losetup]=mount
  [gpg]=gnupg
  [jq]=jq
  [zstd]=zstd
  [pkg-config]=pkg-config
  [htpasswd]=apache2-utils
  [umoci]=umoci
  [openssl]=openssl
  [curl]=curl
  [python3]=python3
  [mkfs.erofs]=erofs-utils
  [veritysetup]=cryptsetup-bin
  [readelf]=binutils
  [strip]=binutils
  [unshare]=util-linux
  [gcc]=gcc
  [wrk]=wrk
  [qemu-system-x86_64]=qemu-system-x86
  [cpio]=cpio
  [depmod]=kmod
  [dmsetup]=dmsetup
  [dumpe2fs]=e2fsprogs
  [flock]=util-linux
  [swtpm_ioctl]=swtpm-tools
  [tpm2_checkquote]=tpm2-tools
)
missing=()
for cmd in "${!need[@]}"; do
  command -v "$cmd" >/dev/null 2>&1 || missing+=("${need[$cmd]}")
done
# libraries without a command
dpkg -s libtss2-dev >/dev/null 2>&1 || missing+=(libtss2-dev)

# python3 `cryptography` (used by ocicrypt-rs/tests/tools/provider_encrypt.py), from PyPI
if ! python3 -c 'import cryptography' >/dev/null 2>&1; then
  echo "installing python3 cryptography"
  python3 -m pip install -q cryptography
fi

# moto (a local AWS emulator for the kms `aws` plugin tests), from PyPI
if ! command -v moto_server >/dev/null 2>&1; then
  echo "installing moto[server]"
  python3 -m pip install -q 'moto[server]'
fi

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "installing test dependencies: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "error: these Debian packages are missing and installing them needs root: ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
