#!/usr/bin/env bash
# Regenerates src/schema.d.ts (the OpenAPI document's paths and components as TypeScript types) with
# openapi-typescript. With no arguments: from the document the route declarations give
# (scripts/openapi.ts), into src/schema.d.ts. CI (scripts/contract-check.sh) passes its own paths and
# fails when the checked-in file differs.
set -euo pipefail
here="$(cd "$(dirname "$0")/.." && pwd)"
root="$(cd "$here/../.." && pwd)"
doc="${1:-}"
out="${2:-$here/src/schema.d.ts}"
cd "$root"
if [ -z "$doc" ]; then
  doc="$(mktemp --suffix=.json)"
  trap 'rm -f "$doc"' EXIT
  node -r @swc-node/register scripts/openapi.ts "$doc"
fi
npx openapi-typescript "$doc" --output "$out" --root-types --alphabetize >/dev/null
npx prettier --config "$root/.prettierrc.json" --log-level warn --write "$out" >/dev/null
