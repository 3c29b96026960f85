"""Paper Fig. 2: transfer against the number of pre-training classes (bottom-up WordNet taxonomies).

    python experiments/fig2_num_classes.py --toy                          # toy: 20, 12, 5, 3 classes
    python experiments/fig2_num_classes.py --data-root /data --dry-run    # 1000, 918, 753, 486, 79, 9 classes

Every point keeps all the images and merges classes up the WordNet tree (`subsets.py make taxonomy --method
bottom-up`). Two measures: SUN397 fine-tuning, and the paper's ImageNet line: a new last layer trained on the
1000 original classes over the frozen network (`finetune.py manifest --mode last`). On the toy index the
918/753/486/79 taxonomies keep 19/12/5/3 classes (9 keeps one, which cannot be trained).
"""
import common


def plan(c):
    p = c.plan('fig2_num_classes', 'Fig. 2: number of pre-training classes (bottom-up taxonomies)', layout='curve',
               xlabel='pre-training classes')
    p.column('pretrain', 'pre-training val top-1 (%)', file='metrics.json', metric='val_top1',
             note='on its own classes: fewer, coarser classes are easier')
    p.column('sun', 'SUN-CLS mean class acc. (%)')
    if not c.quick:
        p.column('imagenet', 'ImageNet fine classes, last layer: top-1 (%)', metric='test_top1')
    p.column('voc07', 'VOC07 detection mAP (%)', metric='test_mAP', note='the paper gives no table of these points')
    full = c.full()
    # (taxonomy size asked for, classes it has on this index): the toy index holds 20 of the 1000 classes
    points = c.pick(toy=((1000, 20), (753, 12), (486, 5), (79, 3)), real=((1000, 1000), (918, 918), (753, 753),
                                                                          (486, 486), (79, 79), (9, 9)))
    if c.quick:
        points = points[:3]
    for k, classes in points:
        subset = full if k == 1000 else c.subset('taxonomy', f'bottom-up-{k}', '--method', 'bottom-up', '--num-classes', str(k))
        for seed in c.seeds:
            run = c.pretrain(subset, seed)
            p.row(classes, seed, x=classes, pretrain=run, sun=c.sun(run, seed), imagenet=None if c.quick else c.last_layer(run, full, seed),
                  voc07=c.voc_transfer(run, seed, 'detection'))
    return p


if __name__ == '__main__':
    common.main(plan, doc=__doc__)
