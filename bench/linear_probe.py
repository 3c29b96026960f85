"""Kornblith et al.'s fixed-feature protocol, its two costs: penultimate-feature extraction (JPEGs through the DALI
validation pipeline into the network, finetune.py's loader and models.features) and one L-BFGS logistic regression
fit (finetune.fit_logreg) on a 50K x 2048 feature matrix, cold and warm-started from the next strength's solution.

    .venv/bin/python bench/linear_probe.py --images 64 --n 5000          # a smoke run (seconds)
    .venv/bin/python bench/linear_probe.py --record                       # CPU: 256 JPEGs, 50K x 2048 x 100 classes
    .venv/bin/python bench/linear_probe.py --device cuda --images 4096 --batch-size 256 --record   # a GPU

The features of the fit are synthetic and seeded (100 Gaussian class centres, unit noise, standardised like
finetune.linear_probe's): a problem of CIFAR-100's size (50K training images, 100 classes) at ResNet-50's width.
"""
import argparse
import datetime
import os
import shlex
import sys
import tempfile
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run as `python bench/linear_probe.py` from anywhere
from bench.common import cpu_description, git_sha, record  # noqa: E402
from bench.loader import make_synthetic, versions  # noqa: E402

SECTION = '## Fixed features (Kornblith et al.): feature extraction and the logistic regression'
INTRO = ('Written by `bench/linear_probe.py --record`, one block per command. The fixed-feature protocol extracts '
         'penultimate features of the train, val and test images once, then fits 45 L2 strengths (each warm-started '
         'from the previous solution) and refits the best on train + val.')


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--arch', default='resnet50')
    p.add_argument('--images', type=int, default=256, help='synthetic 500x375 JPEGs to extract features of')
    p.add_argument('--batch-size', type=int, default=32)
    p.add_argument('--workers', type=int, default=len(os.sched_getaffinity(0)), help='DALI threads')
    p.add_argument('--n', type=int, default=50000, help='training rows of the fit')
    p.add_argument('--dim', type=int, default=2048, help='feature width (ResNet-50: 2048)')
    p.add_argument('--classes', type=int, default=100)
    p.add_argument('--lam', type=float, default=1e-4, help='the strength of the timed fit (the warm one: 10x weaker)')
    p.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    p.add_argument('--record', action='store_true', help='write the result into BENCHMARKS.md')
    return p


def extraction(args, device):
    """(images/s of the whole extraction, images/s of the pipeline alone) over args.images synthetic JPEGs."""
    import engine
    import models
    from data_dali import classification_loader
    net = models.get_model(args.arch, 1000).to(device).eval()
    spec = models.input_spec(args.arch)
    amp = torch.bfloat16 if device.type == 'cuda' else torch.float32
    with tempfile.TemporaryDirectory() as tmp:
        manifest = make_synthetic(tmp, args.images)

        def loader():
            return classification_loader(tmp, manifest, args.batch_size, False, spec['size'], spec['resize'],
                                         num_threads=args.workers, device_id=0 if device.type == 'cuda' else None,
                                         mean=spec['mean'], std=spec['std'], resize_mode=spec['resize_mode'])
        engine.extract(lambda x: models.features(net, x), loader(), device, amp)  # warm-up: pipeline build, kernels
        t0 = time.perf_counter()
        feats, _ = engine.extract(lambda x: models.features(net, x), loader(), device, amp)
        whole = len(feats) / (time.perf_counter() - t0)
        t0 = time.perf_counter()
        n = sum(len(images) for images, _ in loader())
        pipeline = n / (time.perf_counter() - t0)
    return whole, pipeline, feats.shape[1]


def fit(args, device):
    """(seconds of a cold fit at --lam, seconds of a fit at --lam / 10 warm-started from it)."""
    import finetune
    g = torch.Generator().manual_seed(0)
    y = torch.arange(args.classes).repeat(args.n // args.classes + 1)[:args.n]
    x = torch.randn(args.classes, args.dim, generator=g)[y] * 0.1 + torch.randn(args.n, args.dim, generator=g)
    x = ((x - x.mean(0)) / x.std(0)).to(device)
    y = y.to(device)
    times = []
    wb = None
    for lam in (args.lam, args.lam / 10):
        if device.type == 'cuda':
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        wb = finetune.fit_logreg(x, y, args.classes, lam, init=wb)
        if device.type == 'cuda':
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return times


def main(args):
    sha = git_sha()
    device = torch.device(args.device)
    where = cpu_description()  # versions() names the GPU
    print(f'git {sha}; {where}; {versions(device.type == "cuda")}')
    whole, pipeline, dim = extraction(args, device)
    print(f'extraction: {whole:.1f} images/s ({args.arch}, {dim}-d features); the pipeline alone {pipeline:.1f} images/s')
    cold, warm = fit(args, device)
    print(f'fit {args.n} x {args.dim}, {args.classes} classes: cold {cold:.1f} s, warm-started {warm:.1f} s')
    out = '\n'.join([
        '| measure | value |', '|---|---:|',
        f'| feature extraction, {args.arch} ({dim}-d), {args.images} JPEGs, batch {args.batch_size} | {whole:.1f} images/s |',
        f'| the DALI validation pipeline alone (decode, resize, crop) | {pipeline:.1f} images/s |',
        f'| one L-BFGS fit, {args.n} x {args.dim}, {args.classes} classes, lambda {args.lam:g}, from zero | {cold:.1f} s |',
        f'| the next strength ({args.lam / 10:g}) warm-started from it | {warm:.1f} s |'])
    print(out)
    if args.record:
        cmd = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
        block = (f'### `{cmd}`\n\n{datetime.date.today().isoformat()}; git {sha}; {where}; {versions(device.type == "cuda")}; '
                 f'{args.workers} DALI threads; fp32 on CPU, bf16 autocast on a GPU; at most 300 L-BFGS steps '
                 f'(strong Wolfe line search).\n\n{out}\n')
        record(SECTION, INTRO, f'`{cmd}`', block)


if __name__ == '__main__':
    main(get_args_parser().parse_args())
