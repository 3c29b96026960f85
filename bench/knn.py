"""Time eval.metrics.knn the way finetune.py's knn task calls it, on random fc7-sized features, and extrapolate.

    .venv/bin/python bench/knn.py --n 2000 4000 --q 1024 --chunks 65536 1024 --repeats 1   # seconds, a smoke run
    .venv/bin/python bench/knn.py --record                      # the CPU grid (~2.5 min on 2 cores), into BENCHMARKS.md
    .venv/bin/python bench/knn.py --device cuda --n 160000 320000 640000 1281167 --q 1024 4096 --record  # H100: seconds

Issue 4 (Performance): "The kNN over a 1.28M x 4096 database on one GPU runs in minutes, not hours." The work is
a matmul of the queries against the database (2*N*Q*D flops) plus a running top-k per chunk, so its cost should
grow as N*Q*D; the table's GFLOP/s column (2*N*Q*D / seconds) stays flat when it does. The grid: an N sweep at the
first --q, a Q sweep at the first --n, and each further --chunks value at the largest N; both metrics each time,
plus a bare matmul row (the same query batches @ database.T, nothing else) for the rate the hardware gives.
Peak memory on the CPU is measured in a child process (see peak_cpu_memory); on CUDA with max_memory_allocated.
"""
import argparse
import ctypes
import datetime
import json
import os
import shlex
import statistics
import subprocess
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # run as `python bench/knn.py` from anywhere
from bench.common import cpu_description, git_sha, record  # noqa: E402
from eval.metrics import knn  # noqa: E402

SECTION = '## kNN induction accuracy (eval/metrics.py knn)'
INTRO = ('Written by `bench/knn.py --record`, one block per command. '
         'Random seeded float32 features (standard normal), k=5, queries in batches of 1024 as finetune.py\'s '
         'knn task sends them, the database on the device once. Each timed row is every batch of its queries '
         'against the whole database. Peak extra memory is the growth of the process\'s resident memory during '
         'one knn call of one query batch (CPU: VmHWM in a child process, see `memory_child`; CUDA: '
         '`max_memory_allocated`), the database and queries not counted.')
# The full-size problems to extrapolate to. ILSVRC-2012: 1,281,167 train images, 50 val images per class
# (Russakovsky et al. 2015, Table 2). Split B of the minimal split is 478 of the 1000 classes (subsets.py); its
# train-image count depends on which classes, so 478/1000 of the train set is an approximation.
FULL = (('split B (paper §5.3, Fig. 4): 478 classes', round(478 / 1000 * 1281167), 478 * 50),
        ('all of ImageNet: 1000 classes', 1281167, 1000 * 50))
# H100 fp32 peak without tensor cores: 67 TFLOP/s SXM5, 51 TFLOP/s PCIe (NVIDIA H100 datasheet). knn runs in
# fp32 (engine.outputs returns .float() features) and nothing in the repo sets allow_tf32 / matmul precision, so
# torch's default (TF32 off for matmul since torch 1.12) applies. Sustained rates assumed for the estimate:
GPU_ASSUMED_TFLOPS = (25, 50)
# Score traffic per (query, database row) pair in knn's loop, counted from eval/metrics.py: the fp32 matmul output
# and three elementwise passes (write + read, 8 bytes each), the concatenated scores (8) and int64 indices (16),
# the top-k read (4): ~60 bytes, a rough figure for the GPU estimate only.
GPU_BYTES_PER_PAIR = 60


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--n', type=int, nargs='+', default=[10000, 20000, 40000, 80000],
                   help='database sizes (the N sweep runs at the first --q)')
    p.add_argument('--q', type=int, nargs='+', default=[1024, 2048, 4096],
                   help='query counts (the Q sweep runs at the first --n)')
    p.add_argument('--dim', type=int, default=4096, help='feature size (AlexNet fc7, the paper\'s kNN feature)')
    p.add_argument('--k', type=int, default=5, help='finetune.py knn_task: top-1 and top-5 of the 5 nearest')
    p.add_argument('--batch', type=int, default=1024, help='queries per knn call (finetune.py knn_task)')
    p.add_argument('--chunks', type=int, nargs='+', default=[8192, 65536],
                   help='database chunk sizes; the first (knn\'s default) for the sweeps, the rest at the largest N')
    p.add_argument('--metrics', nargs='+', default=['l2', 'cosine'], choices=['l2', 'cosine'])
    p.add_argument('--repeats', type=int, default=3,
                   help='rounds over the whole grid; the table gives the median round and the min-max')
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch\'s own)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--record', action='store_true', help='write the result into BENCHMARKS.md (this command\'s block)')
    p.add_argument('--memory-child', action='store_true', help=argparse.SUPPRESS)  # internal: see peak_cpu_memory
    return p


# ---------------------------------------------------------------------------------------------------------- grid

def grid(args):
    """(what, N, Q, chunk) rows: what is a metric, or 'matmul' for the bare-matmul reference."""
    rows = []
    for metric in args.metrics:
        rows += [(metric, n, args.q[0], args.chunks[0]) for n in args.n]
        rows += [(metric, args.n[0], q, args.chunks[0]) for q in args.q[1:]]
        rows += [(metric, args.n[-1], args.q[0], c) for c in args.chunks[1:]]
    return rows + [('matmul', args.n[-1], args.q[0], None)]


def features(args, n, q, device):
    """Seeded standard-normal database (n x dim) and queries (q x dim). The database goes to the device once, as
    knn_task does (db.to(device)); the queries stay on the host and go over one batch at a time."""
    g = torch.Generator().manual_seed(args.seed)
    db = torch.randn(n, args.dim, generator=g)
    return db.to(device), torch.randn(q, args.dim, generator=g)


def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def run_row(row, db, queries, args, device):
    """Seconds for one row, the calls as in finetune.py knn_task (batches of --batch queries, indices to host)."""
    what, n, q, chunk = row
    db, queries = db[:n], queries[:q]
    sync(device)
    t = time.perf_counter()
    for start in range(0, q, args.batch):
        qb = queries[start:start + args.batch].to(device)
        if what == 'matmul':
            out = (qb @ db.T)[:1, :1]  # the scores stay on the device: copying 1024 x N floats out is not the matmul
        else:
            _, out = knn(qb, db, args.k, what, chunk)
        out.cpu()  # knn_task reads the labels of idx.cpu(); on CUDA this also waits for the work
    sync(device)
    return time.perf_counter() - t


# -------------------------------------------------------------------------------------------------------- memory

def vm(key):
    """Bytes of a /proc/self/status line (VmRSS: now, VmHWM: peak since the last clear_refs reset)."""
    for line in open('/proc/self/status'):
        if line.startswith(key + ':'):
            return int(line.split()[1]) * 1024
    raise KeyError(key)


def memory_child(args):
    """Peak RSS growth of one knn call (one query batch) per (metric, rows per chunk), printed as JSON.

    A knn call's peak depends on the query batch and on min(N, chunk), the rows of one chunk, not on N or Q
    beyond that (the batches run one after another). glibc serves allocations below its mmap threshold from a
    heap that keeps freed pages resident, and the threshold moves up as big blocks are freed, so a fixed 1 MiB
    threshold (mallopt M_MMAP_THRESHOLD, -3) makes every big tensor its own mapping, returned on free; then
    resetting the peak (clear_refs 5, Linux >= 4.0) and reading VmHWM after the call gives the call's own peak.
    A fixed threshold slows the chunk-8192 calls by ~5% (measured once), hence a child apart from the timings."""
    libc = ctypes.CDLL('libc.so.6')
    libc.mallopt(-3, 1 << 20)
    need = sorted({(what, min(n, chunk)) for what, n, _, chunk in grid(args) if what != 'matmul'})
    db, queries = features(args, max(rows for _, rows in need), args.batch, torch.device('cpu'))
    peaks = {}
    for metric, rows in need:
        libc.malloc_trim(0)
        with open('/proc/self/clear_refs', 'w') as f:
            f.write('5')
        base = vm('VmRSS')
        knn(queries, db[:rows], args.k, metric, rows)
        peaks[f'{metric} {rows}'] = vm('VmHWM') - base
    print(json.dumps(peaks))


def peak_cpu_memory(args):
    """{(metric, rows per chunk): bytes} from a child process, or {} where /proc cannot tell (not Linux)."""
    if not os.path.exists('/proc/self/clear_refs'):
        return {}
    cmd = [sys.executable, os.path.abspath(__file__), '--memory-child'] + [
        a for k, v in vars(args).items() if k not in ('record', 'memory_child', 'device', 'repeats')
        for a in ([f'--{k}'] + [str(x) for x in (v if isinstance(v, list) else [v])] if v is not None else [])]
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode:
        print(f'memory child failed:\n{out.stderr}', file=sys.stderr)
        return {}
    return {tuple(k.split()): v for k, v in json.loads(out.stdout.strip().splitlines()[-1]).items()}


# -------------------------------------------------------------------------------------------------------- report

def machine(device):
    if device.type == 'cuda':
        return f'{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}'
    return f'{cpu_description()}; {torch.get_num_threads()} torch threads'


def busy_seconds():
    """(CPU seconds all processes have used, CPU seconds this process has used): /proc/stat's busy jiffies."""
    ticks = [int(x) for x in open('/proc/stat').readline().split()[1:]]
    busy = sum(ticks) - ticks[3] - ticks[4]  # all but idle and iowait
    t = os.times()
    return busy / os.sysconf('SC_CLK_TCK'), t.user + t.system


def table(rows, times, peaks, args):
    lines = ['| what | N (database) | Q (queries) | chunk | N·Q·D (10^9) | seconds (median) | min-max '
             '| GFLOP/s (2·N·Q·D / s) | peak extra memory per call |', '|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for row in rows:
        what, n, q, chunk = row
        med, nqd = statistics.median(times[row]), n * q * args.dim
        peak = peaks.get((what, str(min(n, chunk)))) if chunk else None
        label = f'knn {what}' if what != 'matmul' else 'matmul only (q @ db.T)'
        lines.append(f'| {label} | {n} | {q} | {chunk or "-"} | {nqd / 1e9:.0f} | {med:.2f} '
                     f'| {min(times[row]):.2f}-{max(times[row]):.2f} | {2 * nqd / med / 1e9:.0f} '
                     f'| {f"{peak / 2**20:.0f} MiB" if peak is not None else "-"} |')
    return '\n'.join(lines)


def rate(row, times, args):
    what, n, q, _ = row
    return 2 * n * q * args.dim / statistics.median(times[row])


def duration(seconds):
    return f'{seconds:.1f} s' if seconds < 120 else f'{seconds / 60:.0f} min'


def extrapolation(rows, times, args, device):
    """Sentences: how the rate holds across the grid, and what it gives for the full-size problems."""
    out = []
    for metric in args.metrics:
        sweep = [r for r in rows if r[0] == metric and r[3] == args.chunks[0]]
        rates = [rate(r, times, args) / 1e9 for r in sweep]
        big = max(sweep, key=lambda r: r[1] * r[2])
        span = max(r[1] * r[2] for r in sweep) / min(r[1] * r[2] for r in sweep)
        r_big = rate(big, times, args)
        full = '; '.join(f'{name} ({n:,} x {q:,} x {args.dim}, {2 * n * q * args.dim / 1e12:.0f} TFLOP): '
                         f'{duration(2 * n * q * args.dim / r_big)}' for name, n, q in FULL)
        flat = max(rates) / min(rates) < 1.3  # this much is within a shared machine's noise
        out.append(f'- **{metric}**: over a {span:.0f}x range of N·Q·D the rate stays within {min(rates):.0f}-'
                   f'{max(rates):.0f} GFLOP/s' + (', so the time grows about linearly in N·Q·D.' if flat else
                                                  ': not flat, see the rows.') + ' Extrapolated (not measured) '
                   f'from the largest row\'s {r_big / 1e9:.0f} GFLOP/s on this {device.type.upper()}: {full}.')
        for c in args.chunks[1:]:
            other = (metric, args.n[-1], args.q[0], c)
            same = (metric, args.n[-1], args.q[0], args.chunks[0])
            out.append(f'  Chunk {c} vs {args.chunks[0]} at N={args.n[-1]}: '
                       f'{statistics.median(times[other]) / statistics.median(times[same]):.2f}x the time.')
    mm = rows[-1]
    knn_rows = [r for r in rows if r[0] != 'matmul' and r[1:] == mm[1:3] + (args.chunks[0],)]
    share = ' / '.join(f'{statistics.median(times[mm]) / statistics.median(times[r]) * 100:.0f}% ({r[0]})' for r in knn_rows)
    out.append(f'- The bare matmul at N={mm[1]}, Q={mm[2]} runs at {rate(mm, times, args) / 1e9:.0f} GFLOP/s and takes '
               f'{share} of knn\'s time there; the rest is the distance arithmetic and the top-k merge on the '
               f'Q x chunk score matrix.')
    if device.type == 'cpu':
        est = '; '.join(f'{name}: ' + ' / '.join(f'{2 * n * q * args.dim / (t * 1e12):.0f} s' for t in GPU_ASSUMED_TFLOPS)
                        + f' for the matmul, ~{n * q * GPU_BYTES_PER_PAIR / 1e12:.0f} TB of score traffic'
                        for name, n, q in FULL)
        out.append(f'- **GPU: an estimate, not a measurement** (no GPU was available for this run; `--device cuda` is '
                   f'in the script but untested). The matmul is compute-bound fp32; an H100 peaks at 51-67 TFLOP/s '
                   f'fp32 without tensor cores (PCIe-SXM5, NVIDIA datasheet; knn gets fp32 features and the repo '
                   f'leaves TF32 off). At an assumed sustained {" / ".join(str(t) for t in GPU_ASSUMED_TFLOPS)} TFLOP/s: '
                   f'{est}. The distance arithmetic and top-k are memory-bound passes over the Q x chunk scores, '
                   f'assumed ~{GPU_BYTES_PER_PAIR} bytes per query-database pair, a second or so at the H100\'s '
                   f'2-3.35 TB/s. So seconds to a minute, well inside "minutes, not hours"; extracting the features '
                   f'of 1.28M images costs far more. The database is N x D x 4 bytes: '
                   f'{FULL[0][1] * args.dim * 4 / 1e9:.0f} GB for split B, {FULL[1][1] * args.dim * 4 / 1e9:.0f} GB '
                   f'for all of ImageNet, which fits in an 80 GB H100 (knn_task walks it from host memory otherwise).')
    return '\n'.join(out)


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.memory_child:
        return memory_child(args)
    print(' '.join(f'{k}={v}' for k, v in sorted(vars(args).items())))
    sha = git_sha()
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda needs CUDA')
    device = torch.device(args.device)
    print(f'git {sha}; {machine(device)}; torch {torch.__version__}')
    rows = grid(args)
    t0 = time.perf_counter()
    db, queries = features(args, max(args.n), max(args.q), device)
    print(f'features: database {max(args.n)} x {args.dim}, queries {max(args.q)} x {args.dim} '
          f'({time.perf_counter() - t0:.1f} s to make)')
    for metric in args.metrics:  # warm-up: thread pools, BLAS/cuBLAS handles, the CUDA context
        run_row((metric, min(args.n), args.batch, args.chunks[0]), db, queries, args, device)
    # Rounds over the whole grid rather than repeats of one row: a neighbour's burst (this machine may be shared)
    # then lands in one round of several rows, which the median drops.
    times = {row: [] for row in rows}
    busy0, t_start = busy_seconds(), time.perf_counter()
    for r in range(args.repeats):
        for row in rows:
            times[row].append(run_row(row, db, queries, args, device))
            print(f'round {r} {row[0]:6s} N={row[1]:<7d} Q={row[2]:<5d} chunk={row[3]}: {times[row][-1]:.2f} s '
                  f'({2 * row[1] * row[2] * args.dim / times[row][-1] / 1e9:.0f} GFLOP/s)', flush=True)
    busy1 = busy_seconds()
    others = ((busy1[0] - busy0[0]) - (busy1[1] - busy0[1])) / (time.perf_counter() - t_start)
    quiet = f'other processes took {max(others, 0):.2f} cores on average during the timed rounds'
    print(quiet)
    if device.type == 'cuda':
        peaks = {}
        for row in rows:
            if row[0] != 'matmul':
                torch.cuda.synchronize()
                base = torch.cuda.memory_allocated()
                torch.cuda.reset_peak_memory_stats()
                knn(queries[:args.batch].to(device), db[:row[1]], args.k, row[0], row[3])
                peaks[(row[0], str(min(row[1], row[3])))] = torch.cuda.max_memory_allocated() - base
    else:
        del db  # the child makes its own
        peaks = peak_cpu_memory(args)
    out, notes = table(rows, times, peaks, args), extrapolation(rows, times, args, device)
    print(out + '\n\n' + notes)
    print(f'total {time.perf_counter() - t0:.0f} s')
    if args.record:
        cmd = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
        block = (f'### `{cmd}`\n\n{datetime.date.today().isoformat()}; git {sha}; {machine(device)}; '
                 f'torch {torch.__version__}.\nD={args.dim}, k={args.k}, query batches of {args.batch}; '
                 f'{args.repeats} rounds over the grid; {quiet}.\n\n{out}\n\n{notes}\n')
        record(SECTION, INTRO, f'`{cmd}`', block)


if __name__ == '__main__':
    main(get_args_parser().parse_args())
