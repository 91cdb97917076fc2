#!/usr/bin/env bash
# The rich-presence state diagram in docs/ is rendered from its .dot source
# by graphviz's dot (Debian's graphviz): the source must render, and the
# committed SVG must be what it renders to, so the picture cannot drift from
# its source. Fix a failure with `cmake --build build --target docs`.
set -euo pipefail
docs="$1/docs"
if ! command -v dot >/dev/null; then
  echo "graphviz's dot is missing: tools/install-deps.sh installs it" >&2
  exit 1
fi
rendered=$(mktemp)
trap 'rm -f "$rendered"' EXIT
dot -Tsvg "$docs/rich-presence-states.dot" -o "$rendered"
grep -q '<title>AWAY</title>' "$rendered" || {
  echo "the rendered diagram lacks the AWAY state" >&2
  exit 1
}
if ! cmp -s "$rendered" "$docs/rich-presence-states.svg"; then
  echo "docs/rich-presence-states.svg is not what docs/rich-presence-states.dot renders to:" >&2
  echo "run: cmake --build build --target docs" >&2
  diff "$rendered" "$docs/rich-presence-states.svg" | head -20 >&2
  exit 1
fi
echo "docs/rich-presence-states.svg is up to date"
