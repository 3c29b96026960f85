"""End to end: JPEGs through DALI into train.py's training, against the two ceilings it cannot beat, in one run.

    .venv/bin/python bench/end_to_end.py --device cuda --sweep --record       # on a GPU: AlexNet and ResNet-50
    .venv/bin/python bench/end_to_end.py --arch alexnet --images 128 --batch-size 16 --iters 8 --log-every 2  # CPU smoke

For each architecture, on the same synthetic JPEGs (bench/loader.py's: mostly 500x375, q90, ~110 KB):
  decode ceiling   data_dali.classification_loader alone, as train.py builds it (caffe style: the network's resize, AlexNet
                   warped to 256 x 256, random crop, mirror, float normalised, NCHW channels_last on the device): images/s over --decode-epochs
                   epochs after one warm-up epoch, and the device memory in use after each (DALI's pools must stay flat);
  compute ceiling  bench/train_step.measure: forward + backward + SGD on a synthetic batch already on the device, at the
                   same batch, autocast dtype (train.py's: bf16 on a GPU, fp32 on the CPU), channels_last and --compile;
  end to end       train.py itself, in a subprocess, on the same JPEGs: images/s and data wait from its log.jsonl
                   (train.fit's windows of --log-every iterations; the first window, which holds start-up, is dropped);
  ratio            end to end / min(decode ceiling, compute ceiling): 1.0 would mean the loop wastes nothing.
--prepared runs every row on the originals and on the copy data_dali.py prepare makes for the network (issue 19).
--hand-over float uint8 runs every row with each of train.py's hand-overs: DALI normalises (float), or it hands uint8
over and torch normalises on the device, inside the compiled model with --compile (issue 19). A uint8 row's decode
ceiling includes that normalisation, run eagerly after the loader (bench/loader.time_epochs).
--sweep first times the decode ceiling alone over DALI threads x hw_decoder_load (the hardware JPEG decoder's share),
and the other rows then use the fastest setting. The JPEGs are read from the page cache after the first epoch, as a
machine with enough memory for its data set reads them.
"""
import argparse
import datetime
import itertools
import json
import os
import shlex
import subprocess
import sys
import tempfile

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # run as `python bench/end_to_end.py` from anywhere
from bench.common import git_sha, record  # noqa: E402
from bench.loader import make_synthetic, run_dali, versions  # noqa: E402
from bench.train_step import machine, measure  # noqa: E402
from data_dali import HAND_OVERS, prepare  # noqa: E402
from models import input_spec  # noqa: E402

SECTION = '## End to end: JPEGs through DALI into training'
INTRO = ('Written by `bench/end_to_end.py --record`: the decode ceiling (the DALI loader alone), the compute ceiling '
         '(the training step on a batch already on the device) and train.py itself on the same JPEGs, in one run; '
         'see the script\'s docstring for the method. Targets (issue 7, one H100): AlexNet >= 10,000 images/s and >= 90% '
         'of min(decode, compute); ResNet-50 >= 3,000 images/s with data wait < 5%.')


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--arch', nargs='+', default=['alexnet', 'resnet50'], choices=['alexnet', 'resnet50'])
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--data', default=None, help='where the synthetic JPEGs are written once and reused (default: a temp folder)')
    p.add_argument('--images', type=int, default=8192, help='JPEGs, i.e. images per epoch')
    p.add_argument('--batch-size', type=int, default=256, help='train.py\'s default, the paper\'s')
    p.add_argument('--workers', type=int, default=len(os.sched_getaffinity(0)), help='DALI threads')
    p.add_argument('--hw-decoder-load', type=float, default=None, help='GPU: the hardware decoder\'s share (default: DALI\'s)')
    p.add_argument('--sweep', action='store_true', help='time the decode ceiling over --sweep-threads x --sweep-hw first, '
                   'and use the fastest setting for the other rows')
    p.add_argument('--sweep-threads', type=int, nargs='+', default=[4, 8, 16])
    p.add_argument('--sweep-hw', type=float, nargs='+', default=[0.0, 0.5, 0.65, 0.8, 1.0])
    p.add_argument('--sweep-fancy', nargs='+', default=['on'], choices=['on', 'off'],
                   help='jpeg_fancy_upsampling (on: the GPU decodes as the CPU; data_dali\'s and train.py\'s setting)')
    p.add_argument('--prefetch', type=int, nargs='+', default=[None],
                   help='DALI prefetch_queue_depth(s) of the decode and end-to-end rows (default: DALI\'s 2)')
    p.add_argument('--decode-epochs', type=int, default=3, help='timed loader epochs, after one warm-up epoch')
    p.add_argument('--iters', type=int, default=200, help='train.py iterations')
    p.add_argument('--log-every', type=int, default=20, help='train.py\'s log window: the unit of the end-to-end figures')
    p.add_argument('--compile', action='store_true', help='torch.compile, in the compute ceiling and in train.py')
    p.add_argument('--compile-mode', default='default', choices=('default', 'reduce-overhead'),
                   help='with --compile: torch.compile\'s mode (reduce-overhead: CUDA graphs), both places')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--prepared', action='store_true', help='every row also on the copy `data_dali.py prepare` makes for the '
                   'network (AlexNet: warped to 256 x 256), written once beside the JPEGs')
    p.add_argument('--hand-over', nargs='+', default=['float'], choices=HAND_OVERS,
                   help='train.py --hand-over value(s): every decode and end-to-end row runs with each')
    p.add_argument('--record', action='store_true', help='write the result into BENCHMARKS.md (this command\'s block)')
    return p


def decode_ceiling(args, root, manifest, arch, device, workers, hw, epochs, prefetch=None, fancy=True, hand_over='float'):
    """(images/s, [device MiB after each timed epoch]) of the train loader alone, with the network's input as train.py
    builds it (AlexNet: warped to 256 x 256; ResNet-50: the shorter side to 256): one warm-up epoch, then `epochs`."""
    spec = input_spec(arch)
    ns = argparse.Namespace(batch_size=args.batch_size, crop=spec['size'], resize=spec['resize'],
                            resize_mode=spec['resize_mode'], style='caffe', workers=workers, hw_decoder_load=hw, warmup=1,
                            epochs=epochs, prefetch=prefetch, fancy_upsampling=fancy)
    rows = run_dali(ns, root, manifest, device, hand_over)
    return sum(r[1] for r in rows) / sum(r[0] for r in rows), [r[4] for r in rows]


def compute_ceiling(args, arch, device):
    """Images/s of train.py's step on a batch already on the device (bench/train_step.measure's median round)."""
    cuda = device.type == 'cuda'
    ns = argparse.Namespace(seed=args.seed, batch=args.batch_size, warmup=10 if cuda else 2, iters=20 if cuda else 1,
                            rounds=3)
    row = measure(ns, arch, 'bf16' if cuda else 'fp32', True, args.compile and args.compile_mode, device)
    if cuda:
        torch.cuda.empty_cache()  # leave the device to train.py's process
    return args.batch_size / row['step']


def end_to_end(args, arch, subset, root, tmp, workers, hw, prefetch, hand_over='float'):
    """train.py on the JPEGs: (images/s, data-wait fraction, windows used) from its log.jsonl, first window dropped."""
    out = os.path.join(tmp, f'run-{arch}-{workers}-{hw}-{prefetch}-{hand_over}-{os.path.basename(root)}')
    cmd = [sys.executable, os.path.join(ROOT, 'train.py'), '--subset', subset, '--data-root', root, '--out', out,
           '--arch', arch, '--batch-size', str(args.batch_size), '--iters', str(args.iters), '--lr-steps',
           '--log-every', str(args.log_every), '--eval-every', str(args.iters), '--save-every', str(args.iters),
           '--workers', str(workers), '--seed', str(args.seed), '--hand-over', hand_over]
    cmd += ['--hw-decoder-load', str(hw)] if hw is not None else []
    cmd += ['--prefetch', str(prefetch)] if prefetch is not None else []
    cmd += ['--compile', '--compile-mode', args.compile_mode] if args.compile else []
    if args.device == 'cpu':
        cmd += ['--amp', 'fp32']
    env = dict(os.environ, **({} if args.device == 'cuda' else {'CUDA_VISIBLE_DEVICES': ''}))  # --device cpu on a GPU machine
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=env)
    if p.returncode != 0:
        raise SystemExit(f'train.py failed ({p.returncode}): {" ".join(cmd)}\n{p.stdout[-2000:]}\n{p.stderr[-2000:]}')
    logs = [json.loads(line) for line in open(os.path.join(out, 'log.jsonl'))]
    windows = [r for r in logs if 'images_per_s' in r][1:]
    if not windows:
        raise SystemExit(f'--iters {args.iters} gives train.py fewer than two log windows of --log-every {args.log_every}')
    secs = [args.log_every * args.batch_size / r['images_per_s'] for r in windows]  # each window's wall time
    rate = len(windows) * args.log_every * args.batch_size / sum(secs)
    wait = sum(r['data_wait'] * s for r, s in zip(windows, secs)) / sum(secs)
    return rate, wait, len(windows)


def write_subset(tmp, manifest, classes=1000, val=512):
    """A train.py subset folder over the synthetic JPEGs, relabelled over 1000 classes (ImageNet's head size)."""
    paths = [line.split()[0] for line in open(manifest) if line.strip()]
    subset = os.path.join(tmp, 'subset')
    os.makedirs(subset, exist_ok=True)
    rows = [f'{p} {i % classes}\n' for i, p in enumerate(paths)]
    with open(os.path.join(subset, 'train.txt'), 'w') as f:
        f.writelines(rows)
    with open(os.path.join(subset, 'val.txt'), 'w') as f:
        f.writelines(rows[:val])
    with open(os.path.join(subset, 'classes.tsv'), 'w') as f:
        f.write('label\twnid\tname\n' + ''.join(f'{c}\tn{c:08d}\tclass {c}\n' for c in range(classes)))
    return subset


def main(args):
    cuda = args.device == 'cuda'
    if cuda and not torch.cuda.is_available():
        raise SystemExit('--device cuda needs CUDA')
    if args.images < 2 * args.batch_size:
        raise SystemExit('--images must be at least 2 x --batch-size')
    device = torch.device('cuda', 0) if cuda else torch.device('cpu')
    sha = git_sha()
    print(' '.join(f'{k}={v}' for k, v in sorted(vars(args).items())))
    print(f'git {sha}; {machine(device)}; {versions()}', flush=True)
    torch.set_num_threads(1 if cuda else torch.get_num_threads())  # on a GPU the CPU cores are DALI's

    with tempfile.TemporaryDirectory() as tmp:
        root = args.data or os.path.join(tmp, 'jpegs')
        os.makedirs(root, exist_ok=True)
        manifest = make_synthetic(root, args.images)
        subset = write_subset(tmp, manifest)
        workers, hw, sweep_out = args.workers, args.hw_decoder_load, ''
        if args.sweep:
            crop = input_spec(args.arch[0])["size"]
            lines = [f'| DALI threads | hw_decoder_load | jpeg_fancy_upsampling | decode images/s ({crop} px, 1 warm-up + 2 '
                     f'timed epochs) |', '|---:|---:|---|---:|']
            best = (0, None, None)
            for t in args.sweep_threads:
                for h in (args.sweep_hw if cuda else [None]):  # the CPU pipeline has no hardware decoder
                    for fancy in (args.sweep_fancy if cuda else ['on']):
                        rate, _ = decode_ceiling(args, root, manifest, args.arch[0], device, t, h, 2, fancy=fancy == 'on')
                        print(f'sweep: {t} threads, hw_decoder_load {h}, fancy upsampling {fancy}: {rate:.0f} images/s', flush=True)
                        lines.append(f'| {t} | {h} | {fancy} | {rate:.0f} |')
                        if fancy == 'on':  # train.py decodes with fancy upsampling
                            best = max(best, (rate, t, h), key=lambda b: b[0])
            _, workers, hw = best
            sweep_out = '\n'.join(lines) + f'\n\nFastest: {workers} threads, hw_decoder_load {hw}; the rows below use it.\n\n'
            print(sweep_out)

        rows = []
        for arch in args.arch:
            spec = input_spec(arch)
            crop = spec['size']
            compute = compute_ceiling(args, arch, device)
            roots = [('originals', root)]
            if args.prepared:  # the copy train.py accepts for this network: its own resize, done once (data_dali.py prepare)
                copy = f'{root.rstrip(os.sep)}-{spec["resize_mode"]}{spec["resize"]}'
                prepare(root, [line.split()[0] for line in open(manifest)], copy, spec['resize_mode'], spec['resize'], 90,
                        len(os.sched_getaffinity(0)))
                roots.append((f'copy, {spec["resize_mode"]} {spec["resize"]}', copy))
            for (jpegs, where), prefetch, hand in itertools.product(roots, args.prefetch, args.hand_over):
                decode, mem = decode_ceiling(args, where, manifest, arch, device, workers, hw, args.decode_epochs, prefetch,
                                             hand_over=hand)
                print(f'{arch} ({jpegs}, {hand}): compute ceiling {compute:.0f} images/s, decode ceiling {decode:.0f} '
                      f'images/s', flush=True)
                rate, wait, n = end_to_end(args, arch, subset, where, tmp, workers, hw, prefetch, hand)
                ratio = rate / min(compute, decode)
                print(f'{arch} ({jpegs}, {hand}): end to end {rate:.0f} images/s, data wait {wait:.1%} ({n} windows): {ratio:.2f} of the '
                      f'lower ceiling', flush=True)
                rows.append(f'| {arch} | {jpegs} | {hand} | {args.batch_size} x {crop} | {"bf16" if cuda else "fp32"} | '
                            f'{args.compile_mode if args.compile else "off"} | {prefetch or 2} | {decode:.0f} | {compute:.0f} | **{rate:.0f}** | '
                            f'{wait:.1%} | **{ratio:.2f}** | {", ".join(f"{m:.0f}" for m in mem) if cuda else "-"} |')
    out = (f'| arch | JPEGs | hand-over | batch x px | autocast | compile | DALI prefetch | decode ceiling (images/s) | '
           f'compute ceiling (images/s) | end to end (images/s) | data wait | end to end / min(ceilings) | device MiB after '
           f'each decode epoch |\n|---|---|---|---|---|---|---:|---:|---:|---:|---:|---:|---|\n' + '\n'.join(rows))
    print(out)
    if args.record:
        cmd = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
        block = (f'### `{cmd}`\n\n{datetime.date.today().isoformat()}; git {sha}; {machine(device)}; {versions()}.\n'
                 f'{args.images} synthetic JPEGs (500x375, 1 in 8 portrait, q90); caffe-style train loader (the network\'s '
                 f'resize: AlexNet warped to 256 x 256, ResNet-50 the shorter side to 256; random crop, mirror); {workers} DALI threads, hw_decoder_load {hw if hw is not None else "DALI default"}; '
                 f'decode: 1 warm-up + {args.decode_epochs} timed epochs; train.py: {args.iters} iterations, windows of '
                 f'{args.log_every}, the first dropped; channels_last.\n\n{sweep_out}{out}\n')
        record(SECTION, INTRO, f'`{cmd}`', block)


if __name__ == '__main__':
    main(get_args_parser().parse_args())
