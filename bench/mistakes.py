"""A survey of user mistakes and faults across every entry point: each case runs one real command on toy data after
a small setup (a copied run directory, a damaged file, a full disk, Ctrl-C, ...) and is classed in one verdict.

    .venv/bin/python bench/mistakes.py                       # every case (about 10-20 min on 2 cores)
    .venv/bin/python bench/mistakes.py --only finetune       # the cases whose name contains 'finetune'
    .venv/bin/python bench/mistakes.py --work /tmp/mistakes  # where the toy data, runs and case folders go

Verdicts (the reliability issue's table): correct; lost or overwritten (a file that had to stay changed); silently
wrong (exit 0 where an error was due, or a wrong result); traceback; vague (a clean error whose last line misses
the offending path or value); refused after a mistake (the corrected command is refused). The table and the
counts are printed and written to WORK/mistakes.md. The setup (toy data, subsets, a tiny pre-training and its
transfers) is made once and kept in WORK; every case works in its own fresh folder WORK/cases/<name>.
"""
import argparse
import concurrent.futures
import hashlib
import json
import os
import resource
import shutil
import signal
import subprocess
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PY = sys.executable
sys.path.insert(0, ROOT)
from experiments.common import TOY_ALEXNET  # noqa: E402  the toy net of the tests (tests/conftest.py TINY)

TINY = ['--crop', '96', '--resize', '108', '--workers', '2', *TOY_ALEXNET]
PRE = ['--batch-size', '32', '--lr', '0.02', '--iters', '20', '--lr-steps', '15', '--save-every', '10', '--eval-every', '20']
FT = ['--iters', '10', '--lr', '0.01', '--lr-steps', '8', '--batch-size', '16', '--save-every', '10', '--eval-every', '10']
REG = ['--scale', '96', '--max-size', '160', '--anchor-scales', '2', '4', '8', '--roi-op', 'align', '--iters', '10',
       '--lr-steps', '8', '--save-every', '10', '--eval-every', '10']
TOY = ['--train-per-class', '20', '--val-per-class', '5', '--sun-per-class', '10', '--sun-train', '5', '--sun-test', '5',
       '--places-train', '0', '--voc07-trainval', '16', '--voc07-test', '16', '--voc12-per-action', '3']
CKPT = '{W}/pre/checkpoint.pth'

VERDICTS = ['correct', 'lost or overwritten', 'silently wrong', 'traceback', 'vague', 'refused after a mistake']


def train_cmd(out='{T}/run', *extra, subset='{W}/subsets/full'):
    return ['train.py', '--subset', subset, '--out', out, *TINY, *PRE, *extra]


# The finished transfers of the setup, by name: the command without --out (WORK/ft/<name> in the setup).
FT_RUNS = {
    'sun': ['finetune.py', 'sun397', '--sun-root', '{W}/data/SUN397', '--init', CKPT, *FT],
    'folder': ['finetune.py', 'folder', '--data', '{W}/data/train', '--init', CKPT, *FT],
    'linear': ['finetune.py', 'sun397', '--sun-root', '{W}/data/SUN397', '--init', CKPT, '--mode', 'linear'],
    'manifest': ['finetune.py', 'manifest', '--subset', '{W}/subsets/full', '--init', CKPT, '--mode', 'last', *FT],
    'knn': ['finetune.py', 'knn', '--subset', '{W}/subsets/full', '--init', CKPT],
    'cf': ['finetune.py', 'coarse-fine', '--subset', '{W}/subsets/full', '--init', CKPT, '--min-subclasses', '2'],
    'voc07': ['finetune.py', 'voc07', '--voc', '{W}/data/VOCdevkit', '--init', CKPT, *REG],
    'voc12': ['finetune.py', 'voc12-action', '--voc', '{W}/data/VOCdevkit', '--init', CKPT, '--regions', 'grid', *REG],
}


# ----------------------------------------------------------------------------------------------------------
# Running a command


def fmt(argv, W, T):
    return [a.replace('{W}', W).replace('{T}', T) for a in argv]


def run(argv, W, T, cwd=None, fsize=None, ro=None, timeout=300):
    """(rc, stdout, stderr) of one project script; fsize: a file-size limit (a full disk, EFBIG); ro: a folder
    bind-mounted read-only for this process alone (we run as root, so chmod would not stop a write)."""
    argv = fmt(argv, W, T)
    cmd = [PY, os.path.join(ROOT, argv[0]), *argv[1:]]
    if ro:
        ro = fmt([ro], W, T)[0]
        cmd = ['unshare', '-m', 'sh', '-c', 'mount --bind "$0" "$0" && mount -o remount,bind,ro "$0" "$0" && exec "$@"', ro, *cmd]
    pre = (lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (fsize, fsize))) if fsize else None
    try:
        p = subprocess.run(cmd, cwd=fmt([cwd], W, T)[0] if cwd else ROOT, capture_output=True, text=True,
                           preexec_fn=pre, timeout=timeout)
        return p.returncode, p.stdout, p.stderr
    except subprocess.TimeoutExpired as e:
        return -1, str(e.stdout or ''), f'{e.stderr or ""}\n(timed out after {timeout} s)'


def last_line(err):
    lines = [l for l in err.strip().splitlines() if l.strip()]
    return lines[-1].strip() if lines else ''


# ----------------------------------------------------------------------------------------------------------
# Setup: toy data, subsets, one tiny pre-training and its transfers, made once


def must(argv, W, cwd=None):
    rc, out, err = run(argv, W, W, cwd=cwd)
    if rc != 0:
        sys.exit(f'setup failed: {" ".join(fmt(argv, W, W))}\n{out[-2000:]}\n{err[-3000:]}')


def setup(W):
    os.makedirs(W, exist_ok=True)
    if not os.path.isdir(f'{W}/data/train'):
        must(['toydata.py', '--out', '{W}/data', *TOY], W)
    if not os.path.exists(f'{W}/subsets/index.tsv'):
        must(['subsets.py', 'index', '--imagenet', '{W}/data', '--out', '{W}/subsets'], W)
    if not os.path.exists(f'{W}/subsets/exclude.txt'):
        must(['data_dali.py', 'scan', '{W}/subsets'], W)
    if not os.path.exists(f'{W}/subsets/full/meta.json'):
        must(['subsets.py', 'make', 'full', '--index', '{W}/subsets/index.tsv'], W)
    if not os.path.exists(f'{W}/pre/metrics.json'):
        must(train_cmd('{W}/pre'), W)
    if not os.path.exists(f'{W}/res/metrics.json'):  # another architecture's checkpoint
        must(['train.py', '--subset', '{W}/subsets/full', '--out', '{W}/res', '--arch', 'resnet18', '--crop', '64',
              '--resize', '72', '--workers', '2', '--batch-size', '8', '--iters', '2', '--lr-steps', '1',
              '--save-every', '2', '--eval-every', '2'], W)
    for name, argv in FT_RUNS.items():
        if not os.path.exists(f'{W}/ft/{name}/transfer.json'):
            must(argv + ['--out', f'{W}/ft/{name}'], W)
    if not os.path.exists(f'{W}/tree/plans/mine.json'):  # a tree eval/report.py reads: one hand-made plan
        os.makedirs(f'{W}/tree/plans', exist_ok=True)
        shutil.copytree(f'{W}/pre', f'{W}/tree/pre', dirs_exist_ok=True)
        shutil.copytree(f'{W}/ft/sun', f'{W}/tree/sun', dirs_exist_ok=True)
        plan = {'name': 'mine', 'title': 'Mine', 'layout': 'table', 'xlabel': None, 'note': '', 'overlay': False,
                'toy': True, 'arch': 'alexnet',
                'columns': [{'key': 'sun', 'title': 'SUN397', 'file': 'transfer.json', 'metric': 'test_mean_class_acc',
                             'paper': {}, 'note': None},
                            {'key': 'val', 'title': 'val', 'file': 'metrics.json', 'metric': 'val_top1', 'paper': {}, 'note': None}],
                'rows': [{'label': 'pre', 'x': None, 'seed': 0, 'paper_as': None, 'runs': {'sun': 'sun', 'val': 'pre'}}],
                'extras': {}}
        with open(f'{W}/tree/plans/mine.json', 'w') as f:
            json.dump(plan, f, indent=1)


# ----------------------------------------------------------------------------------------------------------
# Setups and post-checks. A setup gets the case folder T and returns a state the post-check gets back.


def snapshot(path):
    """{relative path: sha256} of every file under path. A (re)start records the code it runs with (args.json's
    git_sha, git.diff while the tree is dirty): that is the run explaining itself, not a result lost, so args.json
    is hashed without its git_sha and git.diff is left out."""
    out = {}
    for d, _, files in os.walk(path):
        for f in files:
            p = os.path.join(d, f)
            if f == 'git.diff':
                continue
            with open(p, 'rb') as fh:
                data = fh.read()
            if f == 'args.json':
                try:
                    obj = json.loads(data)
                    obj.pop('git_sha', None) if isinstance(obj, dict) else None
                    data = json.dumps(obj, sort_keys=True).encode()
                except ValueError:
                    pass
            out[os.path.relpath(p, path)] = hashlib.sha256(data).hexdigest()
    return out


def copy_of(W, src, T, dest='run'):
    """A copy of WORK/src at T/dest; its args.json's --out (part of the run's identity) follows the copy."""
    d = os.path.join(T, dest)
    shutil.copytree(os.path.join(W, src), d, symlinks=True)
    a = os.path.join(d, 'args.json')
    if os.path.exists(a):
        args = json.load(open(a))
        if 'out' in args:
            args['out'] = d
            open(a, 'w').write(json.dumps(args, indent=1, sort_keys=True) + '\n')
    return d


def copied(src, edit=None, dest='run'):
    """Setup: copy WORK/src to T/dest, apply edit(dir), and remember every file's hash."""
    def f(W, T):
        d = copy_of(W, src, T, dest)
        if edit:
            edit(d)
        return snapshot(d)
    return f


def unchanged(dest='run', skip=()):
    def post(W, T, state):
        now = snapshot(os.path.join(T, dest))
        lost = [k for k in state if k not in skip and now.get(k) != state[k]]
        new = [k for k in now if k not in state and not k.startswith('tb/')]
        if lost or new:
            return f'{dest}: changed {lost[:4]}, new {new[:4]}'
    return post


def absent(*rels):
    def post(W, T, state):
        there = [r for r in rels if os.path.exists(os.path.join(T, r))]
        if there:
            return f'left behind: {", ".join(there)}'
    return post


def write(rel, text, mode='w'):
    """Setup: a file under T with this content (bytes with mode 'wb')."""
    def f(W, T):
        p = os.path.join(T, rel)
        os.makedirs(os.path.dirname(p), exist_ok=True)
        with open(p, mode) as fh:
            fh.write(text)
    return f


def steps(*fns):
    def f(W, T):
        state = None
        for fn in fns:
            s = fn(W, T)
            state = s if s is not None else state
        return state
    return f


def truncate(rel, keep=0.5):
    def edit(d):
        p = os.path.join(d, rel)
        data = open(p, 'rb').read()
        open(p, 'wb').write(data[:int(len(data) * keep)])
    return edit


def replace(rel, text):
    def edit(d):
        open(os.path.join(d, rel), 'w').write(text)
    return edit


def remove(*rels):
    def edit(d):
        for r in rels:
            os.remove(os.path.join(d, r))
    return edit


def edit_all(*edits):
    def edit(d):
        for e in edits:
            e(d)
    return edit


def unfinished(d):
    """A pre-training copy stopped at iteration 10: metrics.json gone, checkpoint.1.pth (iteration 10) is the latest."""
    os.remove(os.path.join(d, 'metrics.json'))
    os.replace(os.path.join(d, 'checkpoint.1.pth'), os.path.join(d, 'checkpoint.pth'))


def finished_at(step, dest='run'):
    """Post-check of a resumed run: metrics.json at `step`, every log line a record."""
    def post(W, T, state):
        d = os.path.join(T, dest)
        try:
            m = json.load(open(os.path.join(d, 'metrics.json')))
            for line in open(os.path.join(d, 'log.jsonl')):
                json.loads(line)
        except (OSError, ValueError) as e:
            return f'not finished cleanly: {e}'
        if m.get('step') != step:
            return f'metrics.json at step {m.get("step")}, not {step}'
    return post


def subset_copy(edit_files=None, root=None):
    """Setup: a copy of the full subset at T/subset with edits {file: function(text) -> text}; root: the data root
    in its meta.json becomes T/root (symlinks to the toy data's train/ and val/) for extra files to live beside."""
    def f(W, T):
        d = os.path.join(T, 'subset')
        shutil.copytree(f'{W}/subsets/full', d)
        if root:
            r = os.path.join(T, 'root')
            os.makedirs(r, exist_ok=True)
            for x in ('train', 'val'):
                os.symlink(f'{W}/data/{x}', os.path.join(r, x))
            m = json.load(open(os.path.join(d, 'meta.json')))
            m['root'] = r
            json.dump(m, open(os.path.join(d, 'meta.json'), 'w'))
        for name, fn in (edit_files or {}).items():
            p = os.path.join(d, name)
            text = open(p).read() if os.path.exists(p) else ''
            new = fn(text)
            if new is None:
                os.remove(p)
            else:
                open(p, 'w').write(new)
    return f


def first_lines(n):
    return lambda text: ''.join(text.splitlines(keepends=True)[:n])


def data_copy(name, edit=None):
    """A setup: a copy of the toy data set WORK/data/<name> (SUN397, VOCdevkit) in the case folder, then `edit`."""
    def f(W, T):
        d = os.path.join(T, name)
        shutil.copytree(f'{W}/data/{name}', d)
        if edit:
            edit(d)
    return f


def first_listed(d, year='VOC2007', imageset='Main/test.txt'):
    return open(os.path.join(d, year, 'ImageSets', imageset)).read().split()[0]


def empty_voc_test_image(d):
    open(os.path.join(d, 'VOC2007', 'JPEGImages', first_listed(d) + '.jpg'), 'wb').close()


def lines_of(path):
    return open(path).read().splitlines()


def grep_post(rel, *needles):
    """Post-check of a result: the file under T holds every needle."""
    def post(W, T, state):
        p = os.path.join(T, rel)
        text = open(p).read() if os.path.exists(p) else ''
        miss = [n for n in needles if n not in text]
        if miss:
            return f'{rel} lacks {miss}'
    return post


def both(*posts):
    def post(W, T, state):
        for p in posts:
            r = p(W, T, state)
            if r:
                return r
    return post


# ----------------------------------------------------------------------------------------------------------
# Cases


def case(name, kind, argv, expect, setup=None, post=None, post_kind='lost', fix=None, fix_setup=None, cwd=None,
         fsize=None, ro=None, runner=None, serial=False):
    """expect: 'ok', or the substring the last stderr line of the refusal must hold. post_kind: which verdict a
    failed post-check is ('lost' for preserved files, 'wrong' for a result). fix: the corrected command, run after
    fix_setup, that must then succeed."""
    return dict(name=name, kind=kind, argv=argv, expect=expect, setup=setup, post=post, post_kind=post_kind, fix=fix,
                fix_setup=fix_setup, cwd=cwd, fsize=fsize, ro=ro, runner=runner, serial=serial)


def range_cases():
    """Every numeric flag family out of range: refused at parse time, nothing written."""
    out = []
    tr = [('--lr', '0'), ('--lr', '-1'), ('--lr', 'nan'), ('--lr', 'inf'), ('--iters', '0'), ('--iters', '1.5'),
          ('--batch-size', '0'), ('--batch-size', 'abc'), ('--crop', '0'), ('--resize', '-1'), ('--momentum', '1'),
          ('--wd', '-1'), ('--label-smoothing', '1'), ('--dropout', '1.5'), ('--width', '0'), ('--gamma', '-1'),
          ('--warmup', '-1'), ('--clip-grad', '0'), ('--hw-decoder-load', '2'), ('--prefetch', '0'), ('--seed', '-1'),
          ('--log-every', '0'), ('--eval-every', '0'), ('--save-every', '0'), ('--keep', '0'), ('--workers', '0'),
          ('--epochs', '0'), ('--lr-steps', '-5'), ('--head-lr-mult', '-1'), ('--lr', '1e999')]
    for flag, v in tr:
        out.append(case(f'train range {flag}={v}', 'range', train_cmd('{T}/run', flag, v), f'argument {flag}',
                        post=absent('run')))
    out.append(case('train range --mean 0.5 0.5 120', 'range', train_cmd('{T}/run', '--mean', '0.5', '0.5', '120'),
                    'argument --mean', post=absent('run')))
    out.append(case('train range --std 0 1 1', 'range', train_cmd('{T}/run', '--std', '0', '1', '1'), 'argument --std',
                    post=absent('run')))
    out.append(case('train huge --batch-size 100000', 'range', train_cmd('{T}/run', '--batch-size', '100000'),
                    '--batch-size', post=absent('run')))
    out.append(case('train huge --crop 5000', 'range', train_cmd('{T}/run', '--crop', '5000', '--resize', '108'),
                    '--crop', post=absent('run')))
    sun = ['finetune.py', 'sun397', '--sun-root', '{W}/data/SUN397', '--init', CKPT, '--out', '{T}/ft', *FT]
    ft = [('--eval-batch-size', '0'), ('--split', '0'), ('--split', '11'), ('--val-fraction', '1'),
          ('--val-fraction', '-0.1'), ('--test-fraction', '0'), ('--lambdas', 'nan'), ('--seed', '-3'),
          ('--width', '0'), ('--crop', '0'), ('--workers', 'two'), ('--min-subclasses', '0'), ('--top', '0'),
          ('--scale', '0'), ('--max-size', '0')]
    for flag, v in ft:
        out.append(case(f'finetune sun397 range {flag}={v}', 'range', sun + [flag, v], f'argument {flag}', post=absent('ft')))
    out.append(case('finetune sun397 range --lambdas 1 -1', 'range', sun + ['--lambdas', '1', '-1'], 'argument --lambdas',
                    post=absent('ft')))
    out.append(case('finetune voc07 range --anchor-scales 8 -2', 'range',
                    ['finetune.py', 'voc07', '--voc', '{W}/data/VOCdevkit', '--init', CKPT, '--out', '{T}/ft',
                     '--anchor-scales', '8', '-2'], 'argument --anchor-scales', post=absent('ft')))
    # train.py flags passed through finetune.py: checked too, and nothing (data/) left behind
    for flag, v in (('--lr', '0'), ('--iters', '-1'), ('--batch-size', '0'), ('--clip-grad', 'nan')):
        out.append(case(f'finetune sun397 passthrough range {flag}={v}', 'range', sun + [flag, v], f'argument {flag}',
                        post=absent('ft')))
    out.append(case('finetune folder passthrough range --lr inf', 'range',
                    ['finetune.py', 'folder', '--data', '{W}/data/train', '--init', CKPT, '--out', '{T}/ft', *FT, '--lr', 'inf'],
                    'argument --lr', post=absent('ft')))
    mk = ['subsets.py', 'make']
    for argv, flag in ((mk + ['full', '--index', '{W}/subsets/index.tsv', '--out', '{T}/s', '--per-class', '0'], '--per-class'),
                       (mk + ['full', '--index', '{W}/subsets/index.tsv', '--out', '{T}/s', '--seed', '-1'], '--seed'),
                       (mk + ['classes', '--index', '{W}/subsets/index.tsv', '--out', '{T}/s', '--num-classes', '0'], '--num-classes'),
                       (mk + ['taxonomy', '--index', '{W}/subsets/index.tsv', '--out', '{T}/s', '--num-classes', '-3'], '--num-classes'),
                       (['subsets.py', 'paper', '--index', '{W}/subsets/index.tsv', '--out', '{T}/s', '--seed', 'x'], '--seed')):
        out.append(case(f'subsets {argv[1]} {argv[2] if argv[1] == "make" else ""} range {flag}={argv[-1]}', 'range', argv,
                        f'argument {flag}', post=absent('s')))
    for flag, v in (('--workers', '0'), ('--max-pixels', '-1')):
        out.append(case(f'data_dali scan range {flag}={v}', 'range',
                        ['data_dali.py', 'scan', '{W}/subsets/index.tsv', '--out', '{T}/scan', flag, v], f'argument {flag}',
                        post=absent('scan')))
    for flag, v in (('--train-per-class', '-1'), ('--val-per-class', '-5'), ('--sun-splits', '0'), ('--voc07-test', '-5'),
                    ('--seed', '-1'), ('--sun-train', '100'), ('--val-per-class', 'abc')):
        out.append(case(f'toydata range {flag}={v}', 'range', ['toydata.py', '--out', '{T}/toy', *TOY, flag, v],
                        f'--{flag.lstrip("-")}' if v != '100' else '--sun-train', post=absent('toy')))
    ex = ['experiments/paper.py', '--toy', '--data-root', '{W}/data', '--out', '{T}/paper', '--dry-run']
    for flag, v in (('--seeds', '-1'), ('--gpus', '-1'), ('--seeds', 'abc')):
        out.append(case(f'experiments paper range {flag}={v}', 'range', ex + [flag, v], f'argument {flag}', post=absent('paper')))
    out.append(case('experiments paper range --level -1', 'range',
                    ['experiments/paper.py', '--toy', '--data-root', '{W}/data', '--out', '{T}/paper', '--emit', '--level', '-1'],
                    '--level', post=absent('paper')))
    return out


def train_cases():
    rerun = lambda *extra: train_cmd('{T}/run', *extra)  # noqa: E731
    c = [
        # paths
        case('train --subset missing', 'path', train_cmd('{T}/run', subset='{T}/nosuch'), '{T}/nosuch', post=absent('run')),
        case('train --subset is a file', 'path', train_cmd('{T}/run', subset='{W}/subsets/full/train.txt'),
             'train.txt', post=absent('run')),
        case('train --subset empty dir', 'path', train_cmd('{T}/run', subset='{T}/empty'), '{T}/empty',
             setup=lambda W, T: os.makedirs(f'{T}/empty'), post=absent('run')),
        case('train train.txt 0 bytes', 'manifest', train_cmd('{T}/run', subset='{T}/subset'), 'train.txt',
             setup=subset_copy({'train.txt': lambda t: ''}), post=absent('run')),
        case('train train.txt bad line', 'manifest', train_cmd('{T}/run', subset='{T}/subset'), 'train.txt:',
             setup=subset_copy({'train.txt': lambda t: t + 'no-label-here\n'}), post=absent('run')),
        case('train train.txt label out of range', 'manifest', train_cmd('{T}/run', subset='{T}/subset'), 'train.txt',
             setup=subset_copy({'train.txt': lambda t: t + t.splitlines()[0].split()[0] + ' 99\n'}), post=absent('run')),
        case('train val.txt label out of range', 'manifest', train_cmd('{T}/run', subset='{T}/subset'), 'val.txt',
             setup=subset_copy({'val.txt': lambda t: t + t.splitlines()[0].split()[0] + ' 20\n'}), post=absent('run')),
        case('train train.txt missing image', 'manifest', train_cmd('{T}/run', subset='{T}/subset'), 'nosuch.JPEG',
             setup=subset_copy({'train.txt': lambda t: 'train/n01440764/nosuch.JPEG 0\n' + t}), post=absent('run')),
        case('train train.txt 0-byte JPEG', 'manifest', train_cmd('{T}/run', subset='{T}/subset'), 'empty.JPEG',
             setup=steps(subset_copy({'train.txt': lambda t: 'empty.JPEG 0\n' + t}, root=True), write('root/empty.JPEG', b'', 'wb'))),
        case('train classes.tsv missing', 'manifest', train_cmd('{T}/run', subset='{T}/subset'), 'classes.tsv',
             setup=subset_copy({'classes.tsv': lambda t: None}), post=absent('run')),
        case('train val.txt missing', 'manifest', train_cmd('{T}/run', subset='{T}/subset'), 'val.txt',
             setup=subset_copy({'val.txt': lambda t: None}), post=absent('run')),
        case('train meta.json damaged', 'file', train_cmd('{T}/run', subset='{T}/subset'), 'meta.json',
             setup=subset_copy({'meta.json': lambda t: t[:len(t) // 2]}), post=absent('run')),
        case('train --data-root missing', 'path', rerun('--data-root', '{T}/noroot'), '{T}/noroot', post=absent('run')),
        case('train --init missing', 'path', rerun('--init', '{T}/none.pth'), '{T}/none.pth', post=absent('run')),
        case('train --init 0 bytes', 'path', rerun('--init', '{T}/zero.pth'), '{T}/zero.pth',
             setup=write('zero.pth', b'', 'wb'), post=absent('run')),
        case('train --init a text file', 'path', rerun('--init', '{T}/w.txt'), '{T}/w.txt',
             setup=write('w.txt', 'hello\n'), post=absent('run')),
        case('train --init a directory', 'path', rerun('--init', '{W}/pre'), '{W}/pre', post=absent('run')),
        case('train --init resnet18 checkpoint into alexnet', 'arch', rerun('--init', '{W}/res/checkpoint.pth'),
             'res/checkpoint.pth', post=absent('run')),
        case('train --arch unknown', 'arch', rerun('--arch', 'nosuchnet'), 'nosuchnet', post=absent('run')),
        case('train --out is a file', 'out', train_cmd('{T}/file'), '{T}/file', setup=write('file', 'x')),
        case('train --out inside a read-only dir', 'out', train_cmd('{T}/ro/run'), '{T}/ro/run',
             setup=lambda W, T: os.makedirs(f'{T}/ro'), ro='{T}/ro', post=absent('ro/run'), fix=train_cmd('{T}/ro/run')),
        case('train --out read-only empty dir', 'out', train_cmd('{T}/run'), '{T}/run',
             setup=lambda W, T: os.makedirs(f'{T}/run'), ro='{T}/run'),
        case('train disk full at start', 'disk', train_cmd('{T}/run'), 'File too large', fsize=100, post=absent('run'),
             fix=train_cmd('{T}/run')),
        # a run directory holding another configuration
        case('train resume with --arch resnet18 on alexnet run (finished)', 'config', rerun('--arch', 'resnet18'), '--arch',
             setup=copied('pre'), post=unchanged()),
        case('train resume with --arch resnet18 on alexnet run (unfinished)', 'config', rerun('--arch', 'resnet18'), '--arch',
             setup=copied('pre', unfinished), post=unchanged()),
        case('train resnet18 checkpoint.pth in alexnet run dir', 'config', rerun(), 'checkpoint.pth',
             setup=copied('pre', edit_all(remove('metrics.json', 'checkpoint.1.pth'),
                                          lambda d: shutil.copy(d + '/../../../res/checkpoint.pth', d + '/checkpoint.pth'))),
             post=unchanged()),
        case('train rerun finished with --lr 0.03', 'rerun', rerun('--lr', '0.03'), '--lr', setup=copied('pre'), post=unchanged()),
        case('train rerun finished with --iters 30', 'rerun', rerun('--iters', '30'), '--iters', setup=copied('pre'), post=unchanged()),
        case('train rerun finished with --seed 3', 'rerun', rerun('--seed', '3'), '--seed', setup=copied('pre'), post=unchanged()),
        case('train rerun finished with --width 0.5', 'rerun', rerun('--width', '0.5'), '--width', setup=copied('pre'), post=unchanged()),
        case('train rerun unfinished with --batch-size 16', 'rerun', rerun('--batch-size', '16'), '--batch-size',
             setup=copied('pre', unfinished), post=unchanged()),
        case('train rerun finished with --workers 1 (may change)', 'rerun', rerun('--workers', '1'), 'ok',
             setup=copied('pre'), post=unchanged()),
        case('train rerun finished, relative paths', 'identity',
             ['train.py', '--subset', '../../subsets/full', '--out', 'run', *TINY, *PRE], 'ok', cwd='{T}',
             setup=copied('pre'), post=unchanged()),
        case('train rerun finished, trailing slash', 'identity', train_cmd('{T}/run/', subset='{W}/subsets/full/'), 'ok',
             setup=copied('pre'), post=unchanged()),
        case('train resume unfinished, relative paths', 'identity',
             ['train.py', '--subset', '../../subsets/full', '--out', 'run', *TINY, *PRE], 'ok', cwd='{T}',
             setup=copied('pre', unfinished), post=finished_at(20), post_kind='wrong'),
        case('train train.txt rewritten under a finished run', 'identity', train_cmd('{T}/run', subset='{T}/subset'), 'train.txt',
             setup=steps(subset_copy(), lambda W, T: shutil.copytree(f'{W}/pre', f'{T}/run'),
                         lambda W, T: fix_args(f'{T}/run', subset=f'{T}/subset'),
                         lambda W, T: open(f'{T}/subset/train.txt', 'a').write(lines_of(f'{T}/subset/train.txt')[0] + '\n'),
                         lambda W, T: snapshot(f'{T}/run')), post=unchanged()),
        # damaged files read back
        case('train metrics.json truncated', 'file', rerun(), 'metrics.json', setup=copied('pre', truncate('metrics.json')),
             post=unchanged()),
        case('train metrics.json 0 bytes', 'file', rerun(), 'metrics.json', setup=copied('pre', truncate('metrics.json', 0)),
             post=unchanged()),
        case('train args.json truncated', 'file', rerun(), 'args.json', setup=copied('pre', truncate('args.json')), post=unchanged()),
        case('train args.json a JSON list', 'file', rerun(), 'args.json', setup=copied('pre', replace('args.json', '[1, 2]\n')),
             post=unchanged()),
        case('train args.json 0 bytes', 'file', rerun(), 'args.json', setup=copied('pre', truncate('args.json', 0)), post=unchanged()),
        case('train log.jsonl half-written last line', 'file', rerun(), 'ok',
             setup=copied('pre', edit_all(unfinished, lambda d: open(d + '/log.jsonl', 'a').write('{"step": 1'))),
             post=finished_at(20), post_kind='wrong'),
        case('train log.jsonl damaged middle line', 'file', rerun(), 'log.jsonl:',
             setup=copied('pre', edit_all(unfinished, replace('log.jsonl', '{"step": 1}\nGARBAGE\n{"step": 2}\n'))),
             post=unchanged()),
        case('train checkpoint.pth truncated falls back', 'file', rerun(), 'ok',
             setup=copied('pre', edit_all(remove('metrics.json'), truncate('checkpoint.pth'))),
             post=finished_at(20), post_kind='wrong'),
        case('train every checkpoint truncated', 'file', rerun(), '{T}/run',
             setup=copied('pre', edit_all(remove('metrics.json'), truncate('checkpoint.pth'), truncate('checkpoint.1.pth'))),
             post=unchanged()),
        case('train only checkpoint 0 bytes', 'file', rerun(), '{T}/run',
             setup=copied('pre', edit_all(remove('metrics.json', 'checkpoint.1.pth'), truncate('checkpoint.pth', 0))),
             post=unchanged()),
        case('train disk full mid-run', 'disk', rerun(), 'File too large', fsize=3_000_000,
             setup=copied('pre', unfinished), post=lambda W, T, s: unchanged(skip=('log.jsonl', 'args.json'))(W, T, s),
             fix=rerun()),
        case('train 0-byte val image after training', 'manifest', train_cmd('{T}/run', subset='{T}/subset'), 'broken.JPEG',
             setup=steps(subset_copy({'val.txt': lambda t: t + 'broken.JPEG 0\n'}, root=True), write('root/broken.JPEG', b'', 'wb')),
             post=lambda W, T, s: None if os.path.exists(f'{T}/run/checkpoint.pth') else 'no final checkpoint saved',
             fix_setup=lambda W, T: open(f'{T}/subset/val.txt', 'w').write(open(f'{W}/subsets/full/val.txt').read()),
             fix=train_cmd('{T}/run', subset='{T}/subset')),
    ]
    return c


def fix_args(d, **kw):
    a = json.load(open(os.path.join(d, 'args.json')))
    a.update(kw, out=d)
    open(os.path.join(d, 'args.json'), 'w').write(json.dumps(a, indent=1, sort_keys=True) + '\n')


def finetune_cases():
    c = []
    sun = lambda *x, root='{W}/data/SUN397', init=CKPT: ['finetune.py', 'sun397', '--sun-root', root, '--init', init, '--out', '{T}/ft', *FT, *x]  # noqa: E731
    folder = lambda data, *x: ['finetune.py', 'folder', '--data', data, '--init', CKPT, '--out', '{T}/ft', *FT, *x]  # noqa: E731
    man = lambda subset, *x: ['finetune.py', 'manifest', '--subset', subset, '--init', CKPT, '--out', '{T}/ft', '--mode', 'last', *FT, *x]  # noqa: E731
    voc = lambda task, root, *x: ['finetune.py', task, '--voc', root, '--init', CKPT, '--out', '{T}/ft', *REG, *x]  # noqa: E731
    c += [
        case('finetune sun397 no --sun-root', 'path', ['finetune.py', 'sun397', '--init', CKPT, '--out', '{T}/ft'], '--sun-root',
             post=absent('ft')),
        case('finetune sun397 --sun-root missing', 'path', sun(root='{T}/nosun'), '{T}/nosun', post=absent('ft')),
        case('finetune sun397 --sun-root a file', 'path', sun(root='{W}/data/SUN397/ClassName.txt'), 'ClassName.txt',
             post=absent('ft')),
        case('finetune sun397 --sun-root empty dir', 'path', sun(root='{T}/e'), '{T}/e',
             setup=lambda W, T: os.makedirs(f'{T}/e'), post=absent('ft')),
        case('finetune sun397 ClassName.txt 0 bytes', 'file', sun(root='{T}/SUN397'), 'ClassName.txt',
             setup=data_copy('SUN397', lambda d: open(d + '/ClassName.txt', 'w').close()), post=absent('ft')),
        case('finetune sun397 partition missing', 'file', sun(root='{T}/SUN397'), 'Training_01.txt',
             setup=data_copy('SUN397', lambda d: os.remove(d + '/Partitions/Training_01.txt')), post=absent('ft')),
        case('finetune sun397 --split 3 of 2', 'file', sun('--split', '3'), '03', post=absent('ft')),
        case('finetune sun397 partition lists a missing image', 'file', sun(root='{T}/SUN397'), 'nosuch.jpg',
             setup=data_copy('SUN397', lambda d: open(d + '/Partitions/Training_01.txt', 'a').write('/a/aquarium/nosuch.jpg\n')),
             post=absent('ft')),
        case('finetune sun397 0-byte test JPEG', 'file', sun(root='{T}/SUN397'), 'zero.jpg',
             setup=data_copy('SUN397', lambda d: [open(d + '/a/aquarium/zero.jpg', 'wb').close(),
                                       open(d + '/Partitions/Testing_01.txt', 'a').write('/a/aquarium/zero.jpg\n')])),
        case('finetune sun397 --init missing', 'path', sun(init='{T}/none.pth'), '{T}/none.pth', post=absent('ft')),
        case('finetune sun397 --init 0 bytes', 'path', sun(init='{T}/zero.pth'), '{T}/zero.pth',
             setup=write('zero.pth', b'', 'wb'), post=absent('ft')),
        case('finetune sun397 --init truncated checkpoint', 'path', sun(init='{T}/c.pth'), '{T}/c.pth',
             setup=lambda W, T: open(f'{T}/c.pth', 'wb').write(open(f'{W}/pre/checkpoint.pth', 'rb').read()[:5000]),
             post=absent('ft')),
        case('finetune sun397 --init a directory', 'path', sun(init='{W}/pre'), '{W}/pre', post=absent('ft')),
        case('finetune sun397 --init resnet18 with --arch alexnet', 'arch', sun('--arch', 'alexnet', init='{W}/res/checkpoint.pth'),
             'resnet18', post=absent('ft')),
        case('finetune sun397 --init alexnet with --arch resnet18', 'arch', sun('--arch', 'resnet18'), 'alexnet', post=absent('ft')),
        case('finetune sun397 --init scratch without --arch', 'arch', sun(init='scratch'), '--arch', post=absent('ft')),
        case('finetune sun397 --mode linear --val-fraction 0', 'range',
             ['finetune.py', 'sun397', '--sun-root', '{W}/data/SUN397', '--init', CKPT, '--out', '{T}/ft', '--mode', 'linear',
              '--val-fraction', '0'], '--val-fraction', post=absent('ft')),
        case('finetune sun397 --mode linear with train.py flags', 'flag',
             ['finetune.py', 'sun397', '--sun-root', '{W}/data/SUN397', '--init', CKPT, '--out', '{T}/ft', '--mode', 'linear',
              '--lr', '0.1'], '--lr', post=absent('ft')),
        case('finetune sun397 unknown flag', 'flag', sun('--nosuch-flag', '3'), '--nosuch-flag', post=absent('ft')),
        case('finetune sun397 --out is a file', 'out', sun(), '{T}/ft', setup=write('ft', 'x')),
        case('finetune sun397 --out inside read-only dir', 'out',
             ['finetune.py', 'sun397', '--sun-root', '{W}/data/SUN397', '--init', CKPT, '--out', '{T}/ro/ft', *FT], '{T}/ro/ft',
             setup=lambda W, T: os.makedirs(f'{T}/ro'), ro='{T}/ro', post=absent('ro/ft')),
        case('finetune sun397 linear --out inside read-only dir', 'out',
             ['finetune.py', 'sun397', '--sun-root', '{W}/data/SUN397', '--init', CKPT, '--out', '{T}/ro/ft', '--mode', 'linear'],
             '{T}/ro/ft', setup=lambda W, T: os.makedirs(f'{T}/ro'), ro='{T}/ro', post=absent('ro/ft')),
        case('finetune sun397 disk full at start', 'disk', sun(), 'File too large', fsize=100, post=absent('ft'), fix=sun()),
        case('finetune folder no --data', 'path', ['finetune.py', 'folder', '--init', CKPT, '--out', '{T}/ft'], '--data',
             post=absent('ft')),
        case('finetune folder --data missing', 'path', folder('{T}/nodata'), '{T}/nodata', post=absent('ft')),
        case('finetune folder --data a file', 'path', folder('{W}/subsets/index.tsv'), 'index.tsv', post=absent('ft')),
        case('finetune folder empty class folder', 'path', folder('{T}/data'), '{T}/data/zzz',
             setup=steps(lambda W, T: shutil.copytree(f'{W}/data/train', f'{T}/data'), lambda W, T: os.makedirs(f'{T}/data/zzz')),
             post=absent('ft')),
        # 25 x 16 images: a whole pass over the training split, wherever the split puts the broken file
        case('finetune folder 0-byte JPEG', 'file', folder('{T}/data', '--iters', '25', '--lr-steps', '20'), 'broken.JPEG',
             setup=steps(lambda W, T: shutil.copytree(f'{W}/data/train', f'{T}/data'),
                         write('data/n01440764/broken.JPEG', b'', 'wb'))),
        case('finetune manifest no --subset', 'path', ['finetune.py', 'manifest', '--init', CKPT, '--out', '{T}/ft'], '--subset',
             post=absent('ft')),
        case('finetune manifest --subset missing', 'path', man('{T}/nosub'), '{T}/nosub', post=absent('ft')),
        case('finetune manifest val.txt label out of range', 'manifest', man('{T}/subset'), 'val.txt',
             setup=subset_copy({'val.txt': lambda t: t + t.splitlines()[0].split()[0] + ' 99\n'}), post=absent('ft')),
        case('finetune manifest train.txt bad line', 'manifest', man('{T}/subset'), 'train.txt',
             setup=subset_copy({'train.txt': lambda t: 'oops\n' + t}), post=absent('ft')),
        case('finetune manifest train.txt missing image', 'manifest', man('{T}/subset'), 'gone.JPEG',
             setup=subset_copy({'train.txt': lambda t: 'train/n01440764/gone.JPEG 0\n' + t}), post=absent('ft')),
        case('finetune knn --subset missing', 'path', ['finetune.py', 'knn', '--subset', '{T}/nosub', '--init', CKPT, '--out', '{T}/ft'],
             '{T}/nosub', post=absent('ft')),
        case('finetune knn --init scratch', 'arch',
             ['finetune.py', 'knn', '--subset', '{W}/subsets/full', '--init', 'scratch', '--arch', 'alexnet', '--out', '{T}/ft'],
             'scratch', post=absent('ft')),
        case('finetune knn --feature fc9', 'flag',
             ['finetune.py', 'knn', '--subset', '{W}/subsets/full', '--init', CKPT, '--out', '{T}/ft', '--feature', 'fc9'],
             'fc9', post=absent('ft')),
        case('finetune knn val.txt 0-byte JPEG', 'file',
             ['finetune.py', 'knn', '--subset', '{T}/subset', '--init', CKPT, '--out', '{T}/ft'], 'broken.JPEG',
             setup=steps(subset_copy({'val.txt': lambda t: 'broken.JPEG 0\n' + t}, root=True), write('root/broken.JPEG', b'', 'wb')),
             post=absent('ft')),
        case('finetune knn --out inside read-only dir', 'out',
             ['finetune.py', 'knn', '--subset', '{W}/subsets/full', '--init', CKPT, '--out', '{T}/ro/ft'], '{T}/ro/ft',
             setup=lambda W, T: os.makedirs(f'{T}/ro'), ro='{T}/ro', post=absent('ro/ft')),
        case('finetune coarse-fine --init scratch', 'arch',
             ['finetune.py', 'coarse-fine', '--subset', '{W}/subsets/full', '--init', 'scratch', '--arch', 'alexnet', '--out', '{T}/ft'],
             'scratch', post=absent('ft')),
        case('finetune coarse-fine --min-subclasses 50', 'range',
             ['finetune.py', 'coarse-fine', '--subset', '{W}/subsets/full', '--init', CKPT, '--out', '{T}/ft', '--min-subclasses', '50'],
             '--min-subclasses', post=absent('ft')),
        case('finetune voc07 no --voc', 'path', ['finetune.py', 'voc07', '--init', CKPT, '--out', '{T}/ft'], '--voc', post=absent('ft')),
        case('finetune voc07 --voc missing', 'path', voc('voc07', '{T}/novoc'), '{T}/novoc', post=absent('ft')),
        case('finetune voc07 annotation missing', 'file', voc('voc07', '{T}/VOCdevkit'),
             lambda W, T: first_listed(f'{T}/VOCdevkit', imageset='Main/trainval.txt') + '.xml',
             setup=data_copy('VOCdevkit', lambda d: os.remove(f'{d}/VOC2007/Annotations/{first_listed(d, imageset="Main/trainval.txt")}.xml')),
             post=absent('ft')),
        case('finetune voc07 malformed XML', 'file', voc('voc07', '{T}/VOCdevkit'),
             lambda W, T: first_listed(f'{T}/VOCdevkit', imageset='Main/trainval.txt') + '.xml',
             setup=data_copy('VOCdevkit', lambda d: open(f'{d}/VOC2007/Annotations/{first_listed(d, imageset="Main/trainval.txt")}.xml', 'w').write('<annotation><obj')),
             post=absent('ft')),
        case('finetune voc07 0-byte test JPEG', 'file', voc('voc07', '{T}/VOCdevkit'),
             lambda W, T: first_listed(f'{T}/VOCdevkit') + '.jpg',
             setup=data_copy('VOCdevkit', empty_voc_test_image)),
        case('finetune voc07 --train-set nosuch', 'path', voc('voc07', '{W}/data/VOCdevkit', '--train-set', 'nosuch'), 'nosuch',
             post=absent('ft')),
        case('finetune voc07 --anchor-scales 1000', 'range', voc('voc07', '{W}/data/VOCdevkit', '--anchor-scales', '1000'),
             '--anchor-scales', post=absent('ft')),
        case('finetune voc07 --init resnet18 with --arch alexnet', 'arch',
             ['finetune.py', 'voc07', '--voc', '{W}/data/VOCdevkit', '--init', '{W}/res/checkpoint.pth', '--arch', 'alexnet',
              '--out', '{T}/ft', *REG], 'resnet18', post=absent('ft')),
        case('finetune voc12-action VOC2012 missing', 'path', voc('voc12-action', '{T}/VOCdevkit', '--regions', 'grid'), 'VOC2012',
             setup=data_copy('VOCdevkit', lambda d: shutil.rmtree(d + '/VOC2012')), post=absent('ft')),
        case('finetune voc12-action action list missing', 'file', voc('voc12-action', '{T}/VOCdevkit', '--regions', 'grid'),
             'train.txt', setup=data_copy('VOCdevkit', lambda d: os.remove(d + '/VOC2012/ImageSets/Action/train.txt')), post=absent('ft')),
        case('finetune voc12-action --regions-cache a file', 'path',
             voc('voc12-action', '{W}/data/VOCdevkit', '--regions-cache', '{T}/cache'), '{T}/cache',
             setup=write('cache', 'x'), post=absent('ft')),
    ]
    # re-running a finished transfer: with other arguments refused by name, nothing changed; the same run accepted
    reruns = [('sun', ['--seed', '1'], '--seed'), ('sun', ['--split', '2'], '--split'), ('sun', ['--lr', '0.02'], '--lr'),
              ('sun', ['--iters', '12'], '--iters'), ('folder', ['--test-fraction', '0.3'], '--test-fraction'),
              ('linear', ['--lambdas', '1'], '--lambdas'), ('linear', ['--val-fraction', '0.2'], '--val-fraction'),
              ('manifest', ['--batch-size', '8'], '--batch-size'), ('knn', ['--metric', 'cosine'], '--metric'),
              ('knn', ['--feature', 'fc8'], '--feature'), ('cf', ['--min-subclasses', '3'], '--min-subclasses'),
              ('cf', ['--top', '5'], '--top'), ('voc07', ['--scale', '128'], '--scale'), ('voc07', ['--lr', '0.02'], '--lr'),
              ('voc12', ['--regions', 'selective-search'], '--regions'), ('sun', ['--init', '{W}/res/checkpoint.pth'], '--init')]
    for name, extra, flag in reruns:
        c.append(case(f'finetune {name} rerun finished with {" ".join(extra)}', 'rerun', FT_RUNS[name] + ['--out', '{T}/run', *extra],
                      flag, setup=copied(f'ft/{name}'), post=unchanged()))
    for name in ('sun', 'knn', 'voc07', 'linear'):
        rel = [a.replace('{W}/', '../../') for a in FT_RUNS[name]] + ['--out', 'run']
        c.append(case(f'finetune {name} rerun finished, relative paths', 'identity', rel, 'ok', cwd='{T}',
                      setup=copied(f'ft/{name}'), post=unchanged()))
    c.append(case('finetune sun rerun finished with --workers 1 (may change)', 'identity',
                  FT_RUNS['sun'] + ['--out', '{T}/run', '--workers', '1'], 'ok', setup=copied('ft/sun'), post=unchanged()))
    for name in ('sun', 'knn', 'voc07'):
        for what, edit in (('truncated', truncate('transfer.json')), ('0 bytes', truncate('transfer.json', 0)),
                           ('without finetune_args', replace('transfer.json', '{"task": "x"}\n'))):
            c.append(case(f'finetune {name} transfer.json {what}', 'file', FT_RUNS[name] + ['--out', '{T}/run'], 'transfer.json',
                          setup=copied(f'ft/{name}', edit), post=unchanged()))
    c.append(case('finetune sun data/train.txt of another seed (unfinished)', 'identity', FT_RUNS['sun'] + ['--out', '{T}/run'],
                  'train.txt', setup=copied('ft/sun', edit_all(remove('transfer.json'), lambda d: open(d + '/data/train.txt', 'w').write(
                      ''.join(sorted(open(d + '/data/train.txt').readlines()))))), post=unchanged()))
    c.append(case('finetune sun resume unfinished (no transfer.json)', 'identity', FT_RUNS['sun'] + ['--out', '{T}/run'], 'ok',
                  setup=copied('ft/sun', lambda d: [os.remove(d + '/transfer.json'), fix_args(d, subset=d + '/data')]),
                  post=lambda W, T, s: None if os.path.exists(f'{T}/run/transfer.json') else 'no transfer.json', post_kind='wrong'))
    return c


def subsets_cases():
    idx = '{W}/subsets/index.tsv'
    mk = lambda kind, *x, index=idx: ['subsets.py', 'make', kind, '--index', index, '--out', '{T}/s', *x]  # noqa: E731

    def old_exclude(W, T):
        d = os.path.join(T, 'idx')
        shutil.copytree(f'{W}/subsets', d, ignore=shutil.ignore_patterns('full'))
        t = time.time()
        os.utime(os.path.join(d, 'exclude.txt'), (t - 100, t - 100))
        os.utime(os.path.join(d, 'index.tsv'), (t, t))
        # the index names its root; the copy keeps it
    return [
        case('subsets index --imagenet missing', 'path', ['subsets.py', 'index', '--imagenet', '{T}/noroot', '--out', '{T}/s'],
             '{T}/noroot', post=absent('s')),
        case('subsets index --imagenet a file', 'path', ['subsets.py', 'index', '--imagenet', '{W}/subsets/index.tsv', '--out', '{T}/s'],
             'index.tsv', post=absent('s')),
        case('subsets index --imagenet empty dir', 'path', ['subsets.py', 'index', '--imagenet', '{T}/e', '--out', '{T}/s'], '{T}/e',
             setup=lambda W, T: os.makedirs(f'{T}/e'), post=absent('s')),
        case('subsets index --out is a file', 'out', ['subsets.py', 'index', '--imagenet', '{W}/data', '--out', '{T}/f'], '{T}/f',
             setup=write('f', 'x')),
        case('subsets index --out inside read-only dir', 'out',
             ['subsets.py', 'index', '--imagenet', '{W}/data', '--out', '{T}/ro/s'], '{T}/ro/s',
             setup=lambda W, T: os.makedirs(f'{T}/ro'), ro='{T}/ro', post=absent('ro/s')),
        case('subsets index --train-list missing', 'path',
             ['subsets.py', 'index', '--imagenet', '{W}/data', '--train-list', '{T}/list.txt', '--out', '{T}/s'], '{T}/list.txt',
             post=absent('s')),
        case('subsets index --train-list bad line', 'file',
             ['subsets.py', 'index', '--imagenet', '{W}/data', '--train-list', '{T}/list.txt', '--out', '{T}/s'], 'list.txt',
             setup=write('list.txt', 'train/n01440764/a.JPEG\n'), post=absent('s')),
        case('subsets index --train-list missing image', 'file',
             ['subsets.py', 'index', '--imagenet', '{W}/data', '--train-list', '{T}/list.txt', '--out', '{T}/s'], 'gone.JPEG',
             setup=write('list.txt', 'train/n01440764/gone.JPEG 0\n'), post=absent('s')),
        case('subsets make full --index missing', 'path', mk('full', index='{T}/none.tsv'), '{T}/none.tsv', post=absent('s')),
        case('subsets make full --index 0 bytes', 'file', mk('full', index='{T}/i.tsv'), '{T}/i.tsv',
             setup=write('i.tsv', ''), post=absent('s')),
        case('subsets make full --index garbage lines', 'file', mk('full', index='{T}/i.tsv'), '{T}/i.tsv',
             setup=write('i.tsv', f'# root\t/tmp\nthis is not an index\n'), post=absent('s')),
        case('subsets make full --index a directory', 'path', mk('full', index='{W}/subsets'), '{W}/subsets', post=absent('s')),
        case('subsets make full exclude.txt older than index', 'scan', mk('full', index='{T}/idx/index.tsv'), 'exclude.txt',
             setup=old_exclude, post=absent('s'), fix=mk('full', '--old-scan', index='{T}/idx/index.tsv')),
        case('subsets make full --out is a file', 'out', mk('full'), '{T}/s', setup=write('s', 'x')),
        case('subsets make full --out inside read-only dir', 'out',
             ['subsets.py', 'make', 'full', '--index', idx, '--out', '{T}/ro/s'], '{T}/ro/s',
             setup=lambda W, T: os.makedirs(f'{T}/ro'), ro='{T}/ro', post=absent('ro/s')),
        case('subsets make full into a subset made with other args', 'rerun', mk('full', '--per-class', '10'), '{T}/s',
             setup=lambda W, T: [shutil.copytree(f'{W}/subsets/full', f'{T}/s'), snapshot(f'{T}/s')][1], post=unchanged('s')),
        case('subsets make full same args twice', 'identity', mk('full'), 'ok',
             setup=lambda W, T: [shutil.copytree(f'{W}/subsets/full', f'{T}/s'), snapshot(f'{T}/s')][1], post=unchanged('s')),
        case('subsets make full --per-class 100 of 20', 'range', mk('full', '--per-class', '100'), '100', post=absent('s')),
        case('subsets make full disk full', 'disk', mk('full'), 'File too large', fsize=2000, post=absent('s'), fix=mk('full')),
        case('subsets make classes --num-classes 50 of 20', 'range', mk('classes', '--num-classes', '50'), '50', post=absent('s')),
        case('subsets make taxonomy --num-classes 7', 'range', mk('taxonomy', '--method', 'bottom-up', '--num-classes', '7'), '7', post=absent('s')),
        case('subsets make split --side C', 'flag', mk('split', '--side', 'C'), "'C'", post=absent('s')),
        case('subsets make list --file missing', 'path', mk('list', '--file', '{T}/c.tsv'), '{T}/c.tsv', post=absent('s')),
        case('subsets make list --file 0 bytes', 'file', mk('list', '--file', '{T}/c.tsv'), '{T}/c.tsv', setup=write('c.tsv', ''),
             post=absent('s')),
        case('subsets make list --file unknown wnid', 'file', mk('list', '--file', '{T}/c.tsv'), 'n99999999',
             setup=write('c.tsv', 'n01440764\nn99999999\n'), post=absent('s')),
        case('subsets make list --file bad wnid', 'file', mk('list', '--file', '{T}/c.tsv'), 'c.tsv:2',
             setup=write('c.tsv', 'n01440764\nfish\n'), post=absent('s')),
        case('subsets make unknown kind', 'flag', ['subsets.py', 'make', 'nosuchkind', '--index', idx], 'nosuchkind'),
        case('subsets paper --index missing', 'path', ['subsets.py', 'paper', '--index', '{T}/none.tsv', '--out', '{T}/s'],
             '{T}/none.tsv', post=absent('s')),
        case('subsets taxonomies extra argument', 'flag', ['subsets.py', 'taxonomies', '--bogus'], '--bogus'),
    ]


def scan_cases():
    def broken_index(W, T):
        r = os.path.join(T, 'root', 'train', 'n01440764')
        os.makedirs(r)
        for i, f in enumerate(sorted(os.listdir(f'{W}/data/train/n01440764'))[:3]):
            shutil.copy(f'{W}/data/train/n01440764/{f}', r)
        open(os.path.join(r, 'zero.JPEG'), 'wb').close()
        open(os.path.join(r, 'text.JPEG'), 'w').write('not an image\n')
        subprocess.run([PY, os.path.join(ROOT, 'subsets.py'), 'index', '--imagenet', f'{T}/root', '--out', f'{T}/idx'],
                       capture_output=True, check=True)

    return [
        case('data_dali scan missing path', 'path', ['data_dali.py', 'scan', '{T}/nothing'], '{T}/nothing'),
        case('data_dali scan empty dir', 'path', ['data_dali.py', 'scan', '{T}/e'], '{T}/e', setup=lambda W, T: os.makedirs(f'{T}/e')),
        case('data_dali scan index.tsv 0 bytes', 'file', ['data_dali.py', 'scan', '{T}/i/index.tsv'], 'index.tsv',
             setup=write('i/index.tsv', '')),
        case('data_dali scan --out is a file', 'out', ['data_dali.py', 'scan', '{W}/subsets/index.tsv', '--out', '{T}/f'], '{T}/f',
             setup=write('f', 'x')),
        case('data_dali scan --out inside read-only dir', 'out',
             ['data_dali.py', 'scan', '{W}/subsets/index.tsv', '--out', '{T}/ro/scan'], '{T}/ro/scan',
             setup=lambda W, T: os.makedirs(f'{T}/ro'), ro='{T}/ro', post=absent('ro/scan')),
        case('data_dali scan 0-byte and text JPEGs excluded', 'scan', ['data_dali.py', 'scan', '{T}/idx'], 'ok',
             setup=broken_index, post=grep_post('idx/exclude.txt', 'zero.JPEG', 'text.JPEG'), post_kind='wrong'),
        case('data_dali scan manifest with a missing file', 'scan',
             ['data_dali.py', 'scan', '{T}/m.txt', '--root', '{W}/data', '--out', '{T}/scan'], 'ok',
             setup=lambda W, T: open(f'{T}/m.txt', 'w').write('train/n01440764/gone.JPEG 0\n' +
                                                              ''.join(lines_of(f'{W}/subsets/full/train.txt')[:3][i] + '\n' for i in range(3))),
             post=grep_post('scan/exclude.txt', 'gone.JPEG'), post_kind='wrong'),
        case('data_dali scan manifest without --root or meta.json', 'path', ['data_dali.py', 'scan', '{T}/m.txt', '--out', '{T}/scan'],
             'm.txt', setup=write('m.txt', 'train/n01440764/a.JPEG 0\n'), post=absent('scan')),
        case('data_dali scan a directory named .JPEG in the index', 'scan', ['data_dali.py', 'scan', '{T}/idx'], 'ok',
             setup=steps(broken_index, lambda W, T: [os.remove(f'{T}/root/train/n01440764/zero.JPEG'),
                                                     os.makedirs(f'{T}/root/train/n01440764/zero.JPEG')]),
             post=grep_post('idx/exclude.txt', 'zero.JPEG'), post_kind='wrong'),
        case('subsets make full after a scan that excluded files', 'scan', ['subsets.py', 'make', 'full', '--index', '{T}/idx/index.tsv',
                                                                          '--out', '{T}/s'], 'ok',
             setup=steps(broken_index, lambda W, T: subprocess.run([PY, os.path.join(ROOT, 'data_dali.py'), 'scan', f'{T}/idx'],
                                                                   capture_output=True, check=True)),
             post=lambda W, T, s: 'excluded file in train.txt' if any(x in open(f'{T}/s/train.txt').read()
                                                                      for x in ('zero.JPEG', 'text.JPEG')) else None,
             post_kind='wrong'),
    ]


def other_cases():
    ex = ['experiments/paper.py', '--toy', '--data-root', '{W}/data', '--out', '{T}/paper', '--dry-run']
    run_ex = ex[:-1] + ['--gpus', '0']
    rep = lambda *x: ['eval/report.py', '{T}/tree', '--out', '{T}/rep', '--no-hparams', *x]  # noqa: E731
    return [
        case('toydata --out is a file', 'out', ['toydata.py', '--out', '{T}/f', *TOY], '{T}/f', setup=write('f', 'x')),
        case('toydata --out inside read-only dir', 'out', ['toydata.py', '--out', '{T}/ro/toy', *TOY], '{T}/ro/toy',
             setup=lambda W, T: os.makedirs(f'{T}/ro'), ro='{T}/ro', post=absent('ro/toy')),
        case('toydata disk full', 'disk', ['toydata.py', '--out', '{T}/toy', *TOY], 'File too large', fsize=2000),
        case('report tree missing', 'path', rep(), '{T}/tree', post=absent('rep')),
        case('report tree is a file', 'path', rep(), '{T}/tree', setup=write('tree', 'x'), post=absent('rep')),
        case('report tree without plans', 'path', rep(), 'plans', setup=lambda W, T: os.makedirs(f'{T}/tree'), post=absent('rep')),
        case('report --out is a file', 'out', rep(), '{T}/rep', setup=steps(copied('tree', dest='tree'), write('rep', 'x'))),
        case('report intact tree --strict', 'file', rep('--strict'), 'ok', setup=copied('tree', dest='tree'),
             post=grep_post('rep/report.md', 'Mine'), post_kind='wrong'),
        case('report damaged transfer.json marked', 'file', rep(), 'ok', setup=copied('tree', truncate('sun/transfer.json'), dest='tree'),
             post=grep_post('rep/report.md', 'damaged', 'transfer.json'), post_kind='wrong'),
        case('report damaged transfer.json --strict', 'file', rep('--strict'), 'damaged',
             setup=copied('tree', truncate('sun/transfer.json'), dest='tree')),
        case('report damaged metrics.json --strict', 'file', rep('--strict'), 'damaged',
             setup=copied('tree', replace('pre/metrics.json', '[]'), dest='tree')),
        case('report metric not a number --strict', 'file', rep('--strict'), 'damaged',
             setup=copied('tree', replace('pre/metrics.json', '{"val_top1": "NaN"}'), dest='tree')),
        case('report damaged plan --strict', 'file', rep('--strict'), 'damaged',
             setup=copied('tree', edit_all(lambda d: shutil.copy(d + '/plans/mine.json', d + '/plans/other.json'),
                                           truncate('plans/other.json')), dest='tree')),
        case('report damaged args.json --strict', 'file', rep('--strict'), 'damaged',
             setup=copied('tree', truncate('pre/args.json', 0.3), dest='tree')),
        case('report plan missing a key', 'file', rep(), 'mine.json',
             setup=copied('tree', replace('plans/mine.json', '{"name": "mine"}'), dest='tree'), post=absent('rep/report.md')),
        # Inputs are checked by a run (--gpus 0), before any step starts; a --dry-run plans without the data by
        # design, printing a '# warning:' line for each missing input instead.
        case('experiments paper --data-root missing', 'path',
             ['experiments/paper.py', '--toy', '--data-root', '{T}/nodata', '--out', '{T}/paper', '--gpus', '0'], '{T}/nodata',
             post=absent('paper')),
        case('experiments paper --only nosuch', 'flag', ex + ['--only', 'nosuch'], 'nosuch', post=absent('paper')),
        case('experiments paper --arch foo', 'flag', ex + ['--arch', 'foo'], 'foo', post=absent('paper')),
        case('experiments paper --index missing', 'path', run_ex + ['--index', '{T}/none.tsv'], '{T}/none.tsv', post=absent('paper')),
        case('experiments paper --index 0 bytes', 'file', run_ex + ['--index', '{T}/i.tsv'], '{T}/i.tsv', setup=write('i.tsv', ''),
             post=absent('paper')),
        case('experiments paper --voc without ImageSets', 'path', run_ex + ['--voc', '{T}/voc'], '{T}/voc',
             setup=lambda W, T: os.makedirs(f'{T}/voc'), post=absent('paper')),
        case('experiments paper --sun397 missing', 'path', run_ex + ['--sun397', '{T}/nosun'], '{T}/nosun', post=absent('paper')),
        case('experiments fig1 --out is a file', 'out',
             ['experiments/fig1_images_per_class.py', '--toy', '--data-root', '{W}/data', '--out', '{T}/f', '--gpus', '0'], '{T}/f',
             setup=write('f', 'x')),
        case('experiments paper run --index missing, data given', 'path',
             ['experiments/paper.py', '--toy', '--data-root', '{W}/data', '--out', '{T}/paper', '--gpus', '0',
              '--index', '{T}/none.tsv'], '{T}/none.tsv', post=absent('paper')),
        case('experiments paper dry-run ok', 'identity', ex, 'ok', post=absent('paper'), post_kind='wrong'),
        case('experiments table3 --places missing', 'path',
             ['experiments/table3_pascal_removed.py', '--toy', '--data-root', '{W}/data', '--out', '{T}/paper', '--gpus', '0',
              '--places', '{T}/noplaces'], '{T}/noplaces', post=absent('paper')),
    ]


# ----------------------------------------------------------------------------------------------------------
# Cases with their own runner: signals, kill -9, two processes at once (run one at a time, after the others)


def wait_log(path, step, proc, limit=120):
    deadline = time.time() + limit
    while time.time() < deadline and proc.poll() is None:
        try:
            if any(json.loads(l).get('step', 0) >= step for l in open(path).read().splitlines() if l.strip().endswith('}')):
                return True
        except (OSError, ValueError):
            pass
        time.sleep(0.02)
    return False


def popen(argv, W, T, **kw):
    argv = fmt(argv, W, T)
    # SIGINT at its default, as a terminal's Ctrl-C finds it: a survey run in the background (nohup, &) would
    # otherwise hand its children an ignored SIGINT
    return subprocess.Popen([PY, os.path.join(ROOT, argv[0]), *argv[1:]], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL), **kw)


def loads_ok(path):
    r = subprocess.run([PY, '-c', 'import sys, torch; torch.load(sys.argv[1], weights_only=True)', path], capture_output=True)
    return r.returncode == 0


def ckpt_post(W, T, state):
    d = f'{T}/run'
    tmp = [f for f in os.listdir(d) if f.endswith('.tmp')]
    if tmp:
        return f'left {tmp}'
    if not os.path.exists(f'{d}/checkpoint.pth') or not loads_ok(f'{d}/checkpoint.pth'):
        return 'checkpoint.pth missing or unreadable after Ctrl-C'


LONG = ['--iters', '60', '--lr-steps', '50', '--save-every', '10', '--log-every', '2', '--eval-every', '60']


def sigint_runner(at_save):
    def runner(c, W, T):
        extra = ['--iters', '400', '--lr-steps', '300', '--save-every', '1', '--log-every', '1', '--eval-every', '400', '--keep', '2'] \
            if at_save else LONG
        p = popen(train_cmd('{T}/run', *extra), W, T)
        caught = False
        if wait_log(f'{T}/run/log.jsonl', 12, p):
            if at_save:  # the moment the temporary file of a save is there
                deadline = time.time() + 30
                while time.time() < deadline and p.poll() is None and not caught:
                    caught = os.path.exists(f'{T}/run/checkpoint.pth.tmp')
                time.sleep(0.001)
            p.send_signal(signal.SIGINT)
        out, err = p.communicate(timeout=120)
        if at_save and not caught:
            err += '\n(note: SIGINT not caught during a save)'
        c['fix'] = train_cmd('{T}/run', *extra)
        return p.returncode, out, err
    return runner


def kill9_runner(c, W, T):
    p = popen(train_cmd('{T}/run', *LONG), W, T)
    wait_log(f'{T}/run/log.jsonl', 22, p)
    p.send_signal(signal.SIGKILL)
    p.communicate()
    return run(train_cmd('{T}/run', *LONG), W, T)


def lock_runner(second, first=None):
    def runner(c, W, T):
        p = popen(first or train_cmd('{T}/run', '--iters', '100000', '--lr-steps', '90000', '--log-every', '2'), W, T)
        try:
            wait_log(f'{T}/run/log.jsonl', 2, p)
            c['expect'] = f'in use by process {p.pid}'
            return run(second, W, T)
        finally:
            p.kill()
            p.communicate()
    return runner


def serial_cases():
    long_run = train_cmd('{T}/run', '--iters', '100000', '--lr-steps', '90000', '--log-every', '2')
    ft_long = ['finetune.py', 'manifest', '--subset', '{W}/subsets/full', '--init', CKPT, '--out', '{T}/run', '--mode', 'last',
               '--iters', '100000', '--lr-steps', '90000', '--log-every', '2', '--batch-size', '16']
    return [
        case('train Ctrl-C during the run', 'signal', None, 'interrupted', runner=sigint_runner(False), post=ckpt_post),
        case('train Ctrl-C during a checkpoint save', 'signal', None, 'interrupted', runner=sigint_runner(True), post=ckpt_post),
        case('train kill -9 then resume', 'signal', None, 'ok', runner=kill9_runner, post=finished_at(60), post_kind='wrong'),
        case('train two processes on one run dir', 'lock', None, 'pid', runner=lock_runner(long_run), post=None),
        case('finetune manifest on a run dir train.py holds', 'lock', None, 'pid',
             runner=lock_runner(['finetune.py', 'manifest', '--subset', '{W}/subsets/full', '--init', 'scratch', '--arch', 'alexnet',
                                 '--out', '{T}/run'])),
        case('finetune two processes on one transfer dir', 'lock', None, 'pid', runner=lock_runner(ft_long, first=ft_long)),
        case('finetune knn while another holds its dir', 'lock', None, 'pid',
             runner=lock_runner(['finetune.py', 'knn', '--subset', '{W}/subsets/full', '--init', CKPT, '--out', '{T}/run'])),
    ]


# ----------------------------------------------------------------------------------------------------------
# Verdicts


def verdict(c, rc, err, post_msg, fix_rc):
    if 'Traceback' in err:
        return 'traceback'
    if c['expect'] == 'ok':
        if rc != 0:
            return 'refused after a mistake'
        if post_msg:
            return 'lost or overwritten' if c['post_kind'] == 'lost' else 'silently wrong'
        return 'correct'
    if rc == 0:
        return 'silently wrong'
    if post_msg:  # a refused start that leaves a folder behind has a wrong result, not a lost one
        return 'lost or overwritten' if c['post_kind'] == 'lost' and not post_msg.startswith('left behind') else 'silently wrong'
    if c['expect'] not in last_line(err):
        return 'vague'
    if fix_rc not in (None, 0):
        return 'refused after a mistake'
    return 'correct'


def run_case(c, W):
    T = os.path.join(W, 'cases', c['name'].replace('/', '_').replace(' ', '_'))
    if os.path.exists(T):
        shutil.rmtree(T)
    os.makedirs(T)
    t0 = time.time()
    state, post_msg, fix_rc, note = None, None, None, ''
    try:
        if c['setup']:
            state = c['setup'](W, T)
        if callable(c['expect']):  # a name the setup picked
            c['expect'] = c['expect'](W, T)
        c['expect'] = fmt([c['expect']], W, T)[0]
        if c['runner']:
            rc, out, err = c['runner'](c, W, T)
        else:
            rc, out, err = run(c['argv'], W, T, cwd=c['cwd'], fsize=c['fsize'], ro=c['ro'])
        if c['post']:
            post_msg = c['post'](W, T, state)
        if c['fix'] and rc != 0 and 'Traceback' not in err:
            if c['fix_setup']:
                c['fix_setup'](W, T)
            frc, fout, ferr = run(c['fix'], W, T, cwd=c['cwd'])
            fix_rc = frc
            if frc != 0:
                note = f'corrected command exit {frc}: {last_line(ferr)}'
    except Exception as e:  # a fault of the survey itself: shown, never hidden
        rc, out, err = -2, '', f'survey error: {type(e).__name__}: {e}'
    v = verdict(c, rc, err, post_msg, fix_rc)
    if v == 'correct':  # keep only what needs a look (a copied run is 57 MB)
        shutil.rmtree(T, ignore_errors=True)
    if c['runner'] is None:
        c['argv_shown'] = ' '.join(fmt(c['argv'], W, T))
    else:
        c['argv_shown'] = '(own runner: see serial_cases)'
    return dict(name=c['name'], entry=(c['argv'] or ['train.py' if c['name'].startswith('train') else 'finetune.py'])[0],
                kind=c['kind'], verdict=v, rc=rc, last=last_line(err), post=post_msg, note=note, expect=c['expect'],
                argv=c['argv_shown'], secs=time.time() - t0)


def all_cases():
    return range_cases() + train_cases() + finetune_cases() + subsets_cases() + scan_cases() + other_cases() + serial_cases()


def main():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    p.add_argument('--work', default='/tmp/mistakes', help='setup data, runs and case folders')
    p.add_argument('--only', default=None, help='only the cases whose name contains this')
    a = p.parse_args()
    W = os.path.abspath(a.work)
    t0 = time.time()
    setup(W)
    print(f'setup ready in {W} ({time.time() - t0:.0f} s)')
    cases = [c for c in all_cases() if a.only is None or a.only in c['name']]
    names = [c['name'] for c in cases]
    assert len(set(names)) == len(names), [n for n in names if names.count(n) > 1]
    # 2 cores: two cases at a time; the signal and lock cases start two processes of their own, so they run alone
    results = {}
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        futs = {pool.submit(run_case, c, W): c['name'] for c in cases if not c['serial'] and c['runner'] is None}
        for f in concurrent.futures.as_completed(futs):
            r = f.result()
            results[r['name']] = r
            print(f'{r["verdict"]:24} {r["secs"]:5.1f}s  {r["name"]}', flush=True)
    for c in cases:
        if c['runner'] is not None:
            r = run_case(c, W)
            results[r['name']] = r
            print(f'{r["verdict"]:24} {r["secs"]:5.1f}s  {r["name"]}', flush=True)
    rows = [results[n] for n in names]
    report(rows, W, time.time() - t0)


def report(rows, W, secs):
    counts = {v: sum(r['verdict'] == v for r in rows) for v in VERDICTS}
    lines = ['# Mistakes survey', '', f'{len(rows)} cases in {secs:.0f} s (`.venv/bin/python bench/mistakes.py --work {W}`)', '',
             '| verdict | cases |', '| --- | ---: |', *[f'| {v} | {n} |' for v, n in counts.items()], '',
             '| case | entry point | class | verdict | last stderr line / post-check |', '| --- | --- | --- | --- | --- |']
    for r in rows:
        what = r['last'][:150]
        if r['post']:
            what += f' [post-check: {r["post"][:120]}]'
        if r['note']:
            what += f' [{r["note"][:120]}]'
        lines.append(f'| {r["name"]} | {r["entry"]} | {r["kind"]} | {r["verdict"]} | {what.replace("|", "/")} |')
    bad = [r for r in rows if r['verdict'] != 'correct']
    lines += ['', '## Not correct', '']
    for r in bad:
        lines += [f'- **{r["name"]}** ({r["verdict"]}; expected {r["expect"] or "?"!r}, exit {r["rc"]})', f'  - `{r["argv"]}`',
                  f'  - last line: `{r["last"][:300]}`'] + ([f'  - post-check: {r["post"]}'] if r['post'] else []) + \
                 ([f'  - {r["note"]}'] if r['note'] else [])
    text = '\n'.join(lines) + '\n'
    with open(os.path.join(W, 'mistakes.md'), 'w') as f:
        f.write(text)
    print(text)


if __name__ == '__main__':
    main()
