"""Transfer and analysis of a pre-trained network: one script, a task argument.

    python finetune.py sun397 --sun-root data/toy/SUN397 --init runs/paper-toy/full-alexnet-s0/checkpoint.pth --out runs/toy-sun397 --iters 300 --lr 0.01 --lr-steps 200
    python finetune.py sun397 --sun-root /data/SUN397 --split 1 --init runs/full-alexnet/checkpoint.pth    # paper: SUN-CLS
    python finetune.py sun397 --sun-root /data/SUN397 --init runs/full-alexnet/checkpoint.pth --mode linear  # Kornblith: fixed features
    python finetune.py folder --data /data/cub --init resnet50-torchvision.pth --arch resnet50            # your own data set
    python finetune.py manifest --subset subsets/imagenet/full --init runs/bottom-up-79-alexnet/checkpoint.pth --mode last
    python finetune.py knn --subset subsets/imagenet/split-minimal-B --init runs/split-minimal-A-alexnet/checkpoint.pth
    python finetune.py coarse-fine --subset subsets/imagenet/full --init runs/full-alexnet/checkpoint.pth
    python finetune.py dtd --data /data/transfer/dtd --init runs/full-resnet50-s0/checkpoint.pth --mode linear  # Kornblith
    python finetune.py voc07-cls --data /data/VOCdevkit --init scratch --arch resnet50            # Kornblith, random init
    python finetune.py coco --coco /data/COCO --init scratch --arch resnet50 --schedule 6x --batch-size 2   # He et al.

Tasks:
    sun397       SUN397 scenes, official split --split (1-10), trained on the whole official training list (paper)
    folder       any ROOT/<class>/*.jpg data set (or ROOT/train/<class>, ROOT/test/<class>)
    manifest     a subsets.py folder; its val.txt is the test set (ImageNet last-layer: paper Fig. 2, 9)
    knn          nearest-neighbour "induction" accuracy on a subset's classes (paper §5.3, Fig. 4)
    coarse-fine  coarse against fine accuracy over the 127 top-down classes (paper §5.4, Fig. 6)
    food101 cifar10 cifar100 birdsnap cars aircraft voc07-cls dtd pets caltech101 flowers102
                 Kornblith et al. 2019's data sets (and sun397 --recipe kornblith), each read from its official
                 layout under --data (datasets.TRANSFER_SETS) and scored with the paper's measure
    voc07        VOC 2007 detection: py-faster-rcnn (Huh et al. 2016), or with --detector fpn He et al.'s detector
    voc12-action VOC 2012 actions, R*CNN
    coco         He et al. 2019: Mask R-CNN with a ResNet-FPN (GN, SyncBN or frozen BN) on COCO 2017, from scratch or
                 pre-trained, --schedule 1x..9x at batch 16 scaled to --batch-size, box and mask AP by COCOeval
Modes of the three classification tasks:
    finetune     replace the last layer, train every layer (the paper's recipe: SGD 50K iterations, lr 0.001
                 x0.1 every 20K; the new layer at 10x, as in Caffe's fine-tuning example)
    last         train only the new last layer on frozen features
    linear       L2-regularised logistic regression on frozen penultimate features, strength chosen on
                 validation (Kornblith et al. 2019)
Recipes of finetune and last: huh (above; sun397, folder, manifest) or kornblith (the Kornblith data sets: a grid of
lr x weight decay, each trained on train and scored on val, the best retrained on train + val; SGD Nesterov, batch
256, 20K steps, 40K from scratch).
--init is a wmig checkpoint, a torchvision-format state_dict (give --arch), or `scratch` (random
initialisation, the baseline of He et al. 2019). Any train.py flag (--lr, --iters, --batch-size, --amp,
--label-smoothing, ...) is passed on to the training of `finetune` and `last`.
"""
import argparse
import glob
import hashlib
import json
import os
import random
import shutil
import sys

import numpy as np
import torch
import torch.nn.functional as F
from tqdm import tqdm

import engine
import train
from data_dali import classification_loader, detection_loader
from datasets import (IMAGE_EXTS, TRANSFER_SETS, VOC_ACTIONS, VOC_CLASSES, coco_paths, seeded_subset, read_coco,
                      read_manifest, read_sun397, read_transfer, read_tsv, read_voc_actions, read_voc_detection)
from detection import (FPN_NORMS, FasterRCNN, RStarCNN, action_labels, fpn_detector, freeze, generate_anchors,
                       grid_regions, opencv_selective_search, selective_search, split_classifier)
from engine import UserError, ranged
from eval.metrics import (SCORE_KEY, coco_ap, detection_ap, knn, label_ap, mean_ap, mean_class_accuracy, per_class_counts,
                          transfer_metrics)
import models
from models import check_arch, check_input_size, get_model, input_spec

# Kornblith et al. 2019's data sets other than SUN397 (which is the sun397 task), each read from its official layout
KORNBLITH_SETS = tuple(n for n in TRANSFER_SETS if n != 'sun397')
CLASSIFICATION = ('sun397', 'folder', 'manifest') + KORNBLITH_SETS
TASKS = CLASSIFICATION + ('voc07', 'voc12-action', 'coco', 'knn', 'coarse-fine')
MODES = ('finetune', 'last', 'linear')
# Paper §3 (SUN-CLS): fc8 replaced by a random 397-way layer, all layers fine-tuned, SGD 50K iterations at
# lr 0.001, x0.1 every 20K. The new layer learns at 10x and the batch is 50 as in Caffe's fine-tuning
# example (models/finetune_flickr_style/solver.prototxt), which has the same lr and step.
RECIPE = ['--iters', '50000', '--lr', '0.001', '--lr-steps', '20000', '40000', '--head-lr-mult', '10',
          '--batch-size', '50', '--eval-every', '5000', '--save-every', '1000']
# Kornblith et al. 2019's fine-tuning, as SimCLR's appendix B.8 restates it (Chen, Kornblith et al. 2020, "we follow
# the approach of Kornblith et al."; the 2019 appendix itself was not reachable): SGD with Nesterov momentum 0.9,
# batch 256, 20,000 steps; BN statistics momentum from the data set's size (bn_momentum); random crop and flip
# (--style inception: random-resized crop); test: resize and centre crop. The lr schedule is not stated there:
# cosine here (README fidelity table). Every (lr, wd) of the grid is chosen on validation, then the best is
# retrained on train + val. Data sets without an official validation split hold out KORNBLITH_VAL of each class.
KORNBLITH_SGD = ['--batch-size', '256', '--nesterov', '--momentum', '0.9', '--schedule', 'cosine', '--style', 'inception',
                 '--head-lr-mult', '1', '--save-every', '1000']
KORNBLITH_FINETUNE = ['--iters', '20000', '--eval-every', '20000', *KORNBLITH_SGD]
# From random initialisation: the same, 40,000 steps, and a grid of larger learning rates (SimCLR B.8)
KORNBLITH_SCRATCH = ['--iters', '40000', '--eval-every', '40000', *KORNBLITH_SGD]


def logspace(lo, hi, n):
    return [float(f'{10 ** (lo + (hi - lo) * i / (n - 1)):.4g}') for i in range(n)]


# (lrs, weight decays as the paper states them, divided by the lr for SGD): fine-tuning 7 lrs 1e-4..0.1 x 7 decays
# 1e-6..1e-3 and none; from scratch 7 lrs 1e-3..1 x 8 decays 1e-5..10^-1.5 (SimCLR B.8)
KORNBLITH_GRID = {'finetune': (logspace(-4, -1, 7), logspace(-6, -3, 7) + [0.0]),
                  'scratch': (logspace(-3, 0, 7), logspace(-5, -1.5, 8))}
KORNBLITH_VAL = 0.2  # share of each class held out where a data set has no validation split: not given; our choice
# Fixed features: 45 L2 strengths log-spaced 1e-6..1e5 (SimCLR B.8), chosen on validation, refit on train + val
KORNBLITH_LAMBDAS = logspace(-6, 5, 45)


def get_args_parser():
    # allow_abbrev off: an unknown flag is a train.py flag passed through, so --lr must not be read as --lr-grid
    p = argparse.ArgumentParser(description='Transfer and analysis of a pre-trained network (train.py flags pass through).',
                                epilog='Any other flag is a train.py flag for the finetune and last modes.', allow_abbrev=False)
    p.add_argument('task', choices=TASKS)
    p.add_argument('--init', required=True, help='wmig checkpoint, torchvision/timm state_dict file, torchvision:DEFAULT or '
                   'timm:DEFAULT (downloaded), or "scratch"')
    p.add_argument('--arch', default=None, help='needed unless --init is a wmig checkpoint: alexnet, alexnet_tv, a torchvision '
                   'classification model (resnet50, densenet121, ...) or timm:NAME')
    p.add_argument('--width', type=ranged(float, 0, lo_open=True), default=None, help='AlexNet width (default: the checkpoint\'s, else 1.0)')
    p.add_argument('--mode', default='finetune', choices=MODES)
    p.add_argument('--recipe', default=None, choices=('huh', 'kornblith'),
                   help='fine-tuning recipe: huh (Huh et al. 2016\'s SUN-CLS: Caffe SGD, 50K iterations) or kornblith '
                        '(Kornblith et al. 2019: a grid of lr x weight decay chosen on validation, then retrained on '
                        'train + val). Default: kornblith for the Kornblith data sets, huh otherwise')
    p.add_argument('--lr-grid', type=ranged(float, 0, lo_open=True), nargs='+', default=None,
                   help='learning rates searched on validation (default: the recipe\'s; huh: none, its one lr)')
    p.add_argument('--wd-grid', type=ranged(float, 0), nargs='+', default=None,
                   help='weight decays searched on validation (default: the recipe\'s)')
    p.add_argument('--out', default=None, help='run directory (default: runs/<init run>/<task>-<mode>)')
    p.add_argument('--crop', type=ranged(int, 1), default=None, help='default: the checkpoint\'s, else the network\'s input size')
    p.add_argument('--resize', type=ranged(int, 1), default=None, help='default: the checkpoint\'s, else the network\'s (256 for 224 px)')
    p.add_argument('--resize-mode', default=None, choices=('shorter', 'warp'), help='default: the checkpoint\'s, else the network\'s')
    p.add_argument('--mean', type=ranged(float, 0, 1), nargs=3, default=None, help='RGB input mean, 0-1 scale (default: the checkpoint\'s, else the network\'s)')
    p.add_argument('--std', type=ranged(float, 0, lo_open=True), nargs=3, default=None, help='RGB input std, 0-1 scale (default: the checkpoint\'s, else the network\'s)')
    p.add_argument('--weight-init', default=None, choices=('caffe', 'default'),
                   help='initialisation of the new layers, and of all with --init scratch (default: the checkpoint\'s, else the network\'s)')
    p.add_argument('--seed', type=ranged(int, 0), default=0, help='seed of the validation hold-out and of training')
    p.add_argument('--workers', type=ranged(int, 1), default=min(8, len(os.sched_getaffinity(0))), help='DALI threads')
    p.add_argument('--eval-batch-size', type=ranged(int, 1), default=100, help='batch of feature extraction and evaluation')
    data = p.add_argument_group('data')
    data.add_argument('--sun-root', default=None, help='sun397: the SUN397 folder (ClassName.txt, Partitions/, a/abbey/...)')
    data.add_argument('--split', type=ranged(int, 1, 10), default=1, help='sun397: official split 1-10')
    data.add_argument('--data', default=None, help='folder: ROOT/<class>/*.jpg, or ROOT/train/<class> + ROOT/test/<class>; '
                      'a Kornblith data set: its folder in the official layout (README, "Kornblith et al. 2019")')
    data.add_argument('--subset', default=None, help='manifest, knn, coarse-fine: a subsets.py folder')
    data.add_argument('--val-fraction', type=ranged(float, 0, 1, hi_open=True), default=None,
                      help='share of each class\'s training images held out for validation (default: none for sun397, '
                           'which trains on the whole official list as the paper; 0.1 for the linear probe, which '
                           'chooses its L2 strength there, and for folder and manifest; 0.2 under --recipe '
                           'kornblith for a data set without an official validation split)')
    data.add_argument('--test-fraction', type=ranged(float, 0, 1, lo_open=True, hi_open=True), default=0.2, help='folder without test/: share of each class kept for testing')
    probe = p.add_argument_group('linear probe')
    probe.add_argument('--lambdas', type=ranged(float, 0, lo_open=True), nargs='+', default=None,
                       help='L2 strengths tried; the best on validation is refit on train + val (default: Kornblith et '
                            'al.\'s 45 values log-spaced from 1e-6 to 1e5)')
    nn_ = p.add_argument_group('knn')
    nn_.add_argument('--feature', default='fc7', choices=('fc7', 'fc8'),
                     help='penultimate features or logits (the paper\'s text and Fig. 4 disagree)')
    nn_.add_argument('--metric', default='l2', choices=('l2', 'cosine'), help='the paper does not say; l2 is its plain reading')
    voc = p.add_argument_group('voc07 (Faster R-CNN), voc12-action (R*CNN)')
    voc.add_argument('--voc', default=None, help='the VOCdevkit folder (holding VOC2007/ and VOC2012/)')
    voc.add_argument('--train-set', default=None, help='image set trained on (default: trainval for voc07, train for voc12-action)')
    voc.add_argument('--test-set', default=None, help='image set tested on (default: test for voc07, val for voc12-action)')
    voc.add_argument('--scale', type=ranged(int, 1), default=None,
                     help='shorter image side (default: 600 for voc07 and voc12-action, py-faster-rcnn TRAIN/TEST.SCALES; '
                          '800 for coco, Detectron)')
    voc.add_argument('--max-size', type=ranged(int, 1), default=None,
                     help='longest image side (default: 1000, py-faster-rcnn MAX_SIZE; 1333 for coco)')
    voc.add_argument('--roi-op', default=None, choices=('pool', 'align'),
                     help='RoI features: pool (RoI max pooling, py-faster-rcnn; the default for AlexNets) or align '
                          '(RoIAlign, Detectron; the default for ResNets)')
    voc.add_argument('--regions', default='selective-search', choices=('selective-search', 'grid'),
                     help='voc12-action: candidate regions of R*CNN, Selective Search (R*CNN; OpenCV\'s, computed once per '
                          'image and cached) or a fixed multi-scale grid (no OpenCV, no precomputation)')
    voc.add_argument('--regions-cache', default=None,
                     help='where Selective Search boxes are cached (default: selective_search/ beside the run directory)')
    voc.add_argument('--anchor-scales', type=ranged(int, 1), nargs='+', default=[8, 16, 32],
                     help='anchor sizes in units of the 16 px stride: 128, 256, 512 px (py-faster-rcnn)')
    coco = p.add_argument_group('coco (He et al. 2019: Mask R-CNN, ResNet-FPN; --train-set / --test-set default to '
                                'train2017 / val2017)')
    coco.add_argument('--detector', default=None, choices=('fpn',),
                      help='voc07: fpn runs He et al. 2019\'s Faster R-CNN with the FPN (the flags of this group) instead '
                           'of py-faster-rcnn (Huh et al. 2016, the default)')
    coco.add_argument('--coco', default=None, help='the COCO folder: train2017/, val2017/, annotations/instances_*.json')
    coco.add_argument('--norm', dest='det_norm', default=None, choices=FPN_NORMS,
                      help='normalisation of backbone, FPN and heads: gn (GroupNorm), syncbn (BatchNorm synchronised '
                           'across processes) or frozen-bn (the pre-trained baseline, plain heads). Default: gn from '
                           'scratch or from a GN checkpoint, frozen-bn from a BN one')
    coco.add_argument('--schedule', default=None,
                      help='coco: Nx = N x 90K iterations at batch 16, lr x0.1 in the last 60K and 20K (default 1x: '
                           'drops at 60K, 80K); scaled to --batch-size. Other tasks: train.py\'s --schedule')
    coco.add_argument('--train-images', type=ranged(int, 1), default=None,
                      help='train on a seeded draw of this many images (He et al.: 1K, 10K, 35K)')
    coco.add_argument('--train-fraction', type=ranged(float, 0, 1, lo_open=True), default=None,
                      help='train on a seeded draw of this share of the images (He et al.: 10%%)')
    coco.add_argument('--mask', action=argparse.BooleanOptionalAction, default=True,
                      help='Mask R-CNN (boxes and masks; --no-mask: Faster R-CNN)')
    coco.add_argument('--train-scales', type=ranged(int, 1), nargs='+', default=None,
                      help='multi-scale training: each training image\'s shorter side drawn from these (default: --scale '
                           'alone, He et al.\'s baseline; their scale augmentation is 512-800, Detectron\'s 640-800)')
    coco.add_argument('--fpn-channels', type=ranged(int, 1), default=256, help='FPN and head width (Detectron: 256)')
    coco.add_argument('--rois-per-image', type=ranged(int, 1), default=512, help='RoIs sampled per image (Detectron: 512)')
    coco.add_argument('--test-proposals', type=ranged(int, 1), default=1000, help='RPN proposals per image at test time (Detectron: 1000)')
    coco.add_argument('--anchor-sizes', type=ranged(int, 1), nargs=5, default=[32, 64, 128, 256, 512],
                      help='anchor side on FPN levels P2-P6, px (Detectron: 32 64 128 256 512)')
    cf = p.add_argument_group('coarse-fine')
    cf.add_argument('--min-subclasses', type=ranged(int, 1), default=5, help='coarse classes with at least this many fine classes (paper: 5)')
    cf.add_argument('--top', type=ranged(int, 1), default=10, help='coarse classes shown at each end of the figure')
    return p


# ----------------------------------------------------------------------------------------------------------
# Data: every classification task becomes a folder of manifests (train, val, test), like a subsets.py folder


def hold_out(rows, fraction, seed):
    """(kept, held out): `fraction` of each class's rows, drawn with `seed`, at least one when fraction > 0."""
    by_class = {}
    for r in rows:
        by_class.setdefault(r[1], []).append(r)
    kept, out = [], []
    for label in sorted(by_class):
        rs = sorted(by_class[label])
        random.Random(f'holdout:{seed}:{label}').shuffle(rs)
        n = max(1, round(fraction * len(rs))) if fraction > 0 else 0
        if n >= len(rs):
            raise UserError(f'class {label} has {len(rs)} images: too few to hold out {fraction:.0%} of them')
        out += rs[:n]
        kept += rs[n:]
    return sorted(kept), sorted(out)


def folder_rows(root, names=None):
    """([(relpath, label)], class names) of ROOT/<class>/<images>; labels follow `names` or sorted folders."""
    if not os.path.isdir(root):
        raise UserError(f'data folder not found: {root}')
    found = sorted(d for d in os.listdir(root) if os.path.isdir(os.path.join(root, d)) and not d.startswith('.'))
    names = names or found
    if not names:
        raise UserError(f'no class folders in {root} (expected {root}/<class>/*.jpg)')
    rows = []
    for label, name in enumerate(names):
        d = os.path.join(root, name)
        if not os.path.isdir(d):
            raise UserError(f'class folder missing: {d}')
        files = sorted(f for f in os.listdir(d) if f.lower().endswith(IMAGE_EXTS) and not f.startswith('.'))
        if not files:
            raise UserError(f'empty class folder: {d}')
        rows += [(f'{os.path.relpath(d, root)}/{f}', label) for f in files]
    return rows, names


def classification_data(args):
    """(image root, class names, train, val, test rows) of a classification task. A row's label is a class id, or
    for a multi-label set (voc07-cls) a tuple of 1 / 0 / -1 per class."""
    if args.val_fraction is None:
        args.val_fraction = (0.0 if args.task == 'sun397' and args.mode != 'linear' and not searches(args) else
                             KORNBLITH_VAL if args.recipe == 'kornblith' else 0.1)
    if not 0 <= args.val_fraction < 1:
        raise UserError(f'--val-fraction {args.val_fraction}: must be in [0, 1)')
    if args.mode == 'linear' and args.val_fraction == 0:
        raise UserError('--mode linear chooses its L2 strength on a validation split: --val-fraction must be > 0')
    if args.task in KORNBLITH_SETS:
        if not args.data:
            raise UserError(f'{args.task} needs --data ROOT, its folder in the official layout: {TRANSFER_SETS[args.task][1]}')
        d = read_transfer(args.task, args.data, args.seed)
        for note in d['notes']:
            print(note)
        train_rows, val = d['train'], d['val']
        if not val:  # no official validation split: hold out a share of each class (Kornblith et al. 2019, A.3)
            train_rows, val = hold_out(train_rows, args.val_fraction, args.seed)
        return d['image_root'], d['names'], train_rows, val, d['test']
    if args.task == 'sun397':
        if not args.sun_root:
            raise UserError('sun397 needs --sun-root (the SUN397 folder)')
        names, train_rows, test = read_sun397(args.sun_root, args.split)
        train_rows, val = hold_out(train_rows, args.val_fraction, args.seed)
        return args.sun_root, names, train_rows, val, test
    if args.task == 'folder':
        if not args.data:
            raise UserError('folder needs --data ROOT')
        if os.path.isdir(os.path.join(args.data, 'train')):
            train_rows, names = folder_rows(os.path.join(args.data, 'train'))
            test_dir = next((os.path.join(args.data, d) for d in ('test', 'val') if os.path.isdir(os.path.join(args.data, d))), None)
            if test_dir is None:
                raise UserError(f'{args.data}/train exists but neither test/ nor val/ does')
            test, _ = folder_rows(test_dir, names)
            train_rows = [(f'train/{p}', lab) for p, lab in train_rows]
            test = [(f'{os.path.basename(test_dir)}/{p}', lab) for p, lab in test]
        else:
            rows, names = folder_rows(args.data)
            train_rows, test = hold_out(rows, args.test_fraction, f'test{args.seed}')
        train_rows, val = hold_out(train_rows, args.val_fraction, args.seed)
        return args.data, names, train_rows, val, test
    # manifest: a subsets.py folder; its val.txt (ImageNet val) is the test set
    subset = need_subset(args)
    root = engine.read_json(os.path.join(subset, 'meta.json'), ['root'])['root']
    names = [r[1] for r in read_tsv(os.path.join(subset, 'classes.tsv'))[1:]]
    manifests = {}
    for split in ('train', 'val'):
        path = os.path.join(subset, f'{split}.txt')
        manifests[split] = read_manifest(path)
        bad = next((lab for _, lab in manifests[split] if lab >= len(names)), None)
        if bad is not None:  # before the hold-out, which would call it a class with too few images
            raise UserError(f'{path}: label {bad} is out of range for the {len(names)} classes of classes.tsv')
    train_rows, val = hold_out(manifests['train'], args.val_fraction, args.seed)
    return root, names, train_rows, val, manifests['val']


def need_subset(args):
    if not args.subset:
        raise UserError(f'{args.task} needs --subset (a folder made by subsets.py)')
    for name in ('train.txt', 'val.txt', 'classes.tsv', 'meta.json'):
        if not os.path.isfile(os.path.join(args.subset, name)):
            raise UserError(f'{os.path.join(args.subset, name)} not found; --subset must be a folder made by subsets.py')
    return args.subset


# finetune.py arguments that may differ between a run and its re-run without changing its result
RERUN_MAY_CHANGE = ('workers', 'eval_batch_size', 'out')
PATH_ARGS = ('init', 'subset', 'data', 'sun_root', 'voc', 'regions_cache')
# finetune.py arguments added after results were made: a transfer.json without them does not compare them
ADDED_LATER = ('train_flags', 'recipe', 'lr_grid', 'wd_grid')


def given_flags(rest):
    """{flag: parsed value} of the train.py flags passed through (`--lr 0.02` and `--lr=0.020` are one value)."""
    p = train.get_args_parser()
    for a in p._actions:  # only the flags given, with no defaults and nothing required
        a.default, a.required = argparse.SUPPRESS, False
    return dict(sorted(vars(p.parse_args(rest)).items()))


def train_flags(rest):
    """The train.py flags passed through but those a resumed run may change: part of a transfer run's identity."""
    return {k: v for k, v in given_flags(rest).items() if k not in train.RESUME_MAY_CHANGE}


def run_identity(args):
    """The arguments that make a finetune.py result, paths resolved (a relative and an absolute spelling of one
    path are one run)."""
    out = engine.resolved({k: v for k, v in vars(args).items() if k not in RERUN_MAY_CHANGE}, PATH_ARGS)
    return json.loads(json.dumps(out))  # tuples as lists, as transfer.json holds them


def finished(out, args):
    """True when OUT holds this command's finished result (printed, left as it is). A finished result is never
    overwritten: made with other arguments, it is a UserError naming the first that differs."""
    path = os.path.join(out, 'transfer.json')
    if not os.path.exists(path):
        return False
    done = engine.read_json(path, ['finetune_args'], fix='move it away to run again')
    old = engine.resolved({k: v for k, v in done['finetune_args'].items() if k not in RERUN_MAY_CHANGE}, PATH_ARGS)
    new = run_identity(args)
    for k in ADDED_LATER:  # a result written before they were recorded: they do not compare
        old.setdefault(k, new.get(k))
    diff = [k for k in sorted(set(old) | set(new)) if old.get(k) != new.get(k)]
    if diff:
        k = diff[0]
        raise UserError(f'{out} holds a finished result made with other arguments (--{k.replace("_", "-")} '
                        f'{old.get(k)!r} there, {new.get(k)!r} now); pass another --out')
    print(f'{out} is finished: ' + json.dumps({k: v for k, v in done.items() if k != 'finetune_args'}, sort_keys=True))
    return True


def write_data(folder, root, names, train_rows, val, test, meta):
    """The task's manifests as a subsets.py-style folder, which train.py reads like any other. They are part of the
    run's identity: a folder that holds other manifests (another --seed, --val-fraction or --test-fraction) is
    refused before anything is written."""
    multi = any(isinstance(lab, tuple) for _, lab in train_rows)
    splits = (('train', train_rows), ('val', val), ('test', test))
    # a multi-label row's manifest label is its line in SPLIT.targets.txt (train.py targets_path)
    texts = {name: ''.join(f'{p} {i if multi else label}\n' for i, (p, label) in enumerate(rows)) for name, rows in splits}
    if multi:
        texts.update({f'{name}.targets': ''.join(' '.join(map(str, label)) + '\n' for _, label in rows) for name, rows in splits})
    for name, text in texts.items():
        path = os.path.join(folder, f'{name}.txt')
        if os.path.exists(path) and open(path).read() != text:
            raise UserError(f'{path} holds other {name.split(".")[0]} images than these arguments give (another --seed, '
                            f'--val-fraction or --test-fraction?); pass another --out')
    os.makedirs(folder, exist_ok=True)
    for name, text in texts.items():
        engine.write_atomic(os.path.join(folder, f'{name}.txt'), text)
    counts = [sum(1 for _, lab in train_rows if (lab[i] > 0 if multi else lab == i)) for i in range(len(names))]
    with open(os.path.join(folder, 'classes.tsv'), 'w') as f:
        f.write('label\tname\timages\n' + ''.join(f'{i}\t{n}\t{c}\n' for i, (n, c) in enumerate(zip(names, counts))))
    with open(os.path.join(folder, 'meta.json'), 'w') as f:
        json.dump({**meta, 'root': os.path.abspath(root), 'classes': len(names), 'train_images': len(train_rows),
                   'val_images': len(val), 'test_images': len(test)}, f, indent=1, sort_keys=True)


# ----------------------------------------------------------------------------------------------------------
# The network: from a checkpoint, torchvision weights, or scratch


def network(args, num_classes=None):
    """(model with the checkpoint's head, or a new head of num_classes; the source's train.py args or {}).
    Fills args.arch / width / crop / resize / mean / std from the checkpoint, else from the network, where not given."""
    if args.arch is not None:
        check_arch(args.arch)
    sd, src = (None, {}) if args.init == 'scratch' else engine.read_weights(args.init, args.arch)
    src = src or {}
    args.arch = args.arch or src.get('arch')
    if args.arch is None:
        raise UserError(f'--arch is needed with {"--init scratch" if sd is None else args.init} (a plain state_dict)')
    if src.get('arch') not in (None, args.arch):
        raise UserError(f'{args.init} holds a {src["arch"]}, not the --arch {args.arch} asked for')
    args.width = args.width or src.get('width', 1.0)
    args.norm = src.get('norm', 'bn')  # a GroupNorm network is fine-tuned as one (He et al. 2019)
    # What the network was made for; a wmig checkpoint records what it trained on (a key it lacks: what the code
    # that wrote it used).
    spec = {**input_spec(args.arch), **({**train.ADDED_LATER, **src} if src else {})}
    args.crop = args.crop or src.get('crop') or spec['size']
    args.resize = args.resize or spec['resize']
    for k in ('resize_mode', 'mean', 'std', 'weight_init'):
        setattr(args, k, getattr(args, k) or spec[k])
    if sd is None and num_classes is None:
        raise UserError(f'{args.task} analyses a trained network; --init scratch has none (give a checkpoint)')
    n = num_classes
    if n is None:  # the classifier as trained: as many outputs as the weights' last layer
        head_key = get_model(args.arch, 1, args.norm, src.get('dropout', 0.5), args.width, args.weight_init).head_name + '.weight'
        if head_key not in sd:
            raise UserError(f'{args.init} does not fit a {args.arch}: it has no {head_key}')
        n = sd[head_key].shape[0]
    model = get_model(args.arch, n, args.norm, src.get('dropout', 0.5), args.width, args.weight_init)
    check_input_size(model, args.crop, args.arch)
    if sd is not None:
        if num_classes is None:  # the whole network, head included: analyses of the pre-trained classifier
            engine.load_state(model, sd, args.init)
        else:
            engine.load_init(model, sd, args.init)
    return model, src


def default_out(args, name):
    if args.init == 'scratch' or args.init.startswith(('torchvision:', 'timm:')):  # no run directory to put it in
        base = f'runs/{args.init.split(":")[0]}-' + (args.arch or 'net').replace(':', '-')
    else:
        base = os.path.dirname(os.path.abspath(args.init))
    return os.path.join(base, name)


def loader(args, root, manifest):
    """The validation pipeline (resize, centre crop) over a manifest: the feature extractor of every task."""
    return classification_loader(root, manifest, args.eval_batch_size, False, args.crop, args.resize,
                                 num_threads=args.workers, device_id=0 if torch.cuda.is_available() else None,
                                 mean=args.mean, std=args.std, resize_mode=args.resize_mode)


def device_and_amp():
    device = torch.device('cuda' if torch.cuda.is_available() else 'cpu')
    return device, torch.bfloat16 if device.type == 'cuda' else torch.float32


def finish(out, args, result, record_args=True):
    """Write transfer.json (and args.json with the git SHA, unless train.py wrote the run's own) and print it.
    Called only once the work is done, so a mistake found on the way leaves no run directory behind."""
    if record_args:
        engine.start_run_dir(out, vars(args))
    result = {**result, 'finetune_args': vars(args)}
    engine.write_atomic(os.path.join(out, 'transfer.json'), json.dumps({'task': args.task, **result}, indent=1, sort_keys=True) + '\n')
    print(json.dumps({k: v for k, v in result.items() if k != 'finetune_args'}, sort_keys=True))
    print(f'results: {os.path.join(out, "transfer.json")}')


# ----------------------------------------------------------------------------------------------------------
# finetune / last: train.py on the task's manifests, then the test set


def recipe(args):
    """The train.py flags of the fine-tuning recipe (the user's own come after them and win)."""
    if args.recipe == 'huh':
        return RECIPE
    return KORNBLITH_SCRATCH if args.init == 'scratch' else KORNBLITH_FINETUNE


def grid(args):
    """[(lr, weight decay as the paper states it)] searched on validation: --lr-grid / --wd-grid, the recipe's grids,
    or the one --lr / --wd passed through. [(None, None)] under Huh's recipe: its own lr, no search."""
    if args.recipe == 'huh' and args.lr_grid is None and args.wd_grid is None:
        return [(None, None)]
    lrs, wds = KORNBLITH_GRID['scratch' if args.init == 'scratch' else 'finetune']
    lrs = [args.train_flags['lr']] if 'lr' in args.train_flags else args.lr_grid or lrs
    if 'wd' in args.train_flags:  # train.py's --wd is the decay itself: the paper's unit is that times the lr
        return [(lr, args.train_flags['wd'] * lr) for lr in lrs]
    return [(lr, wd) for lr in lrs for wd in args.wd_grid or wds]


def searches(args):
    return len(grid(args)) > 1


def run_training(args, rest, data_dir, out, lr=None, wd=None):
    """train.py on DATA_DIR's train.txt (validated on its val.txt) into OUT at one grid point; returns the trained
    network. The weight decay of Kornblith et al.'s grids is divided by the learning rate (SimCLR's appendix B.8,
    which follows their protocol): --wd is wd / lr."""
    argv = ['--subset', data_dir, '--out', out, '--arch', args.arch, '--norm', args.norm, '--width', str(args.width), '--crop', str(args.crop),
            '--resize', str(args.resize), '--seed', str(args.seed), '--workers', str(args.workers),
            '--mean', *map(str, args.mean), '--std', *map(str, args.std), '--resize-mode', args.resize_mode,
            '--weight-init', args.weight_init, *recipe(args)]
    if args.recipe == 'kornblith':
        argv += ['--bn-momentum', str(bn_momentum(data_dir, args.train_flags.get('batch_size', 256)))]
    if lr is not None:
        argv += ['--lr', repr(lr), '--wd', repr(wd / lr)]
    if args.init != 'scratch':
        argv += ['--init', args.init if args.init.startswith(('torchvision:', 'timm:')) else os.path.abspath(args.init)]
    if args.mode == 'last':
        argv += ['--train-layers', 'head']
    targs = train.get_args_parser().parse_args(argv + rest)  # the user's train.py flags come last and win
    train.main(targs)
    model = get_model(targs.arch, len(read_tsv(os.path.join(data_dir, 'classes.tsv'))) - 1, targs.norm, targs.dropout,
                      targs.width, targs.weight_init)
    final = os.path.join(out, 'checkpoint.pth')
    engine.load_state(model, engine.load_checkpoint(final)['model'], final)
    return model


def bn_momentum(data_dir, batch):
    """PyTorch's BN momentum for Kornblith et al.'s rule, decay max(1 - 10 / s, 0.9) with s steps an epoch (SimCLR
    B.8): the running statistics average over about ten epochs' batches, however small the data set."""
    steps = max(1, len(read_manifest(os.path.join(data_dir, 'train.txt'))) // batch)
    return min(10 / steps, 0.1)


def scores_of(args, model, data_dir, split):
    """transfer_metrics of the network on DATA_DIR's SPLIT manifest (its targets for a multi-label set)."""
    device, amp = device_and_amp()
    root = engine.read_json(os.path.join(data_dir, 'meta.json'), ['root'])['root']
    scores, labels = engine.extract(model.to(device).eval(), loader(args, root, os.path.join(data_dir, f'{split}.txt')), device, amp)
    return transfer_metrics(scores, multilabel_targets(data_dir, split, labels, scores.shape[1]))


def multilabel_targets(data_dir, split, labels, num_classes):
    """A multi-label split's [N, C] targets of its manifest labels (row numbers), else the labels as they are."""
    path = train.targets_path(data_dir, split)
    return train.read_targets(path, num_classes)[labels].long() if os.path.exists(path) else labels


def task_metric(args):
    """The task's headline measure: Kornblith et al.'s per data set (SUN397 under their recipe: top-1); otherwise mean
    class accuracy (Huh et al.'s SUN-CLS, Xiao et al. 2010)."""
    if args.task in KORNBLITH_SETS or args.task == 'sun397' and args.recipe == 'kornblith':
        return TRANSFER_SETS[args.task][0]
    return 'mean_class'


def finetune_task(args, rest, root, names, rows, data_dir, out):
    """finetune / last. Under Huh's recipe: train on train (validating on val), test. Under Kornblith's: every
    (lr, wd) of the grid trains on train into OUT/search/lr*-wd*/ and is scored on val with the task's measure; the
    best is retrained on train + val into OUT (Kornblith et al. 2019, A.3), and tested."""
    key = SCORE_KEY[task_metric(args)]
    points, search = grid(args), {}
    if len(points) > 1:
        for i, (lr, wd) in enumerate(points):
            sub = os.path.join(out, 'search', f'lr{lr:g}-wd{wd:g}')
            print(f'search {i + 1}/{len(points)}: lr {lr:g}, weight decay {wd:g} (/ lr)')
            search[(lr, wd)] = None  # diverged: left out of the choice, and not tried again on a re-run
            if not os.path.exists(os.path.join(sub, 'diverged.json')):
                try:
                    run_training(args, rest, data_dir, sub, lr, wd)
                except train.Diverged:
                    engine.write_atomic(os.path.join(sub, 'diverged.json'), json.dumps({'lr': lr, 'wd': wd}) + '\n')
                    continue
                search[(lr, wd)] = engine.read_json(os.path.join(sub, 'metrics.json'), [f'val_{key}'])[f'val_{key}']
        ok = [p for p in points if search[p] is not None]
        if not ok:
            raise UserError(f'every point of the grid diverged (see {os.path.join(out, "search")}); try lower --lr-grid values')
        ranked = sorted(ok, key=lambda p: (search[p], -p[0]), reverse=True)
        print('search: ' + ', '.join(f'lr {lr:g} wd {wd:g}: ' + ('diverged' if v is None else f'{v:.2f}')
                                      for (lr, wd), v in search.items()) + f'; best lr {ranked[0][0]:g}, wd {ranked[0][1]:g}')
    else:
        ranked = points
    if args.recipe == 'kornblith':  # the final network learns from train + val
        train_rows, val, test = rows
        data_dir = os.path.join(out, 'data-final')
        write_data(data_dir, root, names, train_rows + val, [], test, {'kind': args.task, 'seed': args.seed, 'final': True})
    # The final run of the best point trains in OUT. On train + val it may diverge where the search run did not; then
    # the next best point is retrained, in OUT/final-lr*-wd*/, and the result says which ones diverged.
    diverged = []
    for k, best in enumerate(ranked):
        final = out if k == 0 else os.path.join(out, f'final-lr{best[0]:g}-wd{best[1]:g}')
        marker = os.path.join(final, 'diverged.json')
        if os.path.exists(marker):
            diverged.append(best)
            continue
        try:
            model = run_training(args, rest, data_dir, final, *best)
            break
        except train.Diverged:
            if k == len(ranked) - 1 or len(ranked) == 1:
                raise
            engine.write_atomic(marker, json.dumps({'lr': best[0], 'wd': best[1], 'final': True}) + '\n')
            diverged.append(best)
            print(f'the final run at lr {best[0]:g}, wd {best[1]:g} diverged on train + val; retraining the next best point')
    m = scores_of(args, model, data_dir, 'test')
    result = {f'test_{k}': v for k, v in m.items() if k != 'n'}
    if best[0] is not None:
        result.update(lr=best[0], wd=best[1], search={f'lr{lr:g}-wd{wd:g}': v for (lr, wd), v in search.items()})
    if diverged:
        result['final_diverged'] = [f'lr{lr:g}-wd{wd:g}' for lr, wd in diverged]
    return {**result, 'test_images': m['n']}


# ----------------------------------------------------------------------------------------------------------
# voc07 / voc12-action: region-based transfer (detection.py), trained by train.py's own loop

# py-faster-rcnn end to end on VOC 2007 (faster_rcnn_end2end: one image a batch, momentum 0.9, weight decay 0.0005,
# biases at 2x without decay) on the paper's schedule: lr 0.001 for 70K iterations, x0.1 at 40K. R*CNN actions
# use the same schedule. With --batch-size B and no --lr, the lr is 0.001 x B (linear scaling, Goyal et al. 2017).
REGION_RECIPE = ['--iters', '70000', '--lr-steps', '40000', '--batch-size', '1', '--eval-every', '70000',
                 '--save-every', '2000', '--log-every', '20']
REGION_LR = 0.001


def region_data(args):
    """(VOC year folder, class or action names, train records, test records) of voc07 / voc12-action, all read
    and checked before anything is written."""
    if not args.voc:
        raise UserError(f'{args.task} needs --voc (the VOCdevkit folder)')
    det = args.task == 'voc07'
    root = os.path.join(args.voc, 'VOC2007' if det else 'VOC2012')
    if not os.path.isdir(root):
        raise UserError(f'{root} not found; --voc must be the VOCdevkit folder that holds {os.path.basename(root)}/')
    train_set, test_set = args.train_set or ('trainval' if det else 'train'), args.test_set or ('test' if det else 'val')
    if det:
        train_recs, test_recs = read_voc_detection(root, train_set), read_voc_detection(root, test_set)
        # py-faster-rcnn trains without the difficult objects (pascal_voc.py, use_diff False)
        train_recs = [dict(r, boxes=r['boxes'][~r['difficult']], labels=r['labels'][~r['difficult']]) for r in train_recs]
    else:
        # every person trains, those doing none of the ten actions as R*CNN's 11th class (detection.action_labels)
        train_recs, test_recs = read_voc_actions(root, train_set), read_voc_actions(root, test_set)
    kept = [r for r in train_recs if len(r['boxes'])]  # py-faster-rcnn filter_roidb: images with nothing to learn
    if not kept:
        raise UserError(f'{root}/ImageSets ({train_set}) lists no image with a usable box')
    if len(kept) < len(train_recs):
        print(f'{len(train_recs) - len(kept)} of the {len(train_recs)} {train_set} images have no usable box and are skipped')
    return root, VOC_CLASSES if det else VOC_ACTIONS, kept, test_recs


def _selective_search_to(path, dest):
    """One image's Selective Search boxes into the cache (a worker process; the file appears whole or not at all)."""
    boxes = selective_search(path).numpy()
    tmp = f'{dest}.{os.getpid()}.tmp.npy'  # two runs may fill one cache at once
    np.save(tmp, boxes)
    os.replace(tmp, dest)


def with_regions(root, records, cache, workers):
    """The records with their Selective Search boxes appended to 'boxes' after the persons ('persons': how many
    come first), so the detection loader scales and mirrors both alike. R*CNN read precomputed boxes from .mat files;
    here each image's are computed once (OpenCV, `workers` processes) and kept as CACHE/<image id>.npy, shared by
    every run of the same VOC folder."""
    opencv_selective_search()  # before any work: says how to install OpenCV if it is missing
    os.makedirs(cache, exist_ok=True)
    todo = sorted({(r['id'], r['path']) for r in records if not os.path.exists(os.path.join(cache, f'{r["id"]}.npy'))})
    if todo:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor
        # spawn: the workers must not inherit this process's torch thread pools (fork after torch can deadlock)
        with ProcessPoolExecutor(max(1, workers), mp_context=multiprocessing.get_context('spawn')) as pool:
            jobs = [pool.submit(_selective_search_to, os.path.join(root, rel), os.path.join(cache, f'{i}.npy'))
                    for i, rel in todo]
            for job in tqdm(jobs, desc=f'Selective Search -> {cache}', disable=not sys.stderr.isatty()):
                job.result()
    print(f'Selective Search: {len(todo)} images computed, {len({r["id"] for r in records}) - len(todo)} cached in {cache}')
    out = []
    for r in records:
        path = os.path.join(cache, f'{r["id"]}.npy')
        try:
            regions = np.load(path).reshape(-1, 4)
        except (OSError, ValueError) as e:
            raise UserError(f'{path}: unreadable cached regions ({e}); delete it to compute it again') from None
        w, h = r['size']
        if len(regions) and (regions.min() < 1 or (regions[:, 2] > w).any() or (regions[:, 3] > h).any()):
            raise UserError(f'{path}: boxes outside the {w}x{h} image {r["path"]}; the cache holds another image\'s '
                            'regions: delete it to compute them again')
        out.append(dict(r, boxes=np.concatenate([r['boxes'], regions]), persons=len(r['boxes'])))
    return out


def split_regions(boxes, info, persons, grid):
    """(persons, regions) of a batch: the first `persons` boxes of each image, and the Selective Search boxes
    after them or, with grid, detection.grid_regions of the resized image."""
    if grid:
        return boxes, [grid_regions(h, w, device=b.device) for b, (h, w, _) in zip(boxes, info.tolist())]
    return [b[:n] for b, n in zip(boxes, persons)], [b[n:] for b, n in zip(boxes, persons)]


@torch.no_grad()
def test_regions(model, loader, records, names, det, device, amp_dtype, grid=False):
    """Per-class AP (%) and the PR curves of a detector (VOC07 11-point AP, py-faster-rcnn's test_net + voc_eval)
    or of an action classifier (VOC action AP, all points, every listed person scored by its softmax over the
    actions and 'other', R*CNN's test.py)."""
    model.eval()
    found = [None] * len(records)
    for images, boxes, info, idx, _ in tqdm(loader, desc='test', leave=False, disable=not sys.stderr.isatty()):
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
            if det:
                out = model(images.to(device), info)
            else:
                persons, regions = split_regions([b.to(device) for b in boxes], info,
                                                 [records[i].get('persons', 0) for i in idx], grid)
                out = model(images.to(device), info, persons, regions)
        if det:  # back to the original image, and from 0-based to VOC's 1-based pixels (py-faster-rcnn's results files)
            for (bx, sc, lb), i, inf in zip(out, idx, info):
                found[i] = (bx.cpu() / inf[2] + 1, sc.cpu(), lb.cpu())
        else:
            scores = out.float().softmax(1)[:, :len(names)].cpu().split([len(p) for p in persons])
            for sc, i in zip(scores, idx):
                found[i] = sc
    if det:
        ap, curves = detection_ap(found, [(r['boxes'], r['labels'], r['difficult']) for r in records], len(names))
    else:
        labels = torch.cat([torch.as_tensor(r['actions']) for r in records]) * 2 - 1  # devkit: 1 or -1
        ap, curves = label_ap(torch.cat(found), labels)
    m = {'mAP': 100 * mean_ap(ap), 'n': len(records), **{f'AP/{n}': 100 * a for n, a in zip(names, ap) if a == a}}
    return m, curves


def tb_figures(out, names, metrics, curves, step):
    """Per-class AP bars and precision-recall curves in TensorBoard (IMAGES tab)."""
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    from torch.utils.tensorboard import SummaryWriter
    shown = [(n, metrics[f'AP/{n}'], c) for n, c in zip(names, curves) if f'AP/{n}' in metrics]
    fig1, ax = plt.subplots(figsize=(max(4, 0.5 * len(shown)), 3))
    ax.bar([n for n, _, _ in shown], [a for _, a, _ in shown])
    ax.set_ylabel('AP (%)')
    ax.set_title(f'mAP {metrics["mAP"]:.1f}')
    ax.tick_params(axis='x', rotation=60)
    fig2, ax = plt.subplots(figsize=(5, 4))
    for n, a, (rec, prec) in shown:
        ax.plot(rec, prec, label=f'{n} {a:.1f}')
    ax.set_xlabel('recall')
    ax.set_ylabel('precision')
    ax.legend(fontsize=6)
    with SummaryWriter(os.path.join(out, 'tb')) as tb:
        tb.add_figure('test/ap_per_class', fig1, step)
        tb.add_figure('test/pr_curves', fig2, step)


def region_task(args, rest):
    """Fine-tune a pre-trained network as a Faster R-CNN (voc07) or an R*CNN (voc12-action) and test it."""
    det = args.task == 'voc07'
    root, names, train_recs, test_recs = region_data(args)
    if det:  # the anchors are an input too: one that no image can hold would leave the RPN nothing to learn from
        smallest = generate_anchors(16, scales=(min(args.anchor_scales),))
        side = (smallest[:, 2:] - smallest[:, :2] + 1).max(1).values.min().item()
        if side > min(args.scale, args.max_size):
            raise UserError(f'--anchor-scales {min(args.anchor_scales)}: its smallest anchor is {side:.0f} px, larger than '
                            f'the {min(args.scale, args.max_size)} px images (--scale); anchors are 16 px x the scale')
    net, _ = network(args, 1)  # the pre-trained layers (checked against --arch); its last layer is dropped
    out = args.out or default_out(args, args.task)
    engine.lock_run_dir(out)
    if finished(out, args):
        return out, None
    argv = ['--subset', root, '--out', out, '--arch', args.arch, '--width', str(args.width), '--seed', str(args.seed),
            '--workers', str(args.workers), *REGION_RECIPE]
    targs = train.get_args_parser().parse_args(argv + rest)
    if '--lr' not in rest:
        targs.lr = REGION_LR * targs.batch_size
    # The detector resizes by --scale / --max-size; the unused --resize keeps its old default (it now defaults to the
    # network's input) so that region runs made before still resume under the same arguments.
    targs.resize = targs.resize or 256
    # the backbone's input and initialisation (network()), part of the run's identity
    targs.mean, targs.std, targs.resize_mode, targs.weight_init = args.mean, args.std, args.resize_mode, args.weight_init
    targs.task, targs.init, targs.scale, targs.max_size = args.task, args.init, args.scale, args.max_size
    targs.anchor_scales, targs.train_set, targs.test_set = args.anchor_scales, args.train_set, args.test_set
    # py-faster-rcnn pools RoIs by max pooling (ROIPooling, the AlexNet-era detectors); Detectron's ResNet C4 by RoIAlign
    args.roi_op = targs.roi_op = args.roi_op or ('pool' if args.arch.startswith('alexnet') else 'align')
    # py-faster-rcnn's prototxts decay biases (no decay_mult, so 1) while giving them 2x lr; R*CNN's (decay_mult 0)
    # and bvlc_alexnet's do not
    targs.bias_decay = det
    if not det:
        targs.regions = args.regions
    args_dict = dict(vars(targs))
    rank, world, _, device = engine.init_distributed()
    if world > 1:
        raise UserError(f'{args.task} runs in one process (as py-faster-rcnn); run seeds side by side instead')
    # region runs made before these arguments existed used RoIAlign and no bias decay
    # Older region runs: RoIAlign, biases without decay; older R*CNN runs: a grid, no 'other' class and no box loss
    engine.check_run_dir(out, args_dict, ignore=train.RESUME_MAY_CHANGE,
                         added={**train.ADDED_LATER, 'roi_op': 'align', 'bias_decay': False,
                                'regions': 'grid (R*CNN before issue 15)'})
    metrics_path, ckpt_path = os.path.join(out, 'metrics.json'), os.path.join(out, 'checkpoint.pth')
    if os.path.exists(metrics_path):  # trained and tested, transfer.json not yet written (finished() found none)
        metrics = engine.read_json(metrics_path, fix='delete it and run the same command: the final checkpoint is tested again')
        print(f'{out} is finished: {json.dumps(metrics, sort_keys=True)}')
        return out, metrics
    ckpt, ckpt_from = engine.load_latest_checkpoint(ckpt_path, targs.keep, ('model', 'optimizer', 'step', 'loader', 'rng'))
    grid = not det and args.regions == 'grid'
    if not det and not grid:
        cache = args.regions_cache or os.path.join(os.path.dirname(os.path.abspath(out)), 'selective_search')
        # another VOC folder (the toy one, a copy) never shares an image id's boxes
        cache = os.path.join(cache, f'{os.path.basename(root)}-{hashlib.sha1(os.path.abspath(root).encode()).hexdigest()[:10]}')
        train_recs, test_recs = (with_regions(root, r, cache, targs.workers) for r in (train_recs, test_recs))

    backbone, head, channels, head_channels, stride, pool = split_classifier(net)
    # From scratch means from scratch (He et al. 2019): nothing frozen, the norm layers train. Pre-trained layers are
    # frozen as the originals do (detection.freeze).
    frozen_norms = [] if args.init == 'scratch' else freeze(net, args.arch)
    torch.manual_seed(targs.seed)
    if det:
        model = FasterRCNN(backbone, head, channels, head_channels, len(names), stride, pool, tuple(args.anchor_scales),
                           roi_op=args.roi_op)
    else:
        model = RStarCNN(backbone, head, head_channels, len(names), stride, pool, roi_op=args.roi_op)
    model = model.to(device)
    if targs.channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = engine.sgd(model, targs.lr, targs.momentum, targs.wd, caffe_bias=True, bias_decay=targs.bias_decay)
    amp, amp_dtype, scaler = engine.amp_setup(targs.amp, device)
    if ckpt is not None:
        engine.restore(ckpt, ckpt_from, model, optimizer, scaler, 0)
    dev_id = device.index if device.type == 'cuda' else None
    train_loader = detection_loader(root, train_recs, targs.batch_size, True, args.scale, args.max_size, targs.workers,
                                    dev_id, targs.seed, checkpoint=ckpt['loader'][0] if ckpt else None, mean=args.mean, std=args.std)
    test_loader = detection_loader(root, test_recs, 1, False, args.scale, args.max_size, targs.workers, dev_id, targs.seed,
                                   mean=args.mean, std=args.std)
    milestones, total = targs.lr_steps, targs.iters

    sha = engine.start_run_dir(out, args_dict)
    engine.print_args(args_dict, sha)
    print(f'{args.task}: {"Faster R-CNN" if det else "R*CNN"} on a {args.arch}, {len(names)} {"classes" if det else "actions"}, '
          f'{len(train_recs)} train / {len(test_recs)} test images, batch {targs.batch_size}, lr {targs.lr} '
          f'(milestones {milestones}), {total} iterations = {total / len(train_loader):.1f} epochs, {amp} autocast')
    params = list(model.parameters())
    if not det:
        print(f'R*CNN: {args.regions} regions, {sum(len(r["actions"]) for r in train_recs)} training persons '
              f'({sum(int((r["actions"].sum(1) == 0).sum()) for r in train_recs)} of them \'other\')')
    print(f'RoI {args.roi_op}; trainable parameters: {sum(p.numel() for p in params if p.requires_grad)} of '
          f'{sum(p.numel() for p in params)} (init {args.init})')
    if ckpt is not None:
        print(f'resuming from {ckpt_from} at iteration {ckpt["step"]}')

    def loss_of(batch):
        images, boxes, info, idx, _ = batch
        images, boxes = images.to(device, non_blocking=True), [b.to(device) for b in boxes]
        if det:
            targets = [(b, torch.as_tensor(train_recs[i]['labels'], device=device)) for b, i in zip(boxes, idx)]
            return sum(model(images, info, targets).values())
        persons, regions = split_regions(boxes, info, [train_recs[i].get('persons', 0) for i in idx], grid)
        labels = [action_labels(train_recs[i]['actions']).to(device) for i in idx]
        return sum(model(images, info, persons, regions, labels).values())

    curves = []

    def validate():
        m, c = test_regions(model, test_loader, test_recs, names, det, device, amp_dtype, grid)
        curves[:] = c
        return m, f'test mAP {m["mAP"]:.2f} ({m["n"]} images)'

    def train_mode():
        model.train()
        for m in frozen_norms:  # BatchNorm stays frozen (detection.freeze)
            m.eval()

    step, epoch, metrics = train.fit(targs, model, model, optimizer, scaler, train_loader, loss_of, validate, train_mode,
                                     ckpt, total, milestones, targs.warmup, device, amp_dtype, rank, world)
    tb_figures(out, names, metrics, curves, step)
    result = {'step': step, 'epoch': epoch, **{f'test_{k}': v for k, v in metrics.items()}}
    engine.write_atomic(metrics_path, json.dumps(result, sort_keys=True) + '\n')
    print(f'done: test mAP {metrics["mAP"]:.2f} on {metrics["n"]} images; per class: ' +
          ', '.join(f'{k[3:]} {v:.1f}' for k, v in metrics.items() if k.startswith('AP/')))
    return out, result


# ----------------------------------------------------------------------------------------------------------
# coco: He et al. 2019, Mask R-CNN with a ResNet-FPN (detection.fpn_detector), from scratch or pre-trained

# Detectron's recipe, which He, Girshick and Dollar keep (arXiv 1811.08883 §4): batch 16 (8 GPUs x 2 images), lr
# 0.02, weight decay 1e-4, momentum 0.9; shorter side 800 (max 1333), horizontal flip. A schedule of N x 90K
# iterations drops the lr x0.1 "in the last 60k and last 20k iterations" (§4); 1x is Detectron's 90K with drops at
# 60K and 80K. Another --batch-size scales lr and iterations linearly (Goyal et al. 2017), so one GPU runs the same
# recipe. Warm-up: Detectron's is 500 iterations from 1/3 of the lr; train.py's linear warm-up starts near 0.
DET_BATCH, DET_LR, DET_ITERS = 16, 0.02, 90000
DET_RECIPE = ['--momentum', '0.9', '--wd', '1e-4', '--save-every', '2000', '--log-every', '20']
DET_WARMUP = 500
DET_CURVE = 4  # evaluations per 90K iterations: the points of the AP-against-iterations curves (Fig. 1, 5)
# VOC (He et al. 2019 §5): pre-trained, 18K iterations at batch 16 (0.2x); from scratch they report 144K (1.6x)
VOC_FPN_SCHEDULE = '0.2x'


def det_schedule(name, batch):
    """(iterations, lr steps, warm-up, evaluation interval) of a schedule 'Nx' at `batch` images a step."""
    try:
        n = float(name.removesuffix('x'))
        assert name.endswith('x') and n > 0
    except (AssertionError, ValueError):
        raise UserError(f'--schedule {name}: give the length in multiples of 90K iterations, 1x 2x 3x 6x 9x (or 0.5x)') from None
    total = round(n * DET_ITERS)
    steps = (60000, 80000) if n == 1 else (total - 60000, total - 20000)
    if steps[0] <= 0:  # shorter than 2x the paper's rule does not fit: the proportions of 1x
        steps = (round(total * 2 / 3), round(total * 8 / 9))
    k = DET_BATCH / batch
    return (round(total * k), [round(x * k) for x in steps], round(DET_WARMUP * k),
            max(1, round(DET_ITERS / DET_CURVE * k)))


def coco_targets(records, idx, flips, boxes, info, mask, device):
    """torchvision's training targets of one loader batch: boxes back to continuous pixels (the loader gives
    py-faster-rcnn's inclusive ones: x2 - 1 before scaling, so + scale), labels, and each object's mask drawn from
    its polygons, mirrored and scaled as the image was (pycocotools rasterises them)."""
    from pycocotools import mask as mask_utils
    out = []
    for i, f, b, (h, w, s) in zip(idx, flips, boxes, info.tolist()):
        r = records[i]
        t = {'boxes': (b + torch.tensor([0, 0, s, s])).to(device), 'labels': torch.as_tensor(r['labels'], device=device)}
        if mask:
            width = r['size'][0]
            masks = []
            for polys in r['polygons']:
                scaled = []
                for poly in polys:
                    xy = np.asarray(poly, np.float64).reshape(-1, 2)
                    if f:
                        xy[:, 0] = width - xy[:, 0]
                    scaled.append((xy * s).reshape(-1).tolist())
                masks.append(mask_utils.decode(mask_utils.merge(mask_utils.frPyObjects(scaled, int(h), int(w)))))
            t['masks'] = torch.from_numpy(np.stack(masks) if masks else np.zeros((0, int(h), int(w)), np.uint8)).to(device)
        out.append(t)
    return out


def coco_results(detections, records, idx, info, categories):
    """COCO result dicts of the detections of one test batch, in each original image's pixels: boxes as [x, y, w, h],
    masks (28 x 28 probabilities per box) pasted into the image and thresholded at 0.5 (torchvision's and Detectron's
    rule), as compressed RLE."""
    from pycocotools import mask as mask_utils
    from torchvision.models.detection.roi_heads import paste_masks_in_image
    out = []
    for d, i, (_, _, s) in zip(detections, idx, info.tolist()):
        r = records[i]
        boxes = d['boxes'].float().cpu() / s
        if 'masks' in d:
            masks = paste_masks_in_image(d['masks'].float().cpu(), boxes, (r['size'][1], r['size'][0]))[:, 0] > 0.5
            rles = mask_utils.encode(np.asfortranarray(masks.numpy().transpose(1, 2, 0).astype(np.uint8)))
        for k, (x1, y1, x2, y2) in enumerate(boxes.tolist()):
            res = {'image_id': r['id'], 'category_id': categories[int(d['labels'][k]) - 1]['id'],
                   'bbox': [round(x1, 2), round(y1, 2), round(x2 - x1, 2), round(y2 - y1, 2)],
                   'score': round(float(d['scores'][k]), 5)}
            if 'masks' in d:
                res['segmentation'] = {'size': rles[k]['size'], 'counts': rles[k]['counts'].decode('ascii')}
            out.append(res)
    return out


def coco_data(args):
    """(COCO root, categories, train records, test records), checked before anything is written. Training keeps
    the images with objects (Detectron's and torchvision's filter)."""
    if not args.coco:
        raise UserError('coco needs --coco (the folder holding train2017/, val2017/ and annotations/)')
    if not os.path.isdir(args.coco):
        raise UserError(f'--coco {args.coco}: folder not found')
    train_set, test_set = args.train_set or 'train2017', args.test_set or 'val2017'
    train_recs, categories = read_coco(args.coco, train_set)
    test_recs, test_categories = read_coco(args.coco, test_set)
    if [c['id'] for c in test_categories] != [c['id'] for c in categories]:
        raise UserError(f'{train_set} and {test_set} have other categories ({len(categories)} against {len(test_categories)})')
    train_recs = [r for r in train_recs if len(r['boxes'])]
    if not train_recs or not test_recs:
        raise UserError(f'{args.coco}: {"no " + train_set + " image has an object" if not train_recs else test_set + " lists no images"}')
    return args.coco, categories, train_recs, test_recs


def fpn_task(args, rest):
    """Train torchvision's Mask R-CNN (Faster R-CNN with --no-mask) with an FPN on COCO, or its Faster R-CNN on VOC
    2007 (voc07 --detector fpn), from scratch or from the --init weights, testing every --eval-every iterations: the
    AP-against-iterations curves. COCO is scored by COCOeval, VOC by the devkit's 11-point mAP."""
    voc = args.task == 'voc07'
    if voc:  # He et al. 2019 §5 (VOC): Faster R-CNN with the FPN, no masks; VOC's difficult objects left out as before
        root, names, train_recs, test_recs = region_data(args)
        categories = [{'id': k + 1, 'name': n} for k, n in enumerate(names)]
        train_recs = [dict(r, labels=r['labels'] + 1) for r in train_recs]  # torchvision's 0 is the background
        args.mask = False
    else:
        root, categories, train_recs, test_recs = coco_data(args)
    n = args.train_images or (round(args.train_fraction * len(train_recs)) if args.train_fraction else None)
    if n is not None:  # the images with objects, before anything is written
        train_recs = seeded_subset(train_recs, max(1, n), args.seed)
    rank, world, local_rank, device = engine.init_distributed()
    net, src = network(args, 1)  # the --init weights and what they were made for (arch, input mean and std)
    init = None if args.init == 'scratch' else {k: v for k, v in net.state_dict().items() if not k.startswith(net.head_name + '.')}
    args.norm = args.det_norm or ('gn' if init is None or args.norm == 'gn' else 'frozen-bn')
    if init is not None and (args.norm == 'gn') != (src.get('norm', 'bn') == 'gn'):
        raise UserError(f'--norm {args.norm}: {args.init} has {src.get("norm", "bn")} layers (use '
                        f'{"gn" if src.get("norm") == "gn" else "frozen-bn or syncbn"}, or --init scratch)')
    args.scale, args.max_size = args.scale or 800, args.max_size or 1333
    args.schedule = args.schedule or (VOC_FPN_SCHEDULE if voc else '1x')
    out = args.out or default_out(args, f'{args.task}-fpn-{args.norm}-{args.schedule}' if voc else f'coco-{args.norm}-{args.schedule}')
    engine.lock_run_dir(out)
    if finished(out, args):
        return out, None
    targs = train.get_args_parser().parse_args(['--subset', root, '--out', out, '--arch', args.arch, '--seed', str(args.seed),
                                                '--workers', str(args.workers), *DET_RECIPE, *rest])
    given = given_flags(rest)
    if 'batch_size' not in given:
        targs.batch_size = DET_BATCH
    iters, steps, warmup, every = det_schedule(args.schedule, targs.batch_size)
    for k, v in (('iters', iters), ('lr_steps', steps), ('warmup', warmup), ('eval_every', every),
                 ('lr', DET_LR * targs.batch_size / DET_BATCH)):
        if k not in given:
            setattr(targs, k, v)
    if targs.batch_size % world:
        raise UserError(f'--batch-size {targs.batch_size} is not divisible by the {world} processes')
    if args.norm == 'syncbn' and world > 1 and device.type != 'cuda':  # torch's SyncBatchNorm runs on GPUs only
        raise UserError(f'--norm syncbn synchronises over GPUs; these {world} processes run on the CPU: use --norm gn')
    targs.task, targs.init, targs.norm, targs.schedule_name = args.task, args.init, args.norm, args.schedule
    targs.scale, targs.max_size, targs.mask, targs.mean, targs.std = args.scale, args.max_size, args.mask, args.mean, args.std
    targs.train_images, targs.fpn_channels, targs.rois_per_image = len(train_recs), args.fpn_channels, args.rois_per_image
    targs.anchor_sizes, targs.test_proposals, targs.train_scales = args.anchor_sizes, args.test_proposals, args.train_scales
    args_dict = engine.resolved(vars(targs))
    engine.check_run_dir(out, args_dict, ignore=train.RESUME_MAY_CHANGE)
    metrics_path, ckpt_path = os.path.join(out, 'metrics.json'), os.path.join(out, 'checkpoint.pth')
    if os.path.exists(metrics_path):
        return out, engine.read_json(metrics_path, fix='delete it and run the same command: the final checkpoint is tested again')
    ckpt, ckpt_from = engine.load_latest_checkpoint(ckpt_path, targs.keep, ('model', 'optimizer', 'step', 'loader', 'rng'))
    if ckpt is not None and len(ckpt['loader']) != world:
        raise UserError(f'{ckpt_from} was written by {len(ckpt["loader"])} processes; resume it with as many, not {world}')

    torch.manual_seed(targs.seed)  # every process draws the same initial weights
    model, frozen_norms = fpn_detector(args.arch, len(categories), args.norm, args.mask, init, args.fpn_channels,
                                       args.rois_per_image, tuple(args.anchor_sizes), args.test_proposals)
    if args.norm == 'syncbn' and world > 1:
        model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)
    model = model.to(device)
    raw_model = model
    optimizer = engine.sgd(model, targs.lr, targs.momentum, targs.wd, wd_norm=targs.wd_norm)
    amp, amp_dtype, scaler = engine.amp_setup(targs.amp, device)
    if ckpt is not None:
        engine.restore(ckpt, ckpt_from, raw_model, optimizer, scaler, rank)
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(model, device_ids=[local_rank] if device.type == 'cuda' else None)
    dev_id = device.index if device.type == 'cuda' else None
    kw = dict(mean=args.mean, std=args.std, shard_id=rank, num_shards=world)
    scales = tuple(args.train_scales) if args.train_scales else args.scale
    train_loader = detection_loader(root, train_recs, targs.batch_size // world, True, scales, args.max_size, targs.workers,
                                    dev_id, targs.seed, checkpoint=ckpt['loader'][rank] if ckpt else None, **kw)
    test_loader = detection_loader(root, test_recs, 1, False, args.scale, args.max_size, targs.workers, dev_id, targs.seed, **kw)
    test_set = args.test_set or ('test' if voc else 'val2017')
    ann_file = None if voc else coco_paths(root, test_set)[0]

    if rank == 0:
        sha = engine.start_run_dir(out, args_dict)
        engine.print_args(args_dict, sha)
        params = list(raw_model.parameters())
        print(f'{args.task}: {"Mask" if args.mask else "Faster"} R-CNN, {args.arch}-FPN, {args.norm}, init {args.init}; '
              f'{len(categories)} categories, {len(train_recs)} train / {len(test_recs)} {test_set} images; schedule '
              f'{args.schedule}: {targs.iters} iterations at batch {targs.batch_size} ({world} process(es)), lr {targs.lr:g} '
              f'x0.1 at {targs.lr_steps}, warm-up {targs.warmup}, evaluation every {targs.eval_every}; {amp} autocast; '
              f'trainable parameters {sum(p.numel() for p in params if p.requires_grad)} of {sum(p.numel() for p in params)}')
        if ckpt is not None:
            print(f'resuming from {ckpt_from} at iteration {ckpt["step"]}')

    def loss_of(batch):
        images, boxes, info, idx, flips = batch
        targets = coco_targets(train_recs, idx, flips, boxes, info, args.mask, device)
        return sum(model(images.to(device, non_blocking=True), info[:, :2], targets).values())

    def validate():
        raw_model.eval()
        found = []
        with torch.no_grad():
            for images, _, info, idx, _ in tqdm(test_loader, desc='test', leave=False, disable=rank or not sys.stderr.isatty()):
                with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
                    detections = raw_model(images.to(device), info[:, :2])
                if voc:  # continuous pixels -> VOC's 1-based inclusive ones of the original image; 0-based classes
                    found += [(i, d['boxes'].float().cpu() / s + torch.tensor([1., 1., 0., 0.]), d['scores'].float().cpu(),
                               d['labels'].cpu() - 1) for d, i, s in zip(detections, idx, info[:, 2].tolist())]
                else:
                    found += coco_results(detections, test_recs, idx, info, categories)
        found = [d for part in engine.all_gather_object(found, world) for d in part]
        m = {}
        if rank == 0 and voc:
            per_image = [None] * len(test_recs)
            for i, *det in found:
                per_image[i] = det
            ap, _ = detection_ap(per_image, [(r['boxes'], r['labels'], r['difficult']) for r in test_recs], len(names))
            m = {'mAP': 100 * mean_ap(ap), 'n': len(test_recs), **{f'AP/{n}': 100 * a for n, a in zip(names, ap) if a == a}}
        elif rank == 0:
            m = coco_ap(ann_file, found, [r['id'] for r in test_recs], ('bbox', 'segm') if args.mask else ('bbox',))
            m['n'] = len(test_recs)
        m = engine.all_gather_object(m, world)[0]
        if voc:
            return m, f'{test_set} mAP {m["mAP"]:.2f} (VOC07 11-point, {m["n"]} images)'
        return m, (f'{test_set} box AP {m["bbox/AP"]:.1f} (AP50 {m["bbox/AP50"]:.1f}, AP75 {m["bbox/AP75"]:.1f})'
                   + (f', mask AP {m["segm/AP"]:.1f}' if args.mask else '') + f' ({m["n"]} images)')

    def train_mode():
        model.train()
        for m in frozen_norms:  # frozen BN (the pre-trained baseline) keeps its statistics
            m.eval()

    step, epoch, metrics = train.fit(targs, model, raw_model, optimizer, scaler, train_loader, loss_of, validate, train_mode,
                                     ckpt, targs.iters, targs.lr_steps, targs.warmup, device, amp_dtype, rank, world)
    result = {'step': step, 'epoch': epoch, **{f'test_{k}': v for k, v in metrics.items()}}
    if rank == 0:
        engine.write_atomic(metrics_path, json.dumps(result, sort_keys=True) + '\n')
        print(f'done: {test_set} mAP {metrics["mAP"]:.2f}' if voc else
              f'done: {test_set} box AP {metrics["bbox/AP"]:.1f}' + (f', mask AP {metrics["segm/AP"]:.1f}' if args.mask else ''))
    if world > 1:
        torch.distributed.destroy_process_group()
    return out, result if rank == 0 else None


# ----------------------------------------------------------------------------------------------------------
# linear: L2-regularised multinomial logistic regression on frozen penultimate features (Kornblith et al. 2019)


def fit_logreg(x, y, num_classes, lam, iters=300, init=None):
    """(W, b) minimising the mean cross-entropy + lam * |W|^2 by L-BFGS (the problem is convex and small). y [N] is
    class ids (softmax: multinomial regression); y [N, C] of 1 / 0 / -1 is multi-label (a sigmoid per class, the
    0s ignored: train.multilabel_loss). The bias is not penalised. init: (W, b) to start from (the solution at a
    nearby strength: the problem is convex, so only the number of steps changes)."""
    w, b = init or (torch.zeros(x.shape[1], num_classes, dtype=x.dtype, device=x.device), torch.zeros(num_classes, dtype=x.dtype, device=x.device))
    w, b = w.clone().requires_grad_(True), b.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([w, b], lr=1, max_iter=iters, history_size=20, line_search_fn='strong_wolfe')

    def closure():
        opt.zero_grad()
        logits = x @ w + b
        loss = (train.multilabel_loss(logits, y) if y.ndim == 2 else F.cross_entropy(logits, y)) + lam * (w * w).sum()
        loss.backward()
        return loss
    opt.step(closure)
    return w.detach(), b.detach()


def linear_probe(args, model, root, data_dir, num_classes):
    """Kornblith et al. 2019's fixed features: penultimate features of the resized, centre-cropped image (the val
    pipeline, no augmentation), L2-regularised logistic regression by L-BFGS for each --lambdas, the best on
    validation (the task's measure) refit on train + val, then tested. On the GPU where there is one."""
    device, amp = device_and_amp()
    model = model.to(device).eval()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    feats = {}
    for s in ('train', 'val', 'test'):
        x, rows = engine.extract(lambda x: models.features(model, x), loader(args, root, os.path.join(data_dir, f'{s}.txt')), device, amp)
        feats[s] = x, multilabel_targets(data_dir, s, rows, num_classes)
    # The backbone is only read: check it (fixed features must stay fixed).
    assert all(torch.equal(v, before[k]) for k, v in model.state_dict().items()), 'the backbone changed during the linear probe'
    # Standardise with the training statistics: L-BFGS converges in far fewer steps, and the L2 strengths
    # mean the same for every network.
    mu, sd = feats['train'][0].mean(0), feats['train'][0].std(0) + 1e-6
    (xtr, ytr), (xva, yva), (xte, yte) = [((x - mu) / sd, y) for x, y in (feats[s] for s in ('train', 'val', 'test'))]
    xtr, ytr, xva, yva, xte, yte = (t.to(device) for t in (xtr, ytr, xva, yva, xte, yte))
    key = SCORE_KEY[task_metric(args)]
    best, scores = choose_lambda(xtr, ytr, xva, yva, num_classes, args.lambdas, key)
    w, b = fit_logreg(torch.cat([xtr, xva]), torch.cat([ytr, yva]), num_classes, best)  # refit on train + val
    test = transfer_metrics((xte @ w + b).cpu(), yte.cpu())
    return {'lambda': best, 'val': {f'{k:g}': v for k, v in scores.items()}, 'feature_dim': xtr.shape[1],
            **{f'test_{k}': v for k, v in test.items() if k != 'n'}, 'test_images': test['n']}


def choose_lambda(xtr, ytr, xva, yva, num_classes, lambdas, key):
    """(the L2 strength with the best validation `key` of transfer_metrics, {strength: that score}); ties go to the
    stronger regularisation."""
    scores, wb = {}, None
    # strongest first, each fit starting from the last (a regularisation path): 45 fits cost a few cold ones
    for lam in tqdm(sorted(lambdas, reverse=True), desc='L2 strengths', leave=False, disable=len(lambdas) < 10):
        wb = fit_logreg(xtr, ytr, num_classes, lam, init=wb)
        scores[lam] = transfer_metrics((xva @ wb[0] + wb[1]).cpu(), yva.cpu())[key]
    scores = {lam: scores[lam] for lam in sorted(scores)}
    best = max(lambdas, key=lambda lam: (scores[lam], lam))
    print(f'L2 strength on validation ({key}): ' + ', '.join(f'{lam:.3g} {v:.2f}' for lam, v in scores.items()) + f'; best {best:g}')
    return best, scores


# ----------------------------------------------------------------------------------------------------------
# knn: induction accuracy (paper §5.3) -- database: the subset's train images, queries: its val images


def knn_task(args, model, src):
    subset = need_subset(args)
    root = engine.read_json(os.path.join(subset, 'meta.json'), ['root'])['root']
    leaves = {r[0] for r in read_tsv(os.path.join(subset, 'leaf_to_class.tsv'))} if os.path.exists(os.path.join(subset, 'leaf_to_class.tsv')) else set()
    seen = src.get('subset') and os.path.join(src['subset'], 'leaf_to_class.tsv')
    if leaves and seen and os.path.exists(seen):
        overlap = leaves & {r[0] for r in read_tsv(seen)}
        if overlap:  # the measure is about classes the network never saw; say so when it did see some
            print(f'warning: the network was trained on {len(overlap)} of the {len(leaves)} classes of {subset}; '
                  f'for induction accuracy they should be disjoint (this is then the baseline measure)', file=sys.stderr)
    device, amp = device_and_amp()
    model = model.to(device).eval()
    fn = (lambda x: models.features(model, x)) if args.feature == 'fc7' else model
    db, db_labels = engine.extract(fn, loader(args, root, os.path.join(subset, 'train.txt')), device, amp)
    q, q_labels = engine.extract(fn, loader(args, root, os.path.join(subset, 'val.txt')), device, amp)
    try:
        db = db.to(device)
    except torch.OutOfMemoryError:  # walk it from host memory, a chunk at a time
        pass
    hits = torch.zeros(2)
    for start in range(0, len(q), 1024):
        _, idx = knn(q[start:start + 1024].to(device), db, 5, args.metric)
        hits += torch.stack(topk_hits_from_neighbours(db_labels[idx.cpu()], q_labels[start:start + 1024]))
    return {'knn_top1': 100 * hits[0].item() / len(q), 'knn_top5': 100 * hits[1].item() / len(q), 'queries': len(q),
            'database': len(db), 'feature': args.feature, 'metric': args.metric}


def topk_hits_from_neighbours(neighbour_labels, labels):
    """Top-1: the nearest neighbour has the query's label; top-5: one of the 5 nearest has it."""
    hit = neighbour_labels == labels[:, None]
    return [hit[:, 0].sum().float(), hit[:, :5].any(1).sum().float()]


# ----------------------------------------------------------------------------------------------------------
# coarse-fine: paper §5.4, Fig. 6


def coarse_fine(args, model, src, out):
    import subsets  # WordNet is needed here only
    subset = need_subset(args)
    root = engine.read_json(os.path.join(subset, 'meta.json'), ['root'])['root']
    wnids = [r[1] for r in read_tsv(os.path.join(subset, 'classes.tsv'))[1:]]
    if models.head(model).out_features != len(wnids):
        raise UserError(f'the network has {models.head(model).out_features} outputs, {subset} {len(wnids)} classes: '
                        f'coarse-fine needs the subset it was trained on (fine classes)')
    device, amp = device_and_amp()
    logits, labels = engine.extract(model.to(device).eval(), loader(args, root, os.path.join(subset, 'val.txt')), device, amp)
    pred = logits.argmax(1)
    coarse_of = subsets.taxonomy('top-down', 127)  # {leaf: coarse class} over the 1000 ILSVRC classes
    missing = [w for w in wnids if w not in coarse_of]
    if missing:
        raise UserError(f'{missing[0]} is not an ILSVRC-2012 leaf class: coarse-fine needs a network trained on leaf classes')
    group = sorted(set(coarse_of[w] for w in wnids))
    coarse = torch.tensor([group.index(coarse_of[w]) for w in wnids])  # label -> coarse index
    correct, total = per_class_counts(pred, labels, len(wnids))
    rows = []
    for gi, g in enumerate(group):
        fine = (coarse == gi).nonzero().flatten()
        if len(fine) < args.min_subclasses:
            continue
        mask = coarse[labels] == gi
        coarse_acc = 100 * (coarse[pred[mask]] == gi).float().mean().item()
        fine_acc = mean_class_accuracy(correct[fine], total[fine])
        rows.append((coarse_acc - fine_acc, coarse_acc, fine_acc, len(fine), g, subsets.class_name(g)))
    if not rows:
        raise UserError(f'no coarse class has {args.min_subclasses} or more fine classes in {subset} (--min-subclasses)')
    rows.sort(reverse=True)
    engine.start_run_dir(out, vars(args))
    with open(os.path.join(out, 'coarse_fine.tsv'), 'w') as f:
        f.write('wnid\tname\tsubclasses\tcoarse_acc\tmean_fine_acc\tdifference\n')
        f.write(''.join(f'{g}\t{n}\t{k}\t{c:.2f}\t{fa:.2f}\t{d:.2f}\n' for d, c, fa, k, g, n in rows))
    plot_coarse_fine(rows, args.top, os.path.join(out, 'coarse_fine.png'))
    for d, c, fa, k, g, n in rows[:args.top]:
        print(f'{d:+7.2f}  coarse {c:6.2f}%  fine {fa:6.2f}%  ({k} classes)  {n.split(",")[0]}')
    return {'coarse_classes': len(rows), 'table': 'coarse_fine.tsv', 'figure': 'coarse_fine.png',
            'mean_difference': sum(r[0] for r in rows) / len(rows)}


def plot_coarse_fine(rows, top, path):
    import matplotlib
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    shown = rows[:top] + rows[max(top, len(rows) - top):]
    fig, ax = plt.subplots(figsize=(8, 0.3 * len(shown) + 1))
    ax.barh(range(len(shown)), [r[0] for r in shown], color=['tab:blue' if r[0] >= 0 else 'tab:red' for r in shown])
    ax.set_yticks(range(len(shown)), [r[5].split(',')[0] for r in shown])
    ax.invert_yaxis()
    ax.set_xlabel('coarse accuracy - mean fine accuracy (%)')
    ax.set_title('Coarse vs fine (Huh et al. 2016, Fig. 6)')
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


# ----------------------------------------------------------------------------------------------------------


def main(args, rest):
    # Seed before network(): with --init scratch it draws the whole network's weights, which the region tasks,
    # knn, coarse-fine and linear used to draw unseeded (one R*CNN-from-scratch command gave 26.7-41.0 mAP over
    # runs on the toy VOC12). train.py seeds again for the finetune and last modes.
    torch.manual_seed(args.seed)
    args.recipe = args.recipe or ('kornblith' if args.task in KORNBLITH_SETS else 'huh')
    if args.mode == 'linear':
        args.lambdas = args.lambdas or KORNBLITH_LAMBDAS
    fpn = args.task == 'coco' or args.detector == 'fpn'
    if args.detector == 'fpn' and args.task not in ('coco', 'voc07'):
        raise UserError(f'--detector fpn is for voc07 and coco, not {args.task}')
    if not fpn:
        if args.schedule:  # train.py's --schedule (step, cosine, constant)
            rest = rest + ['--schedule', args.schedule]
        for k in ('det_norm', 'train_images', 'train_fraction', 'coco', 'train_scales'):
            if getattr(args, k) is not None:
                raise UserError(f'--{"norm" if k == "det_norm" else k.replace("_", "-")} is a flag of the FPN detector '
                                f'(coco, voc07 --detector fpn), not of {args.task}')
        if args.task in ('voc07', 'voc12-action'):
            args.scale, args.max_size = args.scale or 600, args.max_size or 1000
    if args.train_images and args.train_fraction:
        raise UserError('give --train-images or --train-fraction, not both')
    if rest and not (args.task in CLASSIFICATION and args.mode in ('finetune', 'last')
                     or args.task in ('voc07', 'voc12-action', 'coco')):
        raise UserError(f'unrecognized arguments: {" ".join(rest)} (train.py flags apply to the finetune and last modes only)')
    args.train_flags = train_flags(rest)
    if args.task in ('voc07', 'voc12-action', 'coco'):
        fpn = args.task == 'coco' or args.detector == 'fpn'
        out, result = (fpn_task if fpn else region_task)(args, rest)
        if result is None:  # finished before: its transfer.json stands as written
            return
        return finish(out, args, result, record_args=False)
    if args.task in ('knn', 'coarse-fine'):
        subset = need_subset(args)
        model, src = network(args)
        out = args.out or default_out(args, f'{args.task}-{os.path.basename(os.path.normpath(subset))}')
        engine.lock_run_dir(out)
        if finished(out, args):
            return
        result = knn_task(args, model, src) if args.task == 'knn' else coarse_fine(args, model, src, out)
        return finish(out, args, result)

    root, names, train_rows, val, test = classification_data(args)  # validated before anything is written
    name = f'{args.task}' + (f'-s{args.split}' if args.task == 'sun397' else '') + f'-{args.mode}'
    model, _ = network(args, len(names))  # checks --init against --arch before anything is written
    out = args.out or default_out(args, name)
    engine.lock_run_dir(out)  # before data/ is written: one process a run directory
    if finished(out, args):
        return
    created = not os.path.exists(out)
    data_dir = os.path.join(out, 'data')
    try:
        write_data(data_dir, root, names, train_rows, val, test, {'kind': args.task, 'split': args.split,
                                                                  'seed': args.seed, 'val_fraction': args.val_fraction})
        if args.mode == 'linear':
            result = linear_probe(args, model, root, data_dir, len(names))
        else:
            result = finetune_task(args, rest, root, names, (train_rows, val, test), data_dir, out)
    except (UserError, SystemExit, OSError):  # OSError: a full or read-only disk
        trained = glob.glob(os.path.join(out, 'args.json')) + glob.glob(os.path.join(out, 'search', '*', 'args.json'))
        if created and os.path.isdir(out) and not trained:
            shutil.rmtree(out)  # a mistake found on the way leaves no half-made run directory
        raise
    metric = task_metric(args)
    finish(out, args, {'mode': args.mode, 'classes': len(names), 'metric': metric,
                       'test_score': result[f'test_{SCORE_KEY[metric]}'], **result}, record_args=args.mode == 'linear')


if __name__ == '__main__':
    a, r = get_args_parser().parse_known_args()
    engine.run_main(lambda x: main(x, r), a)
