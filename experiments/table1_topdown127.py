"""Paper Table 1: 127 coarse classes (WordNet top-down) against the 1000 fine classes.

    python experiments/table1_topdown127.py --toy                        # toy: the 20 classes fall into 6
    python experiments/table1_topdown127.py --data-root /data --dry-run

Both networks see the same images; the 127-class one sees coarser labels. Measures: SUN397 fine-tuning and the
ImageNet last layer on the 1000 fine classes.
"""
import common


def plan(c):
    p = c.plan('table1_topdown127', 'Table 1: 127 top-down classes against 1000 classes')
    p.column('sun', 'SUN-CLS mean class acc. (%)')
    p.column('imagenet', 'ImageNet fine classes, last layer: top-1 (%)', metric='test_top1')
    p.column('voc07', 'VOC07 detection mAP (%)', paper={'1000 classes': 58.3}, metric='test_mAP')
    full = c.full()
    coarse = c.subset('taxonomy', 'top-down-127', '--method', 'top-down', '--num-classes', '127')
    rows = (('1000 classes', full, '1000 classes'), ('127 classes', coarse, '127 classes'))
    if c.toy:  # the toy index's 20 classes fall into 6 of the 127
        rows = (('20 classes', full, '1000 classes'), ('6 classes (top-down 127)', coarse, '127 classes'))
    for label, subset, paper in rows:
        for seed in c.seeds:
            run = c.pretrain(subset, seed)
            p.row(label, seed, paper_as=paper, sun=c.sun(run, seed), imagenet=c.last_layer(run, full, seed),
                  voc07=c.voc_transfer(run, seed, 'detection'))
    return p


if __name__ == '__main__':
    common.main(plan, doc=__doc__)
