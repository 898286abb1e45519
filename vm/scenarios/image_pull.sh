# Scenario `image_pull`: kata-agent's PullImage through the hub's socket (cdh-tool
# pull-image) from the host's registry (10.0.2.2:<port>, plain HTTP), into bundles under
# /run/kata-containers/ on the guest kernel's overlayfs. The hub's cdh.toml (initdata) names
# the registry and a signature policy from offline_fs_kbc (/etc/aa-offline_fs_kbc-resources.json,
# from /vmtest/input/etc/).
#
# Inputs: VMTEST_IMAGE_OK (a reference the policy accepts: cosign-signed by the policy's
# key), VMTEST_IMAGE_UNSIGNED (one it requires a cosign signature for, and that has none),
# VMTEST_IMAGE_WRONG_KEY (one signed by another key than the policy's),
# VMTEST_IMAGE_ENCRYPTED (signed by the policy's key, layers encrypted for the KBC's
# kbs:///default/key/1), VMTEST_IMAGE_WRONG_KEK (signed, encrypted under a KEK the KBC
# holds another key for).
# Reports: pull <name> <rc> <cdh-tool's output>, pull_ms <name> <ms>, bundle_mount <name>
# <source> <fstype> <options>, bundle <name> <present|absent>; files rootfs_sums (sha256sum
# of every file of the accepted rootfs), rootfs_sums.encrypted, config.json (the accepted
# bundle's).

BUNDLES=/run/kata-containers
pull() { # name reference
	local t0 rc
	t0=$(now_ms)
	cdh-tool pull-image --image-url "$2" --bundle-path "$BUNDLES/$1" >/run/vmtest/pull.out 2>&1
	rc=$?
	report pull "$1 $rc $(tr '\n' ' ' </run/vmtest/pull.out)"
	report pull_ms "$1 $(($(now_ms) - t0))"
	report bundle_mount "$1 $(awk -v mp="$BUNDLES/$1/rootfs" '$2 == mp { print $1, $3, $4 }' /proc/mounts)"
	if [ -e "$BUNDLES/$1" ]; then report bundle "$1 present"; else report bundle "$1 absent"; fi
}

mkdir -p "$BUNDLES"
pull ok "$VMTEST_IMAGE_OK"
(cd "$BUNDLES/ok/rootfs" && find . -type f | sort | xargs sha256sum) >/run/vmtest/rootfs_sums 2>&1
report_file rootfs_sums /run/vmtest/rootfs_sums
report_file config.json "$BUNDLES/ok/config.json"
pull unsigned "$VMTEST_IMAGE_UNSIGNED"
pull wrongkey "$VMTEST_IMAGE_WRONG_KEY"
pull encrypted "$VMTEST_IMAGE_ENCRYPTED"
(cd "$BUNDLES/encrypted/rootfs" && find . -type f | sort | xargs sha256sum) >/run/vmtest/rootfs_sums.encrypted 2>&1
report_file rootfs_sums.encrypted /run/vmtest/rootfs_sums.encrypted
pull wrongkek "$VMTEST_IMAGE_WRONG_KEK"
