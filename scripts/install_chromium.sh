#!/usr/bin/env bash
# Install Debian's chromium for the headless HTML-view tests (tests/test_book_graph.py). Idempotent and quiet:
# does nothing when /usr/bin/chromium exists; otherwise needs root (CI and the dev container run as root).
set -euo pipefail
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" -ne 0 ]; then
    echo "install_chromium.sh: /usr/bin/chromium is missing and installing it needs root" >&2
    exit 1
fi
export DEBIAN_FRONTEND=noninteractive
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
# apt and debconf chatter goes to the log, shown only when something fails.
# --no-install-recommends keeps it to the browser itself (no extra fonts, no desktop integration).
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium; } >"$log" 2>&1; then
    cat "$log" >&2
    exit 1
fi
[ -x /usr/bin/chromium ] || { echo "install_chromium.sh: chromium installed but /usr/bin/chromium is missing" >&2; exit 1; }
