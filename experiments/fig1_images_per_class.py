"""Paper Fig. 1: transfer against the number of pre-training images per class (all 1000 classes).

    python experiments/fig1_images_per_class.py --toy                          # toy: 15, 30, 60 images per class
    python experiments/fig1_images_per_class.py --data-root /data --dry-run    # 50 ... 1000 per class, GPU hours
    python experiments/fig1_images_per_class.py --data-root /data --seeds 0 1 2

Each point pre-trains on `subsets.py make full --per-class N` and fine-tunes on SUN397. The 1000 point is full
ImageNet (about 1,281 images per class), the paper's baseline. On toy data 60 (all) / 30 / 15 images per class
stand for the paper's 1000 / 500 / 250.
"""
import common

# Paper (Huh et al. 2016, Fig. 1 and Table 2): VOC07 detection mAP by images per class.
PAPER_DET = {1000: 58.3, 500: 57.0, 250: 54.6}


def plan(c):
    p = c.plan('fig1_images_per_class', 'Fig. 1: pre-training images per class', layout='curve', xlabel='images per class')
    # The pre-training task beside the transfers: ImageNet accuracy keeps rising with data while transfer
    # saturates (paper §4)
    p.column('pretrain', 'pre-training val top-1 (%)', file='metrics.json', metric='val_top1')
    p.column('sun', 'SUN-CLS mean class acc. (%)')
    p.column('voc07', 'VOC07 detection mAP (%)', paper=PAPER_DET, metric='test_mAP')
    full_n = c.pick(toy=60, real=1000)
    points = c.pick(toy=(15, 30, 60), real=(50, 125, 250, 500, 1000))
    analog = dict(zip(points, c.pick(toy=(250, 500, 1000), real=points)))  # the paper's point each stands for
    for n in points:
        subset = c.full() if n == full_n else c.subset('full', f'images-{n}', '--per-class', str(n), '--if-short', 'all',
                                                       per_class=n)
        for seed in c.seeds:
            run = c.pretrain(subset, seed)
            p.row(n, seed, x=n, paper_as=analog[n], pretrain=run, sun=c.sun(run, seed),
                  voc07=c.voc_transfer(run, seed, 'detection'))
    return p


if __name__ == '__main__':
    common.main(plan, doc=__doc__)
