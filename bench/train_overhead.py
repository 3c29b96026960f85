"""The loop overhead of train.py: step time of train.fit (the real loop) against a bare forward/backward/step loop,
on the same synthetic batch and the same model. Goal (issue 7): under 5%.

    .venv/bin/python bench/train_overhead.py --settings toy                 # a quick look (under a minute on 2 cores)
    .venv/bin/python bench/train_overhead.py --record                       # toy and AlexNet width 1.0 (~6 min on 2 cores)
    .venv/bin/python bench/train_overhead.py --device cuda --record         # on a GPU (H100 figures in BENCHMARKS.md)

Settings: toy = AlexNet width 0.25, 96 px, batch 64 (the CPU toy run of train.py's docstring); alexnet = the paper's
Caffe AlexNet, width 1.0, 227 px, batch 32 on the CPU (256 on a GPU).

fit side: train.fit itself, driven as train.main drives it: args from train.get_args_parser() (`--log-every 50`,
`--eval-every` and `--save-every` = the run length, so only the last iteration validates and saves), a run directory
made by engine.start_run_dir (a temp folder), the model, engine.sgd optimiser, GradScaler and autocast dtype built as
main builds them ('auto': bf16 on CUDA, fp32 on CPU), main's loss_of. The loader is a list-like object that yields
the same pre-made batch (channels_last, as data_dali's loader delivers it) and records the time of each request.
bare side: `autocast -> cross_entropy -> zero_grad -> backward -> optimizer.step()` on a model and optimiser built the
same way from the same seed, with nothing else.

Timing. A step's time is the interval between two successive batch requests, so it holds everything the loop does
for that iteration (the LR update of the param groups, GradScaler, loss accumulation, tqdm, and at log steps the
`.item()` syncs, log.jsonl and TensorBoard writes). The last iteration (validation and checkpoint) is not a step of
the table; the first --warmup steps are not either. The log step (iteration 50) is reported on its own: "fit per
step" is the median of the other steps plus (log step - that median) / 50, i.e. the amortised cost at the usual
log rate. Bare and fit alternate in --rounds rounds on a busy machine, and medians are over all rounds' steps.
On CUDA both sides synchronise the device at every batch request, so a step's interval is its whole device time
plus the host work the sync keeps from hiding behind it: an upper bound on what train.fit adds (the real loop never
syncs there). Host intervals without a sync measured launch rates, not steps: a first H100 run that way gave +80%
for 8 bare steps that never filled the launch queue against 46 fit steps that did.
"""
import argparse
import datetime
import os
import shlex
import statistics
import sys
import tempfile
import time

import torch
import torch.nn.functional as F

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # run as `python bench/train_overhead.py` from anywhere
import engine  # noqa: E402
import train  # noqa: E402
from bench.common import git_sha, record  # noqa: E402
from bench.train_step import INTRO, SECTION, busy_seconds, machine  # noqa: E402
from models import get_model  # noqa: E402

SETTINGS = {  # width, crop, batch on cpu / cuda
    'toy': dict(width=0.25, crop=96, batch={'cpu': 64, 'cuda': 64}),
    'alexnet': dict(width=1.0, crop=227, batch={'cpu': 32, 'cuda': 256}),
}
LOG_EVERY = 50


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--settings', nargs='+', default=list(SETTINGS), choices=list(SETTINGS))
    p.add_argument('--warmup', type=int, default=3, help='untimed steps at the start of each side')
    p.add_argument('--bare-steps', type=int, default=None, help='timed bare steps per round (default: toy 60, alexnet 8 on the CPU, 60 on CUDA)')
    p.add_argument('--rounds', type=int, default=None, help='bare and fit alternate this many times (default: toy 2, alexnet 1)')
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch\'s own)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--record', action='store_true', help='write the result into BENCHMARKS.md (this command\'s block)')
    return p


def now(device):
    """perf_counter, after the device's queue has drained on CUDA (see the docstring's Timing)."""
    if device.type == 'cuda':
        torch.cuda.synchronize(device)
    return time.perf_counter()


class SameBatch:
    """What train.fit needs of a loader (__iter__ over one epoch, __len__, state()), yielding one pre-made batch;
    `times` gets the time of every request."""

    def __init__(self, batch, n, device):
        self.batch, self.n, self.device, self.times = batch, n, device, []

    def __len__(self):
        return self.n

    def __iter__(self):
        for _ in range(self.n):
            self.times.append(now(self.device))
            yield self.batch

    def state(self):
        return {}


def build(setting, device, seed, amp):
    """Model and optimiser as train.main builds them (AlexNet, channels_last, Caffe biases), and the autocast dtype."""
    torch.manual_seed(seed)
    s = SETTINGS[setting]
    model = get_model('alexnet', 1000, 'bn', 0.5, s['width']).to(device).to(memory_format=torch.channels_last)
    optimizer = engine.sgd(model, 0.01, 0.9, 5e-4, caffe_bias=True)
    amp = {'auto': 'bf16' if device.type == 'cuda' else 'fp32'}.get(amp, amp)
    return model, optimizer, {'bf16': torch.bfloat16, 'fp16': torch.float16, 'fp32': torch.float32}[amp]


def bare_steps(setting, batch, device, seed, n):
    model, optimizer, amp_dtype = build(setting, device, seed, 'auto')
    model.train()
    images, labels = batch
    times = []
    for _ in range(n + 1):
        times.append(now(device))
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
            loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
    return [b - a for a, b in zip(times, times[1:])]


def fit_steps(setting, batch, device, seed, total, tmp):
    """Step times of train.fit over `total` iterations (the last one, which validates and saves, not included)."""
    s = SETTINGS[setting]
    out = tempfile.mkdtemp(dir=tmp)
    args = train.get_args_parser().parse_args([
        '--subset', tmp, '--out', out, '--arch', 'alexnet', '--width', str(s['width']), '--crop', str(s['crop']),
        '--batch-size', str(batch[0].shape[0]), '--iters', str(total), '--log-every', str(LOG_EVERY),
        '--eval-every', str(total), '--save-every', str(total), '--keep', '1', '--seed', str(seed)])
    engine.start_run_dir(args.out, dict(vars(args)))
    model, optimizer, amp_dtype = build(setting, device, seed, args.amp)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)
    loader = SameBatch(batch, total, device)

    def loss_of(b):  # train.main's
        images, labels = b
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        return F.cross_entropy(model(images), labels, label_smoothing=args.label_smoothing)

    def validate():  # the last iteration only, which is not timed
        return {'top1': 0.0, 'top5': 0.0, 'mean_class_acc': 0.0, 'n': 0}, 'validation skipped (benchmark)'

    milestones = list(args.lr_steps)
    step, _, _ = train.fit(args, model, model, optimizer, scaler, loader, loss_of, validate, lambda: model.train(True),
                           None, total, milestones, args.warmup, device, amp_dtype, 0, 1)
    assert step == total and len(loader.times) == total
    return [b - a for a, b in zip(loader.times, loader.times[1:])]  # steps 1 .. total - 1


def measure(args, setting, device, tmp):
    s = SETTINGS[setting]
    n = s['batch'][device.type]
    torch.manual_seed(args.seed)
    images = torch.randn(n, 3, s['crop'], s['crop'], device=device).contiguous(memory_format=torch.channels_last)
    batch = (images, torch.randint(0, 1000, (n,), device=device))
    bare_n = args.bare_steps or (60 if setting == 'toy' or device.type == 'cuda' else 8)
    # fit runs past the log at iteration LOG_EVERY (a non-final iteration), with as many ordinary steps as bare
    total = max(LOG_EVERY + 1, args.warmup + bare_n + 2)
    bare, fit, log = [], [], []
    rounds = args.rounds or (2 if setting == 'toy' else 1)
    for r in range(rounds):
        bare += bare_steps(setting, batch, device, args.seed, args.warmup + bare_n)[args.warmup:]
        steps = fit_steps(setting, batch, device, args.seed, total, tmp)
        log.append(steps[LOG_EVERY - 1])  # the interval of iteration 50: its step, then the .item() syncs and the log
        fit += [t for i, t in enumerate(steps[args.warmup:], args.warmup + 1) if i != LOG_EVERY]
        print(f'{setting} round {r + 1}: bare median {statistics.median(bare) * 1e3:.1f} ms, fit median '
              f'{statistics.median(fit) * 1e3:.1f} ms, log step {log[-1] * 1e3:.1f} ms', flush=True)
    b, f, lg = statistics.median(bare), statistics.median(fit), statistics.median(log)
    per_step = f + (lg - f) / LOG_EVERY
    row = dict(setting=setting, width=s['width'], crop=s['crop'], batch=n, bare=b, bare_lo=min(bare), bare_hi=max(bare),
               fit=f, fit_lo=min(fit), fit_hi=max(fit), log=lg, per_step=per_step, n_bare=len(bare), n_fit=len(fit))
    print(f'{setting}: bare {b * 1e3:.1f} ms, fit {f * 1e3:.1f} ms (+{(lg - f) * 1e3:.1f} ms at the log step), '
          f'overhead {per_step / b - 1:+.1%}', flush=True)
    return row


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda needs CUDA')
    device = torch.device(args.device, 0) if args.device == 'cuda' else torch.device('cpu')
    if device.type == 'cuda':
        torch.cuda.set_device(device)
    sha = git_sha()
    print(' '.join(f'{k}={v}' for k, v in sorted(vars(args).items())))
    print(f'git {sha}; {machine(device)}; torch {torch.__version__}')
    rows = []
    busy0, t0 = busy_seconds(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix='bench-train-overhead-') as tmp:
        for setting in args.settings:
            rows.append(measure(args, setting, device, tmp))
    busy1 = busy_seconds()
    elapsed = time.perf_counter() - t0
    others = ((busy1[0] - busy0[0]) - (busy1[1] - busy0[1])) / elapsed
    quiet = f'other processes took {max(others, 0):.2f} cores on average during the run ({elapsed:.0f} s)'
    print(quiet)

    lines = ['| setting | AlexNet width, px, batch | bare ms/step (min-max) | train.fit ms/step (min-max) | '
             f'log step ms (every {LOG_EVERY}) | train.fit per step, log amortised | **overhead** | steps bare / fit |',
             '|---|---|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        lines.append(f'| {r["setting"]} | {r["width"]}, {r["crop"]}, {r["batch"]} | {r["bare"] * 1e3:.1f} '
                     f'({r["bare_lo"] * 1e3:.1f}-{r["bare_hi"] * 1e3:.1f}) | {r["fit"] * 1e3:.1f} '
                     f'({r["fit_lo"] * 1e3:.1f}-{r["fit_hi"] * 1e3:.1f}) | {r["log"] * 1e3:.1f} | '
                     f'{r["per_step"] * 1e3:.1f} | **{r["per_step"] / r["bare"] - 1:+.1%}** | {r["n_bare"]} / {r["n_fit"]} |')
    out = '\n'.join(lines)
    print(out)
    if args.record:
        cmd = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
        block = (f'### `{cmd}`\n\n{datetime.date.today().isoformat()}; git {sha}; {machine(device)}; torch {torch.__version__}.\n'
                 f'train.fit (autocast {"bf16" if device.type == "cuda" else "fp32"} as train.py\'s --amp auto, '
                 f'channels_last, --log-every {LOG_EVERY}) against a bare loop on the same batch; {args.rounds or "2 (toy) / 1 (alexnet)"} '
                 f'round(s) alternating bare and fit, {args.warmup} warm-up steps each; medians over all rounds\' steps; '
                 f'overhead = (fit median + (log step - fit median) / {LOG_EVERY}) / bare median - 1; {quiet}.\n\n{out}\n')
        record(SECTION, INTRO, f'`{cmd}`', block)


if __name__ == '__main__':
    main(get_args_parser().parse_args())
