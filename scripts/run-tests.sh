#!/usr/bin/env bash
# The test suite: lint and types, the systemd unit checks, then pytest. Exit 5 (no tests) fails.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check --quiet . || exit 1
.venv/bin/ruff format --check --quiet . || exit 1
.venv/bin/mypy --no-error-summary || exit 1
.venv/bin/python -m pytest -q "$@"
rc=$?
[ $rc -eq 5 ] && echo "pytest collected no tests" >&2
exit $rc
