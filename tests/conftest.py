"""Shared fixtures: one toy data set (real JPEGs in the ILSVRC layout) with its index and 'full' subset,
made once per test session through the real command-line scripts."""
import contextlib
import io
import os
import runpy
import subprocess
import sys
import warnings

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


def run_here(script, *args, check=True):
    """conftest.run(script, *args) in this process: the script's own `if __name__ == '__main__'` block (runpy) with
    the command line's sys.argv and working directory, its stdout and stderr captured, but no new interpreter to
    start and import torch and DALI into (2-4 s a run on two cores). An exception the script does not turn into an
    exit status propagates and fails the test, where a process would print a Traceback. The run-directory locks it
    took are released, as the end of its process would. Runs that need their own process (a kill, an rlimit, torchrun,
    another environment) stay with conftest.run."""
    import engine
    out, err, code = io.StringIO(), io.StringIO(), 0
    argv, cwd, locks = sys.argv, os.getcwd(), set(engine._LOCKS)
    sys.argv = [script, *args]
    os.chdir(ROOT)
    try:
        with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err), warnings.catch_warnings():
            # warnings printed to its stderr as they come, under a new interpreter's filters (not pytest's record)
            warnings.resetwarnings()
            for action, category, module in (('default', DeprecationWarning, '__main__'), ('ignore', DeprecationWarning, ''),
                                             ('ignore', PendingDeprecationWarning, ''), ('ignore', ImportWarning, ''),
                                             ('ignore', ResourceWarning, '')):
                warnings.filterwarnings(action, category=category, module=module, append=True)
            warnings.showwarning = lambda message, category, filename, lineno, file=None, line=None: sys.stderr.write(
                warnings.formatwarning(message, category, filename, lineno, line))
            try:
                runpy.run_path(os.path.join(ROOT, script), run_name='__main__')
            except SystemExit as e:  # as the interpreter exits: None is 0, a message goes to stderr with status 1
                if e.code is None or isinstance(e.code, int):
                    code = e.code or 0
                else:
                    print(e.code, file=sys.stderr)
                    code = 1
    finally:
        sys.argv = argv
        os.chdir(cwd)
        for key in set(engine._LOCKS) - locks:
            engine._LOCKS.pop(key).close()
    p = subprocess.CompletedProcess([script, *args], code, out.getvalue(), err.getvalue())
    if check and code:
        raise AssertionError(f'{" ".join([script, *args])} exited {code}:\n{p.stdout[-3000:]}\n{p.stderr[-3000:]}')
    return p


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
