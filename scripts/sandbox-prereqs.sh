#!/usr/bin/env bash
# Task code runs as an unprivileged user (uid 65534) when the platform runs as root, so that
# user must be able to reach the Python it runs on: the interpreter's installation and the
# virtual environment. Installations under a private home (pyenv in /root) are not; give the
# directories on the way "search" permission (o+x: pass through, not list). Nothing to do when
# not root: tasks then run as the platform's own user.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || exit 0
python="${1:-.venv/bin/python}"
[ -x "$python" ] || exit 0
for dir in $("$python" -c 'import sys, os; print(os.path.realpath(sys.base_prefix)); print(os.path.realpath(sys.prefix))'); do
  while [ "$dir" != "/" ]; do
    if [ -d "$dir" ] && [ "$(( 0$(stat -c %a "$dir") & 01 ))" -eq 0 ]; then
      echo "sandbox: chmod o+x $dir (so the task user can reach Python)"
      chmod o+x "$dir"
    fi
    dir="$(dirname "$dir")"
  done
done
