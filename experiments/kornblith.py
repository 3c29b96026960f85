"""Kornblith et al. 2019, "Do Better ImageNet Models Transfer Better?": networks x twelve data sets x three protocols,
the correlation of ImageNet and transfer accuracy, and the regularisers that hurt transfer.

    python experiments/kornblith.py --toy                          # 4 toy networks x 12 toy data sets x 3 protocols
    python experiments/kornblith.py --data-root /data --dry-run    # the 16 networks, pre-trained here: the full grid
    python experiments/kornblith.py --data-root /data --published experiments/kornblith_published.tsv --dry-run
    python experiments/kornblith.py --toy --datasets dtd pets --protocols linear     # a part of the grid

Protocols, each a `finetune.py DATASET` run per network and data set (README, "Kornblith et al. 2019"):
    linear    fixed features: L2 logistic regression by L-BFGS on penultimate features, the strength chosen on
              validation from 45 values, refit on train + val (--mode linear)
    finetune  fine-tuning with the paper's search: 7 lrs x 8 weight decays chosen on validation, the best retrained
              on train + val (--recipe kornblith: SGD Nesterov, batch 256, 20K steps)
    scratch   the same architecture from random initialisation, 40K steps, its own grid (--init scratch); one per
              architecture, shared by its networks
Networks: each of --archs pre-trained here with one recipe, its ImageNet top-1 from its own validation; ResNet-50
(on the toy data, the first architecture) also with the regularisers the paper found to hurt transfer (label
smoothing; AlexNet: no dropout; ResNets: BN without scale, no weight decay on BN; the toy keeps the first) and, on
the toy data, with fewer images a class for a spread of ImageNet accuracies. With --published TABLE the networks are published weights instead, with the top-1 the table
gives. The report draws transfer accuracy (log odds) against ImageNet top-1, one panel per data set and protocol,
with Pearson r and a bootstrap interval beside the paper's r.
"""
import os

import common
from common import PlanError

DATASETS = ('food101', 'cifar10', 'cifar100', 'birdsnap', 'sun397', 'cars', 'aircraft', 'voc07-cls', 'dtd', 'pets',
            'caltech101', 'flowers102')  # the paper's Table 1 order
PROTOCOLS = ('linear', 'finetune', 'scratch')
# (train + val, test) images for the GPU-hour estimate, from each data set's own documentation (Birdsnap: the listed
# images; fewer can be downloaded). The test set is also what the validation passes cost, about.
SIZES = {'food101': (75750, 25250), 'cifar10': (50000, 10000), 'cifar100': (50000, 10000), 'birdsnap': (47386, 2443),
         'sun397': (19850, 19850), 'cars': (8144, 8041), 'aircraft': (6667, 3333), 'voc07-cls': (5011, 4952),
         'dtd': (3760, 1880), 'pets': (3680, 3669), 'caltech101': (3060, 6084), 'flowers102': (2040, 6149)}
# The paper's r between ImageNet top-1 and transfer accuracy (log odds) over its 16 networks, averaged over the 12
# data sets (abstract, v3: fixed features 0.99, fine-tuning 0.96). Its per-data-set and random-initialisation
# values were not reachable: the report shows "—" there.
PAPER_R = {'linear': 0.99, 'finetune': 0.96}
# Toy recipes: the toy networks' 96 px input (common.TOY_NET), short schedules, grids of two lrs (the paper's 56
# points would take hours on a CPU). The toy sets have 4-6 training images a class.
TOY_FINETUNE = ['--iters', '40', '--batch-size', '8', '--lr-grid', '0.003', '0.03', '--wd-grid', '0',
                '--save-every', '40', '--log-every', '20']
TOY_LINEAR = ['--lambdas', '1e-4', '1e-3', '1e-2', '0.1', '1', '10']  # the paper's 45 strengths: minutes a toy run
TOY_SCRATCH = ['--iters', '80', '--batch-size', '8', '--lr-grid', '0.01', '0.1', '--wd-grid', '0',
               '--save-every', '80', '--log-every', '20']
# The toy networks: the Caffe AlexNet and torchvision's (no LRN, no groups, other widths), both at a quarter width
# (common.TOY_ALEXNET). A toy ResNet-18 pre-training takes about 12x the toy AlexNet's time on a 2-core CPU: add it
# with --archs alexnet alexnet_tv resnet18 where there is time.
TOY_ARCHS = ('alexnet', 'alexnet_tv')


def add_args(p):
    k = p.add_argument_group('kornblith.py')
    k.add_argument('--archs', nargs='+', default=None,
                   help='networks to pre-train and compare (default: the paper\'s 16, models.KORNBLITH; toy: alexnet alexnet_tv)')
    k.add_argument('--datasets', nargs='+', choices=DATASETS, default=list(DATASETS), metavar='NAME',
                   help='data sets (default: all 12): ' + ' '.join(DATASETS))
    k.add_argument('--protocols', nargs='+', choices=PROTOCOLS, default=list(PROTOCOLS))
    k.add_argument('--transfer-root', default=None,
                   help='folder holding one folder per data set, named as --datasets (default: DATA_ROOT/transfer; '
                        'SUN397 and VOC 2007 come from --sun397 and --voc)')
    k.add_argument('--published', default=None,
                   help='TSV of published networks instead of pre-training: arch, weights (torchvision:IMAGENET1K_V1, '
                        'timm:DEFAULT or a file), ImageNet top-1 (%%); see experiments/kornblith_published.tsv')


def read_published(path):
    """[(arch, weights, top-1)] of a --published table; a malformed line is a PlanError naming it."""
    try:
        lines = open(path).read().splitlines()
    except OSError as e:
        raise PlanError(f'--published {path}: {e.strerror}')
    nets = []
    for i, line in enumerate(lines, 1):
        if not line.strip() or line.startswith('#'):
            continue
        parts = line.split('\t')
        try:
            arch, weights, top1 = parts[0], parts[1], float(parts[2])
        except (IndexError, ValueError):
            raise PlanError(f'{path} line {i}: expected arch<TAB>weights<TAB>ImageNet top-1 (%), got {line!r}')
        nets.append((arch, weights, top1))
    if not nets:
        raise PlanError(f'--published {path} lists no network')
    return nets


def networks(c):
    """[(label, arch, run directory or None, init flags, ImageNet top-1 or None)]: pre-trained here, or published."""
    a = c.args
    if a.published:
        return [(f'{arch} ({weights})', arch, None, ['--init', weights, '--arch', arch], top1)
                for arch, weights, top1 in read_published(a.published)]
    import models
    archs = a.archs or (TOY_ARCHS if c.toy else list(models.KORNBLITH.values()))
    full, nets = c.full(), []
    for arch in archs:
        nets.append((arch, arch, c.pretrain(full, c.seeds[0], arch=arch), None, None))
    first = 'resnet50' if not c.toy and 'resnet50' in archs else archs[0]  # regularisers: a network with BN and dropout
    regs = [('label smoothing 0.1', 'ls0.1', ['--label-smoothing', '0.1'])]
    regs += ([('no dropout', 'dropout0', ['--dropout', '0'])] if first.startswith('alexnet') else
             [('BN without scale', 'bn-noscale', ['--norm', 'bn-noscale']), ('no weight decay on BN', 'no-wd-norm', ['--no-wd-norm'])])
    if c.toy:  # one regulariser on the toy data: each toy network costs ~15 CPU-minutes of transfers
        regs = regs[:1]
    for label, tag, flags in regs:
        nets.append((f'{first}, {label}', first, c.pretrain(full, c.seeds[0], *flags, tag=tag, arch=first), None, None))
    c.regularisers = [first] + [f'{first}, {label}' for label, _, _ in regs]
    if c.toy:  # a spread of ImageNet accuracies at one architecture
        n = 15
        sub = c.subset('full', f'images-{n}', '--per-class', str(n), '--if-short', 'all', per_class=n)
        nets.append((f'{first}, {n} images a class', first, c.pretrain(sub, c.seeds[0], arch=first), None, None))
    return nets


def data_flags(c, dataset):
    if dataset == 'sun397':
        return ['--sun-root', c.sun_root, '--recipe', 'kornblith'], (os.path.join(c.sun_root, 'Partitions'), 'SUN397 (Partitions/)')
    if dataset == 'voc07-cls':
        return ['--data', c.voc_root], (os.path.join(c.voc_root, 'VOC2007', 'ImageSets', 'Main'), 'VOC 2007 (--voc)')
    root = os.path.join(c.args.transfer_root or os.path.join(c.args.data_root, 'transfer'), dataset)
    return ['--data', root], (root, f'{dataset} in its official layout (--transfer-root; README, "Kornblith et al. 2019")')


def transfer(c, net, dataset, protocol, seed):
    """One finetune.py run of the grid; returns its directory."""
    label, arch, run, init, _ = net
    flags, needed = data_flags(c, dataset)
    if protocol == 'scratch':  # one per architecture: pre-training plays no part
        base = os.path.join(c.out, f'scratch-{arch.replace(":", "-")}-s{seed}')
        init, mode, toy = ['--init', 'scratch', '--arch', arch] + c.net_flags(arch), 'finetune', TOY_SCRATCH
    else:
        base = run or os.path.join(c.out, f'published-{arch.replace(":", "-")}')
        init = init or ['--init', os.path.join(run, 'checkpoint.pth')]
        mode, toy = ('linear', TOY_LINEAR) if protocol == 'linear' else ('finetune', TOY_FINETUNE)
    out = os.path.join(base, 'kornblith', f'{dataset}-{protocol}')
    cmd = ['python', 'finetune.py', dataset, *flags, *init, '--mode', mode, '--out', out, '--seed', str(seed)]
    cmd += toy if c.toy else []
    train_n, test_n = SIZES[dataset]
    if protocol == 'linear':
        cost = (0, train_n + test_n)
    else:
        iters, batch = int(common.flag(cmd, '--iters', 40000 if protocol == 'scratch' else 20000)), int(common.flag(cmd, '--batch-size', 256))
        points = 2 if c.toy else 7 * 8  # the grid, then the final run on train + val
        cost = ((points + 1) * iters * batch, points * test_n + test_n)
    key = c.add(out, cmd, 'transfer.json', 'transfer', f'{dataset} {protocol} of {label}', needs=[run], cost=cost,
                inputs=[needed])
    c.steps[key]['arch'] = arch
    return out


def plan(c):
    a = c.args
    p = c.plan('kornblith', 'Kornblith et al. 2019: transfer accuracy against ImageNet top-1', layout='kornblith',
               xlabel='ImageNet val top-1 (%)',
               note='Transfer in log odds, log(p / (1 - p)), of the test measure (top-1, mean per-class accuracy, or '
                    '11-point mAP); r: Pearson\'s over the networks, with a 95% bootstrap interval (resampling networks).')
    p.column('imagenet', 'ImageNet val top-1 (%)', file='metrics.json', metric='val_top1')
    for d in a.datasets:
        for proto in a.protocols:
            p.column(f'{d}/{proto}', f'{d} {proto}', metric='test_score', paper=None)
    p.extras['paper_r'] = {k: v for k, v in PAPER_R.items() if k in a.protocols}
    p.extras['datasets'], p.extras['protocols'] = list(a.datasets), list(a.protocols)
    c.regularisers = []
    nets = networks(c)
    p.extras['regularisers'] = c.regularisers  # the rows of the regulariser comparison
    archs = set()
    for net in nets:
        label, arch, run, _, top1 = net
        seed = c.seeds[0]  # one run a network: the spread the study measures is across networks
        # scratch is one run per architecture: only its first network's row holds it (one point an architecture)
        protos = [p_ for p_ in a.protocols if p_ != 'scratch' or arch not in archs]
        archs.add(arch)
        runs = {f'{d}/{proto}': transfer(c, net, d, proto, seed) for d in a.datasets for proto in protos}
        p.row(label, seed, x=top1, imagenet=run, **runs)
    return p


if __name__ == '__main__':
    common.main(plan, doc=__doc__)
