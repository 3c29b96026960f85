"""Model structure: torchvision key compatibility (against a recorded list), the Caffe AlexNet's layout,
penultimate features, and the ResNet normalisation options."""
import json
import os

import pytest
import torch
import torch.nn as nn

from models import get_model

HERE = os.path.dirname(os.path.abspath(__file__))


@pytest.mark.parametrize('arch', ['alexnet_tv', 'resnet18', 'resnet50'])
def test_torchvision_keys_and_shapes(arch):
    # Recorded from torchvision 0.29.2 (see the file's _source); no torchvision import here.
    with open(os.path.join(HERE, 'data', 'torchvision_keys.json')) as f:
        want = json.load(f)[arch]
    got = [[k, list(v.shape)] for k, v in get_model(arch, 1000).state_dict().items()]
    assert got == want


def test_caffe_alexnet_layout():
    net = get_model('alexnet', 1000)
    convs = [m for m in net.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [96, 256, 384, 384, 256]
    assert [c.groups for c in convs] == [1, 2, 1, 2, 2]  # conv2, conv4, conv5 split across Krizhevsky's two GPUs
    assert sum(isinstance(m, nn.LocalResponseNorm) for m in net.features) == 2
    assert [m.p for m in net.classifier if isinstance(m, nn.Dropout)] == [0.5, 0.5]
    assert net.head is net.classifier[6] and net.head_name == 'classifier.6'
    # fc8 has the same key in both AlexNets, so transfer code replaces one name
    assert 'classifier.6.weight' in get_model('alexnet_tv', 10).state_dict()
    x = torch.randn(2, 3, 227, 227)
    assert net.features(x).shape == (2, 256, 6, 6)  # 227 px gives fc6 its 6x6 input with no pooling trick
    net.eval()
    assert net.forward_features(x).shape == (2, 4096)
    assert torch.allclose(net.head(net.forward_features(x)), net(x))


@pytest.mark.parametrize('arch,dim', [('resnet18', 512), ('resnet50', 2048)])
def test_resnet_features(arch, dim):
    net = get_model(arch, 7).eval()
    x = torch.randn(2, 3, 64, 64)
    assert net.forward_features(x).shape == (2, dim)
    assert net(x).shape == (2, 7) and net.head is net.fc


def test_resnet_norms():
    gn = get_model('resnet18', 10, norm='gn')
    assert isinstance(gn.bn1, nn.GroupNorm) and not any(isinstance(m, nn.BatchNorm2d) for m in gn.modules())
    noscale = get_model('resnet18', 10, norm='bn-noscale')
    bns = [m for m in noscale.modules() if isinstance(m, nn.BatchNorm2d)]
    assert bns and all(not m.weight.requires_grad and m.bias.requires_grad for m in bns)
    # same keys as plain BN, so checkpoints move between them
    assert noscale.state_dict().keys() == get_model('resnet18', 10).state_dict().keys()
