#!/usr/bin/env bash
# Builds the pod-VM test guest from Debian packages: Debian's kernel (unpacked from its .deb,
# not installed) with the modules a kata guest needs, a busybox initramfs, cryptsetup,
# veritysetup, mkfs.ext4, dumpe2fs, dmsetup and their shared libraries, OVMF for UEFI boots,
# the daemons from BIN_DIR, and vm/init with the scenario scripts.
#
# The guest's initramfs is a list of uncompressed cpio archives the kernel unpacks in order
# (QEMU gets them concatenated; Linux does not take an uncompressed archive after a gzip one):
#   base.cpio        kernel modules, busybox, tools and libraries; cached under
#                    VM_CACHE/base-<key>, the key made of the package versions and this script
#   bins-<sha>.cpio  the daemons (debug symbols stripped), keyed by the binaries' paths, sizes and times: a
#                    rebuild of the daemons costs one strip and one cpio
#   init-<sha>.cpio  vm/init and vm/scenarios/*.sh (milliseconds)
# A test adds its own archive with its inputs (vm/README.md).
#
# Prints what the host needs, one `name value` line each (initrd once per archive, in order):
#   kernel <vmlinuz>   kernel_version <version>   initrd <archive>...
#   ovmf_code <OVMF_CODE.fd>   ovmf_vars <OVMF_VARS.fd>
#
# Variables:
#   VM_CACHE        cache directory outside the clone (default /var/tmp/coco-guest-vm)
#   BIN_DIR         attestation-agent, confidential-data-hub, api-server-rest and cdh-tool
#                   (default ${CARGO_TARGET_DIR:-<repo>/target}/debug); `make install` output works too
#   KERNEL_PACKAGE  the Debian kernel package (default: what linux-image-amd64 depends on)
#   STRIP_BINARIES  yes (default): strip debug info from the guest's copies of the daemons
set -euo pipefail

script_dir="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "${script_dir}/.." && pwd)"
VM_CACHE="${VM_CACHE:-/var/tmp/coco-guest-vm}"
BIN_DIR="${BIN_DIR:-${CARGO_TARGET_DIR:-${repo_root}/target}/debug}"
STRIP_BINARIES="${STRIP_BINARIES:-yes}"
DAEMONS=(attestation-agent confidential-data-hub api-server-rest)
TOOLS=(cdh-tool)
# What a kata guest kernel has built in, loaded here as modules (with their modules.dep
# dependencies). Algorithms the kernel requests by name (xts, authenc, crc32c, AF_ALG for
# cryptsetup) are no symbol dependencies, so they are listed too. The TPM drivers (tpm_tis
# for QEMU's tpm-tis, tpm_crb) are loaded by the scenarios that attach a TPM.
MODULES=(
	virtio_pci virtio_blk virtio_net virtio_console
	dm_mod dm_crypt dm_integrity dm_verity
	ext4 erofs overlay
	xts ecb cbc authenc crc32c_generic crc32c_intel aesni_intel
	af_alg algif_skcipher algif_hash
	tpm_tis tpm_crb
)
# Host programs copied into the guest with their libraries (Debian's cryptsetup-bin,
# e2fsprogs, dmsetup).
HOST_TOOLS=(/usr/sbin/cryptsetup /usr/sbin/veritysetup /usr/sbin/mke2fs /usr/sbin/dumpe2fs /usr/sbin/dmsetup)
# Debian packages whose versions decide the base archive.
VERSIONED=(cryptsetup-bin e2fsprogs dmsetup libc6 libcryptsetup12 libdevmapper1.02.1)

export LC_ALL=C
umask 022

die() {
	echo "build-guest: error: $*" >&2
	exit 1
}
log() { echo "build-guest: $*" >&2; }

for cmd in apt-get apt-cache dpkg-deb dpkg-query depmod cpio ldd strip flock sha256sum find; do
	command -v "${cmd}" >/dev/null 2>&1 || die "${cmd} not found: run scripts/install-test-deps.sh"
done
for tool in "${HOST_TOOLS[@]}"; do
	[[ -x "${tool}" ]] || die "${tool} not found: run scripts/install-test-deps.sh (cryptsetup-bin, e2fsprogs, dmsetup)"
done
[[ -d "${BIN_DIR}" ]] || die "BIN_DIR ${BIN_DIR} does not exist: run 'cargo build --workspace --bins' or set BIN_DIR"
for bin in "${DAEMONS[@]}" "${TOOLS[@]}"; do
	[[ -f "${BIN_DIR}/${bin}" && -x "${BIN_DIR}/${bin}" ]] ||
		die "${BIN_DIR}/${bin} is missing or not executable: run 'cargo build --workspace --bins' or set BIN_DIR"
done

mkdir -p "${VM_CACHE}/debs"
VM_CACHE="$(cd "${VM_CACHE}" && pwd)"
# One build at a time (tests of several binaries may start together).
exec 9>"${VM_CACHE}/.lock"
flock 9

# ---- Debian packages ---------------------------------------------------------------------------

apt_updated=no
apt_update() {
	if [[ "${apt_updated}" == no ]]; then
		log "apt-get update"
		apt-get update -qq >&2 || die "apt-get update failed"
		apt_updated=yes
	fi
}

# The candidate version of a package, updating the lists once if apt knows none.
candidate() {
	local v
	v="$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p')"
	if [[ -z "${v}" || "${v}" == "(none)" ]]; then
		apt_update
		v="$(apt-cache policy "$1" 2>/dev/null | sed -n 's/^ *Candidate: //p')"
	fi
	[[ -n "${v}" && "${v}" != "(none)" ]] || die "Debian has no package $1"
	echo "${v}"
}

# Downloads (once) and unpacks package $1 at version $2 into directory $3.
unpack_deb() {
	local pkg=$1 version=$2 dest=$3 deb
	deb="${VM_CACHE}/debs/${pkg}_${version//:/%3a}_$(dpkg --print-architecture 2>/dev/null || echo amd64).deb"
	local all="${VM_CACHE}/debs/${pkg}_${version//:/%3a}_all.deb"
	[[ -f "${deb}" ]] || deb="${all}"
	if [[ ! -f "${deb}" ]]; then
		log "downloading ${pkg} ${version}"
		(cd "${VM_CACHE}/debs" && apt-get download -qq "${pkg}=${version}" >&2 2>/dev/null) ||
			{ apt_update && (cd "${VM_CACHE}/debs" && apt-get download -qq "${pkg}=${version}" >&2); } ||
			die "apt-get download ${pkg}=${version} failed"
		deb="$(ls "${VM_CACHE}/debs/${pkg}_${version//:/%3a}_"*.deb | head -n1)"
	fi
	mkdir -p "${dest}"
	dpkg-deb -x "${deb}" "${dest}"
}

if [[ -z "${KERNEL_PACKAGE:-}" ]]; then
	candidate linux-image-amd64 >/dev/null
	KERNEL_PACKAGE="$(apt-cache depends linux-image-amd64 2>/dev/null | sed -n 's/^ *Depends: \(linux-image-[0-9][^ ]*\)$/\1/p' | head -n1)"
	[[ -n "${KERNEL_PACKAGE}" ]] || die "cannot tell which kernel linux-image-amd64 depends on"
fi
kernel_pkg_version="$(candidate "${KERNEL_PACKAGE}")"
busybox_version="$(candidate busybox-static)"
ovmf_version="$(candidate ovmf)"
host_versions=""
for pkg in "${VERSIONED[@]}"; do
	v="$(dpkg-query -W -f '${Version}' "${pkg}" 2>/dev/null)" || v=none
	host_versions+="${pkg}=${v};"
done

base_key="$(
	{
		echo "${KERNEL_PACKAGE}=${kernel_pkg_version} busybox-static=${busybox_version} ovmf=${ovmf_version}"
		echo "${host_versions}"
		echo "${MODULES[*]} ${HOST_TOOLS[*]}"
		sha256sum "${BASH_SOURCE[0]}"
	} | sha256sum | cut -c1-16
)"
base="${VM_CACHE}/base-${base_key}"

# ---- the base archive: kernel, modules, busybox, tools ---------------------------------------

build_base() {
	local work="${base}.work"
	rm -rf "${work}"
	mkdir -p "${work}"
	log "building the base guest in ${base} (${KERNEL_PACKAGE} ${kernel_pkg_version}, busybox ${busybox_version})"

	unpack_deb "${KERNEL_PACKAGE}" "${kernel_pkg_version}" "${work}/kernel"
	unpack_deb busybox-static "${busybox_version}" "${work}/busybox"
	unpack_deb ovmf "${ovmf_version}" "${work}/ovmf"

	local kver
	kver="$(ls "${work}/kernel/lib/modules" | head -n1)"
	[[ -n "${kver}" && -f "${work}/kernel/boot/vmlinuz-${kver}" ]] || die "${KERNEL_PACKAGE} has no kernel"
	depmod -b "${work}/kernel" "${kver}"

	local root="${work}/root"
	mkdir -p "${root}"/{bin,dev,etc,proc,sys,run,tmp,root,mnt,usr/bin,usr/sbin,usr/local/bin,usr/lib/x86_64-linux-gnu,usr/lib64}
	ln -s usr/lib "${root}/lib"
	ln -s usr/lib64 "${root}/lib64"
	ln -s bin "${root}/sbin"
	install -m 0755 "${work}/busybox/bin/busybox" "${root}/bin/busybox"
	ln -s busybox "${root}/bin/sh"

	# modules and what they depend on, with a modules.dep for busybox modprobe
	local mdir="${work}/kernel/lib/modules/${kver}" rdir="${root}/usr/lib/modules/${kver}"
	mkdir -p "${rdir}"
	local wanted=() m line dep
	for m in "${MODULES[@]}"; do
		if grep -qE "/${m//_/[-_]}\.ko\$" "${mdir}/modules.builtin"; then
			continue
		fi
		line="$(grep -E "(^|/)${m//_/[-_]}\.ko:" "${mdir}/modules.dep" | head -n1)" ||
			die "module ${m} is neither in modules.dep nor built into ${kver}"
		for dep in ${line/:/}; do
			wanted+=("${dep}")
		done
	done
	local f
	for f in $(printf '%s\n' "${wanted[@]}" | sort -u); do
		mkdir -p "${rdir}/$(dirname "${f}")"
		cp "${mdir}/${f}" "${rdir}/${f}"
	done
	cp "${mdir}/modules.builtin" "${mdir}/modules.order" "${rdir}/"
	[[ ! -f "${mdir}/modules.builtin.modinfo" ]] || cp "${mdir}/modules.builtin.modinfo" "${rdir}/"
	depmod -b "${root}" "${kver}"
	[[ -s "${rdir}/modules.dep" ]] || die "depmod wrote no modules.dep for the guest"

	# host tools and their libraries (ldd closure), at the paths they have on the host
	local tool lib libs=()
	for tool in "${HOST_TOOLS[@]}"; do
		install -m 0755 "${tool}" "${root}/usr/sbin/$(basename "${tool}")"
		while read -r lib; do libs+=("${lib}"); done < <(ldd "${tool}" | sed -n 's/.*=> \(\/[^ ]*\) .*/\1/p')
		libs+=("$(ldd "${tool}" | sed -n 's/^[[:space:]]*\(\/[^ ]*ld-linux[^ ]*\) .*/\1/p')")
	done
	# glibc loads libgcc_s at run time for unwinding; the daemons link it
	libs+=(/lib/x86_64-linux-gnu/libgcc_s.so.1)
	for lib in $(printf '%s\n' "${libs[@]}" | sort -u); do
		[[ -n "${lib}" ]] || continue
		mkdir -p "${root}$(dirname "${lib}")"
		cp -L "${lib}" "${root}${lib}"
	done
	ln -s mke2fs "${root}/usr/sbin/mkfs.ext4"
	[[ ! -f /etc/mke2fs.conf ]] || install -m 0644 /etc/mke2fs.conf "${root}/etc/mke2fs.conf"
	echo "root:x:0:0:root:/root:/bin/sh" >"${root}/etc/passwd"
	echo "root:x:0:" >"${root}/etc/group"
	install -m 0644 "${repo_root}/confidential-data-hub/hub/src/image/ocicrypt_config.json" "${root}/etc/ocicrypt_config.json"

	(cd "${root}" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --quiet) >"${work}/base.cpio"

	cp "${work}/kernel/boot/vmlinuz-${kver}" "${work}/vmlinuz"
	echo "${kver}" >"${work}/kernel_version"
	local code vars
	code="$(ls "${work}"/ovmf/usr/share/OVMF/OVMF_CODE_4M.fd "${work}"/ovmf/usr/share/OVMF/OVMF_CODE.fd 2>/dev/null | head -n1)"
	vars="$(ls "${work}"/ovmf/usr/share/OVMF/OVMF_VARS_4M.fd "${work}"/ovmf/usr/share/OVMF/OVMF_VARS.fd 2>/dev/null | head -n1)"
	[[ -n "${code}" && -n "${vars}" ]] || die "the ovmf package has no OVMF_CODE/OVMF_VARS"
	cp "${code}" "${work}/OVMF_CODE.fd"
	cp "${vars}" "${work}/OVMF_VARS.fd"

	rm -rf "${work}/kernel" "${work}/busybox" "${work}/ovmf" "${root}"
	rm -rf "${base}"
	mv "${work}" "${base}"
	# guests of other package versions or of an older build-guest.sh
	find "${VM_CACHE}" -maxdepth 1 -name 'base-*' ! -name "$(basename "${base}")" -exec rm -rf {} +
}

[[ -f "${base}/base.cpio" ]] || build_base

# ---- the daemons -------------------------------------------------------------------------------

bins_key="$(
	{
		echo "strip=${STRIP_BINARIES}"
		# path, size and modification time: cheaper than hashing ~200 MiB of debug binaries
		for bin in "${DAEMONS[@]}" "${TOOLS[@]}"; do stat -L -c '%n %s %Y' "${BIN_DIR}/${bin}"; done
	} | sha256sum | cut -c1-16
)"
bins="${VM_CACHE}/bins-${bins_key}.cpio"
if [[ ! -f "${bins}" ]]; then
	log "packing the daemons from ${BIN_DIR}"
	work="$(mktemp -d "${VM_CACHE}/bins.XXXXXX")"
	mkdir -p "${work}/usr/local/bin"
	for bin in "${DAEMONS[@]}" "${TOOLS[@]}"; do
		if [[ "${STRIP_BINARIES}" == yes ]]; then
			strip --strip-debug -o "${work}/usr/local/bin/${bin}" "${BIN_DIR}/${bin}"
			chmod 0755 "${work}/usr/local/bin/${bin}"
		else
			install -m 0755 "${BIN_DIR}/${bin}" "${work}/usr/local/bin/${bin}"
		fi
	done
	(cd "${work}" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --quiet) >"${bins}.tmp"
	mv "${bins}.tmp" "${bins}"
	rm -rf "${work}"
	# older daemon archives are of no use
	find "${VM_CACHE}" -maxdepth 1 -name 'bins-*.cpio' ! -name "$(basename "${bins}")" -mmin +60 -delete
fi

# ---- init and scenarios ------------------------------------------------------------------------

init_key="$(cat "${script_dir}/init" "${script_dir}"/scenarios/*.sh | sha256sum | cut -c1-16)"
init="${VM_CACHE}/init-${init_key}.cpio"
if [[ ! -f "${init}" ]]; then
	work="$(mktemp -d "${VM_CACHE}/init.XXXXXX")"
	install -m 0755 "${script_dir}/init" "${work}/init"
	mkdir -p "${work}/vmtest/scenarios"
	install -m 0755 "${script_dir}"/scenarios/*.sh "${work}/vmtest/scenarios/"
	(cd "${work}" && find . -mindepth 1 | sort | cpio -o -H newc -R 0:0 --quiet) >"${init}.tmp"
	mv "${init}.tmp" "${init}"
	rm -rf "${work}"
	find "${VM_CACHE}" -maxdepth 1 -name 'init-*.cpio' ! -name "$(basename "${init}")" -mmin +60 -delete
fi

echo "kernel ${base}/vmlinuz"
echo "kernel_version $(cat "${base}/kernel_version")"
echo "initrd ${base}/base.cpio"
echo "initrd ${bins}"
echo "initrd ${init}"
echo "ovmf_code ${base}/OVMF_CODE.fd"
echo "ovmf_vars ${base}/OVMF_VARS.fd"
