# voicebox: every target sets the machine up first, so on a fresh clone each is the only command.
PY := .venv/bin/python
.PHONY: bootstrap test system-test test-arm64 lint format typecheck demo demo-phone demo-wake bench chaos soak unit-check clean
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

# Hands-free with the local wake word: espeak-ng says "Okay nabu" and a question, twice.
demo-wake: bootstrap
	@$(PY) scripts/demo_wake.py

bench: bootstrap
	@$(PY) bench/run.py

# 30 minutes, 100 faults of every kind, always_on: bench/chaos-report.md and bench/out/chaos.png
chaos: bootstrap
	@$(PY) bench/bench_chaos.py --minutes 30 --faults 100 | tee bench/chaos-report.md

# 4 hours of conversation with a short cap (hundreds of rollovers): bench/soak-report.md
soak: bootstrap
	@$(PY) bench/soak.py --hours 4 | tee bench/soak-report.md

clean:
	rm -rf .venv build demo-out bench/out .pytest_cache .mypy_cache .ruff_cache
