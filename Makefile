# The README's two commands. Each does all set-up itself (scripts/bootstrap.sh) on a fresh machine.
.PHONY: run test test-slow setup fresh-check

setup:
	@bash scripts/bootstrap.sh

run: setup
	@bash scripts/main_job.sh

test: setup
	.venv/bin/python -m pytest

test-slow: setup
	.venv/bin/python -m pytest -m slow

# The two commands above from a fresh clone, empty Go caches and no .venv (slow; see scripts/fresh_check.sh).
fresh-check:
	@bash scripts/fresh_check.sh
