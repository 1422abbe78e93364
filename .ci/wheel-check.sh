#!/usr/bin/env bash
# What users install is the wheel: build it, install it (not editable) in a fresh venv, and run
# the product from a directory that holds its own `models/` package, so a generic top-level name
# in the wheel or package data left out of it fails here.
set -euo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT

python3 -m pip wheel -q --no-deps --no-build-isolation . -w "$WORK/dist" 2>/dev/null \
  || .venv/bin/python -m pip wheel -q --no-deps . -w "$WORK/dist"
WHEEL=$(ls "$WORK"/dist/tourney-*.whl)
echo "wheel: $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1))"

# Nothing but tourney/ (and its dist-info) at the top of the wheel.
python3 - "$WHEEL" <<'PY'
import sys, zipfile
tops = {n.split("/")[0] for n in zipfile.ZipFile(sys.argv[1]).namelist()}
bad = sorted(t for t in tops if t != "tourney" and not t.endswith(".dist-info"))
if bad:
    sys.exit(f"wheel installs top-level names other than tourney: {bad}")
print("top level:", sorted(tops))
PY

python3 -m venv "$WORK/venv"
PY="$WORK/venv/bin/python"
"$PY" -m pip install -q --upgrade pip
"$PY" -m pip install -q torch==2.13.0
"$PY" -m pip install -q "$WHEEL"

# A user's project with its own models/ package, as the first thing on sys.path.
mkdir -p "$WORK/user/models"
echo 'raise ImportError("the user project models/ package was imported")' > "$WORK/user/models/__init__.py"
echo 'raise ImportError("the user project models/types.py was imported")' > "$WORK/user/models/types.py"
cd "$WORK/user"
"$PY" -c "import tourney, tourney.models.types, tourney.cli.main; print('import tourney:', tourney.__version__, tourney.__file__)"
"$PY" -m tourney.cli.distill --help > /dev/null
"$PY" -m tourney.cli.distill train --help > /dev/null
"$WORK/venv/bin/tourney" --help > /dev/null
# The shipped template files are package data: both load from the installed wheel.
"$PY" -c "from tourney.harness.templates import find_template_file as f; assert f('mmlu_pro') and f('gsm8k_cot'); print('templates: mmlu_pro, gsm8k_cot')"
"$WORK/venv/bin/tourney" demo --limit 20 --out "$WORK/user/runs/demo"
test -s "$WORK/user/runs/demo/comparison.md"
echo "wheel check passed"
