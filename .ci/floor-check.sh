#!/usr/bin/env bash
# The floors pyproject.toml states for the training stack, tested: a second venv with the oldest
# transformers / peft / accelerate / pydantic / click the project allows, and the tests that use
# them (the fast trainer and backend tests). Run by .ci/run after the main suite.
set -euo pipefail
cd "$(dirname "$0")/.."
VENV=${FLOOR_VENV:-.venv-floor}
# The floors, exactly as pyproject.toml writes them (>= X): installed here as == X.
FLOORS=(transformers==5.0.0 peft==0.18.0 accelerate==1.3.0 pydantic==2.7.0 click==8.1.0)
python3 -m venv "$VENV"
"$VENV/bin/python" -m pip install -q --upgrade pip
"$VENV/bin/python" -m pip install -q torch==2.13.0
"$VENV/bin/python" -m pip install -q "${FLOORS[@]}" -e '.[dev]' tensorboard
"$VENV/bin/python" -m pip list 2>/dev/null | grep -Ei '^(transformers|peft|accelerate|pydantic|click|torch) '
"$VENV/bin/pytest" -q -p no:cacheprovider -m "not slow and not integration" \
  tests/trainers tests/models/test_hf_backend.py tests/cli
