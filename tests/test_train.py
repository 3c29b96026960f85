"""train.py end to end on the toy data, through the real command line: learning, exact resume after a
kill -9, 2-process torchrun, a diverging run, gradient clipping, and one-line errors for a user's mistakes."""
import json
import os
import random
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, TINY, run, run_here


def train_args(toy, out, *extra):
    return ['train.py', '--subset', toy['subset'], '--out', str(out), *TINY, *extra]


def read_log(out):
    with open(os.path.join(out, 'log.jsonl')) as f:
        return [json.loads(line) for line in f]


def test_learns_toy_data(toy, pretrained):
    out = pretrained  # conftest: 300 iterations of batch 64 on the toy data
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['val_n'] == 400
    assert metrics['val_top1'] > 20, metrics  # 20 classes: chance is 5%
    for name in ('args.json', 'checkpoint.pth', 'log.jsonl'):
        assert (out / name).exists()
    assert any(f.startswith('events.out.tfevents') for f in os.listdir(out / 'tb'))
    stdout = (out.parent / 'stdout.log').read_text()
    assert f'checkpoint:  {out / "checkpoint.pth"}' in stdout and 'tensorboard --logdir' in stdout
    # Running the same command again on a finished run changes nothing and says so.
    args = json.loads((out / 'args.json').read_text())
    again = run_here(*train_args(toy, out, '--batch-size', '64', '--lr', '0.02', '--iters', '300', '--lr-steps', '250',
                            '--eval-every', '300', '--save-every', '300'))
    assert 'is finished' in again.stdout and args['git_sha']


def test_resume_after_kill_is_exact(toy, tmp_path):
    # 40 iterations of 32 cross the 37-iteration epoch boundary and the LR step at 30 after any resume point.
    extra = ['--batch-size', '32', '--lr', '0.02', '--iters', '40', '--lr-steps', '30', '--save-every', '10',
             '--log-every', '5', '--eval-every', '40', '--seed', '3']
    whole, killed = tmp_path / 'whole', tmp_path / 'killed'
    run_here(*train_args(toy, whole, *extra))

    kill_at = random.randint(12, 32)
    # The killed run hands uint8 images over (normalised in the model) and resumes with the float hand-over: both
    # give the same images bit for bit, so the run must still equal the whole one exactly.
    proc = subprocess.Popen([sys.executable, *train_args(toy, killed, *extra, '--hand-over', 'uint8')], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    log = killed / 'log.jsonl'
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None:
        if log.exists() and any(json.loads(l)['step'] >= kill_at for l in log.read_text().splitlines()):
            break
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'the run finished before it could be killed'
    assert not (killed / 'metrics.json').exists()
    ckpt_step = torch.load(killed / 'checkpoint.pth', weights_only=True)['step']
    assert 0 < ckpt_step < 40

    p = run_here(*train_args(toy, killed, *extra))
    assert f'resuming from {killed / "checkpoint.pth"} at iteration {ckpt_step}' in p.stdout
    a = torch.load(whole / 'checkpoint.pth', weights_only=True)
    b = torch.load(killed / 'checkpoint.pth', weights_only=True)
    assert a['step'] == b['step'] == 40
    for k in a['model']:
        assert torch.equal(a['model'][k], b['model'][k]), k  # bit for bit on CPU
    losses = lambda out: [(r['step'], r['loss']) for r in read_log(out) if 'loss' in r]
    assert losses(whole) == losses(killed)
    assert json.loads((whole / 'metrics.json').read_text()) == json.loads((killed / 'metrics.json').read_text())


@pytest.mark.parametrize('world', [2, 3])
def test_torchrun_validation_counts_each_image_once(toy, tmp_path, world):
    from data_dali import classification_loader
    from engine import evaluate
    from models import get_model
    out = tmp_path / 'ddp'
    # 400 val images in batches of 24 / world per process: 400 is a multiple of neither 24 nor the world.
    run('-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', str(world),
        *train_args(toy, out, '--batch-size', '24', '--iters', '8', '--eval-every', '8', '--save-every', '8', '--log-every', '4'))
    metrics = json.loads((out / 'metrics.json').read_text())
    assert metrics['val_n'] == 400
    # The same weights evaluated by one process give the same accuracy: no image was lost or counted twice.
    ckpt = torch.load(out / 'checkpoint.pth', weights_only=True)
    assert len(ckpt['loader']) == world and ckpt['step'] == 8
    net = get_model('alexnet', 20, width=0.25)
    net.load_state_dict(ckpt['model'])
    val = classification_loader(toy['root'], os.path.join(toy['subset'], 'val.txt'), 50, False, crop=96, resize=108)
    single = evaluate(net, val, torch.device('cpu'), torch.float32, 1)
    assert single['n'] == 400 and single['top1'] == pytest.approx(metrics['val_top1'])


def test_nonfinite_loss_stops_and_keeps_last_good_checkpoint(toy, tmp_path):
    out = tmp_path / 'nan'
    # x1e8 at iteration 10 makes SGD diverge right after the checkpoint at 10.
    p = run_here(*train_args(toy, out, '--batch-size', '32', '--lr', '0.02', '--iters', '40', '--lr-steps', '10',
                        '--gamma', '1e8', '--save-every', '5', '--log-every', '5'), check=False)
    assert p.returncode == 1 and 'non-finite' in p.stderr and 'Traceback' not in p.stderr
    ckpt = torch.load(out / 'checkpoint.pth', weights_only=True)
    assert ckpt['step'] == 10
    assert all(torch.isfinite(v).all() for v in ckpt['model'].values())
    assert not (out / 'metrics.json').exists()


def test_clip_grad_holds_each_step_to_the_clipped_norm(toy, tmp_path):
    out = tmp_path / 'clip'
    lr, clip = 0.02, 0.05  # the gradient norm is about 0.3 at initialisation (batch 32), so every step is clipped
    run_here(*train_args(toy, out, '--batch-size', '32', '--lr', str(lr), '--schedule', 'constant', '--momentum', '0',
                    '--wd', '0', '--clip-grad', str(clip), '--iters', '2', '--save-every', '1', '--keep', '2',
                    '--log-every', '1', '--eval-every', '2'))
    before, after = (torch.load(out / name, weights_only=True)['model'] for name in ('checkpoint.1.pth', 'checkpoint.pth'))
    # Plain SGD: the step is lr x lr_mult x the clipped gradient; AlexNet's biases learn at 2x (Caffe).
    norm = sum(((after[k] - v) / (lr * (2 if v.ndim == 1 else 1))).pow(2).sum() for k, v in before.items()).sqrt()
    assert norm.item() == pytest.approx(clip, rel=1e-3)
    assert all(r['grad_norm_max'] > clip for r in read_log(out) if 'loss' in r)  # logged before clipping


def bad_inputs(toy, tmp_path):
    empty = tmp_path / 'empty_class'
    (empty / 'train' / 'n01440764').mkdir(parents=True)
    notimg = tmp_path / 'not_image'
    (notimg / 'train' / 'n01440764').mkdir(parents=True)
    (notimg / 'train' / 'n01440764' / 'a.txt').write_text('not an image')  # a broken .JPEG is the data scan's
    out = str(tmp_path / 'run')
    return [
        (['train.py', '--subset', str(tmp_path / 'nope'), '--out', out], 'nope/train.txt not found'),
        (['train.py', '--subset', toy['subset'], '--out', out, '--data-root', str(tmp_path / 'gone')], 'image root not found'),
        (['train.py', '--subset', toy['subset'], '--out', out, '--arch', 'resnet05'], "unknown --arch 'resnet05' (did you mean resnet50"),
        (['train.py', '--subset', toy['subset'], '--out', out, '--arch', 'timm:inception_v9'], "timm has no model 'inception_v9'"),
        (['train.py', '--subset', toy['subset'], '--out', out, '--arch', 'inception_v3', '--crop', '64', '--resize', '72'],
         '--crop 64: inception_v3 cannot take 64 px inputs'),
        (['train.py', '--subset', toy['subset'], '--out', out, '--arch', 'densenet121', '--norm', 'gn'], "densenet121's builder takes no norm_layer"),
        (['train.py', '--subset', toy['subset'], '--out', out, '--batch-size', '5000'], 'larger than the 1200 training images'),
        (['train.py', '--subset', toy['subset'], '--out', out, '--compile-mode', 'reduce-overhead'],
         '--compile-mode reduce-overhead needs --compile'),
        (['train.py', '--subset', toy['subset'], '--out', out, '--batch-size', '0'], 'argument --batch-size: 0 is out of range: must be >= 1'),
        (['train.py', '--subset', toy['subset'], '--out', out, '--epochs', '2'], 'go beyond --epochs 2: with --epochs they count epochs'),
        (['train.py', '--subset', toy['subset'], '--out', out, '--arch', 'alexnet', '--norm', 'gn'], 'alexnet is built with its own normalisation'),
        (['train.py', '--subset', toy['subset'], '--out', out, '--hw-decoder-load', '1.5'], 'argument --hw-decoder-load: 1.5 is out of range: must be >= 0 and <= 1'),
        (['subsets.py', 'index', '--imagenet', str(empty), '--out', str(tmp_path / 'i1')], 'empty class folder'),
        (['subsets.py', 'index', '--imagenet', str(notimg), '--out', str(tmp_path / 'i2')], 'not an image file'),
        (['subsets.py', 'make', 'full', '--index', str(tmp_path / 'none.tsv')], 'index not found'),
    ]


def test_bad_input_gets_one_line_error(toy, tmp_path, capsys, monkeypatch):
    # In this process (each case as a new process took 39 s of the suite): the script's own parser and main, under
    # engine.run_main as its __main__ runs them; an exception other than SystemExit would fail the test.
    import engine
    import subsets
    import train
    for args, message in bad_inputs(toy, tmp_path):
        script = {'train.py': train, 'subsets.py': subsets}[args[0]]
        monkeypatch.setattr(sys, 'argv', [args[0]])  # argparse's prog, as on the command line
        with pytest.raises(SystemExit) as e:
            engine.run_main(script.main, script.get_args_parser().parse_args(args[1:]))
        err = capsys.readouterr().err
        assert e.value.code == 2, (args, err)
        last = err.strip().splitlines()[-1]
        assert last.startswith(('error:', 'train.py: error:', 'subsets.py make: error:')) and message in last, (args, err)
        assert not os.path.exists(tmp_path / 'run'), 'a failed start must not leave a run directory'


def test_runs_made_before_new_flags_keep_their_meaning(tmp_path):
    """An args.json written before --mean/--std/--resize-mode/--weight-init existed ran with ImageNet's input, the
    shorter-side resize and torch's initialisation: the same run resumes, and one with today's AlexNet defaults
    (Caffe's) is another configuration, refused by name."""
    import engine
    import train
    old = {'arch': 'alexnet', 'lr': 0.01}
    (tmp_path / 'args.json').write_text(json.dumps(old))
    same = {**old, **train.ADDED_LATER}
    engine.check_run_dir(str(tmp_path), same, added=train.ADDED_LATER)  # no error
    caffe = dict(same, resize_mode='warp', weight_init='caffe')
    with pytest.raises(engine.UserError, match="--resize-mode 'shorter' -> 'warp', --weight-init 'default' -> 'caffe'"):
        engine.check_run_dir(str(tmp_path), caffe, added=train.ADDED_LATER)


def test_half_written_log_line_does_not_block_resume(tmp_path):
    """A crash mid-write leaves half a record at the end of log.jsonl: resuming drops it (and the records past the
    checkpoint) instead of stopping; a damaged record before the last is refused, naming the line."""
    import engine
    log = tmp_path / 'log.jsonl'
    log.write_text('{"step": 50, "loss": 2.9}\n{"step": 100, "loss": 2.5}\n{"step": 150, "lo')
    engine.trim_log(str(log), 100)
    assert [json.loads(line)['step'] for line in log.read_text().splitlines()] == [50, 100]
    log.write_text('{"step": 50, "lo\n{"step": 100, "loss": 2.5}\n')
    with pytest.raises(engine.UserError, match='log.jsonl:1 is not a JSON record'):
        engine.trim_log(str(log), 100)


def test_finished_run_with_damaged_or_lost_metrics(toy, tmp_path):
    """A damaged metrics.json is refused in one line, never printed as a result; once it is deleted, the same
    command validates the final checkpoint again and writes the same metrics."""
    out = tmp_path / 'run'
    args = train_args(toy, out, '--batch-size', '32', '--iters', '4', '--eval-every', '4', '--save-every', '4')
    run_here(*args)
    first = json.loads((out / 'metrics.json').read_text())
    (out / 'metrics.json').write_text('{"step": 4, "val_to')
    p = run_here(*args, check=False)
    assert p.returncode == 2 and 'Traceback' not in p.stderr
    assert 'metrics.json is damaged' in p.stderr.strip().splitlines()[-1]
    (out / 'metrics.json').unlink()
    run_here(*args)
    assert json.loads((out / 'metrics.json').read_text()) == first
