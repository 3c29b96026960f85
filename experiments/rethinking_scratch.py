"""He et al. 2019, "Rethinking ImageNet Pre-training": from scratch against pre-trained, at 1x, 2x, 3x schedules.

    python experiments/rethinking_scratch.py --toy                       # toy: 150, 300, 450 fine-tuning iterations
    python experiments/rethinking_scratch.py --data-root /data --dry-run # 50K, 100K, 150K iterations on SUN397

The same network fine-tuned on SUN397 from the full-ImageNet pre-training and from random initialisation
(`finetune.py --init scratch`), with the same recipe and the schedule stretched 1x, 2x, 3x (the length and
the LR steps). He et al. find that from scratch catches up given a long enough schedule (on COCO detection,
with GroupNorm: pass --arch resnet50 and add --norm gn to both by forking this script).
"""
import common


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


if __name__ == '__main__':
    common.main(plan, doc=__doc__)
