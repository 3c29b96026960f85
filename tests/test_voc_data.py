"""The VOCdevkit readers (datasets.read_voc_detection, read_voc_actions) on toydata.py's toy VOC 2007 and VOC 2012,
written through the command line, and on hand-made folders with one mistake each: every mistake is a one-line
UserError naming the file."""
import os
import random
import shutil

import numpy as np
import pytest
from PIL import Image

import toydata
from conftest import run
from datasets import VOC_ACTIONS, VOC_CLASSES, read_voc_actions, read_voc_detection
from engine import UserError

HERE = os.path.dirname(os.path.abspath(__file__))
SMALL = ['--train-per-class', '1', '--val-per-class', '1', '--sun-per-class', '0',
         '--voc07-trainval', '24', '--voc07-test', '8', '--voc12-per-action', '3']


@pytest.fixture(scope='module')
def voc(tmp_path_factory):
    out = tmp_path_factory.mktemp('voc')
    run('toydata.py', '--out', str(out), *SMALL)
    return {'07': str(out / 'VOCdevkit' / 'VOC2007'), '12': str(out / 'VOCdevkit' / 'VOC2012')}


def mask_box(mask):
    """The tight box of a PIL mask in VOC's 1-based inclusive pixels, computed apart from toydata's getbbox."""
    ys, xs = np.nonzero(np.asarray(mask))
    return [xs.min() + 1, ys.min() + 1, xs.max() + 1, ys.max() + 1]


def test_toy_voc07_reads_back_with_tight_boxes(voc):
    rows = {s: read_voc_detection(voc['07'], s) for s in ('train', 'val', 'trainval', 'test')}
    assert [len(rows[s]) for s in rows] == [12, 12, 24, 8]
    assert sorted(r['id'] for r in rows['train'] + rows['val']) == [r['id'] for r in rows['trainval']]
    assert rows['trainval'][0]['id'] == '000001' and rows['test'][0]['id'] == '000002'
    names = set()
    for split, base in (('trainval', 1), ('test', 2)):
        for i, row in enumerate(rows[split]):
            # Each image is keyed by (seed, set, index): draw it again and check its boxes against the masks drawn.
            img, objects = toydata.draw_voc07(random.Random(f'0/voc07/{split}/{i}'))
            assert row['id'] == f'{base + 2 * i:06d}' and row['size'] == img.size
            with Image.open(os.path.join(voc['07'], row['path'])) as saved:
                assert saved.size == img.size
                assert np.abs(np.asarray(saved, np.float32) - np.asarray(img, np.float32)).mean() < 8  # JPEG noise only
            assert row['boxes'].tolist() == [mask_box(o['mask']) for o in objects]
            assert [VOC_CLASSES[k] for k in row['labels']] == [o['name'] for o in objects]
            w, h = row['size']
            b = row['boxes']
            touches = (b[:, 0] == 1) | (b[:, 1] == 1) | (b[:, 2] == w) | (b[:, 3] == h)
            assert (row['truncated'] == touches).all()
            names.update(o['name'] for o in objects)
    everything = rows['trainval'] + rows['test']
    assert names == {'bird', 'boat', 'bus', 'car', 'cat', 'dog', 'pottedplant'}
    assert any(r['difficult'].any() for r in everything) and any(r['truncated'].any() for r in everything)
    assert all(r['boxes'].dtype == np.int64 and r['labels'].dtype == np.int64 and r['difficult'].dtype == bool
               for r in everything)
    # Main/<class>_<set>.txt: ' 1' a non-difficult object of the class, ' 0' only difficult ones, '-1' none.
    for c, name in enumerate(VOC_CLASSES):
        with open(os.path.join(voc['07'], 'ImageSets', 'Main', f'{name}_test.txt')) as f:
            lines = f.read().splitlines()
        expect = [f'{r["id"]} {max([-1] + [0 if d else 1 for k, d in zip(r["labels"], r["difficult"]) if k == c]):2d}'
                  for r in rows['test']]
        assert lines == expect


def test_toy_voc12_reads_back(voc):
    rows = {s: read_voc_actions(voc['12'], s) for s in ('train', 'val', 'trainval')}
    for s in ('train', 'val'):
        actions = np.concatenate([r['actions'] for r in rows[s]])
        assert actions.shape == (30, 10) and (actions.sum(0) == 3).all() and (actions.sum(1) == 1).all()
    for r in rows['trainval']:
        w, h = r['size']
        assert len(r['boxes']) in (1, 2) and r['object_ids'].tolist() == list(range(1, len(r['boxes']) + 1))
        assert (r['boxes'][:, 0] > 1).all() and (r['boxes'][:, 2] < w).all()  # whole people, inside the image
        assert (r['boxes'][:, 1] > 1).all() and (r['boxes'][:, 3] < h).all()
    # The people are where the boxes say: draw the train images again and compare with the persons' masks.
    for i, row in enumerate(rows['train']):
        todo = [VOC_ACTIONS[a] for a in row['actions'].argmax(1)]
        img, persons = toydata.draw_voc12(todo, random.Random(f'0/voc12/train/{i}'))
        assert row['size'] == img.size and row['boxes'].tolist() == [mask_box(p['mask']) for p in persons]
    # Action/<action>_<set>.txt: `<id> <object index> <label>` with the XML's flags as 1 / -1.
    for a, action in enumerate(VOC_ACTIONS):
        with open(os.path.join(voc['12'], 'ImageSets', 'Action', f'{action}_val.txt')) as f:
            lines = [line.split() for line in f]
        expect = [[r['id'], str(k), str(2 * flags[a] - 1)] for r in rows['val'] for k, flags in zip(r['object_ids'], r['actions'])]
        assert lines == expect


# ----------------------------------------------------------------------------------------------------------
# Hand-made folders: one real VOC 2007 annotation (tests/data) beside a toy one, then one mistake at a time

GOOD = """<annotation><folder>VOC2007</folder><filename>000001.jpg</filename>
<size><width>100</width><height>80</height><depth>3</depth></size>
<object><name>dog</name><pose>Left</pose><truncated>1</truncated><difficult>0</difficult>
<bndbox><xmin>1</xmin><ymin>1</ymin><xmax>100</xmax><ymax>80</ymax></bndbox></object>
<object><name>cat</name><pose>Left</pose><truncated>0</truncated><difficult>1</difficult>
<bndbox><xmin>7</xmin><ymin>9</ymin><xmax>7</xmax><ymax>9</ymax></bndbox></object>
</annotation>"""


def voc07_tree(root, xml=GOOD):
    for d in ('JPEGImages', 'Annotations', 'ImageSets/Main'):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    (root / 'ImageSets' / 'Main' / 'train.txt').write_text('000002\n000001\n')
    (root / 'Annotations' / '000001.xml').write_text(xml)
    shutil.copy(os.path.join(HERE, 'data', 'voc2007_annotation_000002.xml'), root / 'Annotations' / '000002.xml')
    for i in ('000001', '000002'):
        (root / 'JPEGImages' / f'{i}.jpg').write_bytes(b'\xff\xd8\xff')  # the readers never decode
    return root


def test_voc07_reader_on_a_real_annotation(tmp_path):
    rows = read_voc_detection(voc07_tree(tmp_path), 'train')
    assert [r['id'] for r in rows] == ['000002', '000001'] and rows[0]['path'] == 'JPEGImages/000002.jpg'
    assert rows[0]['size'] == (335, 500) and rows[0]['boxes'].tolist() == [[139, 200, 207, 301]]
    assert rows[0]['labels'].tolist() == [VOC_CLASSES.index('train')] and not rows[0]['difficult'].any()
    # A box of the whole image and a one-pixel box (xmin == xmax, VOC's +1 convention) are valid.
    assert rows[1]['boxes'].tolist() == [[1, 1, 100, 80], [7, 9, 7, 9]]
    assert rows[1]['difficult'].tolist() == [False, True] and rows[1]['truncated'].tolist() == [True, False]
    (tmp_path / 'Annotations' / '000001.xml').write_text(GOOD.split('<object>')[0] + '</annotation>')
    empty = read_voc_detection(tmp_path, 'train')[1]  # an image with no objects
    assert empty['boxes'].shape == (0, 4) and empty['labels'].shape == (0,) and empty['difficult'].shape == (0,)


def _bad(root, what):
    ann, jpg = root / 'Annotations' / '000001.xml', root / 'JPEGImages' / '000001.jpg'
    if what == 'no image set':
        os.remove(root / 'ImageSets' / 'Main' / 'train.txt')
        return 'train.txt'
    if what == 'no annotation':
        os.remove(ann)
        return '000001.xml'
    if what == 'no jpeg':
        os.remove(jpg)
        return '000001.jpg'
    if what == 'malformed xml':
        ann.write_text(GOOD[:150])
        return '000001.xml'
    if what == 'unknown class':
        ann.write_text(GOOD.replace('<name>cat</name>', '<name>unicorn</name>'))
        return "000001.xml: object 2 is a 'unicorn'"
    if what == 'xmax past the width':
        ann.write_text(GOOD.replace('<xmax>100</xmax>', '<xmax>101</xmax>'))
        return '000001.xml: object 1'
    if what == 'ymax past the height':
        ann.write_text(GOOD.replace('<ymax>80</ymax>', '<ymax>81</ymax>'))
        return '000001.xml: object 1'
    if what == 'xmin 0':
        ann.write_text(GOOD.replace('<xmin>1</xmin>', '<xmin>0</xmin>'))
        return '000001.xml: object 1'
    if what == 'reversed box':
        ann.write_text(GOOD.replace('<xmin>7</xmin>', '<xmin>8</xmin>'))
        return '000001.xml: object 2'
    if what == 'id with a path':
        (root / 'ImageSets' / 'Main' / 'train.txt').write_text('000001\n../000001\n')
        return 'train.txt:2'


@pytest.mark.parametrize('what', ['no image set', 'no annotation', 'no jpeg', 'malformed xml', 'unknown class',
                                  'xmax past the width', 'ymax past the height', 'xmin 0', 'reversed box',
                                  'id with a path'])
def test_voc07_reader_names_the_file(tmp_path, what):
    names = _bad(voc07_tree(tmp_path), what)
    with pytest.raises(UserError) as e:
        read_voc_detection(tmp_path, 'train')
    assert names in str(e.value) and '\n' not in str(e.value), str(e.value)


def _person(flags, box=(10, 20, 60, 90), name='person'):
    acts = ''.join(f'<{a}>{v}</{a}>' for a, v in flags.items())
    return (f'<object><name>{name}</name><actions>{acts}</actions><bndbox><xmax>{box[2]}</xmax><xmin>{box[0]}</xmin>'
            f'<ymax>{box[3]}</ymax><ymin>{box[1]}</ymin></bndbox></object>')


def voc12_tree(root, objects):
    for d in ('JPEGImages', 'Annotations', 'ImageSets/Action'):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    (root / 'ImageSets' / 'Action' / 'train.txt').write_text('2010_000001\n')
    (root / 'JPEGImages' / '2010_000001.jpg').write_bytes(b'\xff\xd8\xff')
    (root / 'Annotations' / '2010_000001.xml').write_text(
        '<annotation><filename>2010_000001.jpg</filename><folder>VOC2012</folder>' + ''.join(objects) +
        '<size><depth>3</depth><height>100</height><width>80</width></size></annotation>')
    return root


def test_voc12_reader_keeps_the_devkit_object_index(tmp_path):
    phoning = {a: int(a == 'phoning') for a in sorted(VOC_ACTIONS + ('other',))}
    other = {a: int(a == 'other') for a in sorted(VOC_ACTIONS + ('other',))}
    plain = '<object><name>person</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>'
    rows = read_voc_actions(voc12_tree(tmp_path, [plain, _person(phoning), _person(other, (1, 1, 80, 100))]), 'train')
    assert len(rows) == 1 and rows[0]['path'] == 'JPEGImages/2010_000001.jpg' and rows[0]['size'] == (80, 100)
    assert rows[0]['object_ids'].tolist() == [2, 3]  # the person without <actions> is not listed, but counts
    assert rows[0]['boxes'].tolist() == [[10, 20, 60, 90], [1, 1, 80, 100]]
    assert rows[0]['actions'].tolist() == [[int(a == 'phoning') for a in VOC_ACTIONS], [0] * 10]  # 'other': no action


def test_rstar_trains_the_other_persons(tmp_path):
    # R*CNN trains every person, those doing none of the ten actions as its 11th class 'other' (RstarCNN
    # lib/datasets/pascal_voc.py); they are never scored
    import argparse
    from detection import OTHER, action_labels
    from finetune import region_data
    phoning = {a: int(a == 'phoning') for a in sorted(VOC_ACTIONS + ('other',))}
    other = {a: int(a == 'other') for a in sorted(VOC_ACTIONS + ('other',))}
    voc12_tree(tmp_path / 'VOC2012', [_person(phoning), _person(other, (1, 1, 80, 100))])
    args = argparse.Namespace(task='voc12-action', voc=str(tmp_path), train_set='train', test_set='train')
    _, names, train, _ = region_data(args)
    assert len(names) == 10 and train[0]['boxes'].tolist() == [[10, 20, 60, 90], [1, 1, 80, 100]]
    assert action_labels(train[0]['actions']).tolist() == [VOC_ACTIONS.index('phoning'), OTHER]


@pytest.mark.parametrize('what', ['no annotation', 'no jpeg', 'box outside', 'action missing', 'flag 2', 'not a person'])
def test_voc12_reader_names_the_file(tmp_path, what):
    flags = {a: int(a == 'reading') for a in VOC_ACTIONS}
    objects = [_person(flags)]
    if what == 'box outside':
        objects = [_person(flags, (10, 20, 81, 90))]
    if what == 'action missing':
        objects = [_person({a: v for a, v in flags.items() if a != 'walking'})]
    if what == 'flag 2':
        objects = [_person(dict(flags, jumping=2))]
    if what == 'not a person':
        objects = [_person(flags, name='dog')]
    root = voc12_tree(tmp_path, objects)
    names = '2010_000001.xml'
    if what == 'no annotation':
        os.remove(root / 'Annotations' / '2010_000001.xml')
    if what == 'no jpeg':
        os.remove(root / 'JPEGImages' / '2010_000001.jpg')
        names = '2010_000001.jpg'
    with pytest.raises(UserError) as e:
        read_voc_actions(root, 'train')
    assert names in str(e.value) and '\n' not in str(e.value), str(e.value)
    with pytest.raises(UserError, match='image set file not found: .*val.txt'):
        read_voc_actions(root, 'val')


def test_toydata_voc_names_are_the_devkits():
    from datasets import VOC_ACTIONS as actions, VOC_CLASSES as classes
    assert toydata.VOC_CLASSES == classes and toydata.VOC_ACTIONS == actions
    assert all(name in classes for name, *_ in toydata.VOC07_OBJECTS) and set(toydata.POSES) == set(actions)
