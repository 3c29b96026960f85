"""toydata.py writes real JPEGs in the ILSVRC layout, deterministically, with varied sizes and some grayscale; and
the toy VOCdevkit, deterministically too (tests/test_voc_data.py reads it)."""
import filecmp
import os

from PIL import Image

from conftest import run
from toydata import toy_classes


def test_layout_and_determinism(toy, tmp_path):
    root = toy['root']
    wnids = sorted(os.listdir(os.path.join(root, 'train')))
    assert wnids == [c[0] for c in toy_classes()] and len(wnids) == 20
    assert sorted(os.listdir(os.path.join(root, 'val'))) == wnids
    assert len(os.listdir(os.path.join(root, 'train', wnids[0]))) == 60
    assert os.path.exists(os.path.join(root, 'train', wnids[0], f'{wnids[0]}_0.JPEG'))

    sizes, modes = set(), set()
    for wnid in wnids:
        for name in os.listdir(os.path.join(root, 'train', wnid))[:15]:
            with Image.open(os.path.join(root, 'train', wnid, name)) as im:
                assert im.format == 'JPEG'
                sizes.add(im.size)
                modes.add(im.mode)
    assert modes == {'RGB', 'L'}  # a few grayscale JPEGs, as in ImageNet
    assert len(sizes) > 50 and any(w != h for w, h in sizes)

    again = tmp_path / 'again'
    run('toydata.py', '--out', str(again))
    cmp = filecmp.dircmp(os.path.join(root, 'train', wnids[3]), again / 'train' / wnids[3])
    assert not cmp.diff_files and not cmp.left_only and not cmp.right_only
    assert filecmp.cmp(os.path.join(root, 'train', wnids[3], f'{wnids[3]}_7.JPEG'),
                       again / 'train' / wnids[3] / f'{wnids[3]}_7.JPEG', shallow=False)

    for sub in ('VOCdevkit/VOC2007/Annotations', 'VOCdevkit/VOC2007/ImageSets/Main', 'VOCdevkit/VOC2007/JPEGImages',
                'VOCdevkit/VOC2012/Annotations', 'VOCdevkit/VOC2012/ImageSets/Action', 'VOCdevkit/VOC2012/JPEGImages'):
        cmp = filecmp.dircmp(os.path.join(root, sub), again / sub)
        assert not cmp.diff_files and not cmp.left_only and not cmp.right_only and cmp.common_files, sub
    # The default sizes: 200 trainval + 200 test detection images, 20 persons of each action in train and in val.
    main = os.path.join(root, 'VOCdevkit', 'VOC2007', 'ImageSets', 'Main')
    assert [len(open(os.path.join(main, f'{s}.txt')).read().split()) for s in ('trainval', 'test')] == [200, 200]
    action = os.path.join(root, 'VOCdevkit', 'VOC2012', 'ImageSets', 'Action')
    assert open(os.path.join(action, 'jumping_train.txt')).read().count(' 1\n') == 20
