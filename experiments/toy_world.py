"""The toy world against the real one (issue 15): does the toy recipe behave as the paper's data does?

    python experiments/toy_world.py --toy --seeds 0 1 2          # then: python eval/report.py runs/paper-toy
    python experiments/toy_world.py --toy --seeds 0 1 2 --dry-run

Two checks, averaged over the seeds by eval/report.py (mean +- std):
  images per class   toy val top-1 after pre-training on 15, 30, 60 images of every class: more pre-training
                     images must never give a lower val top-1 (Fig. 1's pre-training column);
  pre-trained vs scratch   every toy transfer task (SUN397 fine-tuning, VOC07 detection, VOC12 actions) from the
                     full toy pre-training and from random initialisation, at the same recipe: pre-trained must win.
Toy data only: on real data these are the paper's own experiments (Fig. 1, Table 3, rethinking_scratch).
"""
import common


def plan(c):
    if not c.toy:
        raise common.PlanError('toy_world checks the toy recipes: pass --toy')
    p = c.plan('toy_world_images', 'Toy world: pre-training val top-1 against images per class', layout='curve',
               xlabel='images per class')
    p.column('pretrain', 'pre-training val top-1 (%)', file='metrics.json', metric='val_top1')
    for n in (15, 30, 60):
        subset = c.full() if n == 60 else c.subset('full', f'images-{n}', '--per-class', str(n), '--if-short', 'all',
                                                    per_class=n)
        for seed in c.seeds:
            p.row(n, seed, x=n, pretrain=c.pretrain(subset, seed))
    q = c.plan('toy_world_transfer', 'Toy world: pre-trained against from scratch on every toy transfer task')
    q.column('sun', 'SUN397 mean class acc. (%)')
    q.column('voc07', 'VOC07 detection mAP (%)', metric='test_mAP')
    q.column('voc12', 'VOC12 action mAP (%)', metric='test_mAP')
    full = c.full()
    for seed in c.seeds:
        run = c.pretrain(full, seed)
        q.row('pre-trained (toy ImageNet, 20 classes)', seed, sun=c.sun(run, seed),
              voc07=c.voc_transfer(run, seed, 'detection', in_quick=True), voc12=c.voc_transfer(run, seed, 'action', in_quick=True))
        q.row('from scratch', seed, sun=c.sun(None, seed), voc07=c.voc_transfer(None, seed, 'detection', in_quick=True),
              voc12=c.voc_transfer(None, seed, 'action', in_quick=True))
    return p, q


if __name__ == '__main__':
    common.main(plan, doc=__doc__)
