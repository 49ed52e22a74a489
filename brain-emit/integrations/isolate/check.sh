#!/usr/bin/env bash
# Checks the isolate-wrapper integration: brain.patch applies to m8trx-claude-isolate with no
# fuzz (patch -p1, as a user applies it to their copy), and the wrapper before and after the
# patch, and this file, pass shellcheck. Exits non-zero on any failure; without shellcheck it
# says SKIPPED (the patch is still applied), unless BRAIN_REQUIRE_TOOLS=1 (CI), where it fails.
# The patched wrapper is run end to end by e2e/tests/it/isolate.rs.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
rel=brain-emit/integrations/isolate/m8trx-claude-isolate

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
mkdir -p "$work/$(dirname "$rel")"
cp "$here/m8trx-claude-isolate" "$work/$rel"
patch --quiet --fuzz=0 -p1 -d "$work" <"$here/brain.patch"
echo "brain.patch applies to m8trx-claude-isolate (patch -p1, no fuzz): ok"

if command -v shellcheck >/dev/null; then
  shellcheck "$here/m8trx-claude-isolate" "$work/$rel" "$here/check.sh"
  echo "shellcheck m8trx-claude-isolate (before and after brain.patch) check.sh: ok"
elif [[ ${BRAIN_REQUIRE_TOOLS:-} == 1 ]]; then
  echo "isolate/check.sh: FAILED: shellcheck is not installed (BRAIN_REQUIRE_TOOLS=1)" >&2
  exit 1
else
  echo "isolate/check.sh: SKIPPED: shellcheck is not installed; the wrapper is NOT linted" >&2
fi
