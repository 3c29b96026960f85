"""finetune.py on toy data through the real pipelines: SUN397 fine-tuning against training from scratch,
the linear probe, last-layer training, a folder data set, kNN induction, coarse-vs-fine, and bad input."""
import json
import os
import shutil

import torch

import engine
import subsets as S
from conftest import ROOT, TINY, run, run_here
from datasets import read_manifest, read_sun397, read_tsv
from models import get_model

# A short SUN397 schedule: 200 iterations of 32 (the paper's is 50K of 50); the same for both inits.
SHORT = ['--iters', '200', '--lr', '0.01', '--lr-steps', '150', '--batch-size', '32', '--eval-every', '200',
         '--save-every', '200', '--log-every', '50']


def transfer(out):
    return json.loads((out / 'transfer.json').read_text())


def test_sun397_pretrained_beats_scratch(toy, pretrained, tmp_path):
    sun = os.path.join(toy['root'], 'SUN397')
    run('finetune.py', 'sun397', '--sun-root', sun, '--init', str(pretrained / 'checkpoint.pth'), '--out', str(tmp_path / 'pre'), *SHORT)
    run('finetune.py', 'sun397', '--sun-root', sun, '--init', 'scratch', '--arch', 'alexnet', '--out', str(tmp_path / 'scratch'),
        *TINY, *SHORT)
    pre, scratch = transfer(tmp_path / 'pre'), transfer(tmp_path / 'scratch')
    assert pre['test_images'] == scratch['test_images'] == 160 and pre['classes'] == 8
    print(f"toy SUN397, split 1: pre-trained {pre['test_mean_class_acc']:.1f}% vs scratch {scratch['test_mean_class_acc']:.1f}%")
    assert pre['test_mean_class_acc'] > scratch['test_mean_class_acc'] + 5
    # The run explains itself: the split's manifests. As the paper, it trains on the whole official training list
    # (the toy's 20 images a class; SUN397's are 50), with no validation hold-out.
    meta = json.loads((tmp_path / 'pre' / 'data' / 'meta.json').read_text())
    assert (meta['train_images'], meta['val_images'], meta['test_images']) == (160, 0, 160)
    _, official, _ = read_sun397(sun, 1)
    assert read_manifest(str(tmp_path / 'pre' / 'data' / 'train.txt')) == sorted(official)
    assert 'val_top1' not in json.loads((tmp_path / 'pre' / 'metrics.json').read_text())
    args = json.loads((tmp_path / 'pre' / 'args.json').read_text())
    assert args['init'].endswith('checkpoint.pth') and args['head_lr_mult'] == 10 and args['iters'] == 200
    # the train.py flags passed through are part of the finished result's identity (--lr=0.010 is --lr 0.01)
    before = (tmp_path / 'pre' / 'transfer.json').read_bytes()
    same = [a.replace('0.01', '0.010') for a in SHORT]
    p = run('finetune.py', 'sun397', '--sun-root', sun, '--init', str(pretrained / 'checkpoint.pth'), '--out', str(tmp_path / 'pre'), *same)
    assert f'{tmp_path / "pre"} is finished' in p.stdout
    p = run('finetune.py', 'sun397', '--sun-root', sun, '--init', str(pretrained / 'checkpoint.pth'), '--out', str(tmp_path / 'pre'),
            *SHORT, '--lr', '0.02', check=False)
    assert p.returncode == 2 and 'made with other arguments (--train-flags ' in p.stderr and "'lr': 0.02" in p.stderr, p.stderr
    assert (tmp_path / 'pre' / 'transfer.json').read_bytes() == before


def test_linear_probe_and_folder_task(toy, pretrained, tmp_path):
    # The ImageNet-layout train/ folder is a folder data set: 20 class folders, test and val held out.
    run('finetune.py', 'folder', '--data', os.path.join(toy['root'], 'train'), '--mode', 'linear',
        '--init', str(pretrained / 'checkpoint.pth'), '--out', str(tmp_path / 'probe'), '--lambdas', '1e-3', '1e-1')
    r = transfer(tmp_path / 'probe')
    assert r['classes'] == 20 and r['test_images'] == 20 * 12 and r['feature_dim'] == 1024
    assert r['lambda'] in (1e-3, 1e-1) and set(r['val']) == {'0.001', '0.1'}
    assert r['test_mean_class_acc'] > 25  # chance: 5%

    # A finished result is never overwritten: the same command (a relative --init spelling included) prints it, one
    # with other arguments is refused by name before anything is written; data/*.txt are part of the identity.
    data, before = tmp_path / 'probe' / 'data', (tmp_path / 'probe' / 'transfer.json').read_bytes()
    manifests = {f: (data / f).read_bytes() for f in ('train.txt', 'val.txt', 'test.txt')}
    rel = os.path.relpath(pretrained / 'checkpoint.pth', ROOT)
    common = ['folder', '--data', os.path.join(toy['root'], 'train'), '--mode', 'linear', '--out', str(tmp_path / 'probe')]
    p = run('finetune.py', *common, '--init', rel, '--lambdas', '1e-3', '1e-1')
    assert f'{tmp_path / "probe"} is finished' in p.stdout
    for other, name in ((['--lambdas', '1e-2'], 'lambdas'), (['--lambdas', '1e-3', '1e-1', '--test-fraction', '0.5'], 'test-fraction'),
                        (['--lambdas', '1e-3', '1e-1', '--seed', '1'], 'seed')):
        p = run('finetune.py', *common, '--init', rel, *other, check=False)
        assert p.returncode == 2 and f'holds a finished result made with other arguments (--{name} ' in p.stderr, p.stderr
    assert (tmp_path / 'probe' / 'transfer.json').read_bytes() == before
    assert {f: (data / f).read_bytes() for f in manifests} == manifests


def test_last_layer_only(toy, pretrained, tmp_path):
    out = tmp_path / 'last'
    run('finetune.py', 'manifest', '--subset', toy['subset'], '--mode', 'last', '--init', str(pretrained / 'checkpoint.pth'),
        '--out', str(out), '--iters', '60', '--lr', '0.01', '--batch-size', '32', '--eval-every', '60', '--save-every', '60')
    r = transfer(out)
    assert r['test_images'] == 400 and r['test_top1'] > 20
    # Everything but the head equals the pre-trained network; the head was trained anew.
    before = torch.load(pretrained / 'checkpoint.pth', weights_only=True)['model']
    after = torch.load(out / 'checkpoint.pth', weights_only=True)['model']
    assert all(torch.equal(before[k], after[k]) for k in before if not k.startswith('classifier.6.'))
    assert not torch.equal(before['classifier.6.weight'], after['classifier.6.weight'])


def test_knn_and_coarse_fine(toy, pretrained, tmp_path):
    ckpt = str(pretrained / 'checkpoint.pth')
    run('finetune.py', 'knn', '--subset', toy['subset'], '--init', ckpt, '--out', str(tmp_path / 'knn'))
    r = transfer(tmp_path / 'knn')
    assert (r['queries'], r['database'], r['feature']) == (400, 1200, 'fc7')
    assert r['knn_top5'] >= r['knn_top1'] > 20
    p = run('finetune.py', 'knn', '--subset', toy['subset'], '--init', ckpt, '--feature', 'fc8', '--out', str(tmp_path / 'knn8'))
    assert 'trained on 20 of the 20 classes' in p.stderr  # not induction: the network saw these classes

    out = tmp_path / 'cf'
    run('finetune.py', 'coarse-fine', '--subset', toy['subset'], '--init', ckpt, '--out', str(out), '--min-subclasses', '2')
    rows = [r.split('\t') for r in (out / 'coarse_fine.tsv').read_text().splitlines()[1:]]
    # The coarse classes are the top-down-127 classes of the toy's leaves that hold 2 or more of them.
    leaves = [r[1] for r in read_tsv(os.path.join(toy['subset'], 'classes.tsv'))[1:]]
    groups = {}
    for w in leaves:
        groups.setdefault(S.taxonomy('top-down', 127)[w], []).append(w)
    assert {r[0]: int(r[2]) for r in rows} == {g: len(ws) for g, ws in groups.items() if len(ws) >= 2}
    diffs = [float(r[5]) for r in rows]
    assert diffs == sorted(diffs, reverse=True)
    assert all(abs(float(r[3]) - float(r[4]) - float(r[5])) < 0.02 for r in rows)
    assert (out / 'coarse_fine.png').stat().st_size > 1000


def test_scratch_network_follows_the_seed(toy, tmp_path):
    # --init scratch draws its weights from --seed: the same seed gives the same linear probe, another seed another
    def probe(seed, name):
        run('finetune.py', 'sun397', '--sun-root', os.path.join(toy['root'], 'SUN397'), '--init', 'scratch', '--arch',
            'alexnet', *TINY, '--mode', 'linear', '--seed', str(seed), '--out', str(tmp_path / name))
        r = transfer(tmp_path / name)
        return r['test_mean_class_acc'], r['val']  # the val scores of every L2 strength
    first = probe(0, 'a')
    assert probe(0, 'b') == first != probe(1, 'c')


def test_optimizer_groups():
    net = get_model('resnet18', 10)
    opt = engine.sgd(net, 0.1, 0.9, 1e-4, head_lr_mult=10, wd_norm=False)
    group_of = {id(p): g for g in opt.param_groups for p in g['params']}
    assert group_of[id(net.fc.weight)]['lr_mult'] == 10 and group_of[id(net.conv1.weight)]['lr_mult'] == 1
    assert group_of[id(net.bn1.weight)]['weight_decay'] == 0 and group_of[id(net.conv1.weight)]['weight_decay'] == 1e-4
    alex = get_model('alexnet', 10, width=0.25)
    opt = engine.sgd(alex, 0.01, 0.9, 5e-4, caffe_bias=True)
    group_of = {id(p): g for g in opt.param_groups for p in g['params']}
    assert (group_of[id(alex.features[0].bias)]['lr_mult'], group_of[id(alex.features[0].bias)]['weight_decay']) == (2, 0)


def test_bad_input(toy, pretrained, tmp_path):
    sun = tmp_path / 'SUN397'
    shutil.copytree(os.path.join(toy['root'], 'SUN397'), sun)
    ckpt = str(pretrained / 'checkpoint.pth')
    first = (sun / 'Partitions' / 'Training_01.txt').read_text().splitlines()[0]
    os.remove(str(sun) + first)
    torch.save(get_model('resnet18', 10).state_dict(), tmp_path / 'resnet.pth')
    subset = tmp_path / 'subset'  # a manifest with a label past its classes.tsv
    shutil.copytree(toy['subset'], subset)
    (subset / 'train.txt').write_text((subset / 'train.txt').read_text().replace(' 3\n', ' 20\n', 1))
    cases = [
        (['manifest', '--subset', str(subset), '--init', ckpt], f'{subset / "train.txt"}: label 20 is out of range for the 20'),
        (['sun397', '--sun-root', str(sun), '--split', '3', '--init', ckpt], 'split file not found'),
        (['sun397', '--sun-root', str(sun), '--init', ckpt], 'Training_01.txt:1: image not found'),
        (['sun397', '--sun-root', os.path.join(toy['root'], 'SUN397'), '--init', str(tmp_path / 'resnet.pth'), '--arch', 'alexnet'],
         'does not fit this network: missing key classifier.0.bias'),
        (['knn', '--subset', toy['subset'], '--init', ckpt, '--arch', 'resnet50'], 'holds a alexnet'),
        (['coarse-fine', '--init', ckpt], 'needs --subset'),
        (['knn', '--subset', toy['subset'], '--init', ckpt, '--lr', '0.1'], 'unrecognized arguments: --lr 0.1'),
        (['knn', '--subset', toy['subset'], '--init', 'scratch', '--arch', 'alexnet'], '--init scratch has none'),
        (['sun397', '--sun-root', str(sun), '--init', ckpt, '--mode', 'linear', '--val-fraction', '0'],
         '--mode linear chooses its L2 strength on a validation split'),
    ]
    for args, message in cases:
        out = tmp_path / 'out'
        p = run_here('finetune.py', *args, '--out', str(out), check=False)  # in this process: 9 interpreter starts cost ~20 s
        assert p.returncode == 2 and 'Traceback' not in p.stderr, (args, p.stderr)
        assert message in p.stderr.strip().splitlines()[-1], (args, p.stderr)
        assert not out.exists(), args


def test_torchvision_format_weights_load(toy, tmp_path):
    # A state_dict with torchvision's keys (test_models checks they are torchvision's) loads through the same
    # safe path, its 1000-way head replaced by an 8-way one.
    torch.save(get_model('alexnet_tv', 1000).state_dict(), tmp_path / 'alexnet-tv.pth')
    run('finetune.py', 'sun397', '--sun-root', os.path.join(toy['root'], 'SUN397'), '--mode', 'linear', '--arch', 'alexnet_tv',
        '--init', str(tmp_path / 'alexnet-tv.pth'), '--crop', '96', '--resize', '108', '--lambdas', '0.1', '--out', str(tmp_path / 'tv'))
    r = transfer(tmp_path / 'tv')
    assert r['feature_dim'] == 4096 and r['classes'] == 8 and r['test_images'] == 160


def test_library_networks_transfer(toy, tmp_path):
    """A torchvision network (weights saved by torch.save) and a timm one (weights in timm's .safetensors) each go
    through sun397 fine-tuning and the linear probe, fed the input they were made for (timm's MobileNet v1:
    mean and std 0.5, recorded in the run's args)."""
    from safetensors.torch import save_file
    sun = os.path.join(toy['root'], 'SUN397')
    torch.save(get_model('mobilenet_v2', 1000).state_dict(), tmp_path / 'mobilenet_v2.pth')
    save_file(get_model('timm:mobilenetv1_100', 1000).state_dict(), str(tmp_path / 'model.safetensors'))
    for arch, weights, dim, mean in (('mobilenet_v2', 'mobilenet_v2.pth', 1280, [0.485, 0.456, 0.406]),
                                     ('timm:mobilenetv1_100', 'model.safetensors', 1024, [0.5, 0.5, 0.5])):
        common = ['sun397', '--sun-root', sun, '--arch', arch, '--init', str(tmp_path / weights), '--crop', '96', '--resize', '108']
        name = arch.replace(':', '-')
        run('finetune.py', *common, '--out', str(tmp_path / f'{name}-ft'), '--iters', '10', '--batch-size', '16',
            '--eval-every', '10', '--save-every', '10')
        ft = transfer(tmp_path / f'{name}-ft')
        assert ft['classes'] == 8 and ft['test_images'] == 160 and 0 <= ft['test_top1'] <= 100, arch
        args = json.loads((tmp_path / f'{name}-ft' / 'args.json').read_text())
        assert (args['arch'], args['mean'], args['iters']) == (arch, mean, 10)
        run('finetune.py', *common, '--mode', 'linear', '--lambdas', '0.1', '--out', str(tmp_path / f'{name}-lin'))
        lin = transfer(tmp_path / f'{name}-lin')
        assert lin['feature_dim'] == dim and lin['test_images'] == 160 and lin['finetune_args']['mean'] == mean, arch
