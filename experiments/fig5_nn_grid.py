"""Paper Fig. 5: nearest neighbours in the fc7 space of a network trained on coarse classes.

    python experiments/fig5_nn_grid.py --toy
    python experiments/fig5_nn_grid.py --data-root /data --dry-run
    python experiments/fig5_nn_grid.py neighbours --subset subsets/toy/full --init runs/paper-toy/full-alexnet-s0/checkpoint.pth --out /tmp/nn

A few val images (queries) of the fine classes and their nearest train images by fc7 features, for the network
trained on the 127 top-down classes and, beside it, the one trained on all classes. The report draws them as
the paper does: a neighbour framed green is of the query's fine class, orange of its coarse class (top-down
127) only, red of neither. The `neighbours` command is the step that finds them (it writes neighbours.tsv).
"""
import argparse
import json
import os
import sys

import common


def plan(c):
    p = c.plan('fig5_nn_grid', 'Fig. 5: nearest neighbours (green: same fine class, orange: same coarse class, red: neither)')
    p.column('fine', 'neighbours of the same fine class (%)', metric='fine_correct')
    p.column('coarse', 'neighbours of the same coarse class (%)', metric='coarse_correct')
    full = c.full()
    coarse = c.subset('taxonomy', 'top-down-127', '--method', 'top-down', '--num-classes', '127')
    p.extras['nn_grid'] = []
    for label, subset in ((c.pick(toy='6 coarse classes (top-down 127)', real='127 coarse classes'), coarse),
                          (c.pick(toy='20 fine classes', real='1000 fine classes'), full)):
        for seed in c.seeds:
            nn = c.neighbours(c.pretrain(subset, seed), full, queries=c.pick(toy=6, real=8))
            p.row(label, seed, fine=nn, coarse=nn)
            if seed == c.seeds[0]:
                p.extras['nn_grid'].append([label, c.rel(nn)])
    return p


# ----------------------------------------------------------------------------------------------------------
# The step: find the neighbours (a plan step, like finetune.py knn, but keeping which images they are)


def neighbours_main(argv):
    ap = argparse.ArgumentParser(prog='fig5_nn_grid.py neighbours', description='nearest train images of a few val images')
    ap.add_argument('--subset', required=True, help='a subsets.py folder of leaf classes: database train.txt, queries val.txt')
    ap.add_argument('--init', required=True, help='a wmig checkpoint')
    ap.add_argument('--out', required=True)
    ap.add_argument('--queries', type=common.ranged(int, 1), default=8, help='val images, spread evenly over the classes')
    ap.add_argument('--k', type=common.ranged(int, 1), default=5, help='neighbours per query')
    ap.add_argument('--metric', default='l2', choices=('l2', 'cosine'))
    ap.add_argument('--workers', type=common.ranged(int, 1), default=min(8, len(os.sched_getaffinity(0))))
    args = ap.parse_args(argv)
    import engine
    import finetune
    import models
    import subsets
    from datasets import read_manifest, read_tsv, write_manifest
    from eval.metrics import knn

    def run(args):
        a = argparse.Namespace(init=args.init, arch=None, width=None, crop=None, resize=None, workers=args.workers,
                               eval_batch_size=100)
        model, _ = finetune.network(a)
        root = engine.read_json(os.path.join(args.subset, 'meta.json'), ['root'])['root']
        wnid = {int(r[0]): r[1] for r in read_tsv(os.path.join(args.subset, 'classes.tsv'))[1:]}
        coarse = subsets.taxonomy('top-down', 127)
        train, val = (read_manifest(os.path.join(args.subset, f'{s}.txt')) for s in ('train', 'val'))
        step = max(1, len(val) // args.queries)
        queries = sorted(val)[step // 2::step][:args.queries]
        os.makedirs(args.out, exist_ok=True)
        write_manifest(os.path.join(args.out, 'queries.txt'), queries)
        device, amp = finetune.device_and_amp()
        model = model.to(device).eval()
        db, db_labels = engine.extract(lambda x: models.features(model, x), finetune.loader(a, root, os.path.join(args.subset, 'train.txt')), device, amp)
        q, q_labels = engine.extract(lambda x: models.features(model, x), finetune.loader(a, root, os.path.join(args.out, 'queries.txt')), device, amp)
        _, idx = knn(q.to(device), db.to(device), args.k, args.metric)
        lines, fine, same_coarse = [f'# root\t{root}\n', 'query\tquery_wnid\trank\tpath\twnid\tverdict\n'], 0, 0
        for i, (path, label) in enumerate(queries):
            assert int(q_labels[i]) == label  # the loader kept the manifest's order
            lines.append(f'{path}\t{wnid[label]}\t0\t{path}\t{wnid[label]}\tquery\n')
            for r, j in enumerate(idx[i].tolist(), 1):
                npath, nlab = train[j]
                assert int(db_labels[j]) == nlab
                verdict = 'fine' if nlab == label else 'coarse' if coarse.get(wnid[nlab]) == coarse.get(wnid[label]) else 'wrong'
                fine += verdict == 'fine'
                same_coarse += verdict != 'wrong'
                lines.append(f'{path}\t{wnid[label]}\t{r}\t{npath}\t{wnid[nlab]}\t{verdict}\n')
        n = len(queries) * idx.shape[1]
        engine.start_run_dir(args.out, vars(args))
        engine.write_atomic(os.path.join(args.out, 'neighbours.tsv'), ''.join(lines))
        result = {'task': 'neighbours', 'queries': len(queries), 'k': idx.shape[1], 'fine_correct': 100 * fine / n,
                  'coarse_correct': 100 * same_coarse / n, 'finetune_args': vars(args)}
        engine.write_atomic(os.path.join(args.out, 'transfer.json'), json.dumps(result, indent=1, sort_keys=True) + '\n')
        print(f'{len(queries)} queries x {idx.shape[1]} neighbours: {result["fine_correct"]:.1f}% of the same fine class, '
              f'{result["coarse_correct"]:.1f}% of the same coarse class -> {os.path.join(args.out, "neighbours.tsv")}')
    engine.run_main(run, args)


if __name__ == '__main__':
    if sys.argv[1:2] == ['neighbours']:
        neighbours_main(sys.argv[2:])
    else:
        common.main(plan, doc=__doc__)
