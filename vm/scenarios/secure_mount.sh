# Scenario `secure_mount`: kata-agent's SecureMount requests on real virtio disks, a real
# device-mapper and real ext4, through the hub's socket (cdh-tool secure-mount).
#
# Inputs (/vmtest/input/env):
#   VMTEST_MARKER   a plaintext marker the host later looks for in the disk images
#   VMTEST_KEY_URI  a kbs:/// key the KBS does not have: a refusal that fetched it would
#                   answer NOT_FOUND instead of the host check's code
#   VMTEST_RIGHT_KEY, VMTEST_WRONG_KEY   keys for the pre-encrypted volume
# Disks by serial: store, store-int, emptydir, emptydir-int (one volume each), prepared (a
# LUKS2 volume made here before the request), plain (ext4 without encryption, the host's
# positive control for its plaintext search).
#
# Reports, per request <name>: sm <name> <rc> <cdh-tool's message>, sm_ms <name> <ms>; per
# volume <case>:
# mount, status.<case> and dumpe2fs.<case> files, holders, dm_uuid, written, readback,
# table.<case> (dmsetup table), luksdump.<case> (the detached header), teardown. The host looks for the marker in the disk
# images after the guest powered off.

MOUNT_STORE=/run/kata-containers/image/
MOUNT_EMPTYDIR=/run/kata-containers/sandbox/ephemeral/encrypted-empty-dir
MKFS_STORE="-E lazy_journal_init"
MKFS_EMPTYDIR="-O ^has_journal -m 0 -i 163840 -I 128"
HEADERS=/run/confidential-containers/cdh/luks-headers

disk() { # serial -> vdX
	for d in /sys/block/vd*; do
		[ "$(cat "$d/serial" 2>/dev/null)" = "$1" ] && echo "${d##*/}" && return 0
	done
	report no_disk "$1"
	return 1
}
devid() { cat "/sys/block/$1/dev"; }
# one SecureMount request through the hub's socket: sm <name> <cdh-tool secure-mount args>
sm() {
	local request=$1 rc t0
	shift
	t0=$(now_ms)
	cdh-tool secure-mount --volume-type block-device "$@" >/run/vmtest/sm.out 2>&1
	rc=$?
	report sm "$request $rc $(tr '\n' ' ' </run/vmtest/sm.out)"
	report sm_ms "$request $(($(now_ms) - t0))"
	return $rc
}
count() { ls "$1" 2>/dev/null | wc -l; }
# the mount source of a mount point
source_of() { awk -v mp="${1%/}" '$2 == mp { print $1 }' /proc/mounts; }
# 2048 numbered marker lines
write_marker() { # case file
	seq 1 2048 | sed "s/^/$VMTEST_MARKER $1 line /" >"$2"
}
# the LUKS2 header this hub wrote for a device (the newest one)
header_of() { ls -t "$HEADERS"/*.header 2>/dev/null | head -n1; }

# ---- the device-mapper refusal, on a kernel without it -----------------------------------

store=$(disk store)
# a kernel without device-mapper: unload it for one request, then load it again
rmmod dm_verity dm_integrity dm_crypt dm_bufio dm_mod 2>/run/vmtest/rmmod.err
if ! grep -q ' device-mapper$' /proc/misc; then
	sm no-device-mapper --option "deviceId=$(devid "$store")" --option sourceType=empty \
		--option encryptionType=luks2 --option targetType=fileSystem --option filesystemType=ext4 \
		--option "key=$VMTEST_KEY_URI" --mount-point /run/vmtest/no-dm
	report headers_after_refusal "no-device-mapper $(count $HEADERS)"
	report untouched "no-device-mapper $(dd if="/dev/$store" bs=1M count=1 2>/dev/null | tr -d '\000' | wc -c)"
	load_dm_modules
fi
if grep -q ' device-mapper$' /proc/misc; then report dm yes; else report dm no; fi

# ---- a mounted device is refused -------------------------------------------------------------

plain=$(disk plain)
mkfs.ext4 -q "/dev/$plain" && mkdir -p /run/vmtest/plain && mount "/dev/$plain" /run/vmtest/plain
write_marker plain /run/vmtest/plain/marker.txt
sm mounted-device --option "deviceId=$(devid "$plain")" --option sourceType=empty \
	--option encryptionType=luks2 --option targetType=fileSystem --option filesystemType=ext4 \
	--option "key=$VMTEST_KEY_URI" --mount-point /run/vmtest/refused
umount /run/vmtest/plain

# ---- kata's two volumes, with and without dm-integrity ---------------------------------------

volume() { # case serial mount-point integrity mkfs-options
	c=$1
	dev=$(disk "$2") || return 1
	mp=$3
	sm "$c" --option "deviceId=$(devid "$dev")" --option sourceType=empty \
		--option targetType=fileSystem --option filesystemType=ext4 \
		--option encryptionType=luks2 --option "mkfsOpts=$5" --option "dataIntegrity=$4" \
		--mount-point "$mp" || return 1
	src=$(source_of "$mp")
	name=${src#/dev/mapper/}
	report mount "$c $(awk -v mp="${mp%/}" '$2 == mp { print $1, $2, $3, $4 }' /proc/mounts)"
	cryptsetup status "$name" >"/run/vmtest/status.$c" 2>&1
	report_file "status.$c" "/run/vmtest/status.$c"
	# the live table (without the key: dmsetup shows it only with --showkeys)
	dmsetup table >"/run/vmtest/table.$c" 2>&1
	report_file "table.$c" "/run/vmtest/table.$c"
	cryptsetup luksDump "$(header_of)" >"/run/vmtest/luksdump.$c" 2>&1
	report_file "luksdump.$c" "/run/vmtest/luksdump.$c"
	dumpe2fs -h "$src" >"/run/vmtest/dumpe2fs.$c" 2>/dev/null
	report_file "dumpe2fs.$c" "/run/vmtest/dumpe2fs.$c"
	report holders "$c $(ls "/sys/block/$dev/holders" | tr '\n' ' ')"
	for h in /sys/block/dm-*; do
		[ -e "$h/dm/uuid" ] && report dm_uuid "$c $(cat "$h/dm/name") $(cat "$h/dm/uuid")"
	done

	write_marker "$c" "$mp/marker.txt"
	report written "$c $(sha256sum <"$mp/marker.txt" | cut -c1-64)"
	sync
	echo 3 >/proc/sys/vm/drop_caches
	report readback "$c $(sha256sum <"$mp/marker.txt" | cut -c1-64)"

	# while it is open: the device is held, and its mapper name is taken
	sm "held-$c" --option "deviceId=$(devid "$dev")" --option sourceType=empty \
		--option encryptionType=luks2 --option targetType=fileSystem --option filesystemType=ext4 \
		--option "key=$VMTEST_KEY_URI" --mount-point /run/vmtest/refused
	sm "mapper-name-$c" --option "deviceId=$(devid "$(disk prepared)")" --option sourceType=empty \
		--option encryptionType=luks2 --option targetType=fileSystem --option filesystemType=ext4 \
		--option "mapperName=$name" --option "key=$VMTEST_KEY_URI" --mount-point /run/vmtest/refused

	umount "$mp"
	cryptsetup close "$name"
	report teardown "$c $? $(count "/sys/block/$dev/holders") $(count $HEADERS)"

	# the header stays in guest memory: formatting the same device again is refused
	sm "again-$c" --option "deviceId=$(devid "$dev")" --option sourceType=empty \
		--option encryptionType=luks2 --option targetType=fileSystem --option filesystemType=ext4 \
		--option "key=$VMTEST_KEY_URI" --mount-point "$mp"
}

volume store store "$MOUNT_STORE" false "$MKFS_STORE"
volume store-int store-int "$MOUNT_STORE" true "$MKFS_STORE"
volume emptydir emptydir "$MOUNT_EMPTYDIR" false "$MKFS_EMPTYDIR"
volume emptydir-int emptydir-int "$MOUNT_EMPTYDIR" true "$MKFS_EMPTYDIR"

# ---- refusals that need no device --------------------------------------------------------------

free=$(devid "$(disk prepared)")
sm system-dir --option "deviceId=$free" --option sourceType=empty --option encryptionType=luks2 \
	--option targetType=fileSystem --option filesystemType=ext4 --option "key=$VMTEST_KEY_URI" \
	--mount-point /etc/vmtest-volume
mkdir -p /run/vmtest/real && ln -s /run/vmtest/real /run/vmtest/link
sm symlink --option "deviceId=$free" --option sourceType=empty --option encryptionType=luks2 \
	--option targetType=fileSystem --option filesystemType=ext4 --option "key=$VMTEST_KEY_URI" \
	--mount-point /run/vmtest/link/volume
sm no-such-device --option deviceId=250:250 --option sourceType=empty --option encryptionType=luks2 \
	--option targetType=fileSystem --option filesystemType=ext4 --option "key=$VMTEST_KEY_URI" \
	--mount-point /run/vmtest/refused
report refused_left "$(count /run/vmtest/real) $([ -e /run/vmtest/refused ] && echo exists || echo absent) $(count /dev/mapper)"

# ---- a LUKS2 volume made before: the wrong key, then the right one ---------------------------

prep=$(disk prepared)
keys=/run/confidential-containers/cdh
mkdir -p $keys
printf '%s' "$VMTEST_RIGHT_KEY" >$keys/right.key
printf '%s' "$VMTEST_WRONG_KEY" >$keys/wrong.key
cryptsetup luksFormat --batch-mode --type luks2 --pbkdf pbkdf2 --pbkdf-force-iterations 1000 \
	--key-file $keys/right.key "/dev/$prep" &&
	cryptsetup open --key-file $keys/right.key "/dev/$prep" vmtest-prep &&
	mkfs.ext4 -q /dev/mapper/vmtest-prep &&
	mkdir -p /run/vmtest/prep && mount /dev/mapper/vmtest-prep /run/vmtest/prep &&
	write_marker prepared /run/vmtest/prep/marker.txt &&
	report written "prepared $(sha256sum </run/vmtest/prep/marker.txt | cut -c1-64)" &&
	umount /run/vmtest/prep && cryptsetup close vmtest-prep
report prepared "$?"
header_before=$(dd if="/dev/$prep" bs=1M count=16 2>/dev/null | sha256sum | cut -c1-64)
sm wrong-key --option "deviceId=$(devid "$prep")" --option sourceType=encrypted \
	--option encryptionType=luks2 --option targetType=fileSystem --option filesystemType=ext4 \
	--option "key=file://$keys/wrong.key" --mount-point /run/vmtest/reopened
header_after=$(dd if="/dev/$prep" bs=1M count=16 2>/dev/null | sha256sum | cut -c1-64)
report after_wrong_key "$([ "$header_before" = "$header_after" ] && echo header-unchanged || echo header-changed) $(count /dev/mapper) $([ -e /run/vmtest/reopened ] && echo exists || echo absent) $(count "/sys/block/$prep/holders")"
if sm right-key --option "deviceId=$(devid "$prep")" --option sourceType=encrypted \
	--option encryptionType=luks2 --option targetType=fileSystem --option filesystemType=ext4 \
	--option "key=file://$keys/right.key" --mount-point /run/vmtest/reopened; then
	report readback "prepared $(sha256sum </run/vmtest/reopened/marker.txt | cut -c1-64)"
	src=$(source_of /run/vmtest/reopened)
	report mount "prepared $(awk '$2 == "/run/vmtest/reopened" { print $1, $2, $3, $4 }' /proc/mounts)"
	umount /run/vmtest/reopened
	cryptsetup close "${src#/dev/mapper/}"
	report teardown "prepared $? $(count "/sys/block/$prep/holders") $(count $HEADERS)"
fi
sync
