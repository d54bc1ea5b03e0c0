# voicebox: every target sets the machine up first, so on a fresh clone each is the only command.
PY := .venv/bin/python
.PHONY: bootstrap test lint format typecheck demo demo-phone bench unit-check clean

bootstrap:
	@bash scripts/bootstrap.sh

test: bootstrap
	@bash scripts/run-tests.sh

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
