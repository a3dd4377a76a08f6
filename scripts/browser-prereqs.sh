#!/usr/bin/env bash
# The console's browser tests (tests/browser) drive Debian's Chromium with Playwright:
# `playwright install` cannot download here, so the tests launch /usr/bin/chromium. This
# installs it where it is missing; without it the browser tests are skipped with a reason.
set -euo pipefail

command -v chromium >/dev/null 2>&1 && exit 0
if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
  echo "browser: installing chromium"
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium
else
  echo "browser: chromium missing; the console's browser tests will be skipped" >&2
fi
