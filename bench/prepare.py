"""The prepared copy (`data_dali.py prepare`) against the original JPEGs: the DALI train pipeline's images/s on each,
the size on disk, the time to prepare, and how far the copy's pixels are from the originals' (issue 19).

    .venv/bin/python bench/prepare.py                       # 1024 synthetic 500x375 JPEGs, Caffe's 256 x 256 warp
    .venv/bin/python bench/prepare.py --mode shorter --record
    .venv/bin/python bench/prepare.py --device gpu --images 8192 --batch-size 256 --data /tmp/wmig-bench-jpegs --record

The JPEGs are bench/loader.py's synthetic ImageNet-like ones (mostly 500x375, quality 90, ~110 KB). Both sides run
the same pipeline (the caffe style: resize, random crop, mirror) with the same threads, in alternating rounds.
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

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run as `python bench/prepare.py` from anywhere
from bench.common import cpu_description, git_sha, record  # noqa: E402
from bench.loader import make_synthetic, summarise, time_epochs, versions  # noqa: E402
from data_dali import STD, classification_loader, prepare  # noqa: E402

SECTION = '## Prepared copy: DALI on resized JPEGs vs the originals'
INTRO = ('Written by `bench/prepare.py --record`, one block per command: `data_dali.py prepare` writes each image '
         'resized once (Caffe\'s recipe: warped to 256 x 256), and the train pipeline then decodes fewer pixels.')


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--data', default=None, help='folder of the synthetic JPEGs, made once and reused (default: a temp folder)')
    p.add_argument('--images', type=int, default=1024)
    p.add_argument('--mode', default='warp', choices=('warp', 'shorter'))
    p.add_argument('--size', type=int, default=256, help="the copy's size (Caffe: 256)")
    p.add_argument('--quality', type=int, default=90)
    p.add_argument('--crop', type=int, default=227, help="the crop (Caffe's AlexNet: 227)")
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--workers', type=int, default=len(os.sched_getaffinity(0)), help='DALI threads = prepare processes')
    p.add_argument('--warmup', type=int, default=1)
    p.add_argument('--epochs', type=int, default=2)
    p.add_argument('--rounds', type=int, default=3)
    p.add_argument('--device', default='cpu', choices=('cpu', 'gpu'))
    p.add_argument('--record', action='store_true', help='write the result into BENCHMARKS.md')
    return p


def loader(args, root, manifest, train=True):
    return classification_loader(root, manifest, args.batch_size, train, args.crop, args.size, num_threads=args.workers,
                                 device_id=0 if args.device == 'gpu' else None, resize_mode=args.mode)


def main(args):
    print(' '.join(f'{k}={v}' for k, v in sorted(vars(args).items())))
    sha = git_sha()
    print(f'git {sha}; {cpu_description()}; {versions(args.device == "gpu")}')
    device = torch.device('cuda', 0) if args.device == 'gpu' else torch.device('cpu')
    torch.set_num_threads(1)  # the main process only hands batches over (bench/loader.py says why)
    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or os.path.join(tmp, 'originals')
        os.makedirs(root, exist_ok=True)
        manifest = make_synthetic(root, args.images)
        copy = os.path.join(tmp, 'copy')
        paths = [line.split()[0] for line in open(manifest)]
        t0 = time.perf_counter()
        prepare(root, paths, copy, args.mode, args.size, args.quality, args.workers)
        prep_rate = len(paths) / (time.perf_counter() - t0)
        sizes = {name: sum(os.path.getsize(os.path.join(r, p)) for p in paths) / 1e6
                 for name, r in (('originals', root), ('copy', copy))}
        # what training sees: the validation crops of both, in grey levels
        a, b = (next(iter(loader(args, r, manifest, train=False)))[0].float().cpu() for r in (root, copy))
        grey = ((a - b).abs() * torch.tensor(STD).view(1, 3, 1, 1)).mean().item()
        results = {'originals': [], 'copy': []}
        for r in range(args.rounds):
            for name, where in (('originals', root), ('copy', copy)):
                results[name].append(time_epochs(loader(args, where, manifest), args, device, lambda: [os.getpid()]))
                rate, cpu, others = summarise(results[name][-1])
                print(f'round {r} {name:9s}: {rate:.0f} images/s, {cpu:.2f} CPU ms per image, {others:.2f} cores taken by others')
    rows = [f'| JPEGs | MB (file sizes) | images/s (median of {args.rounds} rounds) | rounds min-max | CPU ms per image '
            '| cores taken by other processes (max round) |', '|---|---:|---:|---:|---:|---:|']
    rate = {}
    for name, rounds in results.items():
        rates, cpu, others = zip(*(summarise(r) for r in rounds))
        rate[name] = statistics.median(rates)
        rows.append(f'| {name} | {sizes[name]:.1f} | {rate[name]:.0f} | {min(rates):.0f}-{max(rates):.0f} '
                    f'| {statistics.median(cpu):.2f} | {max(others):.2f} |')
    rows.append(f'| **ratio copy / originals** | **{sizes["copy"] / sizes["originals"]:.2f}x** '
                f'| **{rate["copy"] / rate["originals"]:.2f}x** | | | |')
    out = '\n'.join(rows) + (f'\n\nPreparing the copy: {prep_rate:.0f} images/s with {args.workers} processes. Validation '
                             f'crops of the copy against the originals\': {grey:.2f} grey levels (0-255) mean absolute '
                             'difference.')
    print(out)
    if args.record:
        cmd = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
        recipe = f'warped to {args.size} x {args.size}' if args.mode == 'warp' else f'shorter side to {args.size}'
        block = (f'### `{cmd}`\n\n{datetime.date.today().isoformat()}; git {sha}; {cpu_description()}; '
                 f'{versions(args.device == "gpu")}.\n{len(paths)} synthetic JPEGs (500x375 and 1 in 8 portrait, q90); '
                 f'copy {recipe}, quality {args.quality}; caffe style (resize, random {args.crop} crop, mirror) with '
                 f'`--resize-mode {args.mode} --resize {args.size}` on both; batch {args.batch_size}, {args.workers} DALI '
                 f'threads; {args.warmup} warm-up + {args.epochs} timed epochs per round, {args.rounds} rounds '
                 f'alternating.\n\n{out}\n')
        record(SECTION, INTRO, f'`{cmd}`', block)


if __name__ == '__main__':
    main(get_args_parser().parse_args())
