"""He et al. 2019, "Rethinking ImageNet Pre-training": from scratch against pre-trained.

    python experiments/rethinking_scratch.py --toy                        # both plans on the toy data
    python experiments/rethinking_scratch.py --data-root /data --dry-run  # the real grid with GPU hours

Three plans:
- rethinking_coco, the paper's own experiment: torchvision's Mask R-CNN with a ResNet-50-FPN and GroupNorm
  (`finetune.py coco`) on COCO train2017, tested on val2017, from random initialisation against a GN ResNet-50
  pre-trained here, at the schedules of the paper's Table 1 (2x-6x), with less data (10K and 1K images), and with
  SyncBN instead of GN. Each run is tested at every quarter of 1x, so the report draws AP against iterations
  (Fig. 1, 5). Toy: a GN ResNet-18 on the toy COCO (data/toy/COCO), schedules of 60 iterations a "1x" at batch 2.
- rethinking_voc: the same detector (Faster R-CNN, no masks) on VOC 2007, from scratch against pre-trained (§5).
- rethinking_scratch: the same question on SUN397 classification, the fine-tuning of Huh et al. 2016's network
  stretched 1x, 2x, 3x (toy: 150, 300, 450 iterations).
"""
import os

import common

# The paper's Table 1 (arXiv 1811.08883 v1, R50-FPN GN Mask R-CNN, COCO val2017 box AP) by schedule, and the text of
# §5 for less data; mask AP from Table 2 (the 6x row: random init 6x against the best pre-trained, our reading, as
# its caption is missing from the copy we could read).
PAPER_BOX = {'scratch': {'2x': 36.8, '3x': 39.5, '4x': 40.6, '5x': 40.7, '6x': 41.3, '10K images': 25.9, '1K images': 3.5},
             'pretrained': {'2x': 40.3, '3x': 40.8, '4x': 40.9, '5x': 40.9, '6x': 41.1, '10K images': 26.0, '1K images': 9.9}}
PAPER_MASK = {'scratch': {'6x': 36.6}, 'pretrained': {'6x': 36.4}}
SCHEDULES = ('2x', '3x', '4x', '5x', '6x')
# Less data (§5): 10K images, pre-trained 60K iterations and scratch 220K (the paper's best of each); 1K images: the
# paper gives no schedule, ours is the 10K one.
LESS_DATA = {'10K images': (10000, 60000, 220000), '1K images': (1000, 60000, 220000)}
# GPU hours of one 90K-iteration 1x at batch 16: detectron2's MODEL_ZOO.md measures 0.261 s/iter for Mask R-CNN R50-FPN
# 1x on 8 V100 (BN; GN is not timed there), 6.5 h, 52 V100-hours. ASSUMED: one H100 does the work of 2 V100 and GN
# costs as much as BN, so 26 H100-hours; plus 4 tests of val2017 (5K images) per 1x at 0.043 s/image (the same
# table, one V100), about 0.25 h. Replace with bench/fpn_detector.py on a GPU when one is measured.
DET_HOURS_1X = 26.0 + 0.25
# Toy: the GN ResNet-18 pre-trained 300 iterations at batch 32 (8 toy epochs: a toy ResNet-18 step costs ~12 toy
# AlexNet steps on a 2-core CPU), small images, anchors and heads, a "1x" of 60 iterations at batch 2.
TOY_ARCH, REAL_ARCH = 'resnet18', 'resnet50'
TOY_PRETRAIN_GN = ['--norm', 'gn', '--iters', '300', '--lr-steps', '240', '--eval-every', '300']
TOY_DET = ['--batch-size', '2', '--scale', '128', '--max-size', '224', '--fpn-channels', '64', '--rois-per-image', '64',
           '--anchor-sizes', '16', '32', '64', '128', '256', '--test-proposals', '100', '--save-every', '30',
           '--log-every', '10', '--lr', '0.01']
TOY_1X = 60


def add_args(p):
    g = p.add_argument_group('rethinking_scratch.py')
    g.add_argument('--coco', default=None, help='COCO root: train2017/, val2017/, annotations/ (default: DATA_ROOT/COCO)')


def coco_run(c, init_run, seed, label, schedule, norm='gn', train_images=None, voc=False):
    """One `finetune.py coco` run (`voc07 --detector fpn` with voc) from scratch (init_run None) or from a
    pre-training; returns its directory."""
    arch = c.pick(TOY_ARCH, REAL_ARCH)
    root = c.args.coco or os.path.join(c.args.data_root or '', 'COCO')
    tag = label.replace(' ', '-').replace('%', 'pc')
    if init_run is None:
        base, init = os.path.join(c.out, f'scratch-{arch}-s{seed}'), ['--init', 'scratch', '--arch', arch]
    else:
        base, init = init_run, ['--init', os.path.join(init_run, 'checkpoint.pth')]
    out = os.path.join(base, f'voc07-fpn-{norm}-{tag}' if voc else f'coco-{norm}-{tag}')
    data = ['voc07', '--detector', 'fpn', '--voc', c.voc_root] if voc else ['coco', '--coco', root]
    cmd = ['python', 'finetune.py', *data, *init, '--norm', norm, '--schedule', schedule,
           '--out', out, '--seed', str(seed)]
    n = float(schedule.removesuffix('x'))
    if train_images:
        cmd += ['--train-images', str(train_images)]
    if c.toy:
        total = round(n * TOY_1X)
        steps = [total - 40, total - 13] if n >= 2 else [40, 53]  # the paper's last 60K / 20K of 90K, in toy units
        cmd += TOY_DET + ['--iters', str(total), '--lr-steps', *map(str, steps), '--warmup', '10',
                          '--eval-every', str(TOY_1X if voc else TOY_1X // 2)]  # VOC: 200 test images a test
    needed = ((os.path.join(c.voc_root, 'VOC2007', 'ImageSets', 'Main'), 'VOC 2007 (--voc)') if voc else
              (os.path.join(root, 'annotations'), 'COCO (annotations/instances_*.json; --coco)'))
    key = c.add(out, cmd, 'transfer.json', 'transfer', f'{"VOC07" if voc else "COCO"} {label} of {os.path.basename(base)}',
                needs=[init_run], inputs=[needed])
    c.steps[key]['arch'] = arch
    if not c.toy:
        c.steps[key]['hours'] = n * DET_HOURS_1X
    return out


def plan_coco(c):
    if c.quick:  # make demo (paper.py --quick): the toy detection plan takes ~40 CPU-minutes
        return None
    p = c.plan('rethinking_coco', 'He et al. 2019: COCO Mask R-CNN (R-FPN, GN), from scratch against pre-trained',
               layout='det_curves', xlabel='iterations',
               note='Box and mask AP on val2017 (toy: the toy COCO\'s val2017) at the end of each schedule; the figure '
                    'draws each run\'s AP at every test during training. Paper: Table 1 (R50-FPN GN box AP), Table 2 '
                    '(mask AP, 6x), §5 (10K and 1K images).')
    for key, title in (('scratch', 'from scratch'), ('pretrained', 'pre-trained')):
        p.column(f'{key}/box', f'box AP, {title}', metric='test_bbox/AP', paper=PAPER_BOX[key])
    for key, title in (('scratch', 'from scratch'), ('pretrained', 'pre-trained')):
        p.column(f'{key}/mask', f'mask AP, {title}', metric='test_segm/AP', paper=PAPER_MASK[key])
    arch = c.pick(TOY_ARCH, REAL_ARCH)
    for seed in c.seeds:
        pre = c.pretrain(c.full(), seed, *(TOY_PRETRAIN_GN if c.toy else ['--norm', 'gn']), tag='gn', arch=arch)
        rows = [(s, s, s, None, None) for s in (('1x', '3x') if c.toy else SCHEDULES)]
        if c.toy:  # the toy COCO has 120 training images: a third, and 12
            rows += [('40 images', '10K images', '3x', 40, None), ('12 images', '1K images', '3x', 12, None)]
        else:
            rows += [(k, k, None, n, (pi, si)) for k, (n, pi, si) in LESS_DATA.items()]
        for label, paper_as, schedule, n, iters in rows:
            runs = {}
            for key, init_run in (('scratch', None), ('pretrained', pre)):
                it = iters and iters[key == 'scratch']
                sched = schedule or f'{it / 90000:g}x'  # 220K: 2.44444x, which finetune.py rounds back to 220K
                run = coco_run(c, init_run, seed, label, sched, train_images=n)
                runs[f'{key}/box'] = runs[f'{key}/mask'] = run
            p.row(label, seed, paper_as=paper_as, **runs)
        sync = '3x'  # GN against SyncBN, from scratch (the paper trains both; detectron2 ships both 9x configs)
        run = coco_run(c, None, seed, sync, sync, norm='syncbn')
        p.row(f'SyncBN {sync}', seed, **{'scratch/box': run, 'scratch/mask': run})
    return p


def plan_voc(c):
    """He et al. 2019 §5, PASCAL VOC: Faster R-CNN with the FPN from scratch against pre-trained. The paper trains an
    R101-FPN GN on VOC07 trainval + VOC12 train and tests on VOC12 val (pre-trained 82.7 mAP at 18K iterations,
    from scratch 77.6 at 144K); ours is the GN ResNet-50 of the COCO plan on VOC07 trainval, tested on VOC07 test."""
    if c.quick:
        return None
    p = c.plan('rethinking_voc', 'He et al. 2019: VOC07 Faster R-CNN (R-FPN, GN), from scratch against pre-trained',
               note='VOC07 test mAP (11-point, the devkit\'s). Paper: R101-FPN, VOC07+12 train, VOC12 val.')
    p.column('scratch', 'mAP, from scratch', metric='test_mAP', paper={'VOC': 77.6})
    p.column('pretrained', 'mAP, pre-trained', metric='test_mAP', paper={'VOC': 82.7})
    arch = c.pick(TOY_ARCH, REAL_ARCH)
    for seed in c.seeds:
        pre = c.pretrain(c.full(), seed, *(TOY_PRETRAIN_GN if c.toy else ['--norm', 'gn']), tag='gn', arch=arch)
        # toy: 3x of the toy COCO's units for both; real: the paper's 144K (1.6x) and 18K (0.2x)
        p.row('VOC', seed, scratch=coco_run(c, None, seed, 'VOC', c.pick('3x', '1.6x'), voc=True),
              pretrained=coco_run(c, pre, seed, 'VOC', c.pick('3x', '0.2x'), voc=True))
    return p


def plan(c):
    p = c.plan('rethinking_scratch', 'He et al. 2019: from scratch against pre-trained (SUN397 mean class acc., %)', layout='curve',
               xlabel='fine-tuning schedule (x the 1x length)', overlay=True)
    p.column('pretrained', 'pre-trained on ImageNet')
    p.column('scratch', 'from scratch')
    full = c.full()
    for m in ((1, 2) if c.quick else (1, 2, 3)):
        for seed in c.seeds:
            run = c.pretrain(full, seed)
            p.row(f'{m}x', seed, x=m, pretrained=c.sun(run, seed, schedule=m), scratch=c.sun(None, seed, schedule=m))
    return p


PLANS = (plan, plan_coco, plan_voc)  # experiments/paper.py runs all three


if __name__ == '__main__':
    common.main(*PLANS, doc=__doc__)
