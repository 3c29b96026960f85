"""Paper Fig. 6: coarse against fine accuracy of the network trained on all classes.

    python experiments/fig6_coarse_fine.py --toy
    python experiments/fig6_coarse_fine.py --data-root /data --dry-run

For each of the 127 top-down classes with at least 5 fine classes (2 on toy data), coarse accuracy (the
predicted fine class falls in the right coarse class) minus the mean accuracy of its fine classes
(`finetune.py coarse-fine`). The report draws the classes with the largest and smallest differences.
"""
import common


def plan(c):
    p = c.plan('fig6_coarse_fine', 'Fig. 6: coarse against fine accuracy')
    p.column('difference', 'mean of coarse - fine accuracy (points)', metric='mean_difference')
    p.column('classes', 'coarse classes with enough fine classes', metric='coarse_classes')
    full = c.full()
    runs = []
    for seed in c.seeds:
        run = c.coarse_fine(c.pretrain(full, seed), full)
        p.row(c.pick(toy='toy ImageNet (20 classes)', real='ImageNet (1000 classes)'), seed, difference=run, classes=run)
        runs.append(c.rel(run))
    p.extras['coarse_fine'] = runs
    return p


if __name__ == '__main__':
    common.main(plan, doc=__doc__)
