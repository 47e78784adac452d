#!/usr/bin/env bash
# Create .venv with Python 3.10 and install the project exactly as pinned in constraints.txt.
# Re-running is cheap: nothing is reinstalled unless pyproject.toml or constraints.txt changed.
set -euo pipefail
cd "$(dirname "$0")/.."

is_py310() { [ -n "$1" ] && "$1" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 10) else 1)' 2>/dev/null; }

find_python() {
  local candidates=()
  [ -n "${PYTHON:-}" ] && candidates+=("$PYTHON")
  candidates+=("$(command -v python3.10 || true)")
  if command -v pyenv >/dev/null 2>&1; then
    local prefix
    prefix=$(pyenv prefix 3.10 2>/dev/null || true)
    [ -n "$prefix" ] && candidates+=("$prefix/bin/python")
    for dir in "$(pyenv root)"/versions/3.10*; do candidates+=("$dir/bin/python"); done
  fi
  for dir in "$HOME"/.pyenv/versions/3.10*; do candidates+=("$dir/bin/python"); done
  for candidate in "${candidates[@]}"; do
    if is_py310 "$candidate"; then echo "$candidate"; return 0; fi
  done
  return 1
}

if ! is_py310 .venv/bin/python; then
  if ! python=$(find_python); then
    echo "error: Python 3.10 is required (Rasa 3.6 supports 3.8-3.10) and none was found." >&2
    echo "       Install it (e.g. 'pyenv install 3.10') or set PYTHON=/path/to/python3.10." >&2
    exit 1
  fi
  echo "creating .venv with $python"
  rm -rf .venv
  "$python" -m venv .venv
fi

stamp=.venv/.installed
want=$(cat pyproject.toml constraints.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
  echo "installing dependencies (first time: about 2-3 minutes, 2.7 GB)..."
  .venv/bin/python -m pip install --quiet --disable-pip-version-check "pip==24.0"
  .venv/bin/python -m pip install --quiet --disable-pip-version-check -c constraints.txt -e ".[dev]"
  echo "$want" > "$stamp"
fi
