#!/usr/bin/env bash
# `make run`: starts the attestation-agent, the confidential-data-hub and the REST shim as the
# current user, everything under ./run (sockets, configs, logs) and on loopback: offline_fs_kbc
# fed by a sample resources file, the sample attester explicitly enabled. Ctrl-C stops all three.
set -euo pipefail

top=$(cd "$(dirname "$0")/.." && pwd)
bin_dir="${CARGO_TARGET_DIR:-$top/target}/debug"
run_dir="$top/run"
bind="${ASR_BIND:-127.0.0.1:8006}"

for b in attestation-agent confidential-data-hub api-server-rest; do
  [ -x "$bin_dir/$b" ] || { echo "error: $bin_dir/$b is not built (run: make run)" >&2; exit 1; }
done

mkdir -p "$run_dir/logs" "$run_dir/cdh/kbs"
chmod 0700 "$run_dir"
aa_sock="unix://$run_dir/attestation-agent.sock"
cdh_sock="unix://$run_dir/cdh.sock"

# The sample secret served as kbs:///default/key/1 (offline_fs_kbc values are standard base64).
printf '{\n  "default/key/1": "%s"\n}\n' "$(printf 'sample secret: hello from the offline KBC' | base64 -w0)" \
  > "$run_dir/offline-fs-kbc-resources.json"

cat > "$run_dir/aa.toml" <<TOML
[attester]
allow_sample = true

[log]
level = "info"
TOML

cat > "$run_dir/cdh.toml" <<TOML
socket = "$cdh_sock"

[aa]
aa_socket = "$aa_sock"

[kbc]
name = "offline_fs_kbc"

[log]
level = "info"
TOML

pids=()
stop() {
  trap - INT TERM EXIT
  echo
  echo "stopping..."
  for pid in "${pids[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
  for pid in "${pids[@]}"; do wait "$pid" 2>/dev/null || true; done
  echo "stopped; logs are in $run_dir/logs"
  exit "${1:-0}"
}
trap stop INT TERM EXIT

wait_for() { # what, test command...
  local what=$1; shift
  for _ in $(seq 1 100); do
    if "$@" 2>/dev/null; then return 0; fi
    sleep 0.1
  done
  echo "error: $what did not come up; see $run_dir/logs" >&2
  exit 1
}

"$bin_dir/attestation-agent" -c "$run_dir/aa.toml" --attestation_sock "$aa_sock" \
  >"$run_dir/logs/attestation-agent.log" 2>&1 &
pids+=($!)
wait_for attestation-agent test -S "$run_dir/attestation-agent.sock"

OFFLINE_FS_KBC_EXTRA_FILE_PATH="$run_dir/offline-fs-kbc-resources.json" \
  "$bin_dir/confidential-data-hub" -c "$run_dir/cdh.toml" --credentials-dir "$run_dir/cdh/kbs" \
  >"$run_dir/logs/confidential-data-hub.log" 2>&1 &
pids+=($!)
wait_for confidential-data-hub test -S "$run_dir/cdh.sock"

"$bin_dir/api-server-rest" --bind "$bind" --features all --cdh_addr "$cdh_sock" --aa_addr "$aa_sock" \
  >"$run_dir/logs/api-server-rest.log" 2>&1 &
pids+=($!)
wait_for api-server-rest curl -sf -o /dev/null "http://$bind/info"

cat <<MSG
attestation-agent, confidential-data-hub and api-server-rest are running (runtime dir: $run_dir).
Try:
  curl http://$bind/cdh/resource/default/key/1
  curl "http://$bind/aa/evidence?runtime_data=hello"
  curl "http://$bind/aa/additional-evidence?runtime_data=hello"
  curl http://$bind/info
  curl http://$bind/openapi.json
Press Ctrl-C to stop all three.
MSG
wait -n "${pids[@]}" || true
echo "a daemon exited on its own; see $run_dir/logs" >&2
stop 1
