#!/usr/bin/env bash
# Checks cloud-init/ with the tools its ecosystem uses:
#
#   cloud-init schema --config-file brain.cloud-config.yaml   (Debian package cloud-init)
#   a negative control: a copy with an unknown write_files encoding must FAIL the same schema
#     check with a schema error (not a YAML error), so a pass means the schema was applied
#   the embedded script, as cloud-init parses it (its own Python and YAML), is byte for byte
#     m8trx-brain-provision.sh
#   the shellcheck linter on m8trx-brain-provision.sh and on this file (Debian package shellcheck)
#
# `check.sh --write` regenerates brain.cloud-config.yaml's embedded copy from the script.
# A missing tool prints SKIPPED and the rest still runs; under BRAIN_REQUIRE_TOOLS=1 (CI) a
# missing tool fails instead. Exits non-zero on any failure.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
config=$here/brain.cloud-config.yaml
script=$here/m8trx-brain-provision.sh

if [[ ${1-} == --write ]]; then
  tmp=$(mktemp)
  # Everything up to and including the `content: |` line, the script indented by 6, then
  # everything from `runcmd:` on.
  {
    sed -n '1,/^    content: |$/p' "$config"
    sed 's/^/      /; s/^ *$//' "$script"
    sed -n '/^runcmd:$/,$p' "$config"
  } >"$tmp"
  mv "$tmp" "$config"
  echo "rewrote $config"
  exit 0
fi

missing() {
  if [[ ${BRAIN_REQUIRE_TOOLS:-} == 1 ]]; then
    echo "cloud-init/check.sh: FAILED: $1 is not installed (BRAIN_REQUIRE_TOOLS=1)" >&2
    exit 1
  fi
  echo "cloud-init/check.sh: SKIPPED: $1 is not installed; $2 NOT checked" >&2
}

if command -v cloud-init >/dev/null; then
  cloud-init schema --config-file "$config"
  bad=$(mktemp)
  trap 'rm -f "$bad"' EXIT
  sed 's/^    owner: root:root$/    owner: root:root\n    encoding: rot13/' "$config" >"$bad"
  if out=$(cloud-init schema --config-file "$bad" 2>&1) ||
    [[ $out != *"write_files.0.encoding: 'rot13' is not one of"* ]]; then
    printf '%s\n' "$out" >&2
    echo "cloud-init/check.sh: FAILED: the schema check did not reject an unknown write_files encoding; it proves nothing" >&2
    exit 1
  fi
  echo "negative control (unknown write_files encoding) rejected by cloud-init schema: ok"
  # cloud-init's own interpreter has its YAML library.
  python=$(head -n 1 "$(command -v cloud-init)" | sed 's/^#! *//')
  "$python" - "$config" "$script" <<'PY'
import sys, yaml
config, script = sys.argv[1], sys.argv[2]
with open(config) as f:
    doc = yaml.safe_load(f)
files = [w for w in doc["write_files"] if w["path"] == "/usr/local/sbin/m8trx-brain-provision"]
assert len(files) == 1, "write_files has no /usr/local/sbin/m8trx-brain-provision"
with open(script) as f:
    want = f.read()
if files[0]["content"] != want:
    sys.exit("cloud-init/check.sh: FAILED: the script embedded in brain.cloud-config.yaml differs "
             "from m8trx-brain-provision.sh; run cloud-init/check.sh --write")
print("embedded script == m8trx-brain-provision.sh: ok")
PY
else
  missing cloud-init "brain.cloud-config.yaml (schema, embedded script)"
fi

if command -v shellcheck >/dev/null; then
  shellcheck "$script" "$here/check.sh"
  echo "shellcheck m8trx-brain-provision.sh check.sh: ok"
else
  missing shellcheck "the provisioning script"
fi
