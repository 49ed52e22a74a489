#!/usr/bin/env bash
# Builds Brain's release artifacts: `cargo dist` (static, non-PIE glibc binaries; see
# .cargo/config.toml), then two tarballs and their checksums in the output directory:
#
#   m8trx-brain-VERSION-x86_64-linux.tar.gz         for customer boxes; the layout
#     bin/brain-emit  bin/brain-heartbeat             cloud-init/m8trx-brain-provision.sh
#     systemd/m8trx-brain-heartbeat.service           reads (--release-uri / --dist), plus the
#     systemd/m8trx-brain-heartbeat.timer             cloud-init files and the isolate-wrapper
#     claude-code/50-m8trx-brain.json                 patch, for whoever sets a box up
#     cloud-init/brain.cloud-config.yaml  cloud-init/m8trx-brain-provision.sh
#     isolate/brain.patch  isolate/m8trx-claude-isolate  isolate/README.md
#   m8trx-brain-server-VERSION-x86_64-linux.tar.gz  for the brain box
#     bin/brain-server  systemd/brain-server.service
#   SHA256SUMS                                      `sha256sum -c SHA256SUMS` in that directory
#
# Usage: dist/release.sh [--version V] [--out DIR] [--bin-dir DIR]
#
#   --version V    the release version in the file names (default: the workspace version,
#                  which is also what `brain-server` reports in /v1/healthz)
#   --out DIR      where the tarballs go (default: target/release-artifacts)
#   --bin-dir DIR  pack brain-emit, brain-heartbeat and brain-server from DIR instead of
#                  running `cargo dist` (a build made earlier, or stand-ins in tests)
#
# Fails when brain-emit is larger than 10 MiB (issue 9: it goes to every box). The archives
# are reproducible: sorted names, owner root, fixed modes, mtime from SOURCE_DATE_EPOCH (default:
# the last commit's time), gzip without a name or time stamp. The layout is checked against
# the provisioning script by e2e/tests/it/release.rs.
set -euo pipefail

readonly MAX_EMIT_BYTES=$((10 * 1024 * 1024))
repo=$(cd "$(dirname "$0")/.." && pwd)

version=''
out=$repo/target/release-artifacts
bin_dir=''

die() {
  printf 'release.sh: error: %s\n' "$*" >&2
  exit 1
}

while (($# > 0)); do
  case $1 in
    -h | --help)
      sed -n '2,/^set -euo/p' "$0" | sed '$d; s/^# \{0,1\}//'
      exit 0
      ;;
    --version | --out | --bin-dir) (($# >= 2)) || die "$1 needs a value" ;;&
    --version) version=$2 ;;
    --out) out=$2 ;;
    --bin-dir) bin_dir=$2 ;;
    *) die "unknown argument: $1 (see --help)" ;;
  esac
  shift 2
done

if [[ -z $version ]]; then
  # [workspace.package] version = "x.y.z" in the root manifest.
  version=$(sed -n '/^\[workspace\.package\]/,/^\[/ s/^version *= *"\(.*\)"/\1/p' "$repo/Cargo.toml")
  [[ -n $version ]] || die "no [workspace.package] version in Cargo.toml; pass --version"
fi
[[ $version =~ ^[0-9A-Za-z][0-9A-Za-z.+-]*$ ]] || die "--version '$version' is not a version"

if [[ -z $bin_dir ]]; then
  (cd "$repo" && cargo dist --locked)
  bin_dir=$repo/target/x86_64-unknown-linux-gnu/release
fi
for b in brain-emit brain-heartbeat brain-server; do
  [[ -x $bin_dir/$b ]] || die "$bin_dir/$b is missing or not executable"
done
emit_bytes=$(stat -c %s "$bin_dir/brain-emit")
((emit_bytes <= MAX_EMIT_BYTES)) ||
  die "brain-emit is $emit_bytes bytes, over the 10 MiB ($MAX_EMIT_BYTES) limit"

if [[ -z ${SOURCE_DATE_EPOCH:-} ]]; then
  SOURCE_DATE_EPOCH=$(git -C "$repo" log -1 --format=%ct 2>/dev/null || date +%s)
fi

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT

# put MODE SOURCE DEST: one file into the staging tree, with its mode set explicitly.
put() {
  install -D -m "$1" "$2" "$stage/$3"
}

box=m8trx-brain-$version-x86_64-linux
put 0755 "$bin_dir/brain-emit" "$box/bin/brain-emit"
put 0755 "$bin_dir/brain-heartbeat" "$box/bin/brain-heartbeat"
for f in m8trx-brain-heartbeat.service m8trx-brain-heartbeat.timer; do
  put 0644 "$repo/systemd/$f" "$box/systemd/$f"
done
put 0644 "$repo/brain-emit/integrations/claude-code/50-m8trx-brain.json" \
  "$box/claude-code/50-m8trx-brain.json"
put 0644 "$repo/cloud-init/brain.cloud-config.yaml" "$box/cloud-init/brain.cloud-config.yaml"
put 0755 "$repo/cloud-init/m8trx-brain-provision.sh" "$box/cloud-init/m8trx-brain-provision.sh"
put 0644 "$repo/brain-emit/integrations/isolate/brain.patch" "$box/isolate/brain.patch"
put 0755 "$repo/brain-emit/integrations/isolate/m8trx-claude-isolate" \
  "$box/isolate/m8trx-claude-isolate"
put 0644 "$repo/brain-emit/integrations/isolate/README.md" "$box/isolate/README.md"

server=m8trx-brain-server-$version-x86_64-linux
put 0755 "$bin_dir/brain-server" "$server/bin/brain-server"
put 0644 "$repo/systemd/brain-server.service" "$server/systemd/brain-server.service"

mkdir -p "$out"
out=$(cd "$out" && pwd)
# pack NAME: the staged NAME/ into $out/NAME.tar.gz, its contents at the top (no NAME/ prefix:
# the provisioning script unpacks into an empty directory and looks for bin/… there).
pack() {
  local dir=$stage/$1 entries
  find "$dir" -type d -exec chmod 0755 {} +
  mapfile -t entries < <(cd "$dir" && find . -mindepth 1 -maxdepth 1 -printf '%P\n' | sort)
  tar --sort=name --owner=0 --group=0 --numeric-owner --mtime="@$SOURCE_DATE_EPOCH" \
    --format=gnu -C "$dir" -cf - "${entries[@]}" | gzip -9 -n >"$out/$1.tar.gz"
}
pack "$box"
pack "$server"
box_tar=$box.tar.gz
server_tar=$server.tar.gz
(cd "$out" && sha256sum "$box_tar" "$server_tar" >SHA256SUMS)

printf 'release.sh: brain-emit %s bytes (limit %s)\n' "$emit_bytes" "$MAX_EMIT_BYTES" >&2
for f in "$box_tar" "$server_tar" SHA256SUMS; do
  printf '%s\n' "$out/$f"
done
