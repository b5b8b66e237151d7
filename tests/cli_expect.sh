#!/usr/bin/env bash
# cli_expect.sh RC PATTERN [--reject PATTERN2] COMMAND...: runs COMMAND, passes when it exits with
# RC and its output (stdout and stderr) matches the extended regular expression PATTERN (and no
# line matches PATTERN2).
rc_expected=$1 pattern=$2; shift 2
reject=""
if [ "$1" = "--reject" ]; then reject=$2; shift 2; fi
out=$("$@" 2>&1); rc=$?
if [ "$rc" -ne "$rc_expected" ]; then echo "exit $rc, expected $rc_expected; output:"; echo "$out"; exit 1; fi
if ! grep -Eq -- "$pattern" <<<"$out"; then echo "output does not match /$pattern/:"; echo "$out"; exit 1; fi
if [ -n "$reject" ] && grep -Eq -- "$reject" <<<"$out"; then
  echo "output matches /$reject/:"; echo "$out"; exit 1
fi
echo "ok: exit $rc, output matches /$pattern/${reject:+, not /$reject/}"
