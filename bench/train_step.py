"""Training step only: images/s of forward + backward + SGD step on a synthetic batch already on the device, for the
paper's Caffe AlexNet (227 px) and ResNet-50 (224 px), over autocast dtype x channels_last x torch.compile.

    .venv/bin/python bench/train_step.py --arch alexnet --dtypes fp32 --compile off      # a quick look (~1 min on 2 cores)
    .venv/bin/python bench/train_step.py --record                                        # the CPU table (~6 min on 2 cores)
    .venv/bin/python bench/train_step.py --device cuda --record                          # on a GPU (H100 figures in BENCHMARKS.md)

The step is train.fit's: autocast(dtype) around forward + cross-entropy, zero_grad(set_to_none), GradScaler (enabled
for fp16 only) scale/backward/step/update, SGD with momentum over engine.sgd's param groups. No data loading, no LR
schedule, no logging: `bench/train_overhead.py` measures what train.fit adds to this. Random weights, random images
and labels (1000 classes), made once on the device; channels_last converts both the model and the batch.

Timing: --warmup untimed steps (the first compiles, with --compile on: its time is the "first step" column), then
--rounds rounds of --iters steps each, every round bracketed by a device sync (CUDA events on a GPU, perf_counter on
the CPU); the table gives the median round. Combinations that make no sense on the device are skipped with the
reason printed (and listed under the table).
"""
import argparse
import datetime
import os
import shlex
import statistics
import sys
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # run as `python bench/train_step.py` from anywhere
import engine  # noqa: E402
from bench.common import cpu_description, git_sha, gpu_description, record  # noqa: E402
from models import get_model, input_spec  # noqa: E402

SECTION = '## Training step'
INTRO = ('Written by `bench/train_step.py --record` (the training step alone: forward + backward + SGD step on a '
         'synthetic batch already on the device, images/s over autocast dtype, channels_last and torch.compile) and '
         '`bench/train_overhead.py --record` (what train.fit, the real loop with its LR schedule, GradScaler, autocast, '
         'loss accumulation, tqdm and logging every 50 iterations, adds to a bare forward/backward/step loop on the '
         'same batch and model; goal from issue 7: under 5%), one block per command. See the scripts\' docstrings for '
         'the method. CPU blocks are from a shared 2-core VM, CUDA blocks from one H100 (`bash bench/gpu.sh step '
         'compile overhead`); compare ratios within one block.')
DTYPES = {'fp32': torch.float32, 'bf16': torch.bfloat16, 'fp16': torch.float16}
BATCH = {'cpu': {'alexnet': 32, 'resnet50': 8}, 'cuda': {'alexnet': 256, 'resnet50': 256}}


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--arch', nargs='+', default=['alexnet', 'resnet50'], choices=['alexnet', 'resnet50'])
    p.add_argument('--batch', type=int, default=None, help='per step (default: cpu 32 AlexNet / 8 ResNet-50; cuda 256)')
    p.add_argument('--dtypes', nargs='+', default=None, choices=list(DTYPES),
                   help='autocast dtypes (default: cpu fp32 bf16, see the fp16 note in skip_reason; cuda all three)')
    p.add_argument('--channels-last', nargs='+', default=['on', 'off'], choices=['on', 'off'])
    p.add_argument('--compile', nargs='+', default=None, choices=list(COMPILE),
                   help='torch.compile the model (default: cpu off, and on for AlexNet fp32 only, see skip_reason; cuda '
                        'off and on); cudagraphs: mode reduce-overhead, the step replayed as CUDA graphs')
    p.add_argument('--warmup', type=int, default=None, help='untimed steps first (default: cpu 2, cuda 10)')
    p.add_argument('--iters', type=int, default=None, help='steps per timed round (default: cpu 1, cuda 20)')
    p.add_argument('--rounds', type=int, default=3, help='timed rounds; the table gives the median')
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch\'s own)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--record', action='store_true', help='write the result into BENCHMARKS.md (this command\'s block)')
    return p


# ------------------------------------------------------------------------------------------------------ timing

def busy_seconds():
    """(CPU seconds all processes have used, CPU seconds this process has used): /proc/stat's busy jiffies."""
    ticks = [int(x) for x in open('/proc/stat').readline().split()[1:]]
    t = os.times()
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf('SC_CLK_TCK'), t.user + t.system


def machine(device):
    if device.type == 'cuda':
        return f'{gpu_description(device.index or 0)}; {cpu_description()}'
    return f'{cpu_description()}; {torch.get_num_threads()} torch threads'


class Clock:
    """Seconds of a bracketed region: CUDA events on a GPU (synchronised at the end), perf_counter on the CPU."""

    def __init__(self, device):
        self.cuda = device.type == 'cuda'

    def start(self):
        if self.cuda:
            torch.cuda.synchronize()
            self.e0, self.e1 = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
            self.e0.record()
        self.t0 = time.perf_counter()

    def stop(self):
        if self.cuda:
            self.e1.record()
            torch.cuda.synchronize()
            return self.e0.elapsed_time(self.e1) / 1e3
        return time.perf_counter() - self.t0


# -------------------------------------------------------------------------------------------------------- step

# --compile's choices: torch.compile's mode, or False for eager
COMPILE = {'off': False, 'on': 'default', 'cudagraphs': 'reduce-overhead'}


def compile_name(compiled):
    return next(k for k, v in COMPILE.items() if v == compiled)


def skip_reason(device, arch, dtype, channels_last, compiled, explicit):
    """Why a combination is not measured on this device (None: measure it). `explicit`: the user asked for it."""
    if device.type == 'cpu' and dtype == 'fp16' and not explicit['dtypes']:
        # Measured on the 2-core Xeon of BENCHMARKS.md: 4 AlexNet steps at batch 32 under fp16 autocast did not end
        # in 7 min (fp32: 3.5 s a step); the CPU has no fp16 arithmetic, and nobody trains in fp16 on a CPU.
        return 'fp16 autocast on CPU: no fp16 kernels, >100 s a step (fp32: ~3.5 s) in a probe; pass --dtypes fp16 to time it'
    if device.type == 'cpu' and compiled and not explicit['compile'] and (arch != 'alexnet' or dtype != 'fp32' or not channels_last):
        # Compiling forward + backward takes minutes on 2 shared cores; one row shows what Inductor does on a CPU.
        return 'torch.compile on CPU: timed for AlexNet fp32 channels_last only (compiling is minutes on 2 cores); pass --compile on to time it'
    return None


def measure(args, arch, dtype_name, channels_last, compiled, device):
    torch.manual_seed(args.seed)
    batch = args.batch or BATCH[device.type][arch]
    size = input_spec(arch)["size"]
    model = get_model(arch, 1000).to(device)
    fmt = torch.channels_last if channels_last else torch.contiguous_format
    model = model.to(memory_format=fmt).train()
    optimizer = engine.sgd(model, 0.01, 0.9, 5e-4, caffe_bias=arch == 'alexnet')
    dtype = DTYPES[dtype_name]
    scaler = torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)
    images = torch.randn(batch, 3, size, size, device=device).contiguous(memory_format=fmt)
    labels = torch.randint(0, 1000, (batch,), device=device)
    net = torch.compile(model, mode=compiled) if compiled else model  # compiled: False or a torch.compile mode

    def step():  # train.fit's step, without the schedule and the bookkeeping
        with torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32):
            loss = F.cross_entropy(net(images), labels)
        optimizer.zero_grad(set_to_none=True)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()

    clock = Clock(device)
    if device.type == 'cuda':
        torch.cuda.reset_peak_memory_stats()
    clock.start()
    step()
    first = clock.stop()
    for _ in range(args.warmup - 1):
        step()
    rounds = []
    for _ in range(args.rounds):
        clock.start()
        for _ in range(args.iters):
            step()
        rounds.append(clock.stop() / args.iters)
    mem = torch.cuda.max_memory_allocated() / 2**30 if device.type == 'cuda' else None
    med = statistics.median(rounds)
    row = dict(arch=arch, batch=batch, size=size, dtype=dtype_name, cl=channels_last, compiled=compiled, first=first,
               step=med, lo=min(rounds), hi=max(rounds), mem=mem)
    print(f'{arch} b{batch} {dtype_name} channels_last={"on" if channels_last else "off"} compile={compile_name(compiled)}: '
          f'{batch / med:.1f} images/s, {med * 1e3:.0f} ms/step (rounds {", ".join(f"{r * 1e3:.0f}" for r in rounds)}), '
          f'first step {first:.1f} s', flush=True)
    del net, model, optimizer
    if device.type == 'cuda':
        torch.cuda.empty_cache()
    return row


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda needs CUDA')
    device = torch.device(args.device, 0) if args.device == 'cuda' else torch.device('cpu')
    cpu = device.type == 'cpu'
    explicit = {'dtypes': args.dtypes is not None, 'compile': args.compile is not None}
    args.dtypes = args.dtypes or list(DTYPES)  # on the CPU, skip_reason drops fp16
    args.compile = args.compile or ['off', 'on']
    args.warmup = args.warmup or (2 if cpu else 10)
    args.iters = args.iters or (1 if cpu else 20)
    if args.warmup < 1 or args.iters < 1 or args.rounds < 1:
        raise SystemExit('--warmup, --iters and --rounds must be >= 1')
    sha = git_sha()
    print(' '.join(f'{k}={v}' for k, v in sorted(vars(args).items())))
    print(f'git {sha}; {machine(device)}; torch {torch.__version__}')

    rows, skipped = [], []
    busy0, t0 = busy_seconds(), time.perf_counter()
    for arch in args.arch:
        for compiled in (COMPILE[c] for c in args.compile):
            for dtype in args.dtypes:
                for cl in (c == 'on' for c in args.channels_last):
                    why = skip_reason(device, arch, dtype, cl, compiled, explicit)
                    if why:
                        what = f'{arch} {dtype} channels_last {"on" if cl else "off"} compile {compile_name(compiled)}'
                        if why not in [w for _, w in skipped]:
                            print(f'skipped: {what}: {why}')
                        skipped.append((what, why))
                        continue
                    rows.append(measure(args, arch, dtype, cl, compiled, device))
    busy1 = busy_seconds()
    elapsed = time.perf_counter() - t0
    others = ((busy1[0] - busy0[0]) - (busy1[1] - busy0[1])) / elapsed
    quiet = f'other processes took {max(others, 0):.2f} cores on average during the run ({elapsed:.0f} s)'
    print(quiet)

    base = {(r['arch'], r['compiled']): r for r in rows if r['dtype'] == 'fp32' and not r['cl'] and not r['compiled']}
    lines = ['| arch | batch x px | autocast | channels_last | compile | images/s (median) | ms/step (min-max) | '
             'vs fp32, contiguous, eager | first step (s) |' + (' peak GiB |' if not cpu else ''),
             '|---|---|---|---|---|---:|---:|---:|---:|' + ('---:|' if not cpu else '')]
    for r in rows:
        ref = base.get((r['arch'], False))
        vs = f'{ref["step"] / r["step"]:.2f}x' if ref else '-'
        lines.append(f'| {r["arch"]} | {r["batch"]} x {r["size"]} | {r["dtype"]} | {"on" if r["cl"] else "off"} | '
                     f'{compile_name(r["compiled"])} | **{r["batch"] / r["step"]:.1f}** | {r["step"] * 1e3:.0f} '
                     f'({r["lo"] * 1e3:.0f}-{r["hi"] * 1e3:.0f}) | {vs} | {r["first"]:.1f} |'
                     + (f' {r["mem"]:.1f} |' if not cpu else ''))
    out = '\n'.join(lines)
    print(out)
    notes = {}
    for what, why in skipped:
        notes.setdefault(why, []).append(what)
    skipped_text = ''.join(f'- Skipped ({len(w)}): {why}.\n' for why, w in notes.items())
    if args.record:
        cmd = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
        block = (f'### `{cmd}`\n\n{datetime.date.today().isoformat()}; git {sha}; {machine(device)}; torch {torch.__version__}.\n'
                 f'Random weights and batch on the device; {args.warmup} warm-up steps (the first is the "first step" '
                 f'column, compile included), then {args.rounds} rounds of {args.iters} step(s), median round; {quiet}.\n\n'
                 f'{out}\n\n{skipped_text}')
        record(SECTION, INTRO, f'`{cmd}`', block)


if __name__ == '__main__':
    main(get_args_parser().parse_args())
