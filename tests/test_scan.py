"""The data scan (`data_dali.py scan`, issue 8): every odd-file kind, made with Pillow in the ILSVRC layout,
goes through index -> scan -> make -> the real DALI CPU pipeline. Unusual but valid files must decode (with
the right colours and orientation); broken ones must be excluded, never stop training."""
import io
import json
import os

import numpy as np
import pytest
from PIL import Image, ImageOps

from conftest import run
from data_dali import MEAN, STD, classification_loader
from engine import UserError

A, B = 'n01440764', 'n01443537'
MAX_PIXELS = 10000  # --max-pixels: the 64 x 48 images pass, the 200 x 150 one is "over the pixel limit"
# EXIF orientation (tag 0x0112): 1 is upright; 2-8 are the mirrorings and rotations a camera writes.
ORIENTATIONS = range(2, 9)


def quadrants(w=64, h=48):
    """Red, green, blue and white quadrants: any wrong rotation, mirroring or colour conversion shows."""
    im = Image.new('RGB', (w, h), (255, 255, 255))
    im.paste((255, 0, 0), (0, 0, w // 2, h // 2))
    im.paste((0, 255, 0), (w // 2, 0, w, h // 2))
    im.paste((0, 0, 255), (0, h // 2, w // 2, h))
    return im


def noise(w=64, h=48):
    """Random pixels: a JPEG of them is mostly entropy-coded data, so cutting it in half keeps the header."""
    return Image.fromarray(np.random.default_rng(0).integers(0, 256, (h, w, 3), dtype=np.uint8))


def encode(im, fmt='JPEG', **kw):
    b = io.BytesIO()
    im.save(b, format=fmt, **({'quality': 95} if fmt == 'JPEG' else {}), **kw)
    return b.getvalue()


def exif(orientation):
    e = Image.Exif()
    e[0x0112] = orientation
    return e


# kind -> (its bytes, the report's format and mode[, its error]); every file is named .JPEG, as in ImageNet
VALID = {
    'cmyk': (lambda: encode(quadrants().convert('CMYK')), 'JPEG', 'CMYK'),  # inverted + Adobe marker, as Photoshop
    'png': (lambda: encode(quadrants(), 'PNG'), 'PNG', 'RGB'),
    'gray': (lambda: encode(quadrants().convert('L')), 'JPEG', 'L'),
    'progressive': (lambda: encode(quadrants(), progressive=True), 'JPEG', 'RGB'),
    **{f'exif{o}': ((lambda o=o: encode(quadrants(), exif=exif(o))), 'JPEG', 'RGB') for o in ORIENTATIONS},
    'mpo': (lambda: encode(quadrants(), 'MPO', save_all=True, append_images=[noise()]), 'MPO', 'RGB'),  # 3D camera
}
BROKEN = {
    'truncated': (lambda: (d := encode(noise()))[:len(d) // 2], 'JPEG', 'RGB', 'image file is truncated'),
    'empty': (lambda: b'', '', '', 'empty file'),
    'text': (lambda: b'not an image\n', '', '', 'not an image'),
    'huge': (lambda: encode(quadrants(200, 150)), 'JPEG', 'RGB', 'over the pixel limit: 200 x 150 > 10000'),
    'gif': (lambda: encode(quadrants(), 'GIF'), 'GIF', 'P', 'GIF is not a format DALI decodes'),  # SUN397 has them
    # Without its IEND chunk: Pillow decodes it, DALI does not. DALI's decoder decides, not Pillow's.
    'png_no_end': (lambda: encode(noise(), 'PNG')[:-12], 'PNG', 'RGB', 'a PNG that Pillow decodes but DALI does not'),
}


def make_tree(root):
    """ROOT/train/<wnid>/ and ROOT/val/<wnid>/: normal JPEGs in both classes, every odd kind in class A's train,
    and one broken file in val. Returns {relpath: kind}."""
    kinds = {}

    def put(rel, data, kind):
        path = os.path.join(root, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, 'wb') as f:
            f.write(data)
        kinds[rel] = kind

    for split, n in (('train', 4), ('val', 2)):
        for wnid in (A, B):
            for i in range(n):
                put(f'{split}/{wnid}/{wnid}_{i}.JPEG', encode(quadrants(64 + 8 * i, 48)), 'normal')
    for kind, (make, *_) in {**VALID, **BROKEN}.items():
        put(f'train/{A}/{kind}.JPEG', make(), kind)
    put(f'val/{B}/empty.JPEG', b'', 'empty')
    return kinds


def read_report(path):
    lines = open(path).read().splitlines()
    assert lines[1] == '# path\tbytes\tformat\tmode\twidth\theight\terror'
    rows = [line.split('\t') for line in lines if not line.startswith('#')]
    return {r[0]: r[1:] for r in rows}, [r[0] for r in rows]


def pixels(images):
    """Pipeline output (N x 3 x H x W, normalised) back to 0-255 RGB, N x H x W x 3."""
    return images.permute(0, 2, 3, 1).numpy() * STD + MEAN


@pytest.fixture(scope='module')
def scanned(tmp_path_factory):
    base = tmp_path_factory.mktemp('odd')
    root, idx = str(base / 'data'), str(base / 'subsets')
    kinds = make_tree(root)
    p = run('subsets.py', 'index', '--imagenet', root, '--out', idx)
    # The index lists every file; the cheap first-bytes check only warns (empty x2, text, GIF).
    assert 'warning: 4 files do not begin as a JPEG or PNG does' in p.stderr
    p = run('subsets.py', 'make', 'full', '--index', os.path.join(idx, 'index.tsv'))
    assert 'note: no data scan beside the index' in p.stdout
    unscanned = open(os.path.join(idx, 'full', 'train.txt')).read()
    return {'root': root, 'index': idx, 'kinds': kinds, 'unscanned': unscanned}


def test_unscanned_manifest_stops_dali(scanned, tmp_path):
    # Why the scan exists: without it, one broken file stops the pipeline (DALI cannot skip a sample).
    manifest = tmp_path / 'train.txt'
    manifest.write_text(scanned['unscanned'])
    with pytest.raises(UserError, match='DALI could not read or decode ') as e:
        for _ in classification_loader(scanned['root'], str(manifest), 4, False, crop=48, resize=48, num_threads=1):
            pass
    # the line names the file (from DALI's message, or found by probing the manifest's files) and the manifest
    broken = {os.path.join(scanned['root'], line.rsplit(' ', 1)[0]) for line in scanned['unscanned'].splitlines()
              if scanned['kinds'][line.rsplit(' ', 1)[0]] in set(BROKEN) - {'huge'}}  # 'huge' is the scan's own limit
    named = str(e.value).split('DALI could not read or decode ')[1].split(' (listed in ')[0]
    assert named in broken and f'(listed in {manifest})' in str(e.value) and '\n' not in str(e.value), str(e.value)


def test_scan_resumes_excludes_and_the_pipeline_decodes_everything_left(scanned):
    root, idx, kinds = scanned['root'], scanned['index'], scanned['kinds']
    report, exclude = os.path.join(idx, 'scan.tsv'), os.path.join(idx, 'exclude.txt')
    scan = ('data_dali.py', 'scan', '--workers', '2', '--max-pixels', str(MAX_PIXELS))

    # Resume, 1: a manifest first. Its report goes beside the index (the subset folder's parent).
    val = sorted(r for r in kinds if r.startswith('val/'))
    p = run(*scan, os.path.join(idx, 'full', 'val.txt'))
    assert f'{len(val)} files: 0 already in' in p.stdout and '1 files excluded' in p.stdout
    rows, order = read_report(report)
    assert sorted(order) == val
    # Resume, 2: a stop by kill -9 may leave half a line; and a finished row is marked to see that it is kept.
    lines = open(report).read().splitlines(keepends=True)
    first = lines[2].split('\t')  # after the root and the column names
    lines[2] = '\t'.join(first[:1] + ['SENTINEL'] + first[2:])
    open(report, 'w').write(''.join(lines) + f'train/{A}/cmyk.JPEG\t54')  # no newline: cut short
    # ... then the whole index: only the files not yet in the report are decoded, each once.
    p = run(*scan, idx)
    assert f'{len(kinds)} files: {len(val)} already in' in p.stdout, p.stdout
    rows, order = read_report(report)
    assert sorted(order) == sorted(kinds) and len(order) == len(set(order))
    assert rows[first[0]][0] == 'SENTINEL'  # not decoded again
    assert rows[f'train/{A}/cmyk.JPEG'][1:3] == ['JPEG', 'CMYK']  # the cut line was dropped and redone

    # What the report records of every kind.
    for rel, kind in kinds.items():
        _, fmt, mode, w, h, error = rows[rel]
        if kind == 'normal':
            assert (fmt, mode, h, error) == ('JPEG', 'RGB', '48', ''), rel
        elif kind in VALID:
            assert (fmt, mode, error) == VALID[kind][1:] + ('',), rel
        else:
            assert (fmt, mode) == BROKEN[kind][1:3] and BROKEN[kind][3] in error, (rel, error)
    assert rows[f'train/{A}/exif6.JPEG'][3:5] == ['64', '48']  # as stored, before the EXIF rotation

    # Exactly the broken files are excluded, and every subset leaves them out and says so.
    broken = sorted(r for r, k in kinds.items() if k in BROKEN)
    assert [line.split('\t')[0] for line in open(exclude) if not line.startswith('#')] == broken
    p = run('subsets.py', 'make', 'full', '--index', os.path.join(idx, 'index.tsv'))
    assert f'left out {len(broken)} files of the index that the data scan excluded' in p.stdout
    assert f'({len(broken)} files left out: exclude.txt)' in p.stdout
    full = os.path.join(idx, 'full')
    meta = json.load(open(os.path.join(full, 'meta.json')))
    listed = [line.rsplit(' ', 1)[0] for s in ('train', 'val') for line in open(os.path.join(full, f'{s}.txt'))]
    assert meta['excluded'] == len(broken) and sorted(listed) == sorted(set(kinds) - set(broken))
    run('subsets.py', 'make', 'classes', '--num-classes', '1', '--seed', '3', '--index', os.path.join(idx, 'index.tsv'))
    one = os.path.join(idx, 'classes-1-seed3')
    wnid = open(os.path.join(one, 'leaf_to_class.tsv')).read().split('\t')[0]
    assert json.load(open(os.path.join(one, 'meta.json')))['excluded'] == sum(f'/{wnid}/' in r for r in broken)

    # Re-indexed after the scan: the exclude list has not seen the new files, and make says so (one line)
    run('subsets.py', 'index', '--imagenet', root, '--out', idx)
    p = run('subsets.py', 'make', 'full', '--index', os.path.join(idx, 'index.tsv'), check=False)
    assert p.returncode == 2 and f'{exclude} is older than' in p.stderr and '--old-scan' in p.stderr, p.stderr
    run('subsets.py', 'make', 'full', '--index', os.path.join(idx, 'index.tsv'), '--old-scan')
    run(*scan, idx)  # the scan again: nothing new to decode, a fresh exclude.txt
    run('subsets.py', 'make', 'full', '--index', os.path.join(idx, 'index.tsv'))

    # The real DALI pipeline decodes every file left, in every mode the training and evaluation use.
    for manifest, train, style in (('train', False, 'caffe'), ('val', False, 'caffe'), ('train', True, 'caffe'),
                                   ('train', True, 'inception')):
        path = os.path.join(full, f'{manifest}.txt')
        n = sum(len(y) for _, y in classification_loader(root, path, 4, train, crop=40, resize=48, style=style,
                                                             num_threads=1))
        total = len(open(path).readlines())
        assert n == (total // 4 * 4 if train else total), (manifest, train, style)


def test_odd_files_decode_to_the_right_pixels(scanned, tmp_path):
    # Each valid odd kind, through the validation pipeline at scale 1 (shorter side 48 = resize, centre 48 x 48),
    # against Pillow's reading: EXIF orientation applied, then RGB.
    root = scanned['root']
    names = [f'train/{A}/{A}_0.JPEG'] + [f'train/{A}/{k}.JPEG' for k in VALID]
    manifest = tmp_path / 'odd.txt'
    manifest.write_text(''.join(f'{n} 0\n' for n in names))
    images, _ = next(iter(classification_loader(root, str(manifest), len(names), False, crop=48, resize=48,
                                                num_threads=1)))
    for name, got in zip(names, pixels(images)):
        ref = np.asarray(ImageOps.exif_transpose(Image.open(os.path.join(root, name))).convert('RGB'), np.float32)
        top, left = (ref.shape[0] - 48) // 2, (ref.shape[1] - 48) // 2
        ref = ref[top:top + 48, left:left + 48]
        # Measured: equal up to float rounding (1e-5; Pillow and nvImageCodec both decode with libjpeg-turbo). A
        # wrong rotation or mirroring of these quadrants is 170 levels off on average, an inverted CMYK 255.
        assert np.abs(got - ref).mean() < 3, (name, np.abs(got - ref).mean())


def test_scan_records_missing_files_as_broken(scanned, tmp_path):
    # a manifest naming a file that is gone: a broken row (and excluded), not a crash
    manifest = tmp_path / 'm.txt'
    manifest.write_text(f'train/{A}/{A}_0.JPEG 0\ntrain/{A}/gone.JPEG 0\n')
    p = run('data_dali.py', 'scan', str(manifest), '--root', scanned['root'], '--out', str(tmp_path / 'out'), '--workers', '1')
    assert 'Traceback' not in p.stderr and '1 files excluded' in p.stdout, p.stdout + p.stderr
    excluded = [line.split('\t') for line in open(tmp_path / 'out' / 'exclude.txt') if not line.startswith('#')]
    assert excluded == [[f'train/{A}/gone.JPEG', 'cannot read it: No such file or directory\n']]
