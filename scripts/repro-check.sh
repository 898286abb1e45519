#!/usr/bin/env bash
# `make repro-check` (and `make bench BENCH=repro_differing_bytes`): builds the committed
# HEAD twice, as kata's build does (`make build`, then `make coco-extension`), in two clones
# at different paths, with two different HOMEs and cargo homes, one after the other, and
# compares the three release binaries, the coco extension's disk image and the printed
# reference values. Prints `bench repro_differing_bytes: <n> bytes` (0 when reproducible)
# and exits 1 when anything differs. Each build starts from an empty target directory, so
# this takes two full release builds.
#
# Variables: REPRO_WORK (work directory, default a new one under /var/tmp, removed at the
# end unless REPRO_KEEP=1).
set -euo pipefail

repo=$(cd "$(dirname "$0")/.." && pwd)
work=${REPRO_WORK:-$(mktemp -d /var/tmp/coco-repro.XXXXXX)}
[[ "${REPRO_KEEP:-0}" == 1 ]] || trap 'rm -rf "$work"' EXIT
cargo_home=$(cd "${CARGO_HOME:-$HOME/.cargo}" && pwd)
rustup_home=${RUSTUP_HOME:-$HOME/.rustup}
arch=$(uname -m)
release="target/$arch-unknown-linux-gnu/release"
binaries=(attestation-agent confidential-data-hub api-server-rest)
# both builds are of this commit, even if HEAD moves while they run
commit=$(git -C "$repo" rev-parse HEAD)

# One build in its own clone, HOME and cargo home; its results are copied to $work/<name>.
build() { # name clone-path
  local name=$1 src=$2 home="$work/home-$1"
  git clone -q --no-hardlinks "$repo" "$src"
  git -C "$src" checkout -q --detach "$commit"
  mkdir -p "$home/.cargo"
  # the crates already downloaded, without a network fetch (hard links: no copy)
  cp -al "$cargo_home/registry" "$home/.cargo/registry"
  echo "repro-check: building $name in $src" >&2
  (
    cd "$src"
    env -u CARGO_TARGET_DIR -u RUSTFLAGS -u SOURCE_DATE_EPOCH \
      HOME="$home" CARGO_HOME="$home/.cargo" RUSTUP_HOME="$rustup_home" \
      PATH="$cargo_home/bin:$PATH" \
      make -s build coco-extension >&2
    env HOME="$home" make -s reference-values >"$work/$name.reference-values"
  )
  mkdir -p "$work/$name"
  for b in "${binaries[@]}"; do cp "$src/$release/$b" "$work/$name/$b"; done
  cp "$src/build/coco-extension/kata-containers-coco-extension.img" "$work/$name/extension.img"
}

# Bytes that differ between two files, a length difference counted as differing bytes.
differing() { # a b
  local a=$1 b=$2 size_a size_b common
  size_a=$(stat -c %s "$a")
  size_b=$(stat -c %s "$b")
  common=$((size_a < size_b ? size_a : size_b))
  local n
  n=$(cmp -l -n "$common" "$a" "$b" 2>/dev/null | wc -l || true)
  echo $((n + (size_a > size_b ? size_a - size_b : size_b - size_a)))
}

echo "repro-check: commit $commit" >&2
build first "$work/first/guest-components"
build second "$work/elsewhere/another-name/guest-components"

total=0
for f in "${binaries[@]}" extension.img; do
  n=$(differing "$work/first/$f" "$work/second/$f")
  echo "repro-check: $f: $n of $(stat -c %s "$work/first/$f") bytes differ" >&2
  total=$((total + n))
done
if cmp -s "$work/first.reference-values" "$work/second.reference-values"; then
  echo "repro-check: reference values identical: $(cat "$work/first.reference-values")" >&2
else
  echo "repro-check: reference values differ:" >&2
  diff "$work/first.reference-values" "$work/second.reference-values" >&2 || true
  total=$((total + 1))
fi
echo "bench repro_differing_bytes: $total bytes"
[[ "$total" -eq 0 ]]
