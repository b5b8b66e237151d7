#!/usr/bin/env python3
"""Prints bench.jsonl (microdit-bench and bench_official.py rows) as a short table: one line per
row with its shape, flags, images/s, step time and peak memory, or its error; then, for each row
run with --profile, its GPU kernel time per step in the categories of docs/performance.md. Used
by gpu_checks.sh as its last output (the reply carries the end)."""
import json
import re
import sys

# First match wins; kernel names as the profiler prints them (cut at 160 characters).
CATEGORIES = [
    ('matmul', r'nvjet|gemm|cutlass|xmma|cublas'),
    ('attention', r'sdpa|flash|fmha|cudnn'),
    ('fused (ours)', r'microdit'),
    ('LayerNorm', r'layer_norm|LayerNorm|GammaBeta'),
    ('AdamW + clipping', r'FusedOptimizer|multi_tensor_apply|LpNorm'),
    ('MoE gather / scatter', r'scatter_gather|index_add|indexSelect|index_select|indexFunc'),
    ('copies', r'copy_kernel|CatArray|bfloat16_copy'),
    ('reductions', r'reduce_kernel'),
    ('elementwise', r'elementwise_kernel'),
]


def category(name):
    for label, pattern in CATEGORIES:
        if re.search(pattern, name):
            return label
    return 'other kernels'


def print_profile(label, lines):
    total = next(line['ms'] for line in lines if line['profile'] == 'all')
    sums = {}
    for line in lines:
        if line['profile'] != 'all':
            key = category(line['profile'])
            sums[key] = sums.get(key, 0.0) + line['ms']
    sums['outside the listed kernels'] = total - sum(sums.values())
    print(f"profile of {label}: {total:.1f} ms of kernels per step (CPU operators on the CPU)")
    for key, ms in sorted(sums.items(), key=lambda item: -item[1]):
        print(f"  {key:<28} {ms:>7.1f} ms {ms / total:>6.1%}")


def flags(row):
    out = []
    if row.get('impl') == 'microdit-cpp':
        if not row.get('bf16_norm') and row.get('bf16'):
            out.append('fp32-norm')
        for key, name in (('fused_norm', 'fused-norm'), ('fused_residual', 'fused-residual'),
                          ('recompute_act', 'recompute-act'), ('moe_rows', 'moe-rows'),
                          ('fused_combine', 'fused-combine'),
                          ('cuda_graph', 'cuda-graph'), ('ddp', 'ddp')):
            value = row.get(key)
            if value:
                out.append(name if value is True else f'{name}={value}')
        if row.get('attention', 'auto') != 'auto':
            out.append(f"attention={row['attention']}")
        if row.get('micro_batches', 1) > 1:
            out.append(f"x{row['micro_batches']}")
    elif row.get('compile'):
        out.append('compiled')
    return ' '.join(out)


def main(path):
    label = ''
    profiles = []  # (row label, profile lines): a row's profile follows its line
    print(f"{'impl':<9} {'arch':<16} {'batch':>5} {'mask':>4} {'px':>4} {'flags':<68} "
          f"{'img/s':>8} {'s/step':>7} {'GiB':>6} {'loss':>8}")
    for line in open(path):
        row = json.loads(line)
        if 'profile' in row:
            if row['profile'] == 'all':
                profiles.append((label, []))
            if profiles:
                profiles[-1][1].append(row)
            continue
        if 'error' in row:
            print(f"error     {row.get('cmd', row.get('args', ''))!s:.90}: {row['error']}")
            continue
        ours = row.get('impl') == 'microdit-cpp'
        px = row['res'] * 8 if ours else row.get('res_px')
        step = row['s_median'] if ours else row['step_s']
        loss = f"{row['loss_mean']:.5f}" if ours else ''
        print(f"{'ours' if ours else 'official':<9} {row['arch']:<16} {row['batch']:>5} "
              f"{row['mask']:>4} {px:>4} {flags(row):<68} {row['images_per_s']:>8.1f} "
              f"{step:>7.4f} {row.get('peak_gib') or 0:>6.1f} {loss:>8}")
        label = f"{row['arch']} batch {row['batch']} mask {row['mask']} {flags(row)}".strip()
    for label, lines in profiles:
        print_profile(label, lines)


if __name__ == '__main__':
    main(sys.argv[1])
