"""Kornblith et al. 2019's protocols in finetune.py: the logistic regression and its choice of strength, and the three
protocols end to end on two toy data sets in their official layouts (one with an official validation split and
single labels, one multi-label), in this process through the real DALI pipeline and train.py."""
import json
import os

import pytest
import torch

import engine
import finetune
from conftest import TINY, run_here
from datasets import TRANSFER_SETS, read_manifest

# Tiny schedules: the protocols' machinery (grid, choice on validation, retraining on train + val), not accuracy
GRID = ['--lr-grid', '0.003', '0.03', '--wd-grid', '0', '--iters', '6', '--batch-size', '8', '--save-every', '6',
        '--log-every', '3', '--workers', '2']


def ft(*argv):
    args, rest = finetune.get_args_parser().parse_known_args(list(argv))
    finetune.main(args, rest)
    return json.load(open(os.path.join(args.out, 'transfer.json')))


def test_logistic_regression_recovers_a_separable_problem_and_validation_picks_the_strength():
    g = torch.Generator().manual_seed(0)
    centres = 4 * torch.randn(3, 20, generator=g)
    y = torch.arange(3).repeat(40)
    x = centres[y] + torch.randn(120, 20, generator=g)
    w, b = finetune.fit_logreg(x, y, 3, 1e-4)
    assert ((x @ w + b).argmax(1) == y).all()  # separable: every training point right
    # Few, unbalanced training points in many noisy dimensions. The strongest strength shrinks the weights to ~0: the
    # unpenalised bias then names the majority class for everything (chance on balanced data). Validation must avoid
    # it, and its choice must be about as good on fresh data as the best strength of the grid.
    d = 100
    centres = torch.randn(3, d, generator=g) * 0.5
    xs = {n: (centres[ys] + torch.randn(len(ys), d, generator=g), ys) for n, ys in
          (('train', torch.tensor([0] * 20 + [1] * 6 + [2] * 4)), ('val', torch.arange(3).repeat(100)),
           ('test', torch.arange(3).repeat(300)))}
    lambdas = [10.0 ** k for k in range(-3, 6)]  # strong enough for every fit to converge in its 300 steps
    best, scores = finetune.choose_lambda(*xs['train'], *xs['val'], 3, lambdas, 'top1')
    assert scores[best] == max(scores.values()) and set(scores) == set(lambdas)

    def test_acc(lam):
        w, b = finetune.fit_logreg(*xs['train'], 3, lam)
        return ((xs['test'][0] @ w + b).argmax(1) == xs['test'][1]).float().mean().item()
    accs = {lam: test_acc(lam) for lam in lambdas}
    assert abs(accs[1e5] - 1 / 3) < 0.01 and best < 1e3
    # measured: 92.4% at the chosen 1e-3 (also the grid's best), 65.7% at 1, 33.3% from 10 up
    assert accs[best] > max(accs.values()) - 0.05 and accs[best] > 0.8


@pytest.mark.parametrize('name', ['dtd', 'voc07-cls'])
def test_three_protocols_end_to_end(toy, pretrained, tmp_path, name):
    """dtd: single label, top-1, an official validation split; voc07-cls: 20 labels an image, 11-point mAP."""
    data = os.path.join(toy['root'], 'VOCdevkit') if name == 'voc07-cls' else os.path.join(toy['root'], 'transfer', name)
    init = ['--init', str(pretrained / 'checkpoint.pth')]
    metric = TRANSFER_SETS[name][0]
    key = {'top1': 'test_top1', 'map11': 'test_mAP'}[metric]

    r = ft(name, '--data', data, *init, '--mode', 'linear', '--lambdas', '1e-2', '1', '--out', str(tmp_path / 'linear'), '--workers', '2')
    assert r['metric'] == metric and r['test_score'] == r[key] and r['lambda'] in (1e-2, 1) and 0 <= r[key] <= 100
    meta = json.load(open(tmp_path / 'linear' / 'data' / 'meta.json'))
    assert meta['val_images'] > 0  # the official validation split

    # scratch: its second lr diverges, as the paper's largest lrs may: that point is left out of the choice
    for proto, extra, lrs in (('finetune', init, ('0.003', '0.03')),
                              ('scratch', ['--init', 'scratch', '--arch', 'alexnet', *TINY], ('0.003', '1000'))):
        out = tmp_path / proto
        r = ft(name, '--data', data, *extra, '--out', str(out), *GRID, '--lr-grid', *lrs)
        # every grid point trained on train and was scored on val; the best was retrained on train + val and tested
        assert set(r['search']) == {f'lr{lr}-wd0' for lr in lrs}
        scored = {k: v for k, v in r['search'].items() if v is not None}
        assert r['search'][f'lr{r["lr"]:g}-wd0'] == max(scored.values())
        if proto == 'scratch':
            assert r['search']['lr1000-wd0'] is None and (out / 'search' / 'lr1000-wd0' / 'diverged.json').exists()
        for point in scored:
            m = json.load(open(out / 'search' / point / 'metrics.json'))
            assert (('val_mAP' in m) == (metric == 'map11')) and m['step'] == 6
        search_meta, final_meta = (json.load(open(out / d / 'meta.json')) for d in ('data', 'data-final'))
        assert final_meta['train_images'] == search_meta['train_images'] + search_meta['val_images'] and final_meta['val_images'] == 0
        args = json.load(open(out / 'args.json'))  # the final train.py run: Kornblith et al.'s optimiser
        assert args['nesterov'] and args['schedule'] == 'cosine' and args['lr'] == r['lr'] and args['wd'] == 0
        assert (args['init'] is None) == (proto == 'scratch') and r['metric'] == metric and r['test_score'] == r[key]
    if metric == 'map11':  # a multi-label manifest: each label is a line of the targets file
        d = tmp_path / 'finetune' / 'data'
        assert len((d / 'train.targets.txt').read_text().splitlines()) == len(read_manifest(str(d / 'train.txt')))


def test_data_set_task_bad_input(toy, tmp_path):
    with pytest.raises(engine.UserError, match=r'food101 needs --data ROOT, its folder in the official layout: ROOT/meta'):
        ft('food101', '--init', 'scratch', '--arch', 'alexnet', '--out', str(tmp_path / 'x'))
    (tmp_path / 'meta').mkdir()
    (tmp_path / 'meta' / 'classes.txt').write_text('apple_pie\n')
    with pytest.raises(engine.UserError, match=r'not found: \S+/meta/train.json \(expected ROOT/meta/'):
        ft('food101', '--data', str(tmp_path), '--init', 'scratch', '--arch', 'alexnet', '--out', str(tmp_path / 'x'))
    assert not os.path.exists(tmp_path / 'x')
    with pytest.raises(SystemExit):  # argparse: an unknown data set is not a task
        ft('imagenet21k', '--init', 'scratch')


def test_train_flags_pass_through_beside_the_grid_flags():
    """--lr and --wd are train.py's, not abbreviations of --lr-grid / --wd-grid; given, they fix the grid's axes."""
    args, rest = finetune.get_args_parser().parse_known_args(['dtd', '--init', 'scratch', '--lr', '0.01', '--wd', '0.001'])
    assert args.lr_grid is None and args.wd_grid is None and rest == ['--lr', '0.01', '--wd', '0.001']
    args.recipe, args.train_flags = 'kornblith', finetune.train_flags(rest)
    assert finetune.grid(args) == [(0.01, 0.001 * 0.01)]  # the paper's unit: decay x lr


def test_final_run_that_diverges_falls_back_to_the_next_best_point(toy, tmp_path):
    """Toy Caltech-101 from scratch, the toy study's own command: lr 0.1 wins the search on train but diverges when
    retrained on train + val; the next best point (0.01) is retrained instead, and the result says so."""
    out = tmp_path / 'caltech'
    run_here('finetune.py', 'caltech101', '--data', os.path.join(toy['root'], 'transfer', 'caltech101'), '--init', 'scratch',
             '--arch', 'alexnet', *TINY, '--mode', 'finetune', '--out', str(out), '--seed', '0', '--iters', '80',
             '--batch-size', '8', '--lr-grid', '0.01', '0.1', '--wd-grid', '0', '--save-every', '80', '--log-every', '20')
    r = json.loads((out / 'transfer.json').read_text())
    assert r['final_diverged'] == ['lr0.1-wd0'] and r['lr'] == 0.01 and (out / 'diverged.json').exists()
    assert (out / 'final-lr0.01-wd0' / 'checkpoint.pth').exists()
