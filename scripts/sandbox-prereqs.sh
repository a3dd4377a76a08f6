#!/usr/bin/env bash
# Task attempts run in bubblewrap sandboxes (ADR 0011). This installs what they need where it
# is missing (Debian's bubblewrap, and libseccomp2 for the seccomp filter) and, as root, lets
# the per-attempt users reach the Python they run on: sandboxes bind the interpreter's
# installation and the virtualenv read-only, and a private home (pyenv in /root) on the way
# must be searchable (o+x: pass through, not list).
set -euo pipefail

missing=()
command -v bwrap >/dev/null 2>&1 || missing+=(bubblewrap)
if ! ldconfig -p 2>/dev/null | grep -q 'libseccomp\.so\.2'; then
  missing+=(libseccomp2)
fi
if [ "${#missing[@]}" -gt 0 ]; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "sandbox: installing ${missing[*]}"
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "${missing[@]}"
  else
    echo "sandbox: ${missing[*]} missing; install them (python tasks are refused without bubblewrap)" >&2
  fi
fi

[ "$(id -u)" -eq 0 ] || exit 0
python="${1:-.venv/bin/python}"
[ -x "$python" ] || exit 0
for dir in $("$python" -c 'import sys, os; print(os.path.realpath(sys.base_prefix)); print(os.path.realpath(sys.prefix))'); do
  while [ "$dir" != "/" ]; do
    if [ -d "$dir" ] && [ "$(( 0$(stat -c %a "$dir") & 01 ))" -eq 0 ]; then
      echo "sandbox: chmod o+x $dir (so the task users can reach Python)"
      chmod o+x "$dir"
    fi
    dir="$(dirname "$dir")"
  done
done
