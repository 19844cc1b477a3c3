#!/usr/bin/env bash
# Create .venv and install the project with its test tools (idempotent; fast when current).
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

python=${PYTHON:-python3}
"$python" -c 'import sys; assert sys.version_info >= (3, 11), "Python 3.11+ needed"' ||
    { echo "Tidings needs Python 3.11 or newer (found: $("$python" --version))" >&2; exit 1; }

stamp=.venv/.installed
if [[ ! -x .venv/bin/python ]]; then
    "$python" -m venv .venv
fi
if [[ ! -f $stamp || pyproject.toml -nt $stamp ]]; then
    .venv/bin/pip install --quiet --upgrade pip
    .venv/bin/pip install --quiet -e '.[test]'
    touch "$stamp"
fi
