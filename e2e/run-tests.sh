#!/usr/bin/env bash
# The project's test command (`make test`, called by .ci/run): installs what it needs,
# lints and type-checks, starts the real services, runs every test, stops the services.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

started=$SECONDS
bash scripts/bootstrap.sh
PY=.venv/bin

echo "== lint, types and the dependency rule"
$PY/ruff check .
$PY/ruff format --check .
$PY/mypy
$PY/lint-imports --no-cache  # pyproject.toml [tool.importlinter]; docs/architecture.md

echo "== test environment"
trap 'bash e2e/env/down.sh' EXIT
bash e2e/env/up.sh

echo "== tests"
bash e2e/env/chromium.sh  # Debian's Chromium for the web client's browser tests (tests/web/)
make bench-tools          # strace, perf and py-spy for the trace smoke (tests/bench/)
$PY/pytest "$@"
echo "test command finished in $((SECONDS - started))s"
