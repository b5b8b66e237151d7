#!/usr/bin/env bash
# study_check.sh BIN_DIR: microdit-study (scripts/study.py) on a tiny budget: two arms, one row each
# in the report at equal FLOPs (within 2% of the budget, the first step to reach it), the CSV's
# points at their fractions of the budget, a plot; then run again, it reruns no finished arm.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
bin=$1
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
study=(python3 "$root/scripts/study.py" --config "$root/configs/debug_tiny.yaml" --bin "$bin"
  --set run.log_every=1000 --set run.checkpoint_every=0 --set data.val_samples=8
  --set data.builtin_samples=64 --arm unmasked=none --arm deferred=deferred:0.5:tail=0.2
  --arm routed=route:0.5:blocks=0-0 --floor-seeds 1 --budget-steps 60 --points 3 --out "$work/study")
"${study[@]}" >"$work/first.log"
"${study[@]}" >"$work/second.log"
grep -q "arm unmasked: done, not rerun" "$work/second.log"
grep -q "arm routed: done, not rerun" "$work/second.log"
! grep -q "^+ " "$work/second.log"
python3 - "$work/study" <<'PY'
import csv, sys
from pathlib import Path
out = Path(sys.argv[1])
rows = list(csv.DictReader(open(out / "study.csv")))
arms = sorted({r["arm"] for r in rows})
assert arms == ["deferred", "routed", "unmasked"], arms
for arm in arms:
    points = [r for r in rows if r["arm"] == arm]
    fractions = [float(r["budget_fraction"]) for r in points]
    assert len(points) == 3, (arm, fractions)
    # each point is the first step to reach 1/3, 2/3 and all of the budget
    for k, f in enumerate(fractions, 1):
        assert k / 3 - 1e-9 <= f <= k / 3 + 0.5 / 3, (arm, fractions)
    assert 1.0 - 1e-9 <= fractions[-1] <= 1.02, (arm, fractions)
    assert all(float(r["val_loss"]) > 0 for r in points), arm
steps = {r["arm"]: int(r["step"]) for r in rows if float(r["budget_fraction"]) >= 1 - 1e-9}
assert steps["unmasked"] == 60 and steps["deferred"] > 60 and steps["routed"] > 60, steps
table = (out / "study.md").read_text()
for arm in arms:
    assert sum(line.startswith(f"| {arm} |") for line in table.splitlines()) == 1, arm
assert (out / "study.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
print("study report:", steps)
PY
