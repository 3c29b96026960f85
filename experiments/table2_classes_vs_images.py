"""Paper Table 2: for the same number of images, more classes or more images per class?

    python experiments/table2_classes_vs_images.py --toy                      # toy: 20 x 30 vs 10 x 60, 20 x 15 vs 5 x 60
    python experiments/table2_classes_vs_images.py --data-root /data --dry-run

Real data: 1000 classes x 500 / 250 / 125 images against 500 / 250 / 125 classes x 1000 images (classes drawn
uniformly, `subsets.py make classes`). Toy data: 20 classes x 30 / 15 images against 10 / 5 classes x 60.
"""
import common

PAPER_DET = {'1000 x 500': 57.0, '1000 x 250': 54.6}  # Huh et al. 2016: VOC07 detection mAP


def plan(c):
    p = c.plan('table2_classes_vs_images', 'Table 2: more classes or more images per class')
    p.column('pretrain', 'pre-training val top-1 (%)', file='metrics.json', metric='val_top1')
    p.column('sun', 'SUN-CLS mean class acc. (%)')
    p.column('voc07', 'VOC07 detection mAP (%)', paper=PAPER_DET, metric='test_mAP')
    classes, per = c.sizes['classes'], c.pick(toy=60, real=1000)
    splits = c.pick(toy=(2, 4), real=(2, 4, 8))  # the budget is 1/2, 1/4 (and 1/8) of classes x per
    for d in splits:
        paper = {2: '1000 x 500', 4: '1000 x 250', 8: '1000 x 125'}[d]
        images = c.subset('full', f'images-{per // d}', '--per-class', str(per // d), '--if-short', 'all', per_class=per // d)
        fewer = c.subset('classes', f'classes-{classes // d}x{per}', '--num-classes', str(classes // d), '--per-class',
                         str(per), '--if-short', 'all', leaves=classes // d, per_class=per)
        for label, subset in ((f'{classes} x {per // d}', images), (f'{classes // d} x {per}', fewer)):
            for seed in c.seeds:
                run = c.pretrain(subset, seed)
                p.row(label, seed, paper_as=paper if subset == images else None, pretrain=run, sun=c.sun(run, seed),
                      voc07=c.voc_transfer(run, seed, 'detection'))
    return p


if __name__ == '__main__':
    common.main(plan, doc=__doc__)
