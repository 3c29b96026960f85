"""Kornblith et al. 2019, "Do Better ImageNet Models Transfer Better?": fixed features against fine-tuning,
the regularisers that hurt transfer, and the rank correlation of ImageNet and transfer accuracy.

    python experiments/kornblith.py --toy
    python experiments/kornblith.py --data-root /data --dry-run
    python experiments/kornblith.py --data-root /data --arch resnet50 --dry-run     # with the BN regularisers

Every network is measured three ways: ImageNet val top-1 (of its own pre-training), a linear probe on frozen
penultimate features (L2 logistic regression, `--mode linear`) and full fine-tuning on SUN397. The networks:
the baseline, one per regulariser (label smoothing 0.1; AlexNet: no dropout; ResNets: BN without its scale,
no weight decay on BN parameters), and two with fewer images per class for a spread of ImageNet accuracies.
The report gives the Spearman rank correlation between ImageNet top-1 and each transfer measure.
"""
import common


def plan(c):
    p = c.plan('kornblith', 'Kornblith et al. 2019: linear probe, fine-tuning, regularisers', layout='correlation',
               xlabel='ImageNet val top-1 (%)')
    p.column('imagenet', 'ImageNet val top-1 (%)', file='metrics.json', metric='val_top1')
    p.column('linear', 'SUN397 linear probe: mean class acc. (%)')
    p.column('finetune', 'SUN397 fine-tuned: mean class acc. (%)')
    full = c.full()
    regs = [('label smoothing 0.1', 'ls0.1', ['--label-smoothing', '0.1'])]
    if c.arch.startswith('alexnet'):
        regs.append(('no dropout', 'dropout0', ['--dropout', '0']))
    else:
        regs += [('BN without scale', 'bn-noscale', ['--norm', 'bn-noscale']),
                 ('no weight decay on BN', 'no-wd-norm', ['--no-wd-norm'])]
    nets = [('baseline', full, None, [])] + [(label, full, tag, flags) for label, tag, flags in regs]
    for n in c.pick(toy=(30, 15), real=(500, 250)):
        nets.append((f'{n} images per class', c.subset('full', f'images-{n}', '--per-class', str(n), '--if-short', 'all',
                                                       per_class=n), None, []))
    for label, subset, tag, flags in nets:
        for seed in c.seeds:
            run = c.pretrain(subset, seed, *flags, tag=tag)
            p.row(label, seed, imagenet=run, linear=c.sun(run, seed, mode='linear'), finetune=c.sun(run, seed))
    return p


if __name__ == '__main__':
    common.main(plan, doc=__doc__)
