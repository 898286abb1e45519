#!/usr/bin/env bash
# Builds the `coco` guest extension of kata's composable VM images: the guest components
# as a read-only EROFS image protected by dm-verity, which kata cold-plugs as a virtio-blk
# disk with serial `extension-coco`, opens with `veritysetup open --no-superblock` and
# mounts at /run/kata-extensions/coco/. kata-agent then launches what
# etc/kata-extensions/components.toml lists.
#
# Outputs in OUT_DIR:
#   rootfs/                              the extension tree
#   coco-extension.erofs                 the EROFS image of rootfs/ (dm-verity data device)
#   coco-extension.verity               the dm-verity hash tree (no superblock, offset 0)
#   kata-containers-coco-extension.img   the disk kata attaches: msdos label, partition 1 =
#                                        the EROFS image, partition 2 = the hash tree
#   root_hash_coco-extension.txt         kata's verity_params value for this image
#
# Every output is a function of the inputs and SOURCE_DATE_EPOCH: file order, timestamps,
# owners (0:0), modes, the filesystem UUID, the verity salt and the disk signature are fixed
# or derived from the content. No root needed: everything works on regular files.
#
# Variables:
#   BIN_DIR            the built daemons (default: <repo>/target/<arch>-unknown-linux-<libc>/release,
#                      where `make build` leaves them); attestation-agent-nv is shipped when
#                      it is there
#   OUT_DIR            output directory (default: <repo>/build/coco-extension)
#   ARCH, LIBC         target triple parts for the default BIN_DIR (default: uname -m, gnu)
#   SOURCE_DATE_EPOCH  timestamp of every file (default: time of the last commit, else 0)
#   STRIP_BINARIES     yes (default) strips the copies of the daemons placed in the tree
#   OCICRYPT_CONFIG    the keyprovider config shipped as etc/ocicrypt_config.json (default:
#                      <repo>/confidential-data-hub/hub/src/image/ocicrypt_config.json)
#   NVAT_LIB_DIR       where the shared libraries of attestation-agent-nv are looked up by ldd
#   CC                 C compiler for the pause binary (default: gcc)
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/.." && pwd)"

ARCH="${ARCH:-$(uname -m)}"
[[ "${ARCH}" != ppc64le ]] || ARCH=powerpc64le # Rust's name, as in the Makefile
LIBC="${LIBC:-gnu}"
BIN_DIR="${BIN_DIR:-${repo_root}/target/${ARCH}-unknown-linux-${LIBC}/release}"
OUT_DIR="${OUT_DIR:-${repo_root}/build/coco-extension}"
STRIP_BINARIES="${STRIP_BINARIES:-yes}"
CC="${CC:-gcc}"
if [[ -z "${SOURCE_DATE_EPOCH:-}" ]]; then
	SOURCE_DATE_EPOCH="$(git -C "${repo_root}" log -1 --format=%ct 2>/dev/null || echo 0)"
fi

OCICRYPT_CONFIG="${OCICRYPT_CONFIG:-${repo_root}/confidential-data-hub/hub/src/image/ocicrypt_config.json}"
BINARIES=(attestation-agent confidential-data-hub api-server-rest)
SECTOR=512
ALIGN_SECTORS=2048 # 1 MiB: partition starts and sizes
BLOCK_SIZE=4096    # EROFS block size = dm-verity data and hash block size
HASH_ALGORITHM=sha256 # kata's mount script passes no --hash, so veritysetup's default

export LC_ALL=C
umask 022

die() {
	echo "coco-extension: error: $*" >&2
	exit 1
}

for cmd in mkfs.erofs veritysetup; do
	command -v "${cmd}" >/dev/null 2>&1 ||
		die "${cmd} not found: run scripts/install-test-deps.sh (Debian packages erofs-utils and cryptsetup-bin)"
done
for cmd in "${CC}" sha256sum install dd truncate stat find sort od; do
	command -v "${cmd}" >/dev/null 2>&1 || die "${cmd} not found"
done
[[ "${SOURCE_DATE_EPOCH}" =~ ^[0-9]+$ ]] || die "SOURCE_DATE_EPOCH must be a number of seconds, not '${SOURCE_DATE_EPOCH}'"
[[ -d "${BIN_DIR}" ]] || die "BIN_DIR ${BIN_DIR} does not exist: run 'make build' first or set BIN_DIR"
for bin in "${BINARIES[@]}"; do
	[[ -f "${BIN_DIR}/${bin}" && -x "${BIN_DIR}/${bin}" ]] ||
		die "${BIN_DIR}/${bin} is missing or not executable: run 'make build' first or set BIN_DIR"
done
[[ -f "${OCICRYPT_CONFIG}" ]] ||
	die "${OCICRYPT_CONFIG} is missing; the extension ships it as etc/ocicrypt_config.json"
cryptsetup_bin="$(command -v cryptsetup 2>/dev/null)" ||
	die "cryptsetup not found: install the Debian package cryptsetup-bin (CDH's secure mounts run it from the extension)"

mkdir -p "${OUT_DIR}"
OUT_DIR="$(cd "${OUT_DIR}" && pwd)"
[[ "${OUT_DIR}" != / ]] || die "OUT_DIR must not be /"
rootfs="${OUT_DIR}/rootfs"
work="${OUT_DIR}/.work"
erofs_image="${OUT_DIR}/coco-extension.erofs"
hash_image="${OUT_DIR}/coco-extension.verity"
disk_image="${OUT_DIR}/kata-containers-coco-extension.img"
params_file="${OUT_DIR}/root_hash_coco-extension.txt"
rm -rf "${rootfs}" "${work}"
rm -f "${erofs_image}" "${hash_image}" "${disk_image}" "${params_file}"
trap 'rm -rf "${work}"' EXIT
mkdir -p "${work}"

# ---- the tree ------------------------------------------------------------------------------

install_bin() { # src dst
	if [[ "${STRIP_BINARIES}" == yes ]]; then
		command -v strip >/dev/null 2>&1 || die "strip not found (binutils); or set STRIP_BINARIES=no"
		strip --strip-all -o "${work}/stripped" "$1"
		install -m 0755 "${work}/stripped" "$2"
		rm -f "${work}/stripped"
	else
		install -m 0755 "$1" "$2"
	fi
}

install -d -m 0755 "${rootfs}" \
	"${rootfs}/etc" "${rootfs}/etc/kata-extensions" \
	"${rootfs}/pause_bundle" "${rootfs}/pause_bundle/rootfs" \
	"${rootfs}/usr" "${rootfs}/usr/local" "${rootfs}/usr/local/bin" "${rootfs}/usr/sbin"

for bin in "${BINARIES[@]}"; do
	install_bin "${BIN_DIR}/${bin}" "${rootfs}/usr/local/bin/${bin}"
done

# The NVIDIA attester build, when one was made, with the shared libraries it needs beyond
# glibc and libgcc_s (the base image provides those for the stock daemons; NVML comes from
# the GPU extension).
nv_bin="${BIN_DIR}/attestation-agent-nv"
if [[ -f "${nv_bin}" ]]; then
	[[ -x "${nv_bin}" ]] || die "${nv_bin} is not executable"
	install_bin "${nv_bin}" "${rootfs}/usr/local/bin/attestation-agent-nv"
	command -v ldd >/dev/null 2>&1 || die "ldd not found (needed to collect the libraries of attestation-agent-nv)"
	ldd_out="$(LD_LIBRARY_PATH="${NVAT_LIB_DIR:-/usr/local/lib}${LD_LIBRARY_PATH:+:${LD_LIBRARY_PATH}}" ldd "${nv_bin}" 2>&1)" || true
	if grep -q 'not found' <<<"${ldd_out}"; then
		die "libraries of attestation-agent-nv not found (set NVAT_LIB_DIR):"$'\n'"${ldd_out}"
	fi
	while read -r lib; do
		case "$(basename "${lib}")" in
		ld-linux* | ld64.so* | libc.so.* | libgcc_s.so.* | libdl.so.* | libm.so.* | libpthread.so.* | librt.so.* | libutil.so.* | libresolv.so.*) continue ;;
		esac
		install -d -m 0755 "${rootfs}/usr/local/lib"
		install -m 0755 "${lib}" "${rootfs}/usr/local/lib/$(basename "${lib}")"
	done < <(sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p' <<<"${ldd_out}" | sort -u)
fi

install -m 0755 "${cryptsetup_bin}" "${rootfs}/usr/sbin/cryptsetup"
install -m 0644 "${OCICRYPT_CONFIG}" "${rootfs}/etc/ocicrypt_config.json"
install -m 0644 "${script_dir}/components.toml" "${rootfs}/etc/kata-extensions/components.toml"

# The pause bundle kata-agent copies for the sandbox container (config.json, rootfs/pause).
"${CC}" -static -Os -s -Wall -Wextra -Werror -o "${work}/pause" "${script_dir}/pause.c" ||
	die "cannot build the static pause binary (a static libc is needed, e.g. Debian libc6-dev)"
install -m 0755 "${work}/pause" "${rootfs}/pause_bundle/rootfs/pause"
install -m 0644 "${script_dir}/pause-config.json" "${rootfs}/pause_bundle/config.json"

# ---- the EROFS image -------------------------------------------------------------------------

# A digest of the whole tree (names, types, modes, contents) names the filesystem.
tree_digest="$(
	cd "${rootfs}"
	{
		find . -printf '%y %m %p\n' | sort
		find . -type f -print0 | sort -z | xargs -0 sha256sum
	} | sha256sum | cut -c1-64
)"
# RFC 9562 layout (version 8 = custom), from the first 128 bits of the digest.
u="${tree_digest:0:32}"
variant_nibble="$(printf '%x' $(((0x${u:16:1} & 0x3) | 0x8)))"
fs_uuid="${u:0:8}-${u:8:4}-8${u:13:3}-${variant_nibble}${u:17:3}-${u:20:12}"

mkfs.erofs --quiet -zlz4hc -Enoinline_data -x-1 --all-root -T"${SOURCE_DATE_EPOCH}" \
	-U"${fs_uuid}" "${erofs_image}" "${rootfs}" >/dev/null ||
	die "mkfs.erofs failed"
erofs_bytes="$(stat -c %s "${erofs_image}")"
((erofs_bytes > 0 && erofs_bytes % BLOCK_SIZE == 0)) ||
	die "unexpected EROFS image size ${erofs_bytes} (not a multiple of ${BLOCK_SIZE})"

# ---- dm-verity -------------------------------------------------------------------------------

# The salt is derived from the data it protects, so the same tree gives the same root hash.
salt="$(sha256sum "${erofs_image}" | cut -c1-64)"
verity_out="$(veritysetup format --no-superblock --hash="${HASH_ALGORITHM}" \
	--data-block-size="${BLOCK_SIZE}" --hash-block-size="${BLOCK_SIZE}" --salt="${salt}" \
	"${erofs_image}" "${hash_image}" 2>&1)" || die "veritysetup format failed:"$'\n'"${verity_out}"
chmod 0644 "${hash_image}"

verity_field() {
	local value
	value="$(sed -n "s/^$1:[[:space:]]*//p" <<<"${verity_out}" | sed 's/[[:space:]].*//' | head -n1)"
	[[ -n "${value}" ]] || die "veritysetup format printed no '$1':"$'\n'"${verity_out}"
	echo "${value}"
}
root_hash="$(verity_field 'Root hash')"
data_blocks="$(verity_field 'Data blocks')"
data_block_size="$(verity_field 'Data block size')"
hash_block_size="$(verity_field 'Hash block size')"
hash_algorithm="$(verity_field 'Hash algorithm')"
[[ "$(verity_field 'Salt')" == "${salt}" ]] || die "veritysetup used another salt than ${salt}"
((data_blocks * data_block_size == erofs_bytes)) ||
	die "dm-verity covers ${data_blocks} blocks of ${data_block_size} bytes, the image has ${erofs_bytes} bytes"

# ---- the disk kata attaches --------------------------------------------------------------------

# kata's kata-extension-mount.sh opens <disk>p1 as data and <disk>p2 as hash device, so the
# hash tree goes to a second partition (hash offset 0 inside it), not after the data.
hash_bytes="$(stat -c %s "${hash_image}")"
round_up() { echo $((($1 + ALIGN_SECTORS - 1) / ALIGN_SECTORS * ALIGN_SECTORS)); }
p1_start="${ALIGN_SECTORS}"
p1_sectors="$(round_up $(((erofs_bytes + SECTOR - 1) / SECTOR)))"
p2_start=$((p1_start + p1_sectors))
p2_sectors="$(round_up $(((hash_bytes + SECTOR - 1) / SECTOR)))"
disk_sectors=$((p2_start + p2_sectors))

le32() { printf '\\x%02x\\x%02x\\x%02x\\x%02x' $(($1 & 255)) $(($1 >> 8 & 255)) $(($1 >> 16 & 255)) $(($1 >> 24 & 255)); }
# status, CHS start (unused: LBA), type 0x83 (Linux), CHS end (unused), LBA start, sectors
mbr_entry() { printf '\\x%02x\\xfe\\xff\\xff\\x83\\xfe\\xff\\xff%s%s' "$1" "$(le32 "$2")" "$(le32 "$3")"; }
write_at() { # file byte-offset (data on stdin)
	dd of="$1" bs=1 seek="$2" conv=notrunc status=none
}

truncate -s $((disk_sectors * SECTOR)) "${disk_image}"
printf '%b' "\\x${root_hash:0:2}\\x${root_hash:2:2}\\x${root_hash:4:2}\\x${root_hash:6:2}" | write_at "${disk_image}" 440
printf '%b' "$(mbr_entry 0x80 "${p1_start}" "${p1_sectors}")$(mbr_entry 0x00 "${p2_start}" "${p2_sectors}")" |
	write_at "${disk_image}" 446
printf '%b' '\x55\xaa' | write_at "${disk_image}" 510
dd if="${erofs_image}" of="${disk_image}" bs="${SECTOR}" seek="${p1_start}" conv=notrunc status=none
dd if="${hash_image}" of="${disk_image}" bs="${SECTOR}" seek="${p2_start}" conv=notrunc status=none
[[ "$(od -An -tx1 -j510 -N2 "${disk_image}" | tr -d ' \n')" == 55aa ]] || die "writing the partition table failed"

verity_params="root_hash=${root_hash},salt=${salt},data_blocks=${data_blocks},data_block_size=${data_block_size},hash_block_size=${hash_block_size}"
printf '%s\n' "${verity_params}" >"${params_file}"

cat <<EOF
coco extension built in ${OUT_DIR}
  tree                 rootfs/ (from ${BIN_DIR})
  erofs image          coco-extension.erofs (${erofs_bytes} bytes, uuid ${fs_uuid}, timestamps ${SOURCE_DATE_EPOCH})
  dm-verity hash tree  coco-extension.verity (${hash_bytes} bytes, no superblock)
  disk for kata        kata-containers-coco-extension.img (msdos label; partition 1 = erofs image at sector ${p1_start}, partition 2 = hash tree at sector ${p2_start})
verity parameters:
  root_hash=${root_hash}
  salt=${salt}
  data_blocks=${data_blocks}
  data_block_size=${data_block_size}
  hash_block_size=${hash_block_size}
  hash_algorithm=${hash_algorithm}
  hash_offset=0 (start of partition 2; a separate hash device, not appended to the data)
kata runtime configuration:
  [[hypervisor.qemu.guest_extension_images]]
  name = "coco"
  path = "${disk_image}"
  verity_params = "${verity_params}"
EOF
