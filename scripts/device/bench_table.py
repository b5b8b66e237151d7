#!/usr/bin/env python3
"""Prints bench.jsonl (microdit-bench and bench_official.py rows) as a short table, the kernel
profile lines left out: one line per row with its shape, flags, images/s, step time and peak
memory, or its error. Used by gpu_checks.sh as its last output (the reply carries the end)."""
import json
import sys


def flags(row):
    out = []
    if row.get('impl') == 'microdit-cpp':
        if not row.get('bf16_norm') and row.get('bf16'):
            out.append('fp32-norm')
        for key, name in (('fused_norm', 'fused-norm'), ('fused_residual', 'fused-residual'),
                          ('recompute_act', 'recompute-act'), ('moe_rows', 'moe-rows'),
                          ('ddp', 'ddp')):
            value = row.get(key)
            if value:
                out.append(name if value is True else f'{name}={value}')
        if row.get('micro_batches', 1) > 1:
            out.append(f"x{row['micro_batches']}")
    elif row.get('compile'):
        out.append('compiled')
    return ' '.join(out)


def main(path):
    print(f"{'impl':<9} {'arch':<16} {'batch':>5} {'mask':>4} {'px':>4} {'flags':<56} "
          f"{'img/s':>8} {'s/step':>7} {'GiB':>6} {'loss':>8}")
    for line in open(path):
        row = json.loads(line)
        if 'profile' in row:
            continue
        if 'error' in row:
            print(f"error     {row.get('cmd', row.get('args', ''))!s:.90}: {row['error']}")
            continue
        ours = row.get('impl') == 'microdit-cpp'
        px = row['res'] * 8 if ours else row.get('res_px')
        step = row['s_median'] if ours else row['step_s']
        loss = f"{row['loss_mean']:.5f}" if ours else ''
        print(f"{'ours' if ours else 'official':<9} {row['arch']:<16} {row['batch']:>5} "
              f"{row['mask']:>4} {px:>4} {flags(row):<56} {row['images_per_s']:>8.1f} "
              f"{step:>7.4f} {row.get('peak_gib') or 0:>6.1f} {loss:>8}")


if __name__ == '__main__':
    main(sys.argv[1])
