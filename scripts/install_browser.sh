#!/usr/bin/env bash
# Install Debian's Chromium (/usr/bin/chromium) for the browser test (tests/test_browser.py), which
# drives it through the playwright package (pinned in requirements.lock). Playwright's own browser
# download ("playwright install") is not used. Idempotent and quiet: does nothing when Chromium is
# already there. Needs root (or sudo) and a Debian/Ubuntu system with apt-get.
#   scripts/install_browser.sh
set -euo pipefail
if [ -x /usr/bin/chromium ]; then
    exit 0
fi
if ! command -v apt-get >/dev/null 2>&1; then
    echo "install_browser: apt-get not found; install Chromium so that /usr/bin/chromium exists" >&2
    exit 1
fi
SUDO=""
if [ "$(id -u)" -ne 0 ]; then
    if command -v sudo >/dev/null 2>&1; then
        SUDO="sudo"
    else
        echo "install_browser: run as root (or install sudo) to install chromium" >&2
        exit 1
    fi
fi
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get update -qq
$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
if [ ! -x /usr/bin/chromium ]; then
    echo "install_browser: chromium was installed but /usr/bin/chromium is missing" >&2
    exit 1
fi
