# Scenario `extension`: after kata's launch from the `coco` guest extension (init's
# mount_extension with VMTEST_EXTENSION=coco), which binaries run: the executable of each
# running daemon, as the kernel sees it, and the mount it comes from.
# Reports: exe <name> <path> per running daemon, ext_mounted <source> <fstype> <options>.

for p in /proc/[0-9]*; do
	exe=$(readlink "$p/exe" 2>/dev/null) || continue
	case "${exe##*/}" in
	attestation-agent | confidential-data-hub | api-server-rest) report exe "${exe##*/} $exe" ;;
	esac
done
report ext_mounted "$(awk '$2 == "/run/kata-extensions/coco" { print $1, $3, $4 }' /proc/mounts)"
