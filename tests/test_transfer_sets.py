"""datasets.read_transfer on toydata.py's miniature of each of Kornblith et al. 2019's twelve transfer sets, written
in the official layouts through the command line: class counts, split sizes, labels, the official splits (checked
against the list files themselves), Caltech-101's seeded 30-per-class rule, Birdsnap's missing images, the CIFAR
PNG export; and hand-broken copies, each a one-line UserError naming the file."""
import errno
import filecmp
import json
import os
import pickle
import shutil

import numpy as np
import pytest
import scipy.io
from PIL import Image

import datasets
import toydata
from conftest import run
from datasets import CALTECH_TRAIN_PER_CLASS, TRANSFER_SETS, VOC_CLASSES, export_cifar, read_transfer
from engine import UserError

PER = 5  # --transfer-per-class
SMALL = ['--train-per-class', '1', '--val-per-class', '1', '--sun-per-class', '8', '--sun-train', '3', '--sun-test', '3',
         '--sun-splits', '2', '--places-train', '0', '--voc07-trainval', '6', '--voc07-test', '4',
         '--voc12-per-action', '0', '--transfer-per-class', str(PER)]
# name -> (classes, train, val, test) of the toy written with SMALL
EXPECTED = {
    'food101': (4, 4 * PER, 0, 4 * PER), 'cifar10': (4, 4 * PER, 0, 4 * PER), 'cifar100': (4, 4 * PER, 0, 4 * PER),
    'birdsnap': (4, 4 * PER - 1, 0, 4 * PER - 1),  # one train and one test image never downloaded
    'sun397': (8, 8 * 3, 0, 8 * 3), 'cars': (4, 4 * PER, 0, 4 * PER), 'aircraft': (4, 4 * PER, 4 * PER, 4 * PER),
    'voc07-cls': (20, 3, 3, 4), 'dtd': (4, 4 * PER, 4 * PER, 4 * PER), 'pets': (4, 4 * PER, 0, 4 * PER),
    'caltech101': (4, 4 * CALTECH_TRAIN_PER_CLASS, 0, sum(toydata.CALTECH_TOY_IMAGES) - 4 * CALTECH_TRAIN_PER_CLASS),
    'flowers102': (4, 4 * PER, 4 * PER, 4 * PER),
}


@pytest.fixture(scope='module')
def out(tmp_path_factory):
    out = tmp_path_factory.mktemp('transfer')
    run('toydata.py', '--out', str(out), *SMALL)
    return out


def root_of(out, name):
    return str({'sun397': out / 'SUN397', 'voc07-cls': out / 'VOCdevkit'}.get(name, out / 'transfer' / name))


def lines(path):
    with open(path) as f:
        return [line.strip() for line in f if line.strip()]


def official_test(name, root):
    """The test relpaths as the official list files give them, read here apart from datasets.py (None: no list)."""
    j = os.path.join
    if name == 'food101':
        with open(j(root, 'meta', 'test.json')) as f:
            return {f'images/{p}.jpg' for v in json.load(f).values() for p in v}
    if name == 'birdsnap':
        return {f'download/images/{p}' for p in lines(j(root, 'test_images.txt'))[1:]
                if os.path.exists(j(root, 'download', 'images', p))}
    if name == 'sun397':
        return {p.lstrip('/') for p in lines(j(root, 'Partitions', 'Testing_01.txt'))}
    if name == 'cars':
        ann = scipy.io.loadmat(j(root, 'cars_test_annos_withlabels.mat'), squeeze_me=True)['annotations']
        return {f'cars_test/{a["fname"]}' for a in ann}
    if name == 'aircraft':
        return {f'data/images/{p.split()[0]}.jpg' for p in lines(j(root, 'data', 'images_variant_test.txt'))}
    if name == 'voc07-cls':
        return {f'JPEGImages/{i}.jpg' for i in lines(j(root, 'VOC2007', 'ImageSets', 'Main', 'test.txt'))}
    if name == 'dtd':
        return {f'images/{p}' for p in lines(j(root, 'labels', 'test1.txt'))}
    if name == 'pets':
        return {f'images/{p.split()[0]}.jpg' for p in lines(j(root, 'annotations', 'test.txt'))}
    if name == 'flowers102':
        return {f'jpg/image_{i:05d}.jpg' for i in scipy.io.loadmat(j(root, 'setid.mat'))['tstid'].ravel()}
    return None


def class_in_path(name, cls, rel):
    """Whether an image's path agrees with its class name, for the layouts that put the class in the path."""
    if name == 'pets':
        return os.path.basename(rel).rsplit('_', 1)[0] == cls
    if name in ('food101', 'dtd', 'caltech101', 'sun397', 'birdsnap'):
        return f'/{cls.lstrip("/").replace(" ", "_").replace(chr(39), "")}/' in f'/{rel}'
    return True


@pytest.mark.parametrize('name', list(TRANSFER_SETS))
def test_reads_the_official_layout(out, name):
    root = root_of(out, name)
    d = read_transfer(name, root)
    classes, *sizes = EXPECTED[name]
    assert len(d['names']) == classes and [len(d[s]) for s in ('train', 'val', 'test')] == sizes
    for split in ('train', 'val', 'test'):
        for rel, label in d[split]:
            assert os.path.isfile(os.path.join(d['image_root'], rel)) and not os.path.isabs(rel)
            if name == 'voc07-cls':
                assert len(label) == 20 and set(label) <= {-1, 0, 1}
            else:
                assert isinstance(label, int) and 0 <= label < classes
                assert class_in_path(name, d['names'][label], rel), (rel, d['names'][label])
    paths = {s: {rel for rel, _ in d[s]} for s in ('train', 'val', 'test')}
    assert not (paths['train'] & paths['test']) and not (paths['val'] & paths['test'])
    expected = official_test(name, root)
    if expected is not None:
        assert paths['test'] == expected
    if name != 'voc07-cls':  # every class is in every non-empty split
        for split in ('train', 'val', 'test'):
            assert not d[split] or {label for _, label in d[split]} == set(range(classes)), split
    assert TRANSFER_SETS[name][0] in ('top1', 'mean_class', 'map11')


def test_set_details(out):
    birdsnap = read_transfer('birdsnap', root_of(out, 'birdsnap'))
    assert any('2 listed images missing' in n and '1 train, 1 test' in n for n in birdsnap['notes'])
    assert birdsnap['names'][3] == "Allen's Hummingbird"  # species.txt's common name, not its folder
    voc = read_transfer('voc07-cls', root_of(out, 'voc07-cls'))
    dog = VOC_CLASSES.index('dog')
    given = dict(line.split() for line in lines(out / 'VOCdevkit' / 'VOC2007' / 'ImageSets' / 'Main' / 'dog_test.txt'))
    assert {os.path.basename(rel)[:-4]: label[dog] for rel, label in voc['test']} == {i: int(v) for i, v in given.items()}
    aircraft = read_transfer('aircraft', root_of(out, 'aircraft'))
    assert aircraft['names'] == ['707-320', 'A300B4', 'Cessna 172', 'F-16A/B']  # spaces and slashes in variant names
    pets = read_transfer('pets', root_of(out, 'pets'))
    assert pets['names'] == toydata.TRANSFER_CLASSES['pets']
    assert read_transfer('flowers102', root_of(out, 'flowers102'))['names'][0] == 'pink primrose'
    assert read_transfer('cars', root_of(out, 'cars'))['names'] == toydata.TRANSFER_CLASSES['cars']


def test_caltech_split_is_30_per_class_and_seeded(out):
    root = root_of(out, 'caltech101')
    d0, again, d1 = (read_transfer('caltech101', root, seed=s) for s in (0, 0, 1))
    assert d0 == again and {r for r, _ in d0['train']} != {r for r, _ in d1['train']}
    assert d0['names'][0] == 'BACKGROUND_Google'  # one of the 102 classes (Kornblith et al.: 3,060 = 30 x 102)
    for d in (d0, d1):
        for label, cls in enumerate(d['names']):
            train = [r for r, k in d['train'] if k == label]
            test = [r for r, k in d['test'] if k == label]
            on_disk = os.listdir(os.path.join(root, '101_ObjectCategories', cls))
            assert len(train) == CALTECH_TRAIN_PER_CLASS and sorted(os.path.basename(r) for r in train + test) == sorted(on_disk)


def test_toy_is_byte_identical(out, tmp_path):
    sets = toydata.write_transfer_sets(str(tmp_path), 0, PER)
    assert set(sets) == set(toydata.TRANSFER_CLASSES)  # no toy SUN397 or VOC here
    for name in toydata.TRANSFER_CLASSES:
        assert tuple(sets[name][k] for k in ('classes', 'train', 'val', 'test')) == EXPECTED[name]
        cmp = filecmp.dircmp(tmp_path / 'transfer' / name, out / 'transfer' / name, ignore=['wmig-png'])
        todo = [cmp]
        while todo:
            c = todo.pop()
            assert not c.diff_files and not c.left_only and not c.right_only, (name, c.left)
            todo += c.subdirs.values()


@pytest.mark.parametrize('name', ['cifar10', 'cifar100'])
def test_cifar_export_is_exact_and_reused(out, tmp_path, name):
    folder = 'cifar-10-batches-py' if name == 'cifar10' else 'cifar-100-python'
    shutil.copytree(out / 'transfer' / name / folder, tmp_path / folder, ignore=shutil.ignore_patterns('wmig-png*'))
    batches = str(tmp_path / folder)
    image_root, names, rows = export_cifar(str(tmp_path), name)
    assert image_root == batches and len(names) == 4
    n = 0
    for split, files in (('train', [f'data_batch_{k}' for k in range(1, 6)] if name == 'cifar10' else ['train']),
                         ('test', ['test_batch'] if name == 'cifar10' else ['test'])):
        for file in files:
            with open(os.path.join(batches, file), 'rb') as f:
                d = pickle.load(f, encoding='bytes')
            for i, row in enumerate(d[b'data']):
                rel, label = rows[split][n + i if split == 'train' else i]
                png = np.asarray(Image.open(os.path.join(batches, rel)))
                assert png.shape == (32, 32, 3) and (png == row.reshape(3, 32, 32).transpose(1, 2, 0)).all()
                assert label == d[b'labels' if name == 'cifar10' else b'fine_labels'][i]
            n += len(d[b'data']) if split == 'train' else 0
    stamp = os.stat(os.path.join(batches, rows['test'][0][0])).st_mtime_ns
    d = read_transfer(name, batches)  # the batches folder itself as ROOT: the same export, reused
    assert 'reused' in d['notes'][0] and d['image_root'] == batches and d['test'] == rows['test']
    assert os.stat(os.path.join(batches, rows['test'][0][0])).st_mtime_ns == stamp
    assert not [f for f in os.listdir(batches) if '.tmp' in f]


def test_cifar_export_needs_a_writable_folder(out, tmp_path, monkeypatch):
    shutil.copytree(out / 'transfer' / 'cifar10', tmp_path / 'c', ignore=shutil.ignore_patterns('wmig-png*'))

    def refuse(path, *a, **k):
        raise PermissionError(errno.EACCES, 'Permission denied', path)
    monkeypatch.setattr(datasets.os, 'makedirs', refuse)  # a read-only mount (chmod does not stop root)
    with pytest.raises(UserError, match='copy .*cifar-10-batches-py to a writable folder') as e:
        read_transfer('cifar10', str(tmp_path / 'c'))
    assert 'Permission denied' in str(e.value) and '\n' not in str(e.value)


class _Evil:
    def __reduce__(self):
        return print, ('a pickle ran code',)


def _write(path, data):
    with open(path, 'wb') as f:
        f.write(data)


def _savemat(path, **variables):
    scipy.io.savemat(path, variables)


# (set, how to break a copy of its toy, the path the message must name, relative to the copy)
BROKEN = [
    ('food101', lambda r: os.remove(r / 'meta' / 'train.json'), 'meta/train.json'),
    ('food101', lambda r: _write(r / 'meta' / 'test.json', b'{"apple_pie": ["apple_pie/1'), 'meta/test.json'),
    ('food101', lambda r: os.remove(r / 'images' / 'baklava' / '300003.jpg'), 'images/baklava/300003.jpg'),
    ('food101', lambda r: _write(r / 'meta' / 'train.json', b'{"pie": ["pie/1"]}'), 'meta/train.json'),
    ('dtd', lambda r: _write(r / 'labels' / 'test1.txt', b''), 'labels/test1.txt'),
    ('aircraft', lambda r: _write(r / 'data' / 'images_variant_val.txt', b'1000001 747-400\n'), 'data/images_variant_val.txt'),
    ('pets', lambda r: _write(r / 'annotations' / 'test.txt', b'Abyssinian_1 one 1 1\n'), 'annotations/test.txt'),
    ('cifar10', lambda r: _write(r / 'cifar-10-batches-py' / 'data_batch_3', b'\x80\x04not a pickle'), 'cifar-10-batches-py/data_batch_3'),
    ('cifar10', lambda r: _write(r / 'cifar-10-batches-py' / 'test_batch', pickle.dumps({b'data': _Evil()})), 'cifar-10-batches-py/test_batch'),
    ('cifar100', lambda r: shutil.rmtree(r / 'cifar-100-python'), 'cifar-100-python/meta'),
    ('cars', lambda r: shutil.copy(r / 'devkit' / 'cars_test_annos.mat', r / 'cars_test_annos_withlabels.mat'),
     'cars_test_annos_withlabels.mat'),
    ('flowers102', lambda r: _write(r / 'setid.mat', b'MATLAB but not really'), 'setid.mat'),
    ('flowers102', lambda r: _savemat(r / 'imagelabels.mat', labels=np.zeros((1, 72))), 'imagelabels.mat'),
    ('birdsnap', lambda r: _write(r / 'test_images.txt', b'path\nNo_Such_Bird/1.jpg\n'), 'test_images.txt'),
    ('caltech101', lambda r: [os.remove(p) for p in (r / '101_ObjectCategories' / 'accordion').iterdir()],
     '101_ObjectCategories/accordion'),
]


@pytest.mark.parametrize('name, breaks, names_path', BROKEN, ids=[f'{b[0]}-{b[2]}' for b in BROKEN])
def test_broken_layouts_are_one_line_errors(out, tmp_path, name, breaks, names_path):
    root = tmp_path / name
    shutil.copytree(out / 'transfer' / name, root, ignore=shutil.ignore_patterns('wmig-png*'))
    breaks(root)
    with pytest.raises(UserError) as e:
        read_transfer(name, str(root))
    msg = str(e.value)
    assert os.path.join(str(root), names_path) in msg and TRANSFER_SETS[name][1] in msg and '\n' not in msg, msg
    assert 'a pickle ran code' not in msg


def test_unknown_name_and_missing_root(tmp_path):
    with pytest.raises(UserError, match='known: food101, cifar10, .*flowers102'):
        read_transfer('imagenet', str(tmp_path))
    with pytest.raises(UserError, match=f'data folder not found: {tmp_path}/nowhere'):
        read_transfer('dtd', str(tmp_path / 'nowhere'))
