#!/usr/bin/env bash
# cli_one_line.sh RC PATTERN COMMAND...: runs COMMAND, passes when it exits with RC and prints
# exactly one line on stderr, matching the extended regular expression PATTERN.
rc_expected=$1 pattern=$2; shift 2
err=$("$@" 2>&1 >/dev/null); rc=$?
lines=$(printf '%s' "$err" | grep -c '')
if [ "$rc" -ne "$rc_expected" ]; then echo "exit $rc, expected $rc_expected; stderr:"; echo "$err"; exit 1; fi
if [ "$lines" -ne 1 ]; then echo "$lines lines on stderr, expected 1:"; echo "$err"; exit 1; fi
if ! grep -Eq -- "$pattern" <<<"$err"; then echo "stderr does not match /$pattern/:"; echo "$err"; exit 1; fi
echo "ok: exit $rc, one line matching /$pattern/"
