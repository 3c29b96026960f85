"""experiments/ and eval/report.py: the plans (--emit, --dry-run), the runner (skip, rerun after a failure,
resume after Ctrl-C), the errors before any run starts, and the report on a fixture tree of runs."""
import json
import os
import re
import signal
import subprocess
import sys
import time
import zlib

import pytest

from conftest import ROOT, run

sys.path.insert(0, os.path.join(ROOT, 'experiments'))
import common  # noqa: E402
import paper  # noqa: E402
from eval import report  # noqa: E402


def script(name, *args, check=True):
    return run(f'experiments/{name}.py', *args, check=check)


# ----------------------------------------------------------------------------------------------------------
# Plans: --emit, --dry-run


def test_emit_one_guarded_command_per_step(toy, tmp_path):
    out = str(tmp_path / 'p')
    p = script('fig1_images_per_class', '--toy', '--data-root', toy['root'], '--index', toy['index'], '--out', out, '--emit')
    lines = p.stdout.strip().splitlines()
    # 3 points (15, 30, 60 = full): a subset, a pre-training, a SUN397 and a VOC07 fine-tuning each
    assert len(lines) == 12 and all(line.startswith('test -e ') and ' || python ' in line for line in lines)
    assert sum('train.py' in line for line in lines) == 3 and sum('finetune.py sun397' in line for line in lines) == 3
    assert sum('finetune.py voc07' in line for line in lines) == 3
    level3 = script('fig1_images_per_class', '--toy', '--data-root', toy['root'], '--index', toy['index'], '--out', out,
                    '--emit', '--level', '3').stdout.strip().splitlines()
    assert len(level3) == 3 and all('train.py' in line for line in level3)
    assert not os.path.exists(out), '--emit must not write anything'
    # A line runs as it is, from the project root; a finished step's line is then a no-op.
    env = dict(os.environ, PATH=os.path.dirname(sys.executable) + os.pathsep + os.environ['PATH'])  # `python` = this venv
    subprocess.run(lines[0], shell=True, cwd=ROOT, check=True, capture_output=True, env=env)
    assert len(script('fig1_images_per_class', '--toy', '--data-root', toy['root'], '--index', toy['index'], '--out', out,
                      '--emit').stdout.strip().splitlines()) == 11


def test_dry_run_prints_commands_and_gpu_hours(tmp_path):
    # Kornblith et al.'s grid: test_kornblith_grid; He et al.'s detectors: test_rethinking_coco_grid
    huh = [n for n in paper.NAMES if n not in ('kornblith', 'rethinking_scratch')]
    p = script('paper', '--data-root', str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'p'), '--dry-run', '--only', *huh)
    assert 'estimated:' in p.stdout and 'ASSUMED' in p.stdout and 'warning: the plan needs ImageNet train' in p.stdout
    hours = float(p.stdout.split('# estimated: ')[1].split()[0])
    assert 20 < hours < 500  # ~19 AlexNet pre-trainings of 450K x 256 images
    assert p.stdout.count('python train.py') == len({line for line in p.stdout.splitlines() if 'python train.py' in line})
    assert not os.path.exists(tmp_path / 'p')


def test_table3_plans_places_and_toy_recipe_lengths(tmp_path):
    import table3_pascal_removed
    places = tmp_path / 'Places365'
    places.mkdir()
    (places / 'places365_train_standard.txt').write_text('')  # the plan looks for it; the index step reads it
    c, steps = common.build(['--toy', '--places', str(places), '--out', str(tmp_path)], table3_pascal_removed.plan)
    index = next(s for s in steps if s['kind'] == 'index' and 'subsets-places' in s['out'])
    assert index['cmd'][index['cmd'].index('--train-list') + 1] == str(places / 'places365_train_standard.txt')
    pre = next(s for s in steps if s['kind'] == 'pretrain' and 'places-alexnet-s0' in s['out'])
    assert pre['needs'] == [os.path.join(str(tmp_path), 'subsets-places', 'places')]
    assert [r['label'] for r in c.plans[0].rows] == ['toy ImageNet (20 classes)', 'PASCAL removed (8 classes)', 'toy Places (8 scenes)']
    assert c.plans[0].rows[2]['paper_as'] == 'Places (205 scenes)'
    # each toy pre-training runs TOY_EPOCHS over its subset, at least TOY_MIN_ITERS iterations
    iters = {os.path.basename(s['out']): int(common.flag(s['cmd'], '--iters')) for s in steps if s['kind'] == 'pretrain'}
    assert iters == {'full-alexnet-s0': round(55 * 1200 / 32), 'pascal-removed-alexnet-s0': round(55 * 480 / 32),
                     'places-alexnet-s0': 500}
    assert 'subsets-places' not in str(common.build(['--toy', '--out', str(tmp_path)], table3_pascal_removed.plan)[1])


def test_shared_runs_are_declared_once(tmp_path):
    c, steps = common.build(['--toy', '--out', str(tmp_path)], *[m.plan for m in paper.SCRIPTS])
    keys = [s['key'] for s in steps]
    assert len(keys) == len(set(keys))
    full = [s for s in steps if s['kind'] == 'pretrain' and '/full-alexnet-s0' in s['out'] and 'ls0.1' not in s['out']]
    assert len(full) == 1  # nine figures use it; it is made once
    # dependencies come first
    pos = {k: i for i, k in enumerate(keys)}
    assert all(pos[n] < pos[s['key']] for s in steps for n in s['needs'])


# ----------------------------------------------------------------------------------------------------------
# The runner: skip, rerun after a failure


def fake_step(tmp, name, needs=(), fail_unless=None):
    out = str(tmp / name)
    code = (f'import os, sys\nos.makedirs({out!r}, exist_ok=True)\n'
            f'open({str(tmp / "calls.txt")!r}, "a").write({name!r} + "\\n")\n'
            + (f'sys.exit(1) if not os.path.exists({fail_unless!r}) else None\n' if fail_unless else '')
            + f'open(os.path.join({out!r}, "metrics.json"), "w").write("{{}}")\n')
    return {'key': out, 'out': out, 'cmd': ['python', '-c', code], 'done': os.path.join(out, 'metrics.json'), 'kind': 'pretrain',
            'what': name, 'needs': list(needs), 'inputs': [], 'cost': (0, 0), 'level': 3}


def test_runner_skips_finished_and_reruns_failed(tmp_path, capsys):
    allow = str(tmp_path / 'allow')
    a = fake_step(tmp_path, 'a')
    b = fake_step(tmp_path, 'b', needs=[a['key']], fail_unless=allow)
    c = fake_step(tmp_path, 'c', needs=[b['key']])
    d = fake_step(tmp_path, 'd')
    steps = [a, b, c, d]
    calls = lambda: open(tmp_path / 'calls.txt').read().split()  # noqa: E731
    assert common.run_steps(steps, str(tmp_path / 'logs'), poll=0.05) == 1  # b failed, c blocked, d still ran
    assert calls() == ['a', 'b', 'd'] and not os.path.exists(c['done'])
    assert 'FAILED' in capsys.readouterr().out
    open(allow, 'w').close()
    assert common.run_steps(steps, str(tmp_path / 'logs'), poll=0.05) == 0  # a and d are skipped
    assert calls() == ['a', 'b', 'd', 'b', 'c']
    assert common.run_steps(steps, str(tmp_path / 'logs'), poll=0.05) == 0
    assert calls() == ['a', 'b', 'd', 'b', 'c'] and '4 finished (skipped), 0 to run' in capsys.readouterr().out


def test_runner_spreads_over_gpus(tmp_path):
    """One run per GPU at a time, each with its own CUDA_VISIBLE_DEVICES."""
    steps = []
    for i in range(4):
        out = str(tmp_path / f's{i}')
        code = (f'import os, time\nos.makedirs({out!r})\ntime.sleep(0.3)\n'
                f'open(os.path.join({out!r}, "metrics.json"), "w").write(os.environ["CUDA_VISIBLE_DEVICES"])')
        steps.append({'key': out, 'out': out, 'cmd': ['python', '-c', code], 'done': os.path.join(out, 'metrics.json'),
                      'kind': 'pretrain', 'what': f's{i}', 'needs': [], 'inputs': [], 'cost': (0, 0), 'level': 3})
    t0 = time.time()
    assert common.run_steps(steps, str(tmp_path / 'logs'), gpus=['0', '1'], poll=0.05) == 0
    assert sorted(open(s['done']).read() for s in steps) == ['0', '0', '1', '1']
    assert time.time() - t0 < 4 * 0.3 + 1.5  # two at a time (each python start included)


# ----------------------------------------------------------------------------------------------------------
# Errors before any run starts


def test_missing_data_is_an_error_before_anything_runs(toy, tmp_path):
    p = script('fig1_images_per_class', '--data-root', str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'p'), check=False)
    assert p.returncode == 2 and 'error: the plan needs ImageNet train' in p.stderr
    # ImageNet is there, SUN397 is not: the SUN397 transfer of the plan needs it
    root = tmp_path / 'imagenet-only'
    root.mkdir()
    for d in ('train', 'val'):
        os.symlink(os.path.join(toy['root'], d), root / d)
    p = script('fig1_images_per_class', '--toy', '--data-root', str(root), '--index', toy['index'], '--out',
               str(tmp_path / 'p'), check=False)
    assert p.returncode == 2 and 'SUN397 (ClassName.txt)' in p.stderr and str(root / 'SUN397') in p.stderr
    assert not os.path.exists(tmp_path / 'p'), 'nothing may be written before the checks pass'


def test_other_configuration_in_a_run_dir_is_an_error(toy, tmp_path):
    out = tmp_path / 'p'
    base = ['--toy', '--data-root', toy['root'], '--index', toy['index'], '--out', str(out)]
    run_dir = out / 'full-alexnet-s0'
    run_dir.mkdir(parents=True)
    finished = {'val_top1': 50.0}
    (run_dir / 'args.json').write_text(json.dumps({'arch': 'alexnet', 'iters': 999, 'seed': 0, 'workers': 7}))
    (run_dir / 'metrics.json').write_text(json.dumps(finished))
    p = script('table3_pascal_removed', *base, check=False)
    assert p.returncode == 2 and 'another configuration' in p.stderr and 'iters: 999 there' in p.stderr
    assert json.loads((run_dir / 'metrics.json').read_text()) == finished  # never overwritten
    # a subset folder made as another kind
    (out / 'subsets' / 'pascal-removed').mkdir(parents=True)
    (out / 'subsets' / 'pascal-removed' / 'meta.json').write_text(json.dumps({'kind': 'full', 'params': {}, 'seed': None}))
    iters, lr = (float(common.flag(common.toy_pretrain(1200), f)) for f in ('--iters', '--lr'))  # the plan's own
    (run_dir / 'args.json').write_text(json.dumps({'arch': 'alexnet', 'iters': iters, 'lr': lr, 'seed': 0, 'workers': 1}))
    p = script('table3_pascal_removed', *base, check=False)
    assert p.returncode == 2 and "kind: 'full' there, 'pascal-removed' in the plan" in p.stderr
    assert 'full-alexnet-s0' not in p.stderr  # --workers may differ between a run and its resumption


def test_flags_compare_like_argparse():
    f = common.parse_flags(['--lr', '0.02', '--lr-steps', '100', '200', '--no-wd-norm', '--compile', '--init', 'scratch'])
    assert f == {'lr': '0.02', 'lr_steps': ['100', '200'], 'no_wd_norm': True, 'wd_norm': False, 'compile': True, 'init': 'scratch'}
    assert common.same(0.02, '0.02') and common.same([100, 200], ['100', '200']) and common.same(None, 'scratch')
    assert not common.same(300, '600') and common.same(os.path.abspath('runs/x'), 'runs/x')


# ----------------------------------------------------------------------------------------------------------
# The report on a fixture tree: real-format run directories with made-up numbers


def fake_tree(tree, toy, seeds=(0, 1), unfinished=('sun397-s1-finetune-x3',)):
    """Every step of every plan 'finished' with made-up results in the real file formats, but for the
    transfers named in `unfinished` (left pending)."""
    c, steps = common.build(['--toy', '--data-root', toy['root'], '--index', toy['index'], '--out', str(tree),
                             '--seeds', *map(str, seeds)], *[fn for m in paper.SCRIPTS for fn in getattr(m, 'PLANS', (m.plan,))])
    common.write_plans(c)
    full = os.path.join(toy['index'].rsplit('/', 1)[0], 'full')
    for s in steps:
        os.makedirs(s['out'], exist_ok=True)
        seed = int(common.flag(s['cmd'], '--seed', 0))
        config = re.sub(rf'-s{seed}(?=/|$)', '', s['out'])  # the run without its seed
        score = 40 + zlib.crc32(config.encode()) % 17 + 2 * seed  # seeds 0, 1: x and x + 2
        if s['kind'] == 'subset':  # a real subset (the collage reads its images)
            for f in ('train.txt', 'meta.json', 'classes.tsv'):
                with open(os.path.join(full, f)) as src, open(os.path.join(s['out'], f), 'w') as dst:
                    dst.write(src.read())
        elif s['kind'] == 'pretrain':
            args = {'arch': 'alexnet', 'subset': common.flag(s['cmd'], '--subset'), 'seed': seed, 'iters': 300, 'lr': 0.02,
                    'label_smoothing': float(common.flag(s['cmd'], '--label-smoothing', 0.0))}
            json.dump(args, open(os.path.join(s['out'], 'args.json'), 'w'))
            json.dump({'val_top1': score, 'step': 300}, open(s['done'], 'w'))
        elif not any(s['out'].endswith(u) for u in unfinished):
            json.dump({'task': 'x', 'init': 'x'}, open(os.path.join(s['out'], 'args.json'), 'w'))
            voc = re.search(r'(voc07|voc12-action)-(finetune|fpn)', s['out'])
            if '/coco-' in s['out']:  # He et al.'s detector: box and mask AP, and the curve of its tests in log.jsonl
                with open(os.path.join(s['out'], 'log.jsonl'), 'w') as f:
                    for k in (1, 2, 3):
                        f.write(json.dumps({'step': 30 * k, 'val/bbox/AP': score / 4 * k, 'val/segm/AP': score / 5 * k}) + '\n')
                json.dump({'task': 'coco', 'test_bbox/AP': score * 0.75, 'test_segm/AP': score * 0.6}, open(s['done'], 'w'))
                continue
            json.dump({'task': voc[1], 'test_mAP': score - 10} if voc else
                      {'task': 'x', 'test_mean_class_acc': score, 'test_top1': score + 1, 'test_score': score, 'knn_top1': score - 1,
                       'knn_top5': score + 9, 'mean_difference': 3.5, 'coarse_classes': 4, 'fine_correct': 50.0,
                       'coarse_correct': 70.0}, open(s['done'], 'w'))
            if 'coarse-fine' in s['out']:
                open(os.path.join(s['out'], 'coarse_fine.tsv'), 'w').write(
                    'wnid\tname\tsubclasses\tcoarse_acc\tmean_fine_acc\tdifference\n'
                    'n01\tdog, hound\t4\t90.00\t80.00\t10.00\nn02\tbird\t4\t70.00\t72.00\t-2.00\n')
            if 'neighbours' in s['out']:
                val = sorted(os.listdir(os.path.join(toy['root'], 'val', 'n01440764')))[0]
                rows = [f'val/n01440764/{val}\tn01440764\t{r}\ttrain/{w}/{w}_{r}.JPEG\t{w}\t{v}\n'
                        for r, w, v in ((0, 'n01440764', 'query'), (1, 'n01440764', 'fine'), (2, 'n01443537', 'coarse'),
                                        (3, 'n07745940', 'wrong'))]
                rows[0] = f'val/n01440764/{val}\tn01440764\t0\tval/n01440764/{val}\tn01440764\tquery\n'
                open(os.path.join(s['out'], 'neighbours.tsv'), 'w').write(
                    f'# root\t{toy["root"]}\nquery\tquery_wnid\trank\tpath\twnid\tverdict\n' + ''.join(rows))
    return c, steps


def test_report_on_a_fixture_tree(toy, tmp_path):
    tree, out = tmp_path / 'tree', str(tmp_path / 'report')
    fake_tree(tree, toy)
    md_path = report.report(str(tree), out)
    md = open(md_path).read()
    for title in ('Fig. 1', 'Fig. 2', 'Table 1', 'Table 2', 'Table 3', 'Fig. 4', 'Fig. 5', 'Fig. 6', 'Figs. 8, 9',
                  'He et al. 2019', 'He et al. 2019: COCO', 'He et al. 2019: VOC07', 'Kornblith'):
        assert f'## {title}' in md, title
    # the paper's numbers beside ours; Places is the paper's only
    for number in ('58.3', '57.0', '54.6', '57.8', '53.8'):
        assert number in md
    assert 'Places (205 scenes)' in md and 'not run' in md
    table3 = md.split('## Table 3')[1].split('## ')[0]
    assert 'VOC07 detection mAP (%)' in table3 and 'VOC12 action mAP (%)' in table3
    # mean +- std over the two seeds: score and score + 2 -> std 1.4
    fig1 = md.split('## Fig. 1')[1].split('## ')[0]
    assert '± 1.4 (n=2)' in fig1 and '15 (paper: 250)' in fig1
    assert 'pending (0/2)' in md.split('## He et al. 2019')[1]  # the unfinished 3x runs
    coco = md.split('## He et al. 2019: COCO')[1].split('\n## ')[0]
    assert '41.3' in coco and '12 images (paper: 1K images)' in coco and '3.5' in coco  # Table 1 and §5 beside ours
    assert '82.7' in md.split('## He et al. 2019: VOC07')[1].split('\n## ')[0]
    kb = md.split('## Kornblith')[1].split('\n## ')[0]
    assert 'r (log odds vs top-1)' in kb and '### Regularisers' in kb and 'r, paper' in kb and '+0.99' in kb
    assert 'Every run' in md
    assert re.search(r'\| full-alexnet-s0/voc07-finetune \| voc07 \| finished \| test_mAP \d', md)  # VOC runs list their mAP
    for png in ('fig1_images_per_class', 'fig2_num_classes', 'rethinking_scratch', 'rethinking_coco', 'kornblith', 'fig5_nn_grid_0',
                'fig6_coarse_fine', 'fig8_fig9_splits_collage'):
        assert os.path.getsize(os.path.join(out, f'{png}.png')) > 1000, png
        assert f'({png}.png)' in md
    events = [f for d, _, fs in os.walk(os.path.join(out, 'hparams')) for f in fs if f.startswith('events')]
    assert len(events) > 20  # one per row and seed, plus the top-level file
    # idempotent: a second report over the same tree gives the same text (the hparams folder is rewritten)
    assert open(report.report(str(tree), out)).read() == md
    # damaged files are marked, never read as results; --strict fails on them
    (tree / 'full-alexnet-s0' / 'metrics.json').write_text('{"val_top1": 4')  # cut short
    (tree / 'full-alexnet-s0' / 'sun397-s1-finetune' / 'transfer.json').write_text('[]')
    p = run('eval/report.py', str(tree), '--out', out, '--no-hparams', check=False)
    assert p.returncode == 0 and 'warning: damaged: ' in p.stderr
    md = open(os.path.join(out, 'report.md')).read()
    assert '## Damaged files' in md and '`full-alexnet-s0/metrics.json`: JSONDecodeError' in md
    assert '`full-alexnet-s0/sun397-s1-finetune/transfer.json`: not a JSON object' in md
    assert re.search(r'\| full-alexnet-s0 \| pre-training \| damaged \(metrics.json\)', md)
    assert 'damaged' in md.split('## Fig. 1')[1].split('## ')[0]
    p = run('eval/report.py', str(tree), '--out', out, '--no-hparams', '--strict', check=False)
    assert p.returncode == 1 and p.stderr.strip().splitlines()[-1] == 'error: 2 damaged files (listed above and in the report); --strict'


def test_report_cli_and_correlation(tmp_path):
    import numpy as np
    rng = np.random.default_rng(0)
    a, b = rng.random(9), rng.random(9)
    assert report.pearson(list(a), list(b)) == pytest.approx(np.corrcoef(a, b)[0, 1])
    assert report.pearson([1, 2], [1, 2]) is None and report.pearson([1, 1, 1], [1, 2, 3]) is None
    lo, hi = report.bootstrap_r(list(a), list(a + 0.1 * b))
    assert 0.5 < lo <= report.pearson(list(a), list(a + 0.1 * b)) <= hi <= 1
    assert report.logit(50) == 0 and report.logit(100) == pytest.approx(np.log(999))  # clipped at 99.9%
    p = run('eval/report.py', str(tmp_path), '--out', str(tmp_path / 'r'), check=False)
    assert p.returncode != 0 and 'no plans' in p.stderr


# ----------------------------------------------------------------------------------------------------------
# A real plan on toy data, end to end, interrupted once: subset -> pre-training -> SUN397 + kNN -> report

DRIVER = '''
import sys
sys.path.insert(0, {experiments!r})
import common
common.TOY_PRETRAIN = ['--batch-size', '16', '--lr', '0.02', '--iters', '240', '--lr-steps', '200', '--eval-every', '240',
                       '--save-every', '10', '--log-every', '10']
common.TOY_SUN_ITERS, common.TOY_SUN_STEPS = 20, (15,)

def plan(c):
    p = c.plan('tiny', 'A tiny plan')
    p.column('sun', 'SUN397 mean class acc. (%)')
    p.column('knn', 'kNN top-1 (%)', metric='knn_top1')
    full = c.full()
    run = c.pretrain(full, 0)
    p.row('all classes', 0, sun=c.sun(run, 0), knn=c.knn(run, full))
    return p

common.main(plan)
'''


def test_end_to_end_toy_plan_with_resume(toy, tmp_path):
    driver = tmp_path / 'tiny.py'
    driver.write_text(DRIVER.format(experiments=os.path.join(ROOT, 'experiments')))
    out = tmp_path / 'p'
    cmd = [sys.executable, str(driver), '--toy', '--data-root', toy['root'], '--index', toy['index'], '--out', str(out)]
    # SIGINT at its default in the runner even when pytest itself runs in the background (where it is ignored)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    ckpt = out / 'full-alexnet-s0' / 'checkpoint.pth'
    t0 = time.time()
    while not ckpt.exists() and proc.poll() is None and time.time() - t0 < 120:
        time.sleep(0.05)
    proc.send_signal(signal.SIGINT)  # Ctrl-C: the runner passes it on, train.py stops with its checkpoint
    first = proc.communicate(timeout=120)[0]
    assert proc.returncode == 130, first
    assert not (out / 'full-alexnet-s0' / 'metrics.json').exists()
    p = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert p.returncode == 0, p.stdout[-3000:] + p.stderr[-3000:]
    assert 'resume: pre-train full-alexnet-s0' in p.stdout and '1 finished (skipped)' in p.stdout  # the subset
    assert 'resuming from' in open(out / 'logs' / 'full-alexnet-s0.log').read()
    again = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert '4 finished (skipped), 0 to run' in again.stdout
    md = open(report.report(str(out), str(tmp_path / 'report'), hparams=False)).read()
    row = next(line for line in md.splitlines() if line.startswith('| all classes'))
    assert 'pending' not in row and 'not run' not in row


def test_kornblith_grid(tmp_path):
    """The toy plan: networks x 12 data sets x 3 protocols, each data set read from its toy layout; the real dry run:
    the paper's 16 networks (+ the regularisers of ResNet-50) over the same grid, with GPU hours."""
    import kornblith
    c, steps = common.build(['--toy', '--out', str(tmp_path)], kornblith.plan)
    nets = [r['label'] for r in c.plans[0].rows]
    assert nets == ['alexnet', 'alexnet_tv', 'alexnet, label smoothing 0.1', 'alexnet, 15 images a class']
    ft = [s for s in steps if s['kind'] == 'transfer']
    assert len(ft) == (4 * 2 + 2) * 12  # linear and finetune per network, scratch per architecture
    assert {s['cmd'][2] for s in ft} == set(kornblith.DATASETS)
    food = next(s for s in ft if s['cmd'][2] == 'food101')
    assert common.flag(food['cmd'], '--data') == os.path.join('data/toy', 'transfer', 'food101')
    assert len(c.plans[0].columns) == 1 + 12 * 3 and c.plans[0].extras['regularisers'][0] == 'alexnet'
    rows = {r['label']: r['runs'] for r in c.plans[0].rows}  # scratch: one point an architecture, on its first row
    assert 'dtd/scratch' in rows['alexnet'] and 'dtd/scratch' not in rows['alexnet, label smoothing 0.1']
    p = script('kornblith', '--data-root', str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'real'), '--dry-run')
    lines = p.stdout.splitlines()
    assert sum('python train.py' in line for line in lines) == 16 + 3  # the 16, and ResNet-50 with 3 regularisers
    assert sum('python finetune.py' in line for line in lines) == (19 * 2 + 16) * 12
    hours = float(p.stdout.split('# estimated: ')[1].split()[0])
    assert 1000 < hours < 100000 and '--recipe kornblith' in p.stdout  # SUN397 under the paper's recipe
    pub = tmp_path / 'pub.tsv'
    pub.write_text('# arch\tweights\ttop-1\nresnet50\ttorchvision:IMAGENET1K_V1\t76.13\ndensenet121\tx.pth\n')
    p = script('kornblith', '--data-root', str(tmp_path), '--published', str(pub), '--dry-run', check=False)
    assert p.returncode == 2 and p.stderr.strip() == f'error: {pub} line 3: expected arch<TAB>weights<TAB>ImageNet top-1 (%), got \'densenet121\\tx.pth\''


def test_rethinking_coco_grid(tmp_path):
    """He et al.'s grid on real data: Table 1's schedules, less data, SyncBN and VOC, each with its GPU hours."""
    p = script('rethinking_scratch', '--data-root', str(tmp_path / 'nowhere'), '--out', str(tmp_path / 'p'), '--dry-run')
    coco = [line for line in p.stdout.splitlines() if 'finetune.py coco' in line]
    assert len(coco) == 2 * 5 + 2 * 2 + 1  # scratch and pre-trained at 2x-6x, 10K and 1K images; SyncBN
    for flags in ('--schedule 6x', '--train-images 1000', '--norm syncbn', '--init scratch --arch resnet50 --norm gn'):
        assert any(flags in line for line in coco), flags
    assert sum('voc07 --detector fpn' in line for line in p.stdout.splitlines()) == 2
    hours = float(p.stdout.split('# estimated: ')[1].split()[0])
    assert 1000 < hours < 2000  # 51 lengths of 1x at the assumed 26 GPU-hours each, and 2 pre-trainings
    assert not os.path.exists(tmp_path / 'p')
