"""Paper Fig. 4: induction accuracy. Do features learnt on coarse classes tell the fine classes apart?

    python experiments/fig4_induction.py --toy                        # toy: 20 fine classes; nets on 20, 6, 3 classes
    python experiments/fig4_induction.py --data-root /data --dry-run

Networks pre-trained on the 1000 classes (the baseline), on the 127 top-down classes and on the 79 bottom-up
classes; each is measured by nearest neighbours on fc7 (`finetune.py knn`): the database is the train images of
the 1000 fine classes, the queries their val images. The paper plots this over training; this plan measures
the finished networks.
"""
import common


def plan(c):
    p = c.plan('fig4_induction', 'Fig. 4: induction accuracy (kNN on fc7 over the fine classes)')
    p.column('top1', 'kNN top-1 on fine classes (%)', metric='knn_top1')
    p.column('top5', 'kNN top-5 on fine classes (%)', metric='knn_top5')
    full = c.full()
    nets = (('1000 fine classes', full),
            ('127 coarse classes (top-down)', c.subset('taxonomy', 'top-down-127', '--method', 'top-down', '--num-classes', '127')),
            ('79 coarse classes (bottom-up)', c.subset('taxonomy', 'bottom-up-79', '--method', 'bottom-up', '--num-classes', '79')))
    toy_names = ('20 fine classes', '6 coarse classes (top-down 127)', '3 coarse classes (bottom-up 79)')
    for (label, subset), toy_label in zip(nets, toy_names):
        for seed in c.seeds:
            run = c.pretrain(subset, seed)
            knn = c.knn(run, full)
            p.row(toy_label if c.toy else label, seed, top1=knn, top5=knn)
    return p


if __name__ == '__main__':
    common.main(plan, doc=__doc__)
