#!/usr/bin/env bash
# The contract check (run by scripts/test.sh): generates the OpenAPI document from the route
# declarations, lints it with Redocly (recommended) and Spectral (OWASP API Security), both at
# 0 errors, and checks that the TypeScript client's generated types match it.
set -euo pipefail
cd "$(dirname "$0")/.."
out="$(mktemp -d)"
trap 'rm -rf "$out"' EXIT
node -r @swc-node/register scripts/openapi.ts "$out/openapi.json"
npx redocly lint --config redocly.yaml --format stylish "$out/openapi.json"
npx spectral lint --ruleset .spectral.yaml --fail-severity error --display-only-failures --format text "$out/openapi.json"
if [ -f clients/typescript/scripts/generate.sh ]; then
  bash clients/typescript/scripts/generate.sh "$out/openapi.json" "$out/schema.d.ts"
  if ! cmp -s "$out/schema.d.ts" clients/typescript/src/schema.d.ts; then
    echo "contract: clients/typescript/src/schema.d.ts is not the document's (run bash clients/typescript/scripts/generate.sh)" >&2
    exit 1
  fi
fi
echo "contract: OpenAPI document lints clean (Redocly recommended, Spectral OWASP) and the client matches it"
