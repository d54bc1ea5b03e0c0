# voicebox: every target sets the machine up first, so on a fresh clone each is the only command.
PY := .venv/bin/python
.PHONY: bootstrap test system-test test-arm64 lint format typecheck demo demo-phone bench unit-check clean
ARCH ?= amd64

bootstrap:
	@bash scripts/bootstrap.sh

test: bootstrap
	@bash scripts/run-tests.sh

# Boots Debian 12 under a real systemd (needs root); ARCH=arm64 runs the Pi's userland under qemu.
system-test:
	@bash scripts/system-test.sh $(ARCH)

# The unit test suite (pytest) inside the Debian 12 arm64 userland, under qemu-user.
test-arm64:
	@bash scripts/system-test.sh arm64 --unit-suite

lint: bootstrap
	@.venv/bin/ruff check .
	@.venv/bin/ruff format --check .
	@.venv/bin/mypy

format: bootstrap
	@.venv/bin/ruff format .
	@.venv/bin/ruff check --fix .

demo: bootstrap
	@$(PY) scripts/demo.py

demo-phone: bootstrap
	@$(PY) scripts/demo_phone.py

bench: bootstrap
	@$(PY) bench/run.py

clean:
	rm -rf .venv build demo-out bench/out .pytest_cache .mypy_cache .ruff_cache
