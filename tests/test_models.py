"""Networks by name: Kornblith et al.'s 16 built and trained through train.py, torchvision's keys checked against
torchvision itself, the Caffe AlexNet's layout, penultimate features, the normalisation options, weights files."""
import json
import os

import pytest
import torch
import torch.nn as nn

import models
from conftest import run
from datasets import read_manifest, write_manifest
from models import features, get_model, head

# The paper's 16 networks: wmig's name, native input size and penultimate feature width (the README's table).
SIXTEEN = {
    'Inception v1': ('googlenet', 224, 1024), 'BN-Inception': ('bninception', 224, 1024),
    'Inception v3': ('inception_v3', 299, 2048), 'Inception v4': ('timm:inception_v4', 299, 1536),
    'Inception-ResNet v2': ('timm:inception_resnet_v2', 299, 1536),
    'ResNet-50': ('resnet50', 224, 2048), 'ResNet-101': ('resnet101', 224, 2048), 'ResNet-152': ('resnet152', 224, 2048),
    'DenseNet-121': ('densenet121', 224, 1024), 'DenseNet-169': ('densenet169', 224, 1664),
    'DenseNet-201': ('densenet201', 224, 1920),
    'MobileNet v1': ('timm:mobilenetv1_100', 224, 1024), 'MobileNet v2': ('mobilenet_v2', 224, 1280),
    'MobileNet v2 (1.4)': ('timm:mobilenetv2_140', 224, 1792),
    'NASNet-A Mobile': ('nasnet_mobile', 224, 1056), 'NASNet-A Large': ('timm:nasnetalarge', 331, 4032),
}


def test_kornblith_sixteen_by_name():
    assert models.KORNBLITH == {name: arch for name, (arch, _, _) in SIXTEEN.items()}
    x = torch.randn(2, 3, 80, 80)  # the Inceptions' smallest input is 75 px
    for name, (arch, size, dim) in SIXTEEN.items():
        net = get_model(arch, 7).eval()
        assert models.input_spec(arch)['size'] == size, name
        with torch.no_grad():
            f, out = features(net, x), net(x)
        assert f.shape == (2, dim) and out.shape == (2, 7), name
        # the hooked layer is the last one: the output is the head applied to the features
        assert torch.allclose(head(net)(f), out, atol=1e-5), name


def test_kornblith_sixteen_train(toy, tmp_path):
    """Each of the 16 goes through train.py (in this process: 16 interpreter starts would cost a minute) for two
    iterations at 80 px on 8 toy images, and its checkpoint records the network's own normalisation."""
    import train
    small = tmp_path / 'subset'
    small.mkdir()
    for name in ('classes.tsv', 'meta.json'):
        (small / name).write_bytes(open(os.path.join(toy['subset'], name), 'rb').read())
    for split, n in (('train', 8), ('val', 4)):
        rows = read_manifest(os.path.join(toy['subset'], f'{split}.txt'))
        write_manifest(str(small / f'{split}.txt'), rows[::len(rows) // n][:n])
    for name, (arch, _, _) in SIXTEEN.items():
        out = tmp_path / arch.replace(':', '-')
        args = train.get_args_parser().parse_args([
            '--subset', str(small), '--out', str(out), '--arch', arch, '--crop', '80', '--resize', '92', '--batch-size', '4',
            '--iters', '2', '--lr', '0.001', '--eval-every', '2', '--save-every', '2', '--log-every', '1', '--workers', '2'])
        train.main(args)
        log = [json.loads(line) for line in (out / 'log.jsonl').read_text().splitlines()]
        assert [r['step'] for r in log if 'loss' in r] == [1, 2] and all(r['loss'] == r['loss'] for r in log if 'loss' in r), name
        assert json.loads((out / 'metrics.json').read_text())['val_n'] == 4, name
        ckpt = torch.load(out / 'checkpoint.pth', weights_only=True)
        assert ckpt['args']['arch'] == arch and ckpt['args']['mean'] == models.input_spec(arch)['mean'], name
        assert ckpt['model'].keys() == get_model(arch, 20).state_dict().keys(), name
        for f in out.glob('checkpoint*.pth'):  # NASNet-A Large's is 0.7 GB with its momentum
            f.unlink()


def test_library_keys_are_the_libraries():
    import timm
    import torchvision.models as tvm
    # ours, where torchvision has the same network: alexnet_tv at width 1 is torchvision's AlexNet, key for key
    ours = [(k, v.shape) for k, v in get_model('alexnet_tv', 1000).state_dict().items()]
    assert ours == [(k, v.shape) for k, v in tvm.alexnet().state_dict().items()]
    # the rest are the libraries' own classes, so their published state_dicts load as they are
    assert type(get_model('resnet50', 10)) is tvm.ResNet
    assert get_model('resnet50', 1000).state_dict().keys() == tvm.resnet50().state_dict().keys()
    assert get_model('timm:inception_v4', 1000).state_dict().keys() == timm.create_model('inception_v4').state_dict().keys()


def test_caffe_alexnet_layout():
    net = get_model('alexnet', 1000)
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]  # conv2, conv4, conv5 split across Krizhevsky's two GPUs
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in net.features) == 2
    assert [m.p for m in net.classifier if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert head(net) is net.classifier[6] and net.head_name == 'classifier.6'
    x = torch.randn(2, 3, 227, 227)
    assert net.features(x).shape == (2, 256, 6, 6)  # 227 px gives fc6 its 6x6 input with no pooling trick
    net.eval()
    assert features(net, x).shape == (2, 4096)  # fc7, after its ReLU
    assert features(net, x).min() >= 0


def test_norms():
    gn = get_model('resnet18', 10, norm='gn')
    assert isinstance(gn.bn1, nn.GroupNorm) and not any(isinstance(m, nn.BatchNorm2d) for m in gn.modules())
    noscale = get_model('resnet18', 10, norm='bn-noscale')
    bns = [m for m in noscale.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.weight.requires_grad and m.bias.requires_grad for m in bns)
    # same keys as plain BN, so checkpoints move between them
    assert noscale.state_dict().keys() == get_model('resnet18', 10).state_dict().keys()
    mobile = get_model('mobilenet_v2', 10, norm='bn-noscale')  # any builder with a norm_layer
    assert not any(m.weight.requires_grad for m in mobile.modules() if isinstance(m, nn.BatchNorm2d))
    with pytest.raises(models.UserError, match=r'--norm gn does not fit mobilenet_v2: num_channels \(16\)'):
        get_model('mobilenet_v2', 10, norm='gn')  # GroupNorm's 32 groups need multiples of 32 channels


def test_weight_files_of_each_library_load(toy, tmp_path):
    """A torchvision state_dict (torch.save) and a timm one (.safetensors, timm's format) load through the same
    check; another architecture's weights are refused in one line."""
    from safetensors.torch import save_file

    import engine
    src = get_model('densenet121', 1000)
    torch.save(src.state_dict(), tmp_path / 'densenet121.pth')
    dst = get_model('densenet121', 5)
    engine.load_init(dst, *engine.read_weights(str(tmp_path / 'densenet121.pth'), 'densenet121')[:1], 'densenet121.pth')
    assert torch.equal(dst.features.conv0.weight, src.features.conv0.weight)
    assert not torch.equal(dst.classifier.weight[:5], src.classifier.weight[:5])  # the new head is new

    timm_src = get_model('timm:mobilenetv1_100', 1000)
    save_file(timm_src.state_dict(), str(tmp_path / 'model.safetensors'))
    sd, src_args = engine.read_weights(str(tmp_path / 'model.safetensors'))
    assert src_args is None and sd.keys() == timm_src.state_dict().keys()

    with pytest.raises(engine.UserError, match='densenet121.pth does not fit this network: missing key'):
        engine.load_init(get_model('resnet18', 5), sd=engine.read_weights(str(tmp_path / 'densenet121.pth'))[0],
                         path=str(tmp_path / 'densenet121.pth'))


def test_library_errors_are_one_line(toy, tmp_path):
    """No network here: published weights fail with a one-line error that says how to pass a file; a missing timm
    (shadowed by a package that fails to import) is named; nothing is written."""
    fake = tmp_path / 'no_timm' / 'timm'
    fake.mkdir(parents=True)
    (fake / '__init__.py').write_text('raise ImportError("No module named timm")\n')
    env = dict(os.environ, TORCH_HOME=str(tmp_path / 'torch'), HF_HOME=str(tmp_path / 'hf'), HF_HUB_OFFLINE='1')
    sun = os.path.join(toy['root'], 'SUN397')
    out = tmp_path / 'out'
    cases = [
        (['finetune.py', 'sun397', '--sun-root', sun, '--init', 'torchvision:DEFAULT', '--arch', 'resnet18'], {},
         'could not download https://download.pytorch.org/models/resnet18-f37072fd.pth'),
        (['finetune.py', 'sun397', '--sun-root', sun, '--init', 'torchvision:IMAGENET1K_V9', '--arch', 'resnet18'], {},
         "resnet18 has no torchvision weights 'IMAGENET1K_V9'; choose DEFAULT or one of IMAGENET1K_V1"),
        (['finetune.py', 'sun397', '--sun-root', sun, '--init', 'timm:DEFAULT', '--arch', 'timm:mobilenetv1_100'], {},
         'download model.safetensors from https://huggingface.co/timm/mobilenetv1_100'),
        (['train.py', '--subset', toy['subset'], '--arch', 'timm:inception_v4'], {'PYTHONPATH': str(fake.parent)},
         'timm: models need the timm package, which is not installed: pip install timm'),
    ]
    for args, extra, message in cases:
        p = run(*args, '--out', str(out), check=False, env={**env, **extra})
        assert p.returncode == 2 and 'Traceback' not in p.stderr, (args, p.stderr[-2000:])
        assert message in p.stderr.strip().splitlines()[-1], (args, p.stderr[-2000:])
        assert not out.exists(), args


def test_caffe_alexnet_initialisation():
    """bvlc_alexnet/train_val.prototxt's fillers, layer by layer; a narrower net scales the stds after conv1 by
    1 / sqrt(width) (its fan-ins shrink by width)."""
    torch.manual_seed(0)
    for width in (1.0, 0.25):
        net = get_model('alexnet', 1000, width=width, weight_init='caffe')
        layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
        want = [(0.01, 0.), (0.01, 0.1), (0.01, 0.), (0.01, 0.1), (0.01, 0.1), (0.005, 0.1), (0.005, 0.1), (0.01, 0.)]
        for i, (m, (std, bias)) in enumerate(zip(layers, want)):
            std = std if i == 0 else std / width ** 0.5
            assert abs(m.weight.std().item() / std - 1) < 0.05 and abs(m.weight.mean().item()) < std / 10, (width, i)
            assert torch.all(m.bias == bias), (width, i)
    # torch's default stays available (--weight-init default), and is the only choice for other networks
    default = get_model('alexnet', 10, weight_init='default')
    assert default.features[0].bias.abs().max() > 0
    with pytest.raises(models.UserError, match='--weight-init caffe'):
        get_model('resnet18', 10, weight_init='caffe')
