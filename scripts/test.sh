#!/usr/bin/env bash
# The test command: type check, lint, format check, then every Jest project (unit, integration, cluster) in one run.
# Prints a plain "tests: N passed, N failed" line at the end.
set -uo pipefail
cd "$(dirname "$0")/.."
major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$major" -lt 22 ]; then
  echo "scripts/test.sh: Node $(node -v 2>/dev/null) is too old for this project (needs >= 22); run ./forge test, which uses the pinned Node" >&2
  echo "tests: 0 passed, 1 failed (wrong Node version)"
  exit 1
fi
npx tsc -p tsconfig.json --noEmit || { echo "tests: 0 passed, 1 failed (type check)"; exit 1; }
# Lint before the tests: ESLint (typescript-eslint, layering, import cycles) and dpdm (cycles through
# type-only imports too), then Prettier. Fix with `npm run lint` / `npm run format`.
npm run --silent lint || { echo "lint: FAILED (npm run lint: ESLint or an import cycle)" >&2; echo "tests: 0 passed, 1 failed (lint)"; exit 1; }
npx prettier --check --log-level warn "**/*.{ts,js,mjs,cjs,json}" || { echo "format: FAILED (files above are not Prettier-formatted; run npm run format)" >&2; echo "tests: 0 passed, 1 failed (format)"; exit 1; }
out="$(mktemp --suffix=.json)"
npx jest --runInBand --json --outputFile="$out" "$@"
status=$?
node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
if (!r.success) console.error(`jest: success=false (failed suites: ${r.numFailedTestSuites}, runtime errors: ${r.numRuntimeErrorTestSuites}, open handles: ${(r.openHandles || []).length})`);
console.log(`tests: ${r.numPassedTests} passed, ${r.numFailedTests + r.numRuntimeErrorTestSuites} failed`);
' "$out" || echo "tests: 0 passed, 1 failed (no results)"
rm -f "$out"
exit $status
