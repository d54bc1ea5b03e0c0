#!/usr/bin/env bash
# The test suite: lint and types, then pytest (realtime tests alone, the rest on two workers).
# Exit 5 (no tests) fails.
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/ruff check --quiet . || exit 1
.venv/bin/ruff format --check --quiet . || exit 1
.venv/bin/mypy --no-error-summary || exit 1
if [ $# -gt 0 ]; then  # the tests named, as given
    .venv/bin/python -m pytest -q "$@"
    rc=$?
    [ $rc -eq 5 ] && echo "pytest collected no tests" >&2
    exit $rc
fi
# Tests timed against real time alone first, then the rest two at a time (tests/conftest.py).
.venv/bin/python -m pytest -q -m realtime
rc=$?
[ $rc -eq 5 ] && echo "pytest collected no realtime tests" >&2
.venv/bin/python -m pytest -q -n 2 -m "not realtime"
rc2=$?
[ $rc2 -eq 5 ] && echo "pytest collected no tests" >&2
[ $rc -ne 0 ] && exit $rc
exit $rc2
