"""The networks, by name: the paper's Caffe AlexNet, any torchvision classification model, any timm model.

    from models import get_model, features, head
    net = get_model('alexnet', num_classes=1000)              # the paper's Caffe AlexNet (ours: no library has it)
    net = get_model('resnet50', num_classes=1000, norm='gn')  # torchvision's ResNet-50 with GroupNorm
    net = get_model('densenet121', 10)                        # any torchvision builder name
    net = get_model('timm:inception_v4', 10)                  # any timm model
    feats = features(net, x)                                  # penultimate features, for transfer and kNN
    head(net), net.head_name                                  # the last layer, which transfer replaces, and its key prefix
    input_spec('timm:inception_v4')                           # {'size': 299, 'resize': 341, 'mean': ..., ...}

Every network has the library's own state_dict keys, so published weights load with load_state_dict. The one
interface they share is a string attribute, `head_name`, naming the last nn.Linear; `features` reads that
layer's input. Nothing else is wrapped, so a torchvision ResNet-50 here is torchvision's ResNet-50.
"""
import difflib
import functools
import math

import torch
import torch.nn as nn

from engine import UserError

# The project's own nets, looked up first: `alexnet` is the paper's Caffe net, not torchvision's.
OWN = ('alexnet', 'alexnet_tv', 'bninception', 'nasnet_mobile')
NORMS = ('bn', 'gn', 'bn-noscale')
# Kornblith et al. 2019's 16 networks, by the paper's names, and the --arch that builds each here. The paper
# trained TensorFlow implementations; these are the libraries' PyTorch ones, which can differ in details (where a
# ResNet block strides, padding, BN epsilon) but not in depth, width or feature size.
KORNBLITH = {'Inception v1': 'googlenet', 'BN-Inception': 'bninception', 'Inception v3': 'inception_v3',
             'Inception v4': 'timm:inception_v4', 'Inception-ResNet v2': 'timm:inception_resnet_v2',
             'ResNet-50': 'resnet50', 'ResNet-101': 'resnet101', 'ResNet-152': 'resnet152',
             'DenseNet-121': 'densenet121', 'DenseNet-169': 'densenet169', 'DenseNet-201': 'densenet201',
             'MobileNet v1': 'timm:mobilenetv1_100', 'MobileNet v2': 'mobilenet_v2', 'MobileNet v2 (1.4)': 'timm:mobilenetv2_140',
             'NASNet-A Mobile': 'nasnet_mobile', 'NASNet-A Large': 'timm:nasnetalarge'}
# ImageNet RGB mean and std on the 0-1 scale (torchvision's values), the normalisation of torchvision's weights.
IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
# Caffe's input: pixels on the 0-255 scale minus the ImageNet mean, not divided by a std. The mean is the per-channel
# average of Caffe's mean image (python/caffe/imagenet/ilsvrc_2012_mean.npy: B 104.007, G 116.669, R 122.679; the
# per-pixel image itself is not used). On the 0-1 scale of --mean/--std: mean / 255, std 1 / 255. The channel order
# is RGB, not Caffe's BGR: it matters only for Caffe's own weights, which wmig does not load.
CAFFE_MEAN, CAFFE_STD = (122.679 / 255, 116.669 / 255, 104.007 / 255), (1 / 255, 1 / 255, 1 / 255)


# ----------------------------------------------------------------------------------------------------------
# AlexNet: the paper's network. Ours, because neither library has Caffe's bvlc_alexnet (LRN, two groups) or
# a width multiplier (the toy runs train a quarter-width net on a CPU).


class AlexNet(nn.Module):
    head_name = 'classifier.6'

    def __init__(self, features, classifier):
        super().__init__()
        self.features = features
        # Adaptive pooling keeps the 6x6 fc6 input for any crop: an identity at 227/224 px, and it lets the
        # toy data train at 96 px without changing fc6's shape.
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = classifier

    def forward(self, x):
        # Caffe order: fc -> relu -> dropout, so the fc7 features (fc8's input) are post-ReLU and, in training,
        # after dropout: the features the paper transfers.
        return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))


def alexnet(num_classes=1000, variant='caffe', dropout=0.5, width=1.0, init='caffe'):
    """AlexNet. variant='caffe' is the paper's network (Caffe's bvlc_alexnet, Krizhevsky et al. 2012):
    96-256-384-384-256 convolutions, LRN after conv1 and conv2, conv2/4/5 in two groups, dropout on fc6 and
    fc7, 227 px input. variant='torchvision' is torchvision's single-GPU variant (64-192-384-256-256, no LRN,
    no groups), whose keys and shapes equal torchvision's `alexnet` at width 1 (tests/test_models.py checks).

    width scales every conv and fc width (a narrower net for CPU toy runs and width ablations); 1.0 is the
    published network. init: 'caffe' is bvlc_alexnet's Gaussian fillers (the Caffe net only), 'torch' keeps
    torch's default (Kaiming-uniform) initialisation."""
    def w(c):  # scaled width, kept even so the two-group convolutions still split
        return max(2, 2 * round(c * width / 2))
    if variant == 'caffe':
        # bvlc_alexnet/train_val.prototxt: LRN local_size 5, alpha 1e-4, beta 0.75, applied before pooling.
        features = nn.Sequential(
            nn.Conv2d(3, w(96), 11, stride=4), nn.ReLU(inplace=True), nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(w(96), w(256), 5, padding=2, groups=2), nn.ReLU(inplace=True), nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0),
            nn.MaxPool2d(3, 2),
            nn.Conv2d(w(256), w(384), 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w(384), w(384), 3, padding=1, groups=2), nn.ReLU(inplace=True),
            nn.Conv2d(w(384), w(256), 3, padding=1, groups=2), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2))
        classifier = nn.Sequential(
            nn.Linear(w(256) * 6 * 6, w(4096)), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(w(4096), w(4096)), nn.ReLU(inplace=True), nn.Dropout(dropout),
            nn.Linear(w(4096), num_classes))
    elif variant == 'torchvision':
        features = nn.Sequential(
            nn.Conv2d(3, w(64), 11, stride=4, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(w(64), w(192), 5, padding=2), nn.ReLU(inplace=True), nn.MaxPool2d(3, 2),
            nn.Conv2d(w(192), w(384), 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w(384), w(256), 3, padding=1), nn.ReLU(inplace=True),
            nn.Conv2d(w(256), w(256), 3, padding=1), nn.ReLU(inplace=True),
            nn.MaxPool2d(3, 2))
        classifier = nn.Sequential(
            nn.Dropout(dropout), nn.Linear(w(256) * 6 * 6, w(4096)), nn.ReLU(inplace=True),
            nn.Dropout(dropout), nn.Linear(w(4096), w(4096)), nn.ReLU(inplace=True),
            nn.Linear(w(4096), num_classes))
    else:
        raise ValueError(f'unknown AlexNet variant {variant!r}; choose caffe or torchvision')
    net = AlexNet(features, classifier)
    if variant == 'caffe' and init == 'caffe':
        caffe_alexnet_init(net, width)
    return net


# bvlc_alexnet/train_val.prototxt's fillers, layer by layer (conv1-5, fc6-8): gaussian weight std, constant bias
CAFFE_INIT = ((0.01, 0.), (0.01, 0.1), (0.01, 0.), (0.01, 0.1), (0.01, 0.1), (0.005, 0.1), (0.005, 0.1), (0.01, 0.))


def caffe_alexnet_init(net, width=1.0):
    """Caffe's initialisation of bvlc_alexnet: Gaussian weights (std 0.01, 0.005 for fc6 and fc7) and constant
    biases (0.1 for conv2, conv4, conv5, fc6, fc7, which start their ReLUs active; 0 elsewhere).

    A narrower net (width < 1, ours: Caffe has none) has width x the fan-in in every layer after conv1, so its
    activations would shrink by sqrt(width) a layer; those stds are divided by sqrt(width) to keep the published
    network's activation scale (at width 0.25 the toy net otherwise sat at chance for its first ~200 iterations)."""
    layers = [m for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for i, (m, (std, bias)) in enumerate(zip(layers, CAFFE_INIT, strict=True)):
        nn.init.normal_(m.weight, std=std if i == 0 else std / math.sqrt(width))
        nn.init.constant_(m.bias, bias)


# ----------------------------------------------------------------------------------------------------------
# Two of Kornblith et al. 2019's 16 networks that neither torchvision nor timm has. Ours, trained from scratch
# here (no published PyTorch weights), with ImageNet normalisation.

# BN-Inception (Ioffe & Szegedy 2015, Fig. 5) with TF-slim's channels (research/slim/nets/inception_v2.py).
# Per block: 1x1, 3x3 reduce, 3x3, double-3x3 reduce, double-3x3, pool, pool projection (0: pass-through), stride.
# 4c and 4d project the pool to 96 as TF-slim does, so they output the 576 of the paper's output column (its
# pool-projection column and Caffe's port say 128, giving 608); 11.19M parameters at 1000 classes.
BN_INCEPTION = (
    (64, 64, 64, 64, 96, 'avg', 32, 1), (64, 64, 96, 64, 96, 'avg', 64, 1), (0, 128, 160, 64, 96, 'max', 0, 2),  # 3a-c
    (224, 64, 96, 96, 128, 'avg', 128, 1), (192, 96, 128, 96, 128, 'avg', 128, 1),                             # 4a-b
    (160, 128, 160, 128, 160, 'avg', 96, 1), (96, 128, 192, 160, 192, 'avg', 96, 1), (0, 128, 192, 192, 256, 'max', 0, 2),
    (352, 192, 320, 160, 224, 'avg', 128, 1), (352, 192, 320, 192, 224, 'max', 128, 1))                       # 5a-b


def conv_bn_relu(cin, cout, k=1, stride=1):  # bias-free conv, BN (TF-slim's eps 1e-3), ReLU
    return nn.Sequential(nn.Conv2d(cin, cout, k, stride, k // 2, bias=False), nn.BatchNorm2d(cout, eps=1e-3),
                         nn.ReLU(inplace=True))


class InceptionBlock(nn.Module):
    def __init__(self, cin, c1, c3r, c3, d3r, d3, pool, proj, stride):
        super().__init__()
        branches = [conv_bn_relu(cin, c1)] if c1 else []
        branches += [nn.Sequential(conv_bn_relu(cin, c3r), conv_bn_relu(c3r, c3, 3, stride)),
                     nn.Sequential(conv_bn_relu(cin, d3r), conv_bn_relu(d3r, d3, 3), conv_bn_relu(d3, d3, 3, stride))]
        p = nn.MaxPool2d(3, stride, 1) if pool == 'max' else nn.AvgPool2d(3, stride, 1, count_include_pad=False)
        branches.append(nn.Sequential(p, conv_bn_relu(cin, proj)) if proj else p)
        self.branches, self.out_channels = nn.ModuleList(branches), c1 + c3 + d3 + (proj or cin)

    def forward(self, x):
        return torch.cat([b(x) for b in self.branches], 1)


class BNInception(nn.Module):
    head_name = 'fc'

    def __init__(self, num_classes=1000):
        super().__init__()
        layers = [conv_bn_relu(3, 64, 7, 2), nn.MaxPool2d(3, 2, 1), conv_bn_relu(64, 64), conv_bn_relu(64, 192, 3),
                  nn.MaxPool2d(3, 2, 1)]
        cin = 192
        for block in BN_INCEPTION:
            layers.append(InceptionBlock(cin, *block))
            cin = layers[-1].out_channels
        self.features = nn.Sequential(*layers)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)  # 1024 features; no auxiliary head, no dropout
        for m in self.modules():  # torchvision's ResNet initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))


def nasnet_mobile(num_classes=1000):
    """NASNet-A Mobile, 4 @ 1056 (Zoph et al. 2018; 5.29M parameters at 1000 classes, their Table 2: 5.3M),
    assembled from timm's NASNet-A cells with TF-slim's mobile config (research/slim/nets/nasnet/nasnet.py:
    32 stem filters, 44 filters, x2 per reduction, 4 cells per stack). timm's NASNetALarge hard-codes 6 cells
    a stack and Large's wiring, so the assembly is ours; module names follow Cadene's nasnetamobile."""
    from timm.layers import ConvNormAct, create_classifier
    from timm.models.nasnet import CellStem0, CellStem1, FirstCell, NormalCell, ReductionCell0, ReductionCell1

    class NASNetAMobile(nn.Module):
        head_name = 'last_linear'

        def __init__(self, stem=32, mult=2, num_features=1056, per_stack=4):
            super().__init__()
            c = num_features // 24
            self.conv0 = ConvNormAct(3, stem, 3, stride=2, padding=0, apply_act=False,
                                     norm_layer=functools.partial(nn.BatchNorm2d, eps=0.001, momentum=0.1))
            self.cell_stem_0 = CellStem0(stem, num_channels=c // mult ** 2, pad_type='same')
            self.cell_stem_1 = CellStem1(stem, num_channels=c // mult, pad_type='same')
            self.cells, prev, cur = [], c, c * mult  # channels of the two inputs of the next cell
            for s in range(3):
                f = c * mult ** s  # filters per branch; a normal cell outputs 6f, a reduction cell 4f
                cells = [(f'reduction_cell_{s - 1}', (ReductionCell0, ReductionCell1)[s - 1], f, 4 * f)] if s else []
                cells += [(f'cell_{s * (per_stack + 2) + i}', NormalCell if i else FirstCell, f if i else f // 2, 6 * f)
                          for i in range(per_stack)]
                for name, cls, left, out in cells:
                    self.add_module(name, cls(in_chs_left=prev, out_chs_left=left, in_chs_right=cur, out_chs_right=f,
                                              pad_type='same'))
                    self.cells.append(name)
                    prev, cur = cur, out
            self.act = nn.ReLU(inplace=True)
            self.global_pool, self.last_linear = create_classifier(num_features, num_classes, pool_type='avg')

        def forward(self, x):
            x0 = self.conv0(x)
            x1 = self.cell_stem_0(x0)
            x_prev, x = x1, self.cell_stem_1(x0, x1)
            # Every cell takes the two previous outputs (TF-slim's skip_reduction_layer_input=0 for Mobile; Large
            # passes the first cell after a reduction the one before the last instead)
            for name in self.cells:
                x_prev, x = x, getattr(self, name)(x, x_prev)
            return self.last_linear(self.global_pool(self.act(x)))

    return NASNetAMobile()


# ----------------------------------------------------------------------------------------------------------
# Normalisation layers, passed to a library builder as its norm_layer


def norm_layer(norm):
    """The norm_layer callable (channels -> module) of --norm, or None for the builder's own BatchNorm."""
    if norm == 'bn':
        return None
    if norm == 'gn':
        # He et al. 2019 ("Rethinking ImageNet Pre-training") train from scratch with GroupNorm, 32 groups
        # (Wu & He 2018). Keys stay the BN layer's weight/bias, without running statistics.
        return lambda channels: nn.GroupNorm(32, channels)
    if norm == 'bn-noscale':
        # Kornblith et al. 2019: BN without its scale gamma is one of the regularisers that hurt transfer.
        # gamma stays in the state_dict, fixed at 1 and excluded from training, so checkpoints move between
        # bn and bn-noscale.
        def bn_noscale(channels):
            bn = nn.BatchNorm2d(channels)
            bn.weight.requires_grad_(False)
            return bn
        return bn_noscale
    raise ValueError(f'unknown norm {norm!r}; choose from {NORMS}')


# ----------------------------------------------------------------------------------------------------------
# Names -> networks. Library imports are lazy: torchvision adds ~1.6 s and timm ~2 s to a process start.


def _torchvision_names():
    import torchvision.models as tvm
    return tvm.list_models(module=tvm)  # classification models only (not detection, segmentation, video)


def _timm():
    try:
        import timm
    except ImportError:
        raise UserError('timm: models need the timm package, which is not installed: pip install timm '
                        '(requirements.txt pins the tested version)') from None
    return timm


def check_arch(arch):
    """Raise UserError with the valid names unless `arch` names a network get_model can build."""
    if arch in OWN:
        return
    if arch.startswith('timm:'):
        timm = _timm()
        name = arch[5:]
        if name not in timm.list_models():
            close = difflib.get_close_matches(name, timm.list_models(), 3)
            raise UserError(f'--arch {arch}: timm has no model {name!r}' + (f' (did you mean {", ".join("timm:" + c for c in close)}?)' if close else '')
                            + '; timm.list_models() lists them')
        return
    names = _torchvision_names()
    if arch not in names:
        close = difflib.get_close_matches(arch, [*OWN, *names], 3)
        raise UserError(f'unknown --arch {arch!r}' + (f' (did you mean {", ".join(close)}?)' if close else '') +
                        f'; choose {", ".join(OWN)}, a torchvision classification model ({", ".join(names[:4])}, ... '
                        f'{len(names)} in all: torchvision.models.list_models()), or timm:NAME for a timm model')


def get_model(arch, num_classes, norm='bn', dropout=0.5, width=1.0, weight_init='default'):
    """The one place an --arch string becomes a network, with a new `num_classes`-way last layer.

    arch: 'alexnet' (the paper's Caffe net) or 'alexnet_tv' (ours, with a width); a torchvision builder name
    ('resnet50', 'densenet121', 'inception_v3', ...); or 'timm:NAME'. norm (--norm) goes to the builder's
    norm_layer; dropout and width apply to the AlexNets, weight_init 'caffe' (bvlc_alexnet's fillers) to the Caffe
    AlexNet only; 'default' is the builder's own initialisation. Inception networks are built without their auxiliary
    classifiers (Kornblith et al. 2019 count the auxiliary head among the regularisers that hurt transfer)."""
    check_arch(arch)
    if weight_init not in ('default', 'caffe') or weight_init == 'caffe' and arch != 'alexnet':
        raise UserError(f'--weight-init {weight_init}: choose default, or caffe for the Caffe alexnet')
    if arch in OWN:
        if norm != 'bn':
            raise UserError(f'--norm {norm}: {arch} is built with its own normalisation; --norm applies to library builders with a norm_layer')
        if width != 1.0 and not arch.startswith('alexnet'):
            raise UserError(f'--width {width}: the width multiplier is for the AlexNets')
        if arch.startswith('alexnet'):
            model = alexnet(num_classes, 'caffe' if arch == 'alexnet' else 'torchvision', dropout, width,
                            'caffe' if weight_init == 'caffe' else 'torch')
        else:
            model = BNInception(num_classes) if arch == 'bninception' else nasnet_mobile(num_classes)
    else:
        if width != 1.0:
            raise UserError(f'--width {width}: the width multiplier is for the AlexNets; {arch} comes from its library as published')
        kw = {} if norm == 'bn' else {'norm_layer': norm_layer(norm)}
        try:
            if arch.startswith('timm:'):
                model = _timm().create_model(arch[5:], pretrained=False, num_classes=num_classes, **kw)
            else:
                import torchvision.models as tvm
                if arch in ('googlenet', 'inception_v3'):
                    kw.update(aux_logits=False, init_weights=True)
                model = tvm.get_model(arch, weights=None, num_classes=num_classes, **kw)
        except TypeError as e:
            if 'norm_layer' not in str(e):
                raise
            raise UserError(f'--norm {norm}: {arch}\'s builder takes no norm_layer; --norm applies to the ResNets, '
                            f'MobileNets and other builders that do') from None
        except ValueError as e:  # GroupNorm(32, C) with C not a multiple of 32
            raise UserError(f'--norm {norm} does not fit {arch}: {e}') from None
        model.head_name = _head_name(model)
    return model


def _head_name(model):
    """Key prefix of the last layer: timm names it in its config; for torchvision it is the last nn.Linear
    registered (fc, classifier.1, heads.head, ...), which tests/test_models.py checks against the output."""
    cfg = getattr(model, 'pretrained_cfg', None)
    if cfg and cfg.get('classifier') and isinstance(model.get_submodule(cfg['classifier']), nn.Linear):
        return cfg['classifier']
    linear = [name for name, m in model.named_modules() if isinstance(m, nn.Linear)]
    if not linear:
        raise UserError(f'{type(model).__name__} has no nn.Linear last layer to replace (a convolutional classifier, '
                        f'such as SqueezeNet\'s, is not supported)')
    return linear[-1]


def head(model):
    """The last layer, which transfer replaces."""
    return model.get_submodule(model.head_name)


def features(model, x):
    """Penultimate features: the input of the last layer (AlexNet's fc7 after ReLU; a ResNet's pooled 2048).
    Read with a hook, so every architecture is treated alike and none is rewritten."""
    seen = []
    hook = head(model).register_forward_pre_hook(lambda m, inputs: seen.append(inputs[0]))
    try:
        model(x)
    finally:
        hook.remove()
    return seen[0]


def input_spec(arch):
    """{'size', 'resize', 'resize_mode', 'mean', 'std', 'weight_init'} a network was made for: its native crop, the
    side(s) resized to before the crop ('shorter', or 'warp' for both), the RGB normalisation (0-1 scale) of its
    published weights, and its initialisation ('caffe' or the library's 'default')."""
    if arch == 'alexnet':  # Caffe's bvlc_alexnet: 227 px crops of images warped to 256 x 256, Caffe's input scale
        return {'size': 227, 'resize': 256, 'resize_mode': 'warp', 'mean': list(CAFFE_MEAN), 'std': list(CAFFE_STD),
                'weight_init': 'caffe'}
    spec = {'resize_mode': 'shorter', 'mean': list(IMAGENET_MEAN), 'std': list(IMAGENET_STD), 'weight_init': 'default'}
    if arch.startswith('timm:'):
        cfg = _timm().models.get_pretrained_cfg(arch[5:])
        if cfg:
            size = cfg.input_size[-1]
            return {**spec, 'size': size, 'resize': int(math.floor(size / cfg.crop_pct)), 'mean': list(cfg.mean),
                    'std': list(cfg.std)}
        return {**spec, 'size': 224, 'resize': 256}
    # torchvision (and alexnet_tv): ImageNet statistics; 299 px for Inception v3 (Szegedy et al. 2016), else 224
    size = 299 if arch == 'inception_v3' else 224
    return {**spec, 'size': size, 'resize': 342 if size == 299 else 256}


def check_input_size(model, size, arch):
    """Raise UserError if `model` cannot take size x size inputs (one eval-mode forward of a single image)."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            model(torch.zeros(1, 3, size, size))
    except RuntimeError as e:
        raise UserError(f'--crop {size}: {arch} cannot take {size} px inputs ({str(e).splitlines()[0][:100]}); '
                        f'its native size is {input_spec(arch)["size"]}') from None
    finally:
        model.train(was_training)


def published_weights(arch, spec):
    """The state_dict of a library's published weights for `arch`, downloaded through the library's own cache
    (torch.hub's for torchvision, Hugging Face's for timm). spec: 'torchvision:DEFAULT' or another tag of
    torchvision.models.get_model_weights(arch) ('torchvision:IMAGENET1K_V1'); 'timm:DEFAULT' or a timm
    pretrained tag ('timm:tf_in1k'). Without a network: a one-line error that says which file to fetch."""
    lib, _, tag = spec.partition(':')
    if arch is None:
        raise UserError(f'--init {spec} needs --arch (the network whose published weights to load)')
    check_arch(arch)
    if lib == 'torchvision':
        if arch.startswith('timm:') or arch == 'alexnet':
            raise UserError(f'--init {spec}: torchvision publishes no weights for --arch {arch}'
                            + ('; use alexnet_tv for torchvision\'s AlexNet' if arch == 'alexnet' else '; use --init timm:DEFAULT'))
        import torchvision.models as tvm
        enum = tvm.get_model_weights('alexnet' if arch == 'alexnet_tv' else arch)
        try:
            weights = enum[tag or 'DEFAULT']
        except KeyError:
            raise UserError(f'--init {spec}: {arch} has no torchvision weights {tag!r}; choose DEFAULT or one of '
                            f'{", ".join(w.name for w in enum)}') from None
        try:
            return weights.get_state_dict(progress=True)
        except OSError as e:  # urllib's URLError, a refused connection, a full cache disk
            raise UserError(f'could not download {weights.url} ({getattr(e, "reason", e)}); on a machine without '
                            f'network, download that file elsewhere and pass it as --init FILE') from None
    if not arch.startswith('timm:'):
        raise UserError(f'--init {spec}: timm weights need a timm --arch (timm:NAME), not {arch}')
    name = arch[5:] + ('' if tag in ('', 'DEFAULT') else '.' + tag)
    timm = _timm()
    try:
        return timm.create_model(name, pretrained=True).state_dict()
    except RuntimeError as e:  # a tag timm does not know, or a model with no published weights
        raise UserError(f'--init {spec}: {e}') from None
    except OSError as e:  # no network (huggingface_hub's LocalEntryNotFoundError is an OSError)
        cfg = timm.models.get_pretrained_cfg(name)
        where = f'https://huggingface.co/{cfg.hf_hub_id}' if cfg and cfg.hf_hub_id else 'the model\'s Hugging Face page'
        raise UserError(f'could not download timm weights {name} ({type(e).__name__}); on a machine without network, '
                        f'download model.safetensors from {where} elsewhere and pass it as --init FILE') from None
