#!/usr/bin/env python3
"""microdit-study: does masking pay at equal compute? (docs/masking.md)

Trains one arm per masking strategy from the same base config with microdit-train, each until its
training FLOPs (model/flops.h, as microdit-train --dry-run counts them) first reach the same
budget, takes the validation loss at equal-compute points on the way, and writes a report:
study.csv, study.md (table) and study.png (validation loss against FLOPs and against time).

An arm is NAME=STRATEGY[:RATIO][:tail=FRACTION][:blocks=A-B], STRATEGY one of
  none      all tokens (two seeds of it set the noise floor)
  deferred  the paper's masking: patch-mixer on all tokens, then RATIO of them dropped
  naive     RATIO dropped right after the embedding, no patch-mixer (model.dit.use_patch_mixer off)
  route     TREAD's routing: RATIO of the tokens skip backbone blocks A..B (default 1..depth-2)
tail=F ends a masked arm with unmasked steps, F of its steps (the recipe's fine-tune), chained by
optim.continue_from.

A finished arm (its done.json) is not rerun; an interrupted one continues with --resume.
Written here in Python, over microdit-train, because it only launches runs and draws a plot.
"""
import argparse
import csv
import json
import math
import os
import shlex
import subprocess
import sys
from pathlib import Path


def fail(message):
    print(f"microdit-study: {message}", file=sys.stderr)
    sys.exit(2)


class Arm:
    def __init__(self, spec, depth):
        name, sep, rest = spec.partition("=")
        if not sep or not name or not rest:
            fail(f"arm '{spec}': expected NAME=STRATEGY[:RATIO][:tail=F][:blocks=A-B]")
        parts = rest.split(":")
        self.name, self.strategy, self.ratio, self.tail = name, parts[0], 0.0, 0.0
        self.blocks = (1, depth - 2)
        if self.strategy not in ("none", "deferred", "naive", "route"):
            fail(f"arm '{spec}': strategy '{self.strategy}' is not none, deferred, naive or route")
        for part in parts[1:]:
            try:
                if part.startswith("tail="):
                    self.tail = float(part[5:])
                elif part.startswith("blocks="):
                    a, _, b = part[7:].partition("-")
                    self.blocks = (int(a), int(b))
                else:
                    self.ratio = float(part)
            except ValueError:
                fail(f"arm '{spec}': '{part}' is not a number")
        if self.strategy != "none" and not 0 < self.ratio < 1:
            fail(f"arm '{spec}': a {self.strategy} arm needs a ratio in (0, 1)")
        if not 0 <= self.tail < 1:
            fail(f"arm '{spec}': tail must be in [0, 1)")

    def overrides(self, masked=True):
        """The --set values of this arm's masked part (or, masked=False, of its unmasked tail)."""
        sets = ["optim.mask_ratio=0", "optim.route.ratio=0"]
        if self.strategy == "naive":
            sets.append("model.dit.use_patch_mixer=false")
        if not masked or self.strategy == "none":
            return sets
        if self.strategy in ("deferred", "naive"):
            sets[0] = f"optim.mask_ratio={self.ratio}"
        else:
            a, b = self.blocks
            sets[1] = f"optim.route={{ratio: {self.ratio}, start_block: {a}, end_block: {b}}}"
        return sets


def run(command, log=None):
    print("+ " + " ".join(shlex.quote(c) for c in command), flush=True)
    with open(log, "a") if log else open(os.devnull, "w") as out:
        result = subprocess.run(command, stdout=out if log else None, stderr=subprocess.PIPE,
                                text=True)
    if result.returncode != 0:
        fail(f"{command[0]} failed ({result.returncode}): {result.stderr.strip()}")
    return result


def step_flops(args, sets):
    """Training FLOPs of one step of the base config with `sets`, from microdit-train --dry-run."""
    command = [args.train, "--config", args.config, "--dry-run"]
    for s in args.set + sets:
        command += ["--set", s]
    out = subprocess.run(command, capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"microdit-train --dry-run: {out.stderr.strip()}")
    for line in out.stdout.splitlines():
        if line.startswith("# training FLOPs per step:"):
            return float(line.split(":")[1].split()[0])
    fail("microdit-train --dry-run printed no FLOPs per step")


def model_depth(args):
    out = subprocess.run([args.train, "--config", args.config, "--dry-run"] +
                         sum((["--set", s] for s in args.set), []), capture_output=True, text=True)
    if out.returncode != 0:
        fail(f"microdit-train --dry-run: {out.stderr.strip()}")
    for line in out.stdout.splitlines():
        if line.startswith("# model:") and "backbone blocks" in line:
            return int(line.split(",")[2].split()[0])
    fail("microdit-train --dry-run printed no model depth")


def plan(arm, masked_flops, tail_flops, budget, points):
    """Steps of the masked part and in all (the first step whose cumulative FLOPs reach the
    budget), and the steps of the equal-compute points (the first to reach k/points of it)."""
    def cumulative(n):
        tail = round(arm.tail * n)
        return [(s + 1) * masked_flops if s < n - tail else
                (n - tail) * masked_flops + (s + 1 - n + tail) * tail_flops for s in range(n)]
    reached = budget * (1 - 1e-12)  # the trainer sums what Python multiplies
    n = 1
    while cumulative(n)[-1] < reached:
        n = max(n + 1, int(n * budget / cumulative(n)[-1]))
    while n > 1 and cumulative(n - 1)[-1] >= reached:
        n -= 1
    flops = cumulative(n)
    eval_steps = []
    for k in range(1, points + 1):
        target = budget * k / points
        eval_steps.append(next(s + 1 for s in range(n) if flops[s] >= target * (1 - 1e-12)))
    return n - round(arm.tail * n), n, sorted(set(eval_steps))


def newest_checkpoint(run_dir):
    found = sorted((Path(run_dir) / "checkpoints").glob("step-*.safetensors"))
    return found[-1] if found else None


def train_part(args, arm_dir, part, sets, steps, eval_steps, seed, continue_from=None):
    run_dir = arm_dir / part
    command = [args.train, "--config", args.config]
    for s in args.set + sets + [f"run.dir={run_dir}", f"run.seed={seed}",
                                f"data.val_seed={args.seed}", f"optim.steps={steps}",
                                f"run.eval_steps={json.dumps(eval_steps)}"]:
        command += ["--set", s]
    if continue_from:
        command += ["--set", f"optim.continue_from={continue_from}"]
    if newest_checkpoint(run_dir):
        command.append("--resume")
    run(shlex.split(args.launcher) + command, log=arm_dir / "train.log")
    return run_dir


def validation_points(run_dirs, steps):
    """(step, train_flops, train_seconds, val_loss, val_ema_loss) at each of `steps`."""
    points = {}
    for run_dir in run_dirs:
        for line in open(Path(run_dir) / "metrics.jsonl"):
            r = json.loads(line)
            if r["step"] not in steps:
                continue  # the end of the masked part, before its tail
            if "val_loss" in r:
                points[r["step"]] = (r["step"], r["train_flops"], r["train_seconds"],
                                     r["val_loss"], points.get(r["step"], [None] * 5)[4])
            if "val_ema_loss" in r and r["step"] in points:
                points[r["step"]] = points[r["step"]][:4] + (r["val_ema_loss"],)
    return [points[s] for s in sorted(points)]


def run_arm(args, arm, seed, budget, out):
    label = arm.name if seed == args.seed else f"{arm.name}-seed{seed}"
    arm_dir = out / "arms" / label
    done = arm_dir / "done.json"
    if done.exists():
        print(f"arm {label}: done, not rerun", flush=True)
        return json.loads(done.read_text())
    arm_dir.mkdir(parents=True, exist_ok=True)
    masked = step_flops(args, arm.overrides(masked=True))
    tail = step_flops(args, arm.overrides(masked=False))
    masked_steps, steps, eval_steps = plan(arm, masked, tail, budget, args.points)
    print(f"arm {label}: {masked_steps} steps of {masked:.4g} FLOPs"
          + (f", then {steps - masked_steps} unmasked of {tail:.4g}" if steps > masked_steps else ""),
          flush=True)
    runs = [train_part(args, arm_dir, "main", arm.overrides(True), masked_steps,
                       [s for s in eval_steps if s <= masked_steps], seed)]
    if steps > masked_steps:
        runs.append(train_part(args, arm_dir, "tail", arm.overrides(False), steps,
                               [s for s in eval_steps if s > masked_steps], seed,
                               continue_from=newest_checkpoint(runs[0])))
    result = {"arm": arm.name, "seed": seed, "strategy": arm.strategy, "ratio": arm.ratio,
              "tail": arm.tail, "steps": steps, "masked_steps": masked_steps,
              "points": validation_points(runs, eval_steps)}
    if args.sample_args and args.eval_args:
        samples = arm_dir / "samples"
        run([args.sample, "--checkpoint", str(newest_checkpoint(runs[-1])), "--out", str(samples)]
            + shlex.split(args.sample_args), log=arm_dir / "eval.log")
        scores = arm_dir / "eval.json"
        run([args.eval, "--generated", str(samples), "--out", str(scores)]
            + shlex.split(args.eval_args), log=arm_dir / "eval.log")
        result["eval"] = json.loads(scores.read_text())
    tmp = done.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.replace(done)
    return result


def report(results, budget, out, args):
    rows = []
    for r in results:
        label = r["arm"] if r["seed"] == args.seed else f'{r["arm"]}-seed{r["seed"]}'
        for step, flops, seconds, val, val_ema in r["points"]:
            rows.append({"arm": label, "strategy": r["strategy"], "ratio": r["ratio"],
                         "tail": r["tail"], "seed": r["seed"], "step": step, "train_flops": flops,
                         "budget_fraction": flops / budget, "train_seconds": round(seconds, 3),
                         "val_loss": val, "val_ema_loss": "" if val_ema is None else val_ema,
                         "fid": r.get("eval", {}).get("fid", "") if step == r["steps"] else "",
                         "clip_score": r.get("eval", {}).get("clip_score", "")
                         if step == r["steps"] else ""})
    with open(out / "study.csv", "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0].keys()))
        writer.writeheader()
        writer.writerows(rows)

    finals = {}
    for row in rows:
        if row["budget_fraction"] >= 1 - 1e-9 and row["arm"] not in finals:
            finals[row["arm"]] = row
    floor_arms = [r for r in results if r["strategy"] == "none"]
    floor = None
    if len(floor_arms) >= 2:
        losses = [r["points"][-1][3] for r in floor_arms]
        floor = max(losses) - min(losses)
    baseline = next((finals[r["arm"]] for r in floor_arms if r["seed"] == args.seed), None)
    command = "python3 scripts/study.py " + " ".join(shlex.quote(a) for a in sys.argv[1:])
    lines = [f"# Equal-compute study: {Path(args.config).name}", "",
             f"Made by `{command}`.", "",
             f"Budget: {budget:.4g} training FLOPs per arm (model/flops.h); validation loss on "
             "held-out samples at fixed noise levels (lower is better).", ""]
    if floor is not None:
        lines += [f"Noise floor (the unmasked arm's two seeds differ by): {floor:.4f}.", ""]
    header = ("| arm | strategy | ratio | tail | steps | FLOPs / budget | seconds | val loss | "
              "vs unmasked |")
    lines += [header, "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for r in results:
        label = r["arm"] if r["seed"] == args.seed else f'{r["arm"]}-seed{r["seed"]}'
        row = finals[label]
        verdict = ""
        if baseline is not None and r["strategy"] != "none":
            gap = row["val_loss"] - baseline["val_loss"]
            if floor is not None and abs(gap) <= floor:
                verdict = f"no difference ({gap:+.4f})"
            else:
                verdict = f"{'worse' if gap > 0 else 'better'} by {abs(gap):.4f}"
        extra = ""
        if row["fid"] != "":
            extra = f" (FID {row['fid']:.2f})"
        lines.append(f"| {label} | {r['strategy']} | {r['ratio']:g} | {r['tail']:g} | "
                     f"{r['steps']} | {row['budget_fraction']:.4f} | {row['train_seconds']:.0f} | "
                     f"{row['val_loss']:.4f}{extra} | {verdict} |")
    lines += ["", "Every equal-compute point: study.csv. Plot: study.png.", ""]
    (out / "study.md").write_text("\n".join(lines))

    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    figure, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    for r in results:
        label = r["arm"] if r["seed"] == args.seed else f'{r["arm"]}-seed{r["seed"]}'
        points = r["points"]
        axes[0].plot([p[1] for p in points], [p[3] for p in points], marker="o", label=label)
        axes[1].plot([p[2] for p in points], [p[3] for p in points], marker="o", label=label)
    axes[0].set_xlabel("training FLOPs")
    axes[1].set_xlabel("training time (s)")
    for axis in axes:
        axis.set_ylabel("validation loss")
        axis.grid(alpha=0.3)
    axes[0].legend(fontsize=8)
    figure.suptitle(f"Equal compute: {Path(args.config).name}")
    figure.tight_layout()
    figure.savefig(out / "study.png", dpi=100)
    print(f"report: {out / 'study.md'}, {out / 'study.csv'}, {out / 'study.png'}")


def main():
    parser = argparse.ArgumentParser(
        prog="microdit-study", description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", required=True, help="the base training config (YAML)")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="override of the base config for every arm (repeatable)")
    parser.add_argument("--arm", action="append", required=True, metavar="SPEC",
                        help="an arm (repeatable), see above")
    budget = parser.add_mutually_exclusive_group(required=True)
    budget.add_argument("--budget-flops", type=float, help="training FLOPs per arm")
    budget.add_argument("--budget-steps", type=int,
                        help="the FLOPs of this many unmasked steps of the base config")
    parser.add_argument("--points", type=int, default=4,
                        help="equal-compute points per arm with a validation loss (default 4)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--floor-seeds", type=int, default=2,
                        help="seeds of each unmasked arm; 2 set the noise floor (default 2)")
    parser.add_argument("--out", required=True, help="study directory (the arms' runs)")
    parser.add_argument("--report", help="directory of study.csv, study.md, study.png "
                                         "(default: --out)")
    parser.add_argument("--bin", default="build", help="directory of the microdit tools")
    parser.add_argument("--launcher", default="",
                        help="prefix of each training command, e.g. "
                             "'torchrun --nproc-per-node 8 --no-python'")
    parser.add_argument("--sample-args", default="",
                        help="microdit-sample arguments (prompts, encoders, VAE) for FID/CLIP")
    parser.add_argument("--eval-args", default="",
                        help="microdit-eval arguments (--inception, --real-stats, --clip ...)")
    args = parser.parse_args()
    args.train = str(Path(args.bin) / "microdit-train")
    args.sample = str(Path(args.bin) / "microdit-sample")
    args.eval = str(Path(args.bin) / "microdit-eval")
    if not Path(args.train).exists():
        fail(f"{args.train}: not found (build the tools, or give --bin)")
    if args.points < 1:
        fail("--points must be >= 1")
    depth = model_depth(args)
    arms = [Arm(spec, depth) for spec in args.arm]
    if len({a.name for a in arms}) != len(arms):
        fail("two arms have the same name")
    if args.budget_flops is not None:
        budget = args.budget_flops
    else:
        budget = args.budget_steps * step_flops(args, Arm("u=none", depth).overrides())
    if not budget > 0:
        fail("the budget must be > 0")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = []
    for arm in arms:
        seeds = [args.seed + i for i in range(args.floor_seeds if arm.strategy == "none" else 1)]
        for seed in seeds:
            results.append(run_arm(args, arm, seed, budget, out))
    report_dir = Path(args.report) if args.report else out
    report_dir.mkdir(parents=True, exist_ok=True)
    report(results, budget, report_dir, args)


if __name__ == "__main__":
    main()
