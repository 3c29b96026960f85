"""Images/s of the DALI train pipeline (data_dali.py) against a torch DataLoader + PIL reference.

    .venv/bin/python bench/loader.py                                  # 512 synthetic JPEGs, caffe style, 2 workers
    .venv/bin/python bench/loader.py --style inception --record       # also write the figures into BENCHMARKS.md
    .venv/bin/python bench/loader.py --data /imagenet --manifest subsets/full/train.txt --images 4096 --workers 8

Both sides do the same augmentation on the same JPEGs with the same number of CPU workers (DataLoader worker
processes) or threads (DALI `num_threads`). Without --manifest the JPEGs are synthetic, ImageNet-like (mostly
500x375, some portrait, quality 90, ~110 KB), generated deterministically into --data or a temp folder.
"""
import argparse
import datetime
import functools
import io
import math
import multiprocessing
import os
import random
import shlex
import statistics
import sys
import tempfile
import time

import numpy as np
import PIL
import torch
from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # run as `python bench/loader.py` from anywhere
from bench.common import cpu_description, git_sha, gpu_description, gpu_memory_used, record  # noqa: E402
from data_dali import HAND_OVERS, MEAN, STD, STYLES, classification_loader  # noqa: E402

SECTION = '## Loader: DALI CPU pipeline vs PIL DataLoader'
GPU_SECTION = '## Loader on a GPU: DALI mixed pipeline vs PIL DataLoader'
INTRO = ('Written by `bench/loader.py --record`, one block per command. '
         'CPU ms per image counts every process of one side (DataLoader: main and workers), so a busy neighbour '
         'changes it little; the last column says how quiet the machine was.')


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--data', default=None, help='image root; without --manifest, synthetic JPEGs are generated here '
                   'once (default: a temp folder, removed afterwards)')
    p.add_argument('--manifest', default=None, help='a manifest ("relative/path label" lines) of real images under --data')
    p.add_argument('--images', type=int, default=512, help='images per epoch (evenly spaced lines of --manifest)')
    p.add_argument('--style', default='caffe', choices=STYLES)
    p.add_argument('--crop', type=int, default=224)
    p.add_argument('--resize', type=int, default=256, help='shorter side before the crop (caffe style)')
    p.add_argument('--batch-size', type=int, default=64)
    p.add_argument('--workers', type=int, default=len(os.sched_getaffinity(0)),
                   help='DataLoader worker processes = DALI threads (default: the cores this process may use)')
    p.add_argument('--warmup', type=int, default=1, help='untimed epochs first (worker start-up, allocations)')
    p.add_argument('--epochs', type=int, default=3, help='timed epochs')
    p.add_argument('--rounds', type=int, default=3,
                   help='PIL then DALI, this many times (fresh loaders each); the table gives the median round')
    p.add_argument('--device', default='cpu', choices=['cpu', 'gpu'],
                   help='gpu: DALI decodes with device_id=0 ("mixed") and both sides deliver batches to the GPU')
    p.add_argument('--hw-decoder-load', type=float, default=None, help='gpu: the hardware JPEG decoder\'s share (default: DALI\'s)')
    p.add_argument('--prefetch', type=int, default=None, help='DALI prefetch_queue_depth (default: DALI\'s 2)')
    p.add_argument('--hand-over', nargs='+', default=['float'], choices=HAND_OVERS,
                   help='DALI side(s): float (normalised by DALI) and/or uint8 (normalised by torch on the device, as '
                        'train.py --hand-over uint8 does), each timed in the same alternating rounds')
    p.add_argument('--fancy-upsampling', action=argparse.BooleanOptionalAction, default=True,
                   help='gpu: chroma upsampling as the CPU decoder (data_dali\'s default)')
    p.add_argument('--record', action='store_true', help='write the result into BENCHMARKS.md (this command\'s block)')
    return p


# ---------------------------------------------------------------- synthetic JPEGs

def synthetic_image(i, w, h):
    """Smooth multi-scale noise, fine luminance grain and a few shapes: JPEG sizes like ImageNet photos
    (~110 KB at 500x375, q90); a flat or purely smooth image would compress to a few KB and decode too fast."""
    rng = np.random.default_rng(i)
    img = np.full((h, w, 3), 128, np.float32)
    for cells, amp in ((4, 90), (16, 45), (64, 30), (250, 60)):  # octaves: cells across the width, amplitude
        noise = rng.integers(0, 256, (cells * h // w + 2, cells + 2, 3), dtype=np.uint8)
        up = np.asarray(Image.fromarray(noise).resize((w, h), Image.BICUBIC), np.float32)
        img += (up / 127.5 - 1) * amp
    # Grain in luminance only: 4:2:0 chroma subsampling would throw colour grain away.
    img += rng.normal(0, rng.uniform(16, 28), (h, w, 1)).astype(np.float32)
    im = Image.fromarray(np.clip(img, 0, 255).astype(np.uint8))
    draw = ImageDraw.Draw(im)
    for _ in range(6):
        x, y, r = rng.uniform(0, w), rng.uniform(0, h), rng.uniform(20, 90)
        shape = draw.ellipse if rng.random() < 0.5 else draw.rectangle
        shape([x - r, y - 0.7 * r, x + r, y + 0.7 * r], fill=tuple(int(c) for c in rng.integers(0, 256, 3)))
    return im


def _write_synthetic(job):
    root, i, classes = job
    w, h = (375, 500) if i % 8 == 0 else (500, 375)  # ImageNet is mostly landscape 500x375/500x333
    rel = f'c{i % classes:02d}/img{i:05d}.JPEG'
    buf = io.BytesIO()
    synthetic_image(i, w, h).save(buf, 'JPEG', quality=90)
    with open(os.path.join(root, rel), 'wb') as f:
        f.write(buf.getvalue())
    return f'{rel} {i % classes}\n', len(buf.getvalue())


def make_synthetic(root, n, classes=10):
    """Write n JPEGs and root/manifest.txt once (in parallel: the GPU benchmarks want thousands); a later run with
    the same --data reuses them. Image i is a function of i alone."""
    manifest = os.path.join(root, 'manifest.txt')
    if os.path.exists(manifest) and sum(1 for _ in open(manifest)) == n:
        return manifest
    for c in range(min(n, classes)):
        os.makedirs(os.path.join(root, f'c{c:02d}'), exist_ok=True)
    with multiprocessing.Pool(len(os.sched_getaffinity(0))) as pool:
        lines, sizes = zip(*pool.map(_write_synthetic, [(root, i, classes) for i in range(n)], chunksize=16))
    with open(manifest + '.tmp', 'w') as f:
        f.writelines(lines)
    os.replace(manifest + '.tmp', manifest)
    print(f'wrote {n} JPEGs to {root}: mean {np.mean(sizes) / 1e3:.0f} KB (min {min(sizes) / 1e3:.0f}, max {max(sizes) / 1e3:.0f})')
    return manifest


def subsample_manifest(manifest, n, out):
    """Evenly spaced n lines of a real manifest, so both loaders read the same, class-mixed images."""
    lines = [line for line in open(manifest) if line.strip()]
    step = max(1, len(lines) // n)
    with open(out, 'w') as f:
        f.writelines(lines[::step][:n])
    return out


# ---------------------------------------------------------------- PIL reference

def random_resized_crop_box(w, h, rng, scale=(0.08, 1.0), ratio=(3 / 4, 4 / 3)):
    """torchvision's RandomResizedCrop.get_params: 10 tries at a random area and log-uniform aspect ratio,
    else a centre crop clamped to the ratio range. Returns (left, top, right, bottom)."""
    area = w * h
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(math.log(ratio[0]), math.log(ratio[1])))
        cw, ch = int(round(math.sqrt(target * aspect))), int(round(math.sqrt(target / aspect)))
        if 0 < cw <= w and 0 < ch <= h:
            x, y = rng.randint(0, w - cw), rng.randint(0, h - ch)
            return x, y, x + cw, y + ch
    if w / h < ratio[0]:
        cw, ch = w, int(round(w / ratio[0]))
    elif w / h > ratio[1]:
        cw, ch = int(round(h * ratio[1])), h
    else:
        cw, ch = w, h
    x, y = (w - cw) // 2, (h - ch) // 2
    return x, y, x + cw, y + ch


class PILTrain(torch.utils.data.Dataset):
    """The torchvision-style reference, written out in PIL (torchvision is not a dependency): decode, the same
    augmentation as data_dali's train pipeline, float CHW normalised with data_dali's MEAN/STD."""

    def __init__(self, root, manifest, style, crop, resize):
        self.items = [(os.path.join(root, p), int(l)) for p, l in (line.split() for line in open(manifest) if line.strip())]
        self.style, self.crop, self.resize = style, crop, resize
        self.mean = torch.tensor(MEAN).view(3, 1, 1)
        self.std = torch.tensor(STD).view(3, 1, 1)

    def __len__(self):
        return len(self.items)

    def __getitem__(self, i):
        path, label = self.items[i]
        rng = random  # DataLoader seeds `random` in every worker, differently per worker and epoch
        with Image.open(path) as f:
            img = f.convert('RGB')
        c = self.crop
        if self.style == 'inception':
            # Crop and resize in one call (resize's box); BILINEAR in PIL is antialiased, like DALI's antialias=True.
            img = img.resize((c, c), Image.BILINEAR, box=random_resized_crop_box(*img.size, rng))
        else:
            w, h = img.size
            s = self.resize / min(w, h)
            img = img.resize((max(c, round(w * s)), max(c, round(h * s))), Image.BILINEAR)
            x, y = rng.randint(0, img.width - c), rng.randint(0, img.height - c)
            img = img.crop((x, y, x + c, y + c))
        if rng.random() < 0.5:
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        x = torch.from_numpy(np.array(img)).permute(2, 0, 1).float()
        return x.sub_(self.mean).div_(self.std), label


# ---------------------------------------------------------------- timing

def process_cpu(pids):
    """CPU seconds (user + system, all threads) these processes have used: /proc/PID/stat fields 14-15."""
    total = 0.0
    for pid in pids:
        with open(f'/proc/{pid}/stat') as f:
            fields = f.read().rsplit(')', 1)[1].split()  # after "(comm)", which may hold spaces
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf('SC_CLK_TCK')


def machine_cpu():
    """CPU seconds every process on the machine has used: /proc/stat, all states but idle and iowait."""
    v = [int(x) for x in open('/proc/stat').readline().split()[1:9]]
    return (sum(v) - v[3] - v[4]) / os.sysconf('SC_CLK_TCK')


def time_epochs(loader, args, device, pids):
    """Per timed epoch: wall seconds (epoch boundaries included), images, CPU seconds of our processes (`pids()`),
    CPU seconds of every other process on the machine (a busy neighbour takes cores from whichever side runs at
    the time, so the figures are only comparable when it is near zero), and on a GPU the device memory in use at
    the epoch's end (MiB; DALI's memory pools must stay flat from epoch to epoch)."""
    rows = []
    # DALI's uint8 hand-over: the normalisation it leaves to torch is part of its cost (Identity for float)
    finish = loader.normalizer().to(device) if hasattr(loader, 'normalizer') else torch.nn.Identity()
    for epoch in range(args.warmup + args.epochs):
        procs = pids()
        t0, c0, m0, n = time.perf_counter(), process_cpu(procs), machine_cpu(), 0
        for images, labels in loader:
            if device.type == 'cuda':
                images = images.to(device, non_blocking=True)  # a no-op for DALI's GPU output
            images = finish(images)
            n += images.shape[0]
        if device.type == 'cuda':
            torch.cuda.synchronize()
        if epoch >= args.warmup:
            ours = process_cpu(procs) - c0
            others = max(0.0, machine_cpu() - m0 - ours)  # clock ticks: either count can be off by one
            rows.append((time.perf_counter() - t0, n, ours, others,
                         gpu_memory_used(device.index or 0) if device.type == 'cuda' else None))
    assert tuple(images.shape) == (args.batch_size, 3, args.crop, args.crop) and images.dtype == torch.float32, images.shape
    return rows


def run_pil(args, root, manifest, device):
    ds = PILTrain(root, manifest, args.style, args.crop, args.resize)
    dl = torch.utils.data.DataLoader(ds, batch_size=args.batch_size, shuffle=True, num_workers=args.workers,
                                     drop_last=True,  # as the DALI train loader (LastBatchPolicy.DROP)
                                     persistent_workers=True, pin_memory=device.type == 'cuda')
    try:
        # The persistent workers exist from the first epoch on (DataLoader._iterator is private, but stable).
        return time_epochs(dl, args, device, lambda: [os.getpid()] + [w.pid for w in getattr(dl._iterator, '_workers', [])])
    finally:
        del dl  # stop the worker processes before DALI runs


def run_dali(args, root, manifest, device, hand_over='float'):
    loader = classification_loader(root, manifest, args.batch_size, train=True, crop=args.crop, resize=args.resize,
                                   style=args.style, num_threads=args.workers,
                                   device_id=0 if device.type == 'cuda' else None, hw_decoder_load=args.hw_decoder_load,
                                   prefetch=args.prefetch, fancy_upsampling=args.fancy_upsampling,
                                   resize_mode=getattr(args, 'resize_mode', 'shorter'), hand_over=hand_over)
    return time_epochs(loader, args, device, lambda: [os.getpid()])  # DALI's threads live in this process


# ---------------------------------------------------------------- report

def versions(gpu=False):
    import nvidia.dali
    return ((f'{gpu_description()}; ' if gpu else '')
            + f'torch {torch.__version__}, DALI {nvidia.dali.__version__}, Pillow {PIL.__version__}')


def summarise(epochs):
    """One round's (images/s, CPU ms per image, cores taken by other processes) from its timed epochs."""
    secs, n, ours, others = (sum(col) for col in list(zip(*epochs))[:4])
    return n / secs, 1e3 * ours / n, others / secs


def table(results, args):
    rows = [f'| loader | images/s (median of {args.rounds} rounds) | rounds min-max | CPU ms per image '
            '| cores taken by other processes (max round) |', '|---|---:|---:|---:|---:|']
    rate = {}
    for name, rounds in results.items():
        rates, cpu, others = zip(*(summarise(r) for r in rounds))
        rate[name] = statistics.median(rates)
        label = (f'PIL + DataLoader, {args.workers} workers' if name == 'pil'
                 else f'DALI {args.device.upper()} pipeline, {args.workers} threads, {name.split()[1]} hand-over')
        rows.append(f'| {label} | {rate[name]:.0f} | {min(rates):.0f}-{max(rates):.0f} | {statistics.median(cpu):.2f} '
                    f'| {max(others):.2f} |')
    dali = [name for name in results if name != 'pil']
    rows += [f'| **ratio {name} / PIL** | **{rate[name] / rate["pil"]:.2f}x** | | | |' for name in dali]
    if len(dali) == 2:
        rows.append(f'| **ratio uint8 / float hand-over** | **{rate["dali uint8"] / rate["dali float"]:.2f}x** | | | |')
    if args.device == 'gpu':  # device memory after each timed epoch (after the warm-up ones) of DALI's first round
        mem = [f'{r[4]:.0f}' for r in results[dali[0]][0]]
        rows.append(f'\nGPU memory in use after each timed epoch of the first DALI round (MiB): {", ".join(mem)}')
    return '\n'.join(rows)


def main(args):
    print(' '.join(f'{k}={v}' for k, v in sorted(vars(args).items())))
    sha = git_sha()
    print(f'git {sha}; {cpu_description()}; {versions(args.device == "gpu")}')
    if args.device == 'gpu' and not torch.cuda.is_available():
        raise SystemExit('--device gpu needs CUDA')
    if args.workers < 1:
        raise SystemExit('--workers must be >= 1 (DataLoader workers = DALI threads)')
    if args.manifest and not args.data:
        raise SystemExit('--manifest needs --data, the root its paths are relative to')
    if args.images < args.batch_size:
        raise SystemExit('--images must be at least --batch-size (the train loaders drop the partial batch)')
    device = torch.device('cuda', 0) if args.device == 'gpu' else torch.device('cpu')
    # Fairness: W cores do the decoding and augmenting on both sides. DataLoader workers already run torch with
    # one thread each, and PIL is single-threaded; DALI runs W threads in its pool. The main process only hands
    # batches over (DALI: a copy out of its buffers; DataLoader: shared-memory tensors), so it gets one torch
    # thread on both sides rather than an intra-op pool that would compete for the same W cores.
    torch.set_num_threads(1)

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or tmp
        if args.manifest:
            manifest = subsample_manifest(args.manifest, args.images, os.path.join(tmp, 'manifest.txt'))
        else:
            os.makedirs(root, exist_ok=True)
            manifest = make_synthetic(root, args.images)
        n = sum(1 for _ in open(manifest))
        print(f'{n} images, batch {args.batch_size}: {n // args.batch_size} batches per epoch; '
              f'{args.warmup} warm-up + {args.epochs} timed epochs')
        # Alternating rounds: a neighbour's burst of work (this machine may be shared) then hits one round of
        # one side, which the median drops, instead of all of one side.
        sides = [('pil', run_pil)] + [(f'dali {h}', functools.partial(run_dali, hand_over=h))
                                      for h in dict.fromkeys(args.hand_over)]
        results = {name: [] for name, _ in sides}
        for r in range(args.rounds):
            for name, run in sides:
                results[name].append(run(args, root, manifest, device))
                rate, cpu, others = summarise(results[name][-1])
                print(f'round {r} {name:10s}: {rate:.0f} images/s, {cpu:.2f} CPU ms per image, '
                      f'{others:.2f} cores taken by other processes')

    out = table(results, args)
    print(out)
    if args.record:
        what = ('synthetic JPEGs (500x375 and 1 in 8 portrait, q90)' if not args.manifest
                else f'images from {args.manifest} under {args.data}')
        aug = ('random-resized crop (0.08-1, 3/4-4/3) to {c}, mirror' if args.style == 'inception'
               else 'shorter side to {r}, random {c} crop, mirror').format(c=args.crop, r=args.resize)
        cmd = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
        block = (f'### `{cmd}`\n\n{datetime.date.today().isoformat()}; git {sha}; {cpu_description()}; {versions(args.device == "gpu")}.\n'
                 f'{n} {what}; {args.style} style ({aug}), float NCHW normalised (by DALI, or by torch after a uint8 hand-over); batch {args.batch_size}; '
                 f'{args.workers} DataLoader workers vs {args.workers} DALI threads; {args.warmup} warm-up + '
                 f'{args.epochs} timed epochs per round, {args.rounds} rounds alternating PIL and DALI.\n\n{out}\n')
        record(GPU_SECTION if args.device == 'gpu' else SECTION, INTRO, f'`{cmd}`', block)


if __name__ == '__main__':
    main(get_args_parser().parse_args())
