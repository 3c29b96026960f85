"""The networks: plain constructor functions with torchvision-compatible state_dict keys.

    from models import get_model
    net = get_model('alexnet', num_classes=1000)           # the paper's Caffe AlexNet
    net = get_model('resnet50', num_classes=1000, norm='gn')
    feats = net.forward_features(x)                        # penultimate features (fc7 / pooled), for transfer and kNN
    net.head                                               # the last layer, which transfer replaces; net.head_name is its key prefix

Keys and shapes of `alexnet_tv`, `resnet18` and `resnet50` are torchvision's, so published weights load with
load_state_dict; the Caffe AlexNet uses the same scheme (`features.N`, `classifier.N`), with fc8 at
`classifier.6` in both AlexNets.
"""
import torch
import torch.nn as nn

ARCHS = ('alexnet', 'alexnet_tv', 'resnet18', 'resnet50')
NORMS = ('bn', 'gn', 'bn-noscale')
INPUT_SIZE = {'alexnet': 227, 'alexnet_tv': 224, 'resnet18': 224, 'resnet50': 224}


# ----------------------------------------------------------------------------------------------------------
# AlexNet


class AlexNet(nn.Module):
    head_name = 'classifier.6'

    def __init__(self, features, classifier):
        super().__init__()
        self.features = features
        # Adaptive pooling keeps the 6x6 fc6 input for any crop: an identity at 227/224 px, and it lets the
        # toy data train at 96 px without changing fc6's shape.
        self.avgpool = nn.AdaptiveAvgPool2d((6, 6))
        self.classifier = classifier

    @property
    def head(self):
        return self.classifier[6]

    def forward_features(self, x):
        """fc7 activations (after ReLU and, in training, dropout): the features the paper transfers."""
        x = torch.flatten(self.avgpool(self.features(x)), 1)
        return self.classifier[:6](x)

    def forward(self, x):
        return self.head(self.forward_features(x))


def alexnet(num_classes=1000, variant='caffe', dropout=0.5, width=1.0):
    """AlexNet. variant='caffe' is the paper's network (Caffe's bvlc_alexnet, Krizhevsky et al. 2012):
    96-256-384-384-256 convolutions, LRN after conv1 and conv2, conv2/4/5 in two groups, dropout on fc6 and
    fc7, 227 px input. variant='torchvision' is torchvision's single-GPU variant (64-192-384-256-256, no LRN,
    no groups), whose keys and shapes match torchvision's so its published weights load.

    width scales every conv and fc width (a narrower net for CPU toy runs and width ablations); 1.0 is the
    published network."""
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
        # Caffe order: fc -> relu -> dropout, so fc7 features are post-ReLU and fc8 is classifier.6.
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
    return AlexNet(features, classifier)


# ----------------------------------------------------------------------------------------------------------
# ResNet (He et al. 2016), torchvision's layout (stride on the 3x3 conv of a bottleneck, "ResNet v1.5")


def norm_layer(norm, channels):
    if norm == 'bn':
        return nn.BatchNorm2d(channels)
    if norm == 'gn':
        # He et al. 2019 ("Rethinking ImageNet Pre-training") train from scratch with GroupNorm, 32 groups
        # (Wu & He 2018). Keys stay `bnN.weight/bias`, so the layout matches torchvision's (no running stats).
        return nn.GroupNorm(32, channels)
    if norm == 'bn-noscale':
        # Kornblith et al. 2019: BN without its scale parameter gamma is one of the regularisers that hurt
        # transfer. gamma stays in the state_dict, fixed at 1 and excluded from training.
        bn = nn.BatchNorm2d(channels)
        bn.weight.requires_grad_(False)
        return bn
    raise ValueError(f'unknown norm {norm!r}; choose from {NORMS}')


def conv_norm(norm, cin, cout, k, stride=1):
    return nn.Conv2d(cin, cout, k, stride=stride, padding=k // 2, bias=False), norm_layer(norm, cout)


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, cin, width, stride, norm):
        super().__init__()
        self.conv1, self.bn1 = conv_norm(norm, cin, width, 3, stride)
        self.conv2, self.bn2 = conv_norm(norm, width, width, 3)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != width:
            self.downsample = nn.Sequential(*conv_norm(norm, cin, width, 1, stride))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, cin, width, stride, norm):
        super().__init__()
        self.conv1, self.bn1 = conv_norm(norm, cin, width, 1)
        self.conv2, self.bn2 = conv_norm(norm, width, width, 3, stride)
        self.conv3, self.bn3 = conv_norm(norm, width, width * 4, 1)
        self.relu = nn.ReLU(inplace=True)
        self.downsample = None
        if stride != 1 or cin != width * 4:
            self.downsample = nn.Sequential(*conv_norm(norm, cin, width * 4, 1, stride))

    def forward(self, x):
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu(out + (x if self.downsample is None else self.downsample(x)))


class ResNet(nn.Module):
    head_name = 'fc'

    def __init__(self, block, layers, num_classes, norm):
        super().__init__()
        self.conv1, self.bn1 = conv_norm(norm, 3, 64, 7, stride=2)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(3, stride=2, padding=1)
        cin = 64
        for i, (n, width) in enumerate(zip(layers, (64, 128, 256, 512))):
            blocks = []
            for j in range(n):
                blocks.append(block(cin, width, 2 if (j == 0 and i > 0) else 1, norm))
                cin = width * block.expansion
            setattr(self, f'layer{i + 1}', nn.Sequential(*blocks))
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(cin, num_classes)
        for m in self.modules():  # torchvision's initialisation
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode='fan_out', nonlinearity='relu')

    @property
    def head(self):
        return self.fc

    def forward_features(self, x):
        """Globally pooled last-stage features (512 or 2048 wide)."""
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        return torch.flatten(self.avgpool(x), 1)

    def forward(self, x):
        return self.fc(self.forward_features(x))


def resnet18(num_classes=1000, norm='bn'):
    return ResNet(BasicBlock, [2, 2, 2, 2], num_classes, norm)


def resnet50(num_classes=1000, norm='bn'):
    return ResNet(Bottleneck, [3, 4, 6, 3], num_classes, norm)


def get_model(arch, num_classes, norm='bn', dropout=0.5, width=1.0):
    """The one place an --arch string becomes a network (argparse limits it to ARCHS).
    norm applies to ResNets, dropout and width to AlexNets."""
    if arch == 'alexnet':
        return alexnet(num_classes, 'caffe', dropout, width)
    if arch == 'alexnet_tv':
        return alexnet(num_classes, 'torchvision', dropout, width)
    if arch == 'resnet18':
        return resnet18(num_classes, norm)
    if arch == 'resnet50':
        return resnet50(num_classes, norm)
    raise ValueError(f'unknown architecture {arch!r}; choose from {ARCHS}')
