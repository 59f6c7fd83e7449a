#!/usr/bin/env bash
# The test command: the Python context service's checks (ruff lint + format, mypy, pytest), then the
# type check, lint, format check and every Jest project (unit, integration, cluster) in one run.
# Prints "python: N passed, N failed", "jest: N passed, N failed" and the total as "tests: N passed, N failed".
set -uo pipefail
cd "$(dirname "$0")/.."
major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
if [ "$major" -lt 22 ]; then
  echo "scripts/test.sh: Node $(node -v 2>/dev/null) is too old for this project (needs >= 22); run ./forge test, which uses the pinned Node" >&2
  echo "tests: 0 passed, 1 failed (wrong Node version)"
  exit 1
fi
PY="${FORGE_PYTHON:-.tools/venv/bin/python}"
if [ ! -x "$PY" ]; then
  echo "scripts/test.sh: no Python environment at $PY; run ./forge test, which creates it" >&2
  echo "tests: 0 passed, 1 failed (no Python environment)"
  exit 1
fi

# ---- Python: lint, format, types, tests ----
PY="$(cd "$(dirname "$PY")" && pwd)/$(basename "$PY")"
py_passed=0; py_failed=0; py_status=0
VENV_BIN="$(dirname "$PY")"
( cd context && "$VENV_BIN/ruff" check . && "$VENV_BIN/ruff" format --check . ) || { echo "python: ruff failed" >&2; py_failed=$((py_failed + 1)); py_status=1; }
( cd context && "$VENV_BIN/mypy" ) || { echo "python: mypy failed" >&2; py_failed=$((py_failed + 1)); py_status=1; }
junit="$(mktemp --suffix=.xml)"
( cd context && "$PY" -m pytest -q -p no:cacheprovider --junitxml="$junit" tests )
rc=$?
if [ "$rc" -eq 5 ]; then
  echo "python: pytest collected no tests" >&2; py_failed=$((py_failed + 1)); py_status=1
elif [ -s "$junit" ]; then
  read -r p f < <("$PY" -c '
import sys, xml.etree.ElementTree as ET
r = ET.parse(sys.argv[1]).getroot()
s = r if r.tag == "testsuite" else r.find("testsuite")
t, fl, er, sk = (int(s.get(k, 0)) for k in ("tests", "failures", "errors", "skipped"))
print(t - fl - er - sk, fl + er)' "$junit")
  py_passed=$((py_passed + p)); py_failed=$((py_failed + f))
  [ "$rc" -ne 0 ] && py_status=1
else
  echo "python: pytest produced no results (exit $rc)" >&2; py_failed=$((py_failed + 1)); py_status=1
fi
rm -f "$junit"
echo "python: $py_passed passed, $py_failed failed"

# ---- TypeScript: type check, Jest ----
npx tsc -p tsconfig.json --noEmit || { echo "tests: $py_passed passed, $((py_failed + 1)) failed (type check)"; exit 1; }
# Lint before the tests: ESLint (typescript-eslint, layering, import cycles) and dpdm (cycles through
# type-only imports too), then Prettier. Fix with `npm run lint` / `npm run format`.
npm run --silent lint || { echo "lint: FAILED (npm run lint: ESLint or an import cycle)" >&2; echo "tests: $py_passed passed, $((py_failed + 1)) failed (lint)"; exit 1; }
npx prettier --check --log-level warn "**/*.{ts,js,mjs,cjs,json}" || { echo "format: FAILED (files above are not Prettier-formatted; run npm run format)" >&2; echo "tests: $py_passed passed, $((py_failed + 1)) failed (format)"; exit 1; }
# The contract: the generated OpenAPI document lints at 0 errors (Redocly, Spectral OWASP).
bash scripts/contract-check.sh || { echo "contract: FAILED (scripts/contract-check.sh)" >&2; echo "tests: $py_passed passed, $((py_failed + 1)) failed (contract)"; exit 1; }
out="$(mktemp --suffix=.json)"
npx jest --runInBand --json --outputFile="$out" "$@"
status=$?
read -r j_passed j_failed < <(node -e '
const r = JSON.parse(require("fs").readFileSync(process.argv[1], "utf8"));
if (!r.success) console.error(`jest: success=false (failed suites: ${r.numFailedTestSuites}, runtime errors: ${r.numRuntimeErrorTestSuites}, open handles: ${(r.openHandles || []).length})`);
console.log(`${r.numPassedTests} ${r.numFailedTests + r.numRuntimeErrorTestSuites}`);
' "$out" || echo "0 1")
rm -f "$out"
echo "jest: $j_passed passed, $j_failed failed"
echo "tests: $((py_passed + j_passed)) passed, $((py_failed + j_failed)) failed"
[ "$status" -ne 0 ] && exit "$status"
exit "$py_status"
