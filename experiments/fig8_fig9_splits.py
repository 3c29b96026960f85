"""Paper Figs. 8 and 9: two halves of the classes, split at random or across a minimal WordNet cut.

    python experiments/fig8_fig9_splits.py --toy                       # toy: random 10/10, minimal 4 (cars) / 16
    python experiments/fig8_fig9_splits.py --data-root /data --dry-run

A network pre-trained on split A is measured on the classes of split B, which it never saw: a new last layer
on B (paper Fig. 9) and nearest neighbours on B; the baseline is the network trained on all classes (A+B).
The minimal split puts every artifact (522 classes) on side A, so B has nothing that looks like A; the random
split mixes everything. Fig. 8 in the report is a collage of sample images of each side.
"""
import common


def plan(c):
    p = c.plan('fig8_fig9_splits', 'Figs. 8, 9: random and minimal splits (pre-train on A, test on B)')
    p.column('last', 'B classes, last layer: top-1 (%)', metric='test_top1')
    p.column('knn', 'B classes, kNN top-1 (%)', metric='knn_top1')
    full = c.full()
    p.extras['collage'] = []
    for split in ('random', 'minimal'):
        sides = {s: c.subset('split', f'split-{split}-{s}', '--split', split, '--side', s,
                             leaves=c.pick(toy={'minimal': {'A': 4, 'B': 16}, 'random': {'A': 10, 'B': 10}},
                                           real={'minimal': {'A': 522, 'B': 478}, 'random': {'A': 500, 'B': 500}})[split][s])
                 for s in 'AB'}
        p.extras['collage'] += [[f'{split} split, side {s}', c.rel(sides[s])] for s in 'AB']
        for label, subset in ((f'{split}: trained on A', sides['A']), (f'{split}: trained on A+B (all classes)', full)):
            for seed in c.seeds:
                run = c.pretrain(subset, seed)
                p.row(label, seed, last=c.last_layer(run, sides['B'], seed), knn=c.knn(run, sides['B']))
    return p


if __name__ == '__main__':
    common.main(plan, doc=__doc__)
