"""Paper Table 3: ImageNet without the PASCAL classes.

    python experiments/table3_pascal_removed.py --toy                       # toy: 8 of the 20 classes remain
    python experiments/table3_pascal_removed.py --data-root /data --dry-run

Pre-training on ImageNet with the authors' 229 PASCAL-like classes removed (771 remain), against all 1000.
The paper's VOC07 detection: 58.3 (1000 classes), 57.8 (PASCAL removed), 53.8 (Places, a scene data set).
With --places ROOT the plan pre-trains on Places too (Places365-Standard's list files, or class folders):

    python experiments/table3_pascal_removed.py --toy --places data/toy/Places365
"""
import common

PAPER_DET = {'ImageNet (1000 classes)': 58.3, 'PASCAL removed (771 classes)': 57.8, 'Places (205 scenes)': 53.8}


def plan(c):
    p = c.plan('table3_pascal_removed', 'Table 3: PASCAL classes removed from pre-training',
               note='' if c.args.places else 'Places is planned with --places ROOT.')
    p.column('sun', 'SUN-CLS mean class acc. (%)')
    p.column('voc07', 'VOC07 detection mAP (%)', paper=PAPER_DET, metric='test_mAP')
    p.column('voc12', 'VOC12 action mAP (%)', metric='test_mAP')
    full, removed = c.full(), c.subset('pascal-removed', 'pascal-removed', leaves=c.pick(toy=8, real=771))
    names = c.pick(toy=['toy ImageNet (20 classes)', 'PASCAL removed (8 classes)'], real=list(PAPER_DET)[:2])
    subsets = [full, removed]
    if c.args.places:  # the paper's is Places205; Places365-Standard's lists are the ones distributed today
        names.append(c.pick(toy='toy Places (8 scenes)', real='Places'))
        subsets.append(c.places())
    for label, subset, paper in zip(names, subsets, PAPER_DET):
        for seed in c.seeds:
            run = c.pretrain(subset, seed)
            p.row(label, seed, paper_as=paper, sun=c.sun(run, seed), voc07=c.voc_transfer(run, seed, 'detection', in_quick=True),
                  voc12=c.voc_transfer(run, seed, 'action'))
    return p


if __name__ == '__main__':
    common.main(plan, doc=__doc__)
