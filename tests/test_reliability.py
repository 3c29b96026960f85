"""Long-run reliability: a corrupt checkpoint falls back to the one before, a failing save (a real OS error)
stops cleanly with the previous checkpoint intact, a dying rank takes a torchrun job down without a hang,
and paths in manifests and partitions cannot leave their data root."""
import collections
import json
import os
import resource
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, TINY, run
from datasets import read_manifest, read_sun397
import engine
from engine import UserError
from models import get_model
from conftest import run_here

EXTRA = ['--batch-size', '32', '--lr', '0.02', '--iters', '40', '--lr-steps', '30', '--save-every', '10',
         '--log-every', '2', '--eval-every', '40', '--seed', '5']


def args(toy, out, *extra):
    return ['train.py', '--subset', toy['subset'], '--out', str(out), *TINY, *EXTRA, *extra]


def start_and_kill(toy, out, at_step):
    """Start a run and kill -9 it once its log has reached `at_step`."""
    proc = subprocess.Popen([sys.executable, *args(toy, out)], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log, deadline = out / 'log.jsonl', time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and any(json.loads(l)['step'] >= at_step for l in log.read_text().splitlines()):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'the run finished before it could be killed'


def step_of(path):
    return torch.load(path, weights_only=True)['step']


def test_corrupt_checkpoint_falls_back_to_the_previous_one(toy, tmp_path):
    whole, broken = tmp_path / 'whole', tmp_path / 'broken'
    run_here(*args(toy, whole))
    assert [step_of(whole / n) for n in ('checkpoint.pth', 'checkpoint.1.pth', 'checkpoint.2.pth')] == [40, 30, 20]
    assert not (whole / 'checkpoint.3.pth').exists()  # --keep 3

    start_and_kill(toy, broken, 22)
    latest = step_of(broken / 'checkpoint.pth')
    assert latest >= 20 and step_of(broken / 'checkpoint.1.pth') == latest - 10
    data = (broken / 'checkpoint.pth').read_bytes()
    (broken / 'checkpoint.pth').write_bytes(data[:len(data) // 2])  # truncated, as by a crash mid-copy
    p = run_here(*args(toy, broken))
    assert 'checkpoint.pth is unreadable' in p.stderr
    assert f'resuming from {broken / "checkpoint.1.pth"} at iteration {latest - 10}' in p.stdout
    a = torch.load(whole / 'checkpoint.pth', weights_only=True)['model']
    b = torch.load(broken / 'checkpoint.pth', weights_only=True)['model']
    assert all(torch.equal(a[k], b[k]) for k in a)  # the fallback still resumes exactly


def test_failed_save_stops_and_keeps_the_previous_checkpoint(toy, tmp_path):
    out = tmp_path / 'full'
    start_and_kill(toy, out, 12)
    before = (out / 'checkpoint.pth').read_bytes()
    step = step_of(out / 'checkpoint.pth')
    limit = len(before) // 2

    def small_disk():  # a file-size limit: the next checkpoint write fails with EFBIG, as on a full disk
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
    p = subprocess.run([sys.executable, *args(toy, out)], cwd=ROOT, capture_output=True, text=True, preexec_fn=small_disk)
    assert p.returncode == 1, p.stderr
    last = p.stderr.strip().splitlines()[-1]
    assert last.startswith('error: could not save the checkpoint of iteration') and 'File too large' in last
    assert 'previous checkpoints are intact' in last and 'Traceback' not in p.stderr
    assert (out / 'checkpoint.pth').read_bytes() == before and step_of(out / 'checkpoint.pth') == step
    assert not (out / 'checkpoint.pth.tmp').exists()
    run_here(*args(toy, out))  # with room again, the same command finishes the run
    assert step_of(out / 'checkpoint.pth') == 40


def test_a_dying_rank_ends_the_job_without_a_hang(toy, tmp_path):
    out = tmp_path / 'ddp'
    cmd = [sys.executable, '-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
           *args(toy, out, '--iters', '100000', '--batch-size', '24')]
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / 'log.jsonl').exists():
            time.sleep(0.1)
        rank1 = [pid for pid in map(int, filter(str.isdigit, os.listdir('/proc'))) if worker_rank(pid) == '1']
        assert rank1, 'no rank-1 worker found'
        os.kill(rank1[0], signal.SIGKILL)
        t0 = time.time()
        proc.wait(timeout=90)
        assert proc.returncode != 0 and time.time() - t0 < 90
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            pytest.fail('the job hung after a rank died')


def worker_rank(pid):
    """RANK of a train.py worker process started by torchrun, else None."""
    try:
        if b'train.py' not in open(f'/proc/{pid}/cmdline', 'rb').read():
            return None
        env = dict(kv.split(b'=', 1) for kv in open(f'/proc/{pid}/environ', 'rb').read().split(b'\0') if b'=' in kv)
        return env.get(b'RANK', b'').decode() or None
    except OSError:
        return None


def test_paths_cannot_leave_the_data_root(toy, tmp_path):
    for line in ('../secret.JPEG 0', '/etc/passwd 0', 'train/../../x.JPEG 1'):
        (tmp_path / 'm.txt').write_text(f'train/a.JPEG 0\n{line}\n')
        with pytest.raises(UserError, match=r'm.txt:2: path .* would leave the data root'):
            read_manifest(tmp_path / 'm.txt')
    sun = tmp_path / 'SUN397'
    (sun / 'Partitions').mkdir(parents=True)
    (sun / 'ClassName.txt').write_text('/a/abbey\n')
    (sun / 'Partitions' / 'Training_01.txt').write_text('/a/abbey/../../../etc/passwd\n')
    with pytest.raises(UserError, match=r'Training_01.txt:1: path .* would leave the data root'):
        read_sun397(str(sun), 1)
    # and through train.py: a one-line error, before anything is written
    bad = tmp_path / 'subset'
    bad.mkdir()
    for name in ('classes.tsv', 'val.txt', 'meta.json'):
        (bad / name).write_text(open(os.path.join(toy['subset'], name)).read())
    (bad / 'train.txt').write_text('../../../etc/passwd 0\n')
    p = run_here('train.py', '--subset', str(bad), '--out', str(tmp_path / 'run'), check=False)
    assert p.returncode == 2 and 'would leave the data root' in p.stderr and not (tmp_path / 'run').exists()


VOC_ACTION_XML = """<annotation><filename>2010_000001.jpg</filename><size><width>500</width><height>375</height></size>
<object><name>person</name><bndbox><xmin>12.5</xmin><ymin>40</ymin><xmax>300</xmax><ymax>375</ymax></bndbox>
<actions><jumping>0</jumping><phoning>1</phoning><walking>0</walking><other>0</other></actions></object>
</annotation>"""

BILLION_LAUGHS = """<?xml version="1.0"?><!DOCTYPE lolz [<!ENTITY lol "lol">
<!ENTITY lol2 "&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;"><!ENTITY lol3 "&lol2;&lol2;&lol2;&lol2;&lol2;&lol2;">]>
<annotation><filename>&lol3;</filename></annotation>"""

EXTERNAL = """<?xml version="1.0"?><!DOCTYPE a [<!ENTITY xxe SYSTEM "file:///etc/passwd">]>
<annotation><filename>&xxe;</filename></annotation>"""


def test_voc_xml_is_read_without_expanding_entities(tmp_path):
    from datasets import read_voc_annotation
    real = read_voc_annotation(os.path.join(os.path.dirname(__file__), 'data', 'voc2007_annotation_000002.xml'))
    assert real == {'filename': '000002.jpg', 'size': (335, 500),  # VOC2007 Annotations/000002.xml, as released
                    'objects': [{'name': 'train', 'bbox': (139, 200, 207, 301), 'difficult': 0, 'truncated': 0}]}
    (tmp_path / 'action.xml').write_text(VOC_ACTION_XML)
    person = read_voc_annotation(tmp_path / 'action.xml')['objects'][0]
    assert person['bbox'] == (12, 40, 300, 375) and person['actions']['phoning'] == 1 and person['actions']['other'] == 0
    for name, text in (('laughs.xml', BILLION_LAUGHS), ('xxe.xml', EXTERNAL), ('utf16.xml', EXTERNAL)):
        path = tmp_path / name
        path.write_bytes(text.encode('utf-16') if name == 'utf16.xml' else text.encode())
        with pytest.raises(UserError, match=f'{name}: XML with a DTD or entity declarations is refused'):
            read_voc_annotation(path)


def test_one_process_per_run_directory(toy, tmp_path):
    # a second process on a run directory in use is refused in one line naming the holder; its log stays whole.
    # The lock is the OS's: kill -9 releases it.
    out = tmp_path / 'run'
    first = subprocess.Popen([sys.executable, *args(toy, out, '--iters', '100000', '--lr-steps', '90000')], cwd=ROOT,
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and not (out / 'log.jsonl').exists():
            time.sleep(0.05)
        p = run_here(*args(toy, out, '--iters', '100000', '--lr-steps', '90000'), check=False)
        assert p.returncode == 2 and 'Traceback' not in p.stderr, p.stderr
        assert p.stderr.strip() == f'error: {out} is in use by process {first.pid}; wait for it to end or pick another --out'
        assert os.listdir(tmp_path) == ['run']  # nothing beside the run directory
        p = run_here('finetune.py', 'manifest', '--subset', toy['subset'], '--init', 'scratch', '--arch', 'alexnet',
                     '--out', str(out), check=False)
        assert p.returncode == 2 and f'{out} is in use by process {first.pid}' in p.stderr, p.stderr
        assert first.poll() is None
    finally:
        first.send_signal(signal.SIGKILL)
        first.wait()
    lines = (out / 'log.jsonl').read_text().splitlines()
    assert all(json.loads(line)['step'] for line in lines[:-1])  # no record lost or interleaved
    # taken at once by another process than the killed one: this one, which never held it (lock_run_dir is re-entrant)
    assert os.path.realpath(out) not in engine._LOCKS
    engine.lock_run_dir(str(out))
    engine._LOCKS.pop(os.path.realpath(out)).close()


BAD_VALUES = [  # (script, required arguments, flag, an out-of-range value): every numeric flag family
    ('train', ['--subset', 's'], '--lr', ['0']), ('train', ['--subset', 's'], '--lr', ['nan']),
    ('train', ['--subset', 's'], '--gamma', ['-1']), ('train', ['--subset', 's'], '--clip-grad', ['-1']),
    ('train', ['--subset', 's'], '--lr-steps', ['-5']), ('train', ['--subset', 's'], '--dropout', ['1.5']),
    ('train', ['--subset', 's'], '--label-smoothing', ['1']), ('train', ['--subset', 's'], '--momentum', ['-0.1']),
    ('train', ['--subset', 's'], '--wd', ['-0.0005']), ('train', ['--subset', 's'], '--batch-size', ['0']),
    ('train', ['--subset', 's'], '--iters', ['0']), ('train', ['--subset', 's'], '--warmup', ['-1']),
    ('train', ['--subset', 's'], '--crop', ['0']), ('train', ['--subset', 's'], '--mean', ['0.5', '0.5', '120']),
    ('train', ['--subset', 's'], '--std', ['0', '1', '1']), ('train', ['--subset', 's'], '--hw-decoder-load', ['2']),
    ('train', ['--subset', 's'], '--width', ['0']), ('train', ['--subset', 's'], '--keep', ['0']),
    ('finetune', ['sun397'], '--eval-batch-size', ['0']), ('finetune', ['sun397'], '--split', ['11']),
    ('finetune', ['sun397'], '--val-fraction', ['1']), ('finetune', ['folder'], '--test-fraction', ['0']),
    ('finetune', ['sun397'], '--lambdas', ['1', '-1']), ('finetune', ['voc07'], '--scale', ['0']),
    ('finetune', ['voc07'], '--anchor-scales', ['8', '-2']), ('finetune', ['voc07'], '--workers', ['two']),
    ('subsets', ['make', 'full'], '--per-class', ['0']), ('data_dali', ['scan', 'x'], '--max-pixels', ['-1']),
]


@pytest.mark.parametrize('script,required,flag,values', BAD_VALUES, ids=[f'{c[0]}{c[2]}={",".join(c[3])}' for c in BAD_VALUES])
def test_numeric_flags_are_range_checked_when_parsed(script, required, flag, values, capsys):
    import importlib
    parser = importlib.import_module(script).get_args_parser()
    with pytest.raises(SystemExit) as e:
        parser.parse_known_args(required + [flag, *values])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert f'argument {flag}' in err and ('out of range' in err or 'is not an integer' in err), err


def test_a_failing_validation_costs_no_training(toy, tmp_path):
    # the final checkpoint is saved before the final validation: a broken val image stops the run with one line
    # naming it, and the corrected command only validates
    root, subset = tmp_path / 'root', tmp_path / 'subset'
    root.mkdir()
    for d in ('train', 'val'):
        os.symlink(os.path.join(toy['root'], d), root / d)
    (root / 'broken.JPEG').write_bytes(b'')
    subset.mkdir()
    for f in ('train.txt', 'classes.tsv', 'meta.json'):
        os.symlink(os.path.join(toy['subset'], f), subset / f)
    val = open(os.path.join(toy['subset'], 'val.txt')).read()
    (subset / 'val.txt').write_text(val + 'broken.JPEG 0\n')  # last: past the batches DALI reads at start
    cmd = ['train.py', '--subset', str(subset), '--data-root', str(root), '--out', str(tmp_path / 'run'), *TINY,
           '--batch-size', '16', '--iters', '6', '--lr-steps', '5', '--save-every', '100', '--eval-every', '100', '--log-every', '2']
    p = run_here(*cmd, check=False)
    assert p.returncode == 2 and 'Traceback' not in p.stderr
    assert f'DALI could not read or decode {root / "broken.JPEG"}' in p.stderr.strip().splitlines()[-1], p.stderr
    assert step_of(tmp_path / 'run' / 'checkpoint.pth') == 6
    (subset / 'val.txt').write_text(val)
    p = run_here(*cmd)
    assert 'resuming from' in p.stdout and 'at iteration 6' in p.stdout  # nothing left to train: it validates
    assert json.loads((tmp_path / 'run' / 'metrics.json').read_text())['step'] == 6


def test_a_full_disk_or_a_bad_out_is_one_line(toy, tmp_path):
    def limited(n):  # a file-size limit: writes past n bytes fail with EFBIG, as on a full disk
        return lambda: resource.setrlimit(resource.RLIMIT_FSIZE, (n, n))

    # at the start: args.json cannot be written; no run directory is left
    out = tmp_path / 'start'
    p = subprocess.run([sys.executable, *args(toy, out)], cwd=ROOT, capture_output=True, text=True, preexec_fn=limited(100))
    assert p.returncode == 2 and 'Traceback' not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1] == f'error: could not write the run directory {out}: File too large'
    assert not out.exists()
    # mid-run: a log write fails (engine.RunLog as train.fit uses it, in a process whose file-size limit is then lowered)
    out = tmp_path / 'log'
    out.mkdir()
    code = (f'import os, resource, engine\nlog = engine.RunLog({str(out)!r})\nlog.log(1, loss=1.0)\n'
            f'resource.setrlimit(resource.RLIMIT_FSIZE, (os.path.getsize({str(out / "log.jsonl")!r}) + 10,) * 2)\n'
            'try:\n    log.log(2, loss=2.0, note=1.0)\nexcept engine.UserError as e:\n    print(e)\n')
    p = run('-c', code)
    assert p.stdout.startswith(f'could not write the log of {out} at iteration 2: File too large; every checkpoint is intact')
    # --out that is a file, for every script that writes: one line naming it (engine.path_error), nothing written
    (tmp_path / 'file').write_text('x')
    p = run_here(*args(toy, tmp_path / 'file'), check=False)
    assert p.returncode == 2 and p.stderr.strip() == f'error: --out {tmp_path / "file"} is a file, not a run directory'
    f = str(tmp_path / 'file')
    for cmd in (['toydata.py', '--out', f], ['subsets.py', 'make', 'full', '--index', toy['index'], '--out', f],
                ['finetune.py', 'sun397', '--sun-root', os.path.join(toy['root'], 'SUN397'), '--init', 'scratch', '--arch', 'alexnet',
                 '--out', f]):
        p = run_here(*cmd, check=False)
        assert p.returncode == 2 and 'Traceback' not in p.stderr and f in p.stderr.strip().splitlines()[-1], (cmd, p.stderr)
    assert (tmp_path / 'file').read_text() == 'x'


def test_run_identity_resolves_paths_and_covers_the_manifest(toy, tmp_path):
    short = ['--batch-size', '16', '--iters', '4', '--lr-steps', '3', '--save-every', '4', '--eval-every', '4', '--log-every', '2']
    subset = tmp_path / 'subset'
    subset.mkdir()
    for f in ('train.txt', 'val.txt', 'classes.tsv', 'meta.json'):
        (subset / f).write_bytes(open(os.path.join(toy['subset'], f), 'rb').read())
    out = tmp_path / 'run'
    rel = os.path.relpath(subset, ROOT)
    run_here('train.py', '--subset', rel, '--out', os.path.relpath(out, ROOT), *TINY, *short)
    # the same run spelled with absolute paths: the same run (finished, printed)
    p = run_here('train.py', '--subset', str(subset), '--out', str(out), *TINY, *short)
    assert f'{out} is finished' in p.stdout
    # unfinished, with another network's checkpoint copied in: refused by name, the file left as it was
    (out / 'metrics.json').unlink()
    ckpt = torch.load(out / 'checkpoint.pth', weights_only=True)
    torch.save({**ckpt, 'model': get_model('resnet18', 20).state_dict()}, out / 'checkpoint.pth')
    foreign = (out / 'checkpoint.pth').read_bytes()
    p = run_here('train.py', '--subset', str(subset), '--out', str(out), *TINY, *short, check=False)
    assert p.returncode == 2 and 'Traceback' not in p.stderr, p.stderr
    assert p.stderr.strip().splitlines()[-1].startswith(f'error: {out / "checkpoint.pth"} does not fit this network: ')
    assert (out / 'checkpoint.pth').read_bytes() == foreign
    # its training manifest rewritten (half the lines): another run, refused by name, even unfinished
    lines = (subset / 'train.txt').read_text().splitlines(keepends=True)
    (subset / 'train.txt').write_text(''.join(lines[::2]))
    p = run_here('train.py', '--subset', str(subset), '--out', str(out), *TINY, *short, check=False)
    assert p.returncode == 2 and p.stderr.strip() == (f'error: {out} was trained on another {subset}/train.txt (its sha256 '
                                                      'differs); pass another --out, or restore the manifest it was made with')


def test_ctrl_c_during_a_save_waits_for_it(tmp_path, monkeypatch):
    path = str(tmp_path / 'checkpoint.pth')
    for step in (1, 2):
        engine.save_checkpoint(path, {'step': step}, keep=3)
    replace = os.replace

    def interrupted_replace(src, dst):  # Ctrl-C arrives between the shift of the older files and the last rename
        os.kill(os.getpid(), signal.SIGINT)
        replace(src, dst)
    monkeypatch.setattr(os, 'replace', interrupted_replace)
    with pytest.raises(KeyboardInterrupt):  # raised once the renames are done, not between them
        engine.save_checkpoint(path, {'step': 3}, keep=3)
    assert [step_of(p) for p in engine.checkpoint_paths(path, 3)] == [3, 2, 1]
    monkeypatch.undo()

    class Interrupting:  # ... and in the middle of torch.save's write, whose zip writer would make it a RuntimeError
        def __reduce__(self):
            os.kill(os.getpid(), signal.SIGINT)
            return (collections.OrderedDict, ())
    with pytest.raises(KeyboardInterrupt):
        engine.save_checkpoint(path, {'step': 4, 'x': Interrupting()}, keep=3)
    assert [step_of(p) for p in engine.checkpoint_paths(path, 3)] == [4, 3, 2]
    assert not os.path.exists(path + '.tmp')
