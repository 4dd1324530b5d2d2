# The two commands of the README (dashboard, test). Each does its own idempotent set-up first.
# The test tiers of tests/README.md run alone with `make test-unit` (and -integration, -app,
# -browser); `make test` runs the static checks and every tier, one pytest worker per core;
# `make test-extended` runs the tests marked `extended` that `make test` leaves out.
PYTEST = HF_HUB_OFFLINE=1 .venv/bin/python -m pytest -n auto --dist worksteal
.PHONY: setup dashboard test test-unit test-integration test-app test-browser test-extended
setup:
	bash scripts/setup.sh

dashboard: setup
	HF_HUB_OFFLINE=1 .venv/bin/adakd dashboard

test: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	# mypy (about a minute from a cold cache) runs beside pytest, which leaves part of the cores
	# idle while it waits on subprocesses, servers and the browser; either failing fails the target.
	# Its cache lives in the user's cache folder, so a fresh clone on the same machine starts warm
	# (mypy re-checks every file whose contents changed; the cache never hides an error).
	MYPY_CACHE_DIR="$${XDG_CACHE_HOME:-$$HOME/.cache}/adakd-mypy" .venv/bin/mypy & mypy=$$!; \
	$(PYTEST) -m 'not extended'; tests=$$?; wait $$mypy; types=$$?; exit $$(( tests || types ))

test-unit test-integration test-app test-browser: test-%: setup
	$(PYTEST) -m 'not extended' tests/$*

# the extended tier: costly repeats of guarantees (tests/README.md), not part of `make test`
test-extended: setup
	$(PYTEST) -m extended
