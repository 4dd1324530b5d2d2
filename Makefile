# The two commands of the README. Each does its own idempotent set-up first.
.PHONY: setup dashboard test
setup:
	bash scripts/setup.sh

dashboard: setup
	HF_HUB_OFFLINE=1 .venv/bin/python -m streamlit run app/main.py

test: setup
	.venv/bin/ruff check .
	.venv/bin/ruff format --check .
	.venv/bin/mypy
	HF_HUB_OFFLINE=1 .venv/bin/python -m pytest
