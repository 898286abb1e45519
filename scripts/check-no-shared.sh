#!/usr/bin/env bash
# Fails when a file of the repository (tracked, or untracked and not ignored) other than
# Markdown refers to the developer-only directory beside the clone (dot-dot, slash, "shared"):
# a clone must build and test on its own, with its fixtures under testdata/.
# Exit 0: nothing refers to it; exit 1: the offending lines are listed.
set -euo pipefail
cd "$(dirname "$0")/.."

# Built from two parts so that this script does not match itself.
parent='..'
pattern="${parent}/shared"

hits=$(
  {
    git grep -n -I -F -e "$pattern" -- ':!*.md' || true
    git ls-files -z --others --exclude-standard -- ':!*.md' \
      | xargs -0 -r grep -n -s -I -F -H -e "$pattern" -- || true
  } | sort -u
)

if [ -n "$hits" ]; then
  echo "error: these files refer to ${pattern} (outside the repository); copy the data into testdata/ instead:" >&2
  printf '%s\n' "$hits" >&2
  exit 1
fi
echo "check-no-shared: ok"
