"""Pre-train a network from scratch on one subset manifest (made by subsets.py).

    python train.py --subset subsets/toy/full --crop 96 --resize 108 --batch-size 64 --iters 300 --lr 0.02 --eval-every 100
    python train.py --subset subsets/imagenet/full                      # the paper's recipe: Caffe AlexNet, 450K iterations
    torchrun --nproc_per_node 8 train.py --subset subsets/imagenet/full --arch resnet50 --style inception \
        --epochs 90 --lr 0.1 --lr-steps 30 60 80 --warmup 5               # a ResNet-50 epoch schedule (Goyal et al. 2017)

The run directory (--out, default runs/<subset>-<arch>) gets args.json, log.jsonl, tb/ (TensorBoard),
checkpoint.pth and, at the end, metrics.json. Running the same command again resumes from the checkpoint;
on a finished run it only prints the result.
"""
import argparse
import hashlib
import json
import os
import sys
import time

import torch
import torch.nn.functional as F
from tqdm import tqdm

import engine
from data_dali import HAND_OVERS, RESIZE_MODES, STYLES, check_prepared, classification_loader
from datasets import read_manifest, read_tsv
from engine import UserError, ranged
from models import IMAGENET_MEAN, IMAGENET_STD, NORMS, check_arch, check_input_size, get_model, input_spec


def get_args_parser():
    p = argparse.ArgumentParser(description='Pre-train on a subset manifest. Defaults are the paper\'s recipe '
                                '(Caffe bvlc_alexnet solver: batch 256, lr 0.01 x0.1 every 100K, 450K iterations).')
    p.add_argument('--subset', required=True, help='subset folder with train.txt, val.txt, classes.tsv, meta.json')
    p.add_argument('--data-root', default=None, help='image root the manifest paths are relative to (default: from meta.json)')
    p.add_argument('--out', default=None, help='run directory (default: runs/<subset name>-<arch>)')
    # model
    p.add_argument('--arch', default='alexnet',
                   help='alexnet (the paper\'s Caffe AlexNet), alexnet_tv, any torchvision classification model '
                        '(resnet50, densenet121, inception_v3, ...), or timm:NAME (timm:inception_v4, ...)')
    p.add_argument('--norm', default='bn', choices=NORMS,
                   help='normalisation, for builders with a norm_layer (ResNets, MobileNets; gn: He et al. 2019; bn-noscale: Kornblith et al. 2019)')
    p.add_argument('--dropout', type=ranged(float, 0, 1, hi_open=True), default=0.5, help='AlexNet fc6/fc7 dropout (Krizhevsky et al. 2012)')
    p.add_argument('--width', type=ranged(float, 0, lo_open=True), default=1.0, help='AlexNet width multiplier; 1.0 is the paper\'s net, 0.25 trains the toy data on a CPU')
    p.add_argument('--weight-init', default=None, choices=('caffe', 'default'),
                   help='initialisation (default: caffe for alexnet, bvlc_alexnet\'s Gaussian fillers; the library\'s otherwise)')
    p.add_argument('--init', default=None, help='start from these weights (a wmig checkpoint, a torchvision/timm state_dict file, '
                   'or torchvision:DEFAULT / timm:DEFAULT to download); the last layer is new')
    p.add_argument('--train-layers', default='all', choices=('all', 'head'), help='head: train only the last layer, the rest frozen (paper Fig. 2, 9)')
    p.add_argument('--head-lr-mult', type=ranged(float, 0), default=1.0, help='LR multiplier of the last layer (fine-tuning: 10, Caffe\'s example)')
    # data
    p.add_argument('--style', default='caffe', choices=STYLES, help='caffe: resize 256 + random crop; inception: random-resized crop')
    p.add_argument('--crop', type=ranged(int, 1), default=None, help='training crop (default: the network\'s size: 227 for alexnet, 299 for Inceptions, ...)')
    p.add_argument('--resize', type=ranged(int, 1), default=None, help='side before cropping (default: the network\'s; Caffe: 256)')
    p.add_argument('--resize-mode', default=None, choices=RESIZE_MODES,
                   help='warp: both sides to --resize, as Caffe (the default for alexnet); shorter: the shorter side (the default otherwise)')
    p.add_argument('--mean', type=ranged(float, 0, 1), nargs=3, default=None, help='RGB mean on the 0-1 scale (default: the network\'s; ImageNet\'s for torchvision)')
    p.add_argument('--std', type=ranged(float, 0, lo_open=True), nargs=3, default=None, help='RGB std on the 0-1 scale (default: the network\'s)')
    p.add_argument('--workers', type=ranged(int, 1), default=min(8, len(os.sched_getaffinity(0))), help='DALI threads per process')
    # optimisation (Caffe bvlc_alexnet/solver.prototxt)
    p.add_argument('--batch-size', type=ranged(int, 1), default=256, help='global batch, split across processes')
    p.add_argument('--lr', type=ranged(float, 0, lo_open=True), default=0.01)
    p.add_argument('--momentum', type=ranged(float, 0, 1, hi_open=True), default=0.9)
    p.add_argument('--nesterov', action=argparse.BooleanOptionalAction, default=False,
                   help='Nesterov momentum (Kornblith et al. 2019\'s fine-tuning; Caffe\'s solver has plain momentum)')
    p.add_argument('--wd', type=ranged(float, 0), default=5e-4, help='weight decay')
    p.add_argument('--bn-momentum', type=ranged(float, 0, 1, lo_open=True), default=None,
                   help='BatchNorm running-statistics momentum (default: the library\'s, 0.1; Kornblith et al.\'s '
                        'fine-tuning sets it from the data set size)')
    # regularisers that Kornblith et al. 2019 found to hurt transfer (with --dropout 0 and --norm bn-noscale)
    p.add_argument('--label-smoothing', type=ranged(float, 0, 1, hi_open=True), default=0.0, help='Szegedy et al. 2016; hurts transfer (Kornblith et al. 2019)')
    p.add_argument('--wd-norm', action=argparse.BooleanOptionalAction, default=True,
                   help='weight decay on BN/GN parameters; off helps ImageNet, hurts transfer (Kornblith et al. 2019)')
    p.add_argument('--iters', type=ranged(int, 1), default=450000, help='training length in iterations (ignored with --epochs)')
    p.add_argument('--epochs', type=ranged(int, 1), default=None, help='training length in epochs; --lr-steps and --warmup then count epochs')
    p.add_argument('--schedule', default='step', choices=('step', 'cosine', 'constant'))
    p.add_argument('--lr-steps', type=ranged(int, 1), nargs='*', default=[100000, 200000, 300000, 400000], help='x gamma at each (iterations, or epochs with --epochs)')
    p.add_argument('--gamma', type=ranged(float, 0, lo_open=True), default=0.1)
    p.add_argument('--warmup', type=ranged(int, 0), default=0, help='linear warm-up length (iterations, or epochs with --epochs)')
    # Off in the paper's recipe (Caffe's solver has no clipping); the toy recipe needs it (experiments/common.py TOY_PRETRAIN)
    p.add_argument('--clip-grad', type=ranged(float, 0, lo_open=True), default=None, help='clip the global gradient norm to this (Pascanu et al. 2013; nanoGPT: 1.0)')
    # precision and speed
    p.add_argument('--amp', default='auto', choices=('auto', 'bf16', 'fp16', 'fp32'), help='auto: bf16 on GPU, fp32 on CPU')
    p.add_argument('--channels-last', action=argparse.BooleanOptionalAction, default=True)
    p.add_argument('--compile', action='store_true', help='torch.compile the model')
    p.add_argument('--compile-mode', default='default', choices=('default', 'reduce-overhead', 'max-autotune'),
                   help='torch.compile\'s mode; reduce-overhead replays the training step as CUDA graphs (a GPU, fixed '
                        'shapes: train batches are), for launch-bound networks such as AlexNet')
    p.add_argument('--hw-decoder-load', type=ranged(float, 0, 1), default=None,
                   help='GPU only: share of JPEGs for the hardware decoder (default: DALI\'s 0.65; bench/end_to_end.py --sweep)')
    p.add_argument('--prefetch', type=ranged(int, 1), default=None, help='batches DALI prepares ahead (default: DALI\'s 2)')
    p.add_argument('--hand-over', default='float', choices=HAND_OVERS,
                   help='what the train pipeline gives torch: float (normalised by DALI) or uint8 (normalised on the '
                        'device, inside the compiled model: a quarter of the bytes; the same images bit for bit)')
    # bookkeeping
    p.add_argument('--seed', type=ranged(int, 0), default=0)
    p.add_argument('--log-every', type=ranged(int, 1), default=50, help='iterations between log lines (and the only .item() syncs)')
    p.add_argument('--eval-every', type=ranged(int, 1), default=10000, help='iterations between validations (and at the end)')
    p.add_argument('--save-every', type=ranged(int, 1), default=1000, help='iterations between checkpoints (and at the end)')
    p.add_argument('--keep', type=ranged(int, 1), default=3, help='checkpoints kept: checkpoint.pth and the older checkpoint.N.pth')
    return p


# Arguments that may change between a run and its resumption without changing what is computed.
RESUME_MAY_CHANGE = ('workers', 'log_every', 'eval_every', 'data_root', 'compile', 'compile_mode', 'keep', 'hand_over')
# Arguments added after runs were made: an args.json without them ran with these values.
ADDED_LATER = {'mean': list(IMAGENET_MEAN), 'std': list(IMAGENET_STD), 'resize_mode': 'shorter', 'weight_init': 'default',
               'nesterov': False, 'bn_momentum': None}


class Diverged(SystemExit):
    """The loss became non-finite: exit status 1 on the command line; finetune.py's grid search catches it and leaves
    that point out of its choice (a learning rate too high for the data set is a normal point of the paper's grid)."""


def targets_path(subset, split):
    """A multi-label subset (finetune.py voc07-cls) has SPLIT.targets.txt beside SPLIT.txt: one line of C values per
    manifest line (1 present, 0 difficult: ignored, -1 absent), and each manifest label is its line's number."""
    return os.path.join(subset, f'{split}.targets.txt')


def read_targets(path, num_classes):
    """[N, C] int8 tensor of a SPLIT.targets.txt; a malformed one is a UserError naming it."""
    try:
        rows = [[int(v) for v in line.split()] for line in open(path)]
    except (OSError, ValueError) as e:
        raise UserError(f'{path}: not a targets file of integers 1 / 0 / -1 ({e})')
    bad = next((i for i, r in enumerate(rows) if len(r) != num_classes or not set(r) <= {1, 0, -1}), None)
    if bad is not None:
        raise UserError(f'{path} line {bad + 1}: expected {num_classes} values of 1 / 0 / -1')
    return torch.tensor(rows, dtype=torch.int8).reshape(len(rows), num_classes)


def multilabel_loss(logits, targets):
    """Sigmoid cross-entropy over the labelled (non-zero) targets, averaged: each VOC class is its own binary
    problem, and a difficult-only class (0) of an image is neither positive nor negative, as the devkit scores it."""
    mask = (targets != 0).float()
    loss = F.binary_cross_entropy_with_logits(logits.float(), (targets > 0).float(), reduction='none')
    return (loss * mask).sum() / mask.sum().clamp_min(1)


def check_args(args):
    """Validate everything a user can get wrong before anything is written. Returns derived values."""
    for name in ('train.txt', 'val.txt', 'classes.tsv'):
        if not os.path.isfile(os.path.join(args.subset, name)):
            raise UserError(f'{os.path.join(args.subset, name)} not found; --subset must be a folder made by subsets.py make')
    meta_path = os.path.join(args.subset, 'meta.json')
    if args.data_root is None:
        if not os.path.isfile(meta_path):
            raise UserError(f'{meta_path} not found; pass --data-root')
        args.data_root = engine.read_json(meta_path, ['root'])['root']
    if not os.path.isdir(args.data_root):
        raise UserError(f'image root not found: {args.data_root}')
    num_classes = len(read_tsv(os.path.join(args.subset, 'classes.tsv'))) - 1  # minus the header
    counts, targets = {}, {}
    for split in ('train', 'val'):
        path = os.path.join(args.subset, f'{split}.txt')
        rows = read_manifest(path)
        counts[split] = len(rows)
        if os.path.exists(targets_path(args.subset, 'train')):  # multi-label: each label is a row of the targets
            targets[split] = read_targets(targets_path(args.subset, split), num_classes)
            if len(targets[split]) != len(rows):
                raise UserError(f'{targets_path(args.subset, split)} has {len(targets[split])} lines for the {len(rows)} of {path}')
        if not rows and split == 'val':  # no validation set: training only (finetune.py sun397 by default)
            continue
        if not rows:
            raise UserError(f'{path} is empty')
        limit, what = (len(rows), 'lines of its targets file') if targets else (num_classes, 'classes of classes.tsv')
        bad = [lab for _, lab in rows if lab >= limit]
        if bad:
            raise UserError(f'{path}: label {bad[0]} is out of range for the {limit} {what}')
        first = os.path.join(args.data_root, rows[0][0])
        if not os.path.isfile(first):
            raise UserError(f'image not found: {first} (is --data-root right?)')
    check_arch(args.arch)
    # numeric flags are range-checked as they are parsed (engine.ranged)
    spec = input_spec(args.arch)  # the network's own input and initialisation; recorded in args.json
    for k, name in (('size', 'crop'), ('resize', 'resize'), ('resize_mode', 'resize_mode'), ('mean', 'mean'),
                    ('std', 'std'), ('weight_init', 'weight_init')):
        if getattr(args, name) is None:
            setattr(args, name, spec[k])
    if args.epochs is not None and any(m > args.epochs for m in args.lr_steps + [args.warmup]):
        raise UserError(f'--lr-steps {" ".join(map(str, args.lr_steps))} / --warmup {args.warmup} go beyond --epochs '
                        f'{args.epochs}: with --epochs they count epochs (give them, e.g. --lr-steps 30 60 80)')
    if args.compile_mode != 'default' and not args.compile:
        raise UserError(f'--compile-mode {args.compile_mode} needs --compile')
    if args.crop > args.resize:
        raise UserError(f'--crop {args.crop} is larger than --resize {args.resize}: the crop is taken from the resized image')
    if targets and args.label_smoothing:
        raise UserError(f'--label-smoothing applies to single-label classes; {args.subset} is multi-label')
    check_prepared(args.data_root, args.resize_mode, args.resize)
    return num_classes, counts, targets


def main(args):
    rank, world, local_rank, device = engine.init_distributed()
    is_main = rank == 0
    num_classes, counts, targets = check_args(args)
    if args.batch_size % world:
        raise UserError(f'--batch-size {args.batch_size} is not divisible by the {world} processes')
    batch = args.batch_size // world
    if batch > counts['train'] // world:
        raise UserError(f'--batch-size {args.batch_size} is larger than the {counts["train"]} training images')
    args.out = args.out or os.path.join('runs', f'{os.path.basename(os.path.normpath(args.subset))}-{args.arch.replace(":", "-")}')
    with open(os.path.join(args.subset, 'train.txt'), 'rb') as f:  # the run's identity: what it trains on
        args_dict = {**engine.resolved(vars(args)), engine.MANIFEST_KEY: hashlib.sha256(f.read()).hexdigest()}
    engine.check_run_dir(args.out, args_dict, ignore=RESUME_MAY_CHANGE, added=ADDED_LATER)
    metrics_path, ckpt_path = os.path.join(args.out, 'metrics.json'), os.path.join(args.out, 'checkpoint.pth')
    if os.path.exists(metrics_path):
        finished = engine.read_json(metrics_path, fix='delete it and run the same command: the finished run is '
                                                      'validated again from its last checkpoint')
        if is_main:
            print(f'{args.out} is finished: {json.dumps(finished, sort_keys=True)}')
        return
    ckpt, ckpt_from = engine.load_latest_checkpoint(ckpt_path, args.keep, ('model', 'optimizer', 'step', 'loader', 'rng'))
    if ckpt is not None and len(ckpt['loader']) != world:
        raise UserError(f'{ckpt_from} was written by {len(ckpt["loader"])} processes; resume it with as many, not {world}')

    # ---- data
    dali_device = local_rank if device.type == 'cuda' else None
    threads = max(1, args.workers)
    speed = dict(hw_decoder_load=args.hw_decoder_load, prefetch=args.prefetch, mean=args.mean, std=args.std,
                 resize_mode=args.resize_mode)
    train_loader = classification_loader(args.data_root, os.path.join(args.subset, 'train.txt'), batch, True, args.crop,
                                         args.resize, args.style, threads, dali_device, rank, world, args.seed,
                                         checkpoint=ckpt['loader'][rank] if ckpt else None, hand_over=args.hand_over,
                                         **speed)
    val_loader = None if not counts['val'] else classification_loader(args.data_root, os.path.join(args.subset, 'val.txt'), batch, False, args.crop,
                                       args.resize, args.style, threads, dali_device, rank, world, args.seed, **speed)
    iters_per_epoch = len(train_loader)
    unit = iters_per_epoch if args.epochs is not None else 1  # schedule lengths count epochs or iterations
    total = args.epochs * iters_per_epoch if args.epochs is not None else args.iters
    milestones, warmup = [m * unit for m in args.lr_steps], args.warmup * unit

    # ---- model and optimiser
    torch.manual_seed(args.seed + rank)
    model = get_model(args.arch, num_classes, args.norm, args.dropout, args.width, args.weight_init)
    check_input_size(model, args.crop, args.arch)
    if args.bn_momentum is not None:
        for m in model.modules():
            if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                m.momentum = args.bn_momentum
    model = model.to(device)
    if args.channels_last:
        model = model.to(memory_format=torch.channels_last)
    raw_model = model  # saved and evaluated: no DDP `module.` or compile `_orig_mod.` prefixes
    if args.init and ckpt is None:
        engine.load_init(raw_model, engine.read_weights(args.init, args.arch)[0], args.init)
    if args.train_layers == 'head':
        for name, p in raw_model.named_parameters():
            p.requires_grad_(name.startswith(raw_model.head_name + '.'))
    optimizer = engine.sgd(model, args.lr, args.momentum, args.wd, caffe_bias=args.arch == 'alexnet',
                           head_lr_mult=args.head_lr_mult, wd_norm=args.wd_norm, nesterov=args.nesterov)
    amp, amp_dtype, scaler = engine.amp_setup(args.amp, device)
    if ckpt is not None:
        engine.restore(ckpt, ckpt_from, raw_model, optimizer, scaler, rank)
    if args.train_layers == 'head':  # kept to check at the end that the frozen layers did not move
        frozen = {k: v.detach().clone() for k, v in raw_model.state_dict().items() if not k.startswith(raw_model.head_name + '.')}
    if args.hand_over == 'uint8':  # the loader's normalisation as the model's first op (nothing added to checkpoints)
        model = torch.nn.Sequential(train_loader.normalizer().to(device), model)
    if args.compile:
        model = torch.compile(model, mode=args.compile_mode)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == 'cuda' else None)

    # ---- the run directory: created only now that every input is known to be good
    if is_main:
        sha = engine.start_run_dir(args.out, args_dict)
        engine.print_args(args_dict, sha)
        print(f'{world} process(es) on {device.type}, batch {batch}/process = {args.batch_size} global, {amp} autocast, '
              f'{num_classes} classes, {counts["train"]} train / {counts["val"]} val images, {iters_per_epoch} iterations/epoch, '
              f'{total} iterations = {total / iters_per_epoch:.2f} epochs, lr {args.lr} ({args.schedule}, milestones {milestones}, warm-up {warmup})')
        if ckpt is not None:
            print(f'resuming from {ckpt_from} at iteration {ckpt["step"]}')

    train_targets = targets['train'].to(device) if targets else None

    def loss_of(batch):
        images, labels = batch
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        if train_targets is not None:
            return multilabel_loss(model(images), train_targets[labels])
        return F.cross_entropy(model(images), labels, label_smoothing=args.label_smoothing)

    def validate():
        if val_loader is None:
            return {}, 'no validation (val.txt is empty)'
        if targets:
            m = engine.evaluate_multilabel(raw_model, val_loader, targets['val'], device, amp_dtype, world)
            return m, f'val mAP {m["mAP"]:.2f} (11-point)  ({m["n"]} images)'
        m = engine.evaluate(raw_model, val_loader, device, amp_dtype, world)
        return m, f'val top-1 {m["top1"]:.2f}%  top-5 {m["top5"]:.2f}%  mean class {m["mean_class_acc"]:.2f}%  ({m["n"]} images)'

    def train_mode():
        # A frozen backbone runs as at test time (no dropout, BN statistics fixed): only the head learns.
        model.train(args.train_layers == 'all')

    step, epoch, metrics = fit(args, model, raw_model, optimizer, scaler, train_loader, loss_of, validate, train_mode, ckpt,
                               total, milestones, warmup, device, amp_dtype, rank, world)
    if args.train_layers == 'head':  # the frozen layers really did not move
        changed = [k for k, v in raw_model.state_dict().items() if k in frozen and not torch.equal(v, frozen[k].to(v.device))]
        assert not changed, f'frozen weights changed: {changed[:3]}'

    if is_main:
        result = {'step': step, 'epoch': epoch, **{f'val_{k}': v for k, v in metrics.items()}}
        engine.write_atomic(metrics_path, json.dumps(result, sort_keys=True) + '\n')
        print(f'done: {step} iterations, no validation set' if not metrics else
              f'done: val mAP {metrics["mAP"]:.2f} on {metrics["n"]} images' if 'mAP' in metrics else
              f'done: val top-1 {metrics["top1"]:.2f}%, top-5 {metrics["top5"]:.2f}% on {metrics["n"]} images')
        print(f'checkpoint:  {ckpt_path}')
        print(f'TensorBoard: tensorboard --logdir {os.path.join(args.out, "tb")}')
    if world > 1:
        torch.distributed.destroy_process_group()


# ----------------------------------------------------------------------------------------------------------
# The loop, shared by pre-training and by every fine-tuning of finetune.py (classification, detection, actions)


def fit(args, model, raw_model, optimizer, scaler, train_loader, loss_of, validate, train_mode, ckpt, total, milestones,
        warmup, device, amp_dtype, rank, world):
    """Train `total` iterations from the checkpoint `ckpt` (or from the start), in the run directory args.out
    (already started). Returns (step, epoch, metrics of the last validation).

    loss_of(batch) -> the scalar loss of one batch of train_loader (runs under autocast);
    validate() -> (metrics dict, one line for the log); train_mode() puts the model in training mode.
    train_loader iterates over one epoch, and its state() is what an exact resume needs.
    Checkpoints hold raw_model (no DDP or compile prefixes), the optimizer, the scaler, every rank's loader
    state and RNG, and the open log window, so a resumed run continues bit for bit."""
    is_main = rank == 0
    ckpt_path = os.path.join(args.out, 'checkpoint.pth')
    step, epoch, log = 0, 0, None
    if ckpt is not None:
        step, epoch = ckpt['step'], ckpt['epoch']
    if is_main:
        engine.trim_log(os.path.join(args.out, 'log.jsonl'), step)
        log = engine.RunLog(args.out, purge_step=step + 1)
    args_dict = dict(vars(args))

    def save():
        loaders = engine.all_gather_object(train_loader.state(), world)
        rngs = engine.all_gather_object(engine.rng_state(), world)
        failed = ''
        if is_main:
            try:
                engine.save_checkpoint(ckpt_path, {'model': raw_model.state_dict(), 'optimizer': optimizer.state_dict(),
                                                   'scaler': scaler.state_dict(), 'step': step, 'epoch': epoch,
                                                   'args': args_dict, 'rng': rngs, 'loader': loaders,
                                                   # the open log window, so a resumed run logs the same mean losses
                                                   'window': (loss_sum.item(), n_window, grad_norm.item())}, keep=args.keep)
            except OSError as e:  # full disk, quota, I/O error: the previous checkpoints are untouched
                failed = f'{e.strerror or e} ({type(e).__name__} {e.errno})'
        failed = engine.all_gather_object(failed, world)[0]  # every rank stops together, none hangs
        if failed:
            stop(f'could not save the checkpoint of iteration {step} to {ckpt_path}: {failed}. '
                 f'The previous checkpoints are intact; free space and run the same command to resume.')

    def stop_if_nonfinite():
        flag = engine.all_reduce_sum(nonfinite.float(), world)
        if flag.item():
            last = f'the last good checkpoint is {ckpt_path}' if os.path.exists(ckpt_path) else 'no checkpoint was written'
            stop(f'the loss became non-finite at or before iteration {step}; stopping ({last}). '
                 f'Try a lower --lr, a warm-up, or --amp bf16/fp32.')

    def stop(message):
        bar.close()  # first, so the progress bar does not print after the message
        print(f'error: {message}', file=sys.stderr)
        raise Diverged(1)

    train_mode()
    nonfinite = torch.zeros((), dtype=torch.bool, device=device)
    loss_sum = torch.zeros((), device=device)
    grad_norm = torch.zeros((), device=device)  # the largest gradient norm before clipping in the log window
    n_window, t_wait, t_window = 0, 0.0, time.perf_counter()
    if ckpt is not None:
        loss_sum.fill_(ckpt['window'][0])
        n_window = ckpt['window'][1]
        grad_norm.fill_(ckpt['window'][2] if len(ckpt['window']) > 2 else 0.0)  # checkpoints from before --clip-grad: 2
    bar = tqdm(total=total, initial=step, disable=not is_main, dynamic_ncols=True, desc='train',
               mininterval=0.1 if sys.stderr.isatty() else 30)  # a log file gets a line every 30 s, not every step
    metrics = None
    try:
        while step < total:
            t0 = time.perf_counter()
            for batch in train_loader:
                t_wait += time.perf_counter() - t0
                lr = engine.lr_at(step, args.lr, total, args.schedule, milestones, args.gamma, warmup)
                for g in optimizer.param_groups:
                    g['lr'] = lr * g['lr_mult']
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
                    loss = loss_of(batch)
                optimizer.zero_grad(set_to_none=True)
                scaler.scale(loss).backward()
                if args.clip_grad:
                    scaler.unscale_(optimizer)  # clip the true gradient, not the fp16 loss-scaled one
                    grad_norm = torch.maximum(grad_norm, torch.nn.utils.clip_grad_norm_(model.parameters(), args.clip_grad))
                scaler.step(optimizer)
                scaler.update()
                loss = loss.detach()
                nonfinite |= ~torch.isfinite(loss)  # checked at log and save steps: no sync per iteration
                loss_sum += loss
                step += 1
                n_window += 1
                bar.update(1)

                if step % args.log_every == 0 or step == total:
                    stop_if_nonfinite()
                    dt = time.perf_counter() - t_window
                    rec = {'loss': loss_sum.item() / n_window, 'lr': lr, 'epoch': epoch,
                           'images_per_s': n_window * args.batch_size / dt, 'data_wait': t_wait / dt}
                    if args.clip_grad:
                        rec['grad_norm_max'] = grad_norm.item()
                        grad_norm.zero_()
                    if is_main:
                        log.log(step, **rec)
                        bar.set_postfix(loss=f'{rec["loss"]:.3f}', lr=f'{lr:.2g}', wait=f'{rec["data_wait"]:.0%}')
                    loss_sum.zero_()
                    n_window, t_wait, t_window = 0, 0.0, time.perf_counter()
                # Save before validating: a validation that fails (a broken test image) then costs no training
                if step % args.save_every == 0 or step == total:
                    stop_if_nonfinite()  # never overwrite a good checkpoint with a diverged one
                    save()
                if step % args.eval_every == 0 or step == total:
                    metrics, line = validate()
                    if is_main:
                        log.log(step, **{f'val/{k}': v for k, v in metrics.items() if isinstance(v, (int, float))})
                        bar.write(f'iteration {step}: {line}')
                    train_mode()
                    t_window = time.perf_counter()  # evaluation is not training time
                if step == total:
                    break
                t0 = time.perf_counter()
            else:
                epoch += 1
    except BaseException:  # a UserError (a broken val image, a full disk), Ctrl-C: the bar must not print after it
        bar.close()
        raise
    bar.close()
    if is_main:
        log.close()
    if metrics is None:  # resumed from the final checkpoint (killed in its validation, or metrics.json was lost)
        metrics, line = validate()
        if is_main:
            print(f'iteration {step}: {line}')
    return step, epoch, metrics


if __name__ == '__main__':
    engine.run_main(main, get_args_parser().parse_args())
