"""Shared fixtures: one toy data set (real JPEGs in the ILSVRC layout) with its index and 'full' subset,
made once per test session through the real command-line scripts."""
import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, ROOT)


def run(*args, check=True, **kw):
    """Run a project script with this interpreter from the project root; returns the CompletedProcess."""
    p = subprocess.run([sys.executable, *args], cwd=ROOT, capture_output=True, text=True, **kw)
    if check and p.returncode != 0:
        raise AssertionError(f'{" ".join(args)} exited {p.returncode}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}')
    return p


@pytest.fixture(scope='session')
def toy(tmp_path_factory):
    """{'root': image root, 'index': index.tsv, 'subset': the 'full' subset folder} of a 20-class toy set
    (60 train + 20 val images per class)."""
    base = tmp_path_factory.mktemp('toy')
    root, subsets = str(base / 'data'), str(base / 'subsets')
    run('toydata.py', '--out', root)
    run('subsets.py', 'index', '--imagenet', root, '--out', subsets)
    run('subsets.py', 'make', 'full', '--index', os.path.join(subsets, 'index.tsv'))
    return {'root': root, 'index': os.path.join(subsets, 'index.tsv'), 'subset': os.path.join(subsets, 'full')}


# A narrow AlexNet at 96 px: the real network code at a size two CPU cores train in seconds, with the toy recipe's
# torch initialisation and ImageNet input (experiments/common.py TOY_ALEXNET, the one list, says why).
from experiments.common import TOY_ALEXNET  # noqa: E402
TINY = ['--crop', '96', '--resize', '108', '--workers', '2', *TOY_ALEXNET]


@pytest.fixture(scope='session')
def pretrained(toy, tmp_path_factory):
    """A run directory of a toy pre-training run (300 iterations on the 20 classes, about 30 s)."""
    out = tmp_path_factory.mktemp('pretrained') / 'run'
    p = run('train.py', '--subset', toy['subset'], '--out', str(out), *TINY, '--batch-size', '64', '--lr', '0.02',
        '--iters', '300', '--lr-steps', '250', '--eval-every', '300', '--save-every', '300')
    (out.parent / 'stdout.log').write_text(p.stdout)
    return out
