#!/usr/bin/env bash
# The browser tests drive Debian's Chromium through Playwright (pinned in constraints.txt);
# nothing is downloaded at test time. Installs the `chromium` package when it is missing.
set -euo pipefail
CHROMIUM=${CHROMIUM:-/usr/bin/chromium}
if [ -x "$CHROMIUM" ]; then
  exit 0
fi
echo "installing Debian's chromium for the browser tests..."
if [ "$(id -u)" = 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo)
else
  echo "error: the browser tests need Chromium at $CHROMIUM. Install it with" >&2
  echo "       'sudo apt-get install chromium' (or set CHROMIUM=/path/to/chromium)." >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
"${as_root[@]}" apt-get install -y --no-install-recommends chromium >/dev/null \
  || { "${as_root[@]}" apt-get update >/dev/null && "${as_root[@]}" apt-get install -y --no-install-recommends chromium >/dev/null; }
if [ ! -x "$CHROMIUM" ]; then
  echo "error: chromium was installed but $CHROMIUM is missing" >&2
  exit 1
fi
