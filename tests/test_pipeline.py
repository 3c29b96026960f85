"""The DALI classification pipeline (CPU mode, as CI runs it) against a PIL reference on the same JPEGs."""
import itertools
import math
import os
from collections import Counter

import numpy as np
import torch
from PIL import Image

from data_dali import MEAN, STD, classification_loader
from datasets import read_manifest


def pil_resized(path, resize):
    """PIL reference of the pipeline's first step: RGB, shorter side to `resize`, bilinear."""
    im = Image.open(path).convert('RGB')
    w, h = im.size
    s = resize / min(w, h)
    size = (resize, round(h * s)) if w <= h else (round(w * s), resize)
    return np.asarray(im.resize(size, Image.BILINEAR), dtype=np.float32)


def normalise(a):
    return (torch.from_numpy(np.ascontiguousarray(a)) - torch.tensor(MEAN)) / torch.tensor(STD)


def test_val_pipeline_matches_pil(toy):
    manifest = os.path.join(toy['subset'], 'val.txt')
    rows = read_manifest(manifest)
    images, labels = next(iter(classification_loader(toy['root'], manifest, 16, False, crop=96, resize=108)))
    assert images.shape == (16, 3, 96, 96) and images.dtype == torch.float32
    assert images.is_contiguous(memory_format=torch.channels_last)  # ready for a channels_last model, no copy
    assert labels.dtype == torch.int64 and labels.tolist() == [lab for _, lab in rows[:16]]
    for img, (path, _) in zip(images, rows):
        a = pil_resized(os.path.join(toy['root'], path), 108)
        # DALI's centre crop starts at round-half-up((n - crop) / 2)
        top, left = (math.floor((n - 96) / 2 + 0.5) for n in a.shape[:2])
        ref = normalise(a[top:top + 96, left:left + 96]).permute(2, 0, 1)
        # Decoders and resamplers differ in rounding only: well under one grey level on average.
        assert (img - ref).abs().mean() < 0.02, path


def test_train_pipeline_crops_and_mirrors(toy, tmp_path):
    # One image repeated, so every output must be a 96 px crop (mirrored or not) of its resized version.
    path = read_manifest(os.path.join(toy['subset'], 'train.txt'))[0][0]
    manifest = tmp_path / 'one.txt'
    manifest.write_text(f'{path} 3\n' * 32)
    a = pil_resized(os.path.join(toy['root'], path), 108)
    images, labels = next(iter(classification_loader(toy['root'], str(manifest), 32, True, crop=96, resize=108, seed=1)))
    assert images.shape == (32, 3, 96, 96) and images.is_contiguous(memory_format=torch.channels_last)
    assert labels.tolist() == [3] * 32
    ref = normalise(a).permute(2, 0, 1)  # 3 x H x W
    windows = ref.unfold(1, 96, 1).unfold(2, 96, 1)  # 3 x nY x nX x 96 x 96: every possible crop
    found = Counter()
    for img in images:
        best = {}
        for flip, im in (('plain', img), ('mirrored', img.flip(-1))):
            err = (windows - im[:, None, None]).abs().mean(dim=(0, 3, 4))
            best[flip] = err.min().item()
        flip = min(best, key=best.get)
        assert best[flip] < 0.02, 'a training image is not a crop of its resized source'
        found[flip] += 1
    assert found['plain'] > 0 and found['mirrored'] > 0  # the mirror is random, not fixed


def test_inception_style_shapes(toy):
    manifest = os.path.join(toy['subset'], 'train.txt')
    images, _ = next(iter(classification_loader(toy['root'], manifest, 8, True, crop=64, resize=72, style='inception')))
    assert images.shape == (8, 3, 64, 64) and images.is_contiguous(memory_format=torch.channels_last)
    # normalised: pixel values 0..255 map to about -2.1..2.6
    assert images.min() >= -2.2 and images.max() <= 2.7 and images.std() > 0.1


def test_sharded_validation_counts_each_image_once(toy):
    # 400 images over 3 shards with batch 7: neither divides the count, and every image must appear once.
    manifest = os.path.join(toy['subset'], 'val.txt')
    want = Counter(lab for _, lab in read_manifest(manifest))
    got = Counter()
    for shard in range(3):
        for _, labels in classification_loader(toy['root'], manifest, 7, False, crop=64, resize=72, shard_id=shard, num_shards=3):
            got.update(labels.tolist())
    assert got == want


def test_caffe_warp_and_input_scale(toy):
    """The paper's AlexNet input (models.input_spec('alexnet'), what train.py feeds it by default): every image
    warped to 256 x 256 whatever its aspect ratio (Caffe's examples/imagenet), and pixels on the 0-255 scale minus
    Caffe's mean, not divided by a std, so conv1 sees values from -122.7 to 255 - 104.0."""
    import models
    spec = models.input_spec('alexnet')
    assert (spec['resize_mode'], spec['weight_init']) == ('warp', 'caffe')
    manifest = os.path.join(toy['subset'], 'val.txt')
    rows = read_manifest(manifest)
    # crop = resize: the whole warped image, to compare with PIL's non-aspect-preserving resize
    images, _ = next(iter(classification_loader(toy['root'], manifest, 16, False, crop=64, resize=64,
                                                mean=spec['mean'], std=spec['std'], resize_mode='warp')))
    mean = torch.tensor([122.679, 116.669, 104.007])
    assert images.min() >= -122.7 and images.max() <= 255 - 104.0 and images.max() - images.min() > 150
    for img, (path, _) in zip(images, rows):
        im = Image.open(os.path.join(toy['root'], path)).convert('RGB')
        assert im.size[0] != im.size[1], path  # the toy images are not square: warping changes their shape
        ref = torch.from_numpy(np.asarray(im.resize((64, 64), Image.BILINEAR), dtype=np.float32)) - mean
        assert (img.permute(1, 2, 0) - ref).abs().mean() < 1.0, path  # grey levels


def test_prepared_copy_feeds_the_pipeline_the_same_images(toy, tmp_path):
    from conftest import TINY, run
    from conftest import run_here
    manifest, copy = os.path.join(toy['subset'], 'val.txt'), tmp_path / 'copy'
    rels = [p for p, _ in read_manifest(manifest)]
    prepare = ['data_dali.py', 'prepare', toy['index'], '--out', str(copy), '--shorter', '108', '--workers', '2']
    run(*prepare)
    for rel in rels[::50]:
        with Image.open(copy / rel) as im, Image.open(os.path.join(toy['root'], rel)) as orig:
            assert min(im.size) == min(108, *orig.size), rel  # a smaller image is copied as it is
            assert abs(im.size[0] / im.size[1] - orig.size[0] / orig.size[1]) < 0.02, rel
    # stopped half-way (files gone, a .part left by a kill): the same command writes only what is missing
    for rel in rels[:3]:
        (copy / rel).unlink()
    (copy / (rels[0] + '.part')).write_bytes(b'half')
    assert '3 to resize' in run(*prepare).stdout
    assert not (copy / (rels[0] + '.part')).exists()
    # what training sees: the originals' pixels, up to the JPEG re-encoding and the resize filter
    a, b = (next(iter(classification_loader(str(r), manifest, len(rels), False, crop=96, resize=108)))[0]
            for r in (toy['root'], copy))
    grey = ((a - b).abs() * torch.tensor(STD).view(1, 3, 1, 1)).mean().item()
    assert grey < 2.5, grey  # measured: 1.8 grey levels at quality 90 (the JPEG re-encoding, chiefly)
    # another copy recipe in the same folder, or training that would resize the copy again: one line each
    p = run_here(*prepare[:-4], '--warp', '256', check=False)
    assert p.returncode == 2 and p.stderr.strip() == f'error: {copy} is a copy with resize_mode shorter, not warp; pass another --out'
    p = run_here('train.py', '--subset', toy['subset'], '--data-root', str(copy), '--out', str(tmp_path / 'run'), *TINY,
                 '--resize', '120', check=False)
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == (
        f'error: {copy} holds images resized once with --resize-mode shorter --resize 108 ({copy / "prepared.json"}); '
        'this run has --resize-mode shorter --resize 120, which would resize them twice: pass those flags, or the original images')
    assert not (tmp_path / 'run').exists()


def test_uint8_hand_over_gives_the_float_images_bit_for_bit(toy):
    """hand_over='uint8' (issue 19): uint8 images that loader.normalizer() turns into exactly the float hand-over's,
    crops, mirrors and labels included, with any mean and std, and a float loader's checkpoint resumes a uint8 one."""
    manifest = os.path.join(toy['subset'], 'train.txt')

    def loader(hand_over, checkpoint=None):
        return classification_loader(toy['root'], manifest, 16, True, crop=96, resize=108, seed=3, hand_over=hand_over,
                                     checkpoint=checkpoint, mean=[0.5, 0.4, 0.3], std=[0.2, 0.3, 0.25])

    floats, uint8 = loader('float'), loader('uint8')
    norm = uint8.normalizer()
    seen = []
    for (a, la), (b, lb) in itertools.islice(zip(floats, uint8), 3):
        assert b.dtype == torch.uint8 and b.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(norm(b), a) and torch.equal(lb, la)
        seen.append(a.clone())
    assert not torch.equal(seen[0], seen[1])  # the batches move on
    assert not dict(norm.state_dict())  # nothing of it is saved in a checkpoint
    state = floats.state()
    resumed = loader('uint8', state)
    (a, la), (b, lb) = next(iter(floats)), next(iter(resumed))
    assert torch.equal(resumed.normalizer()(b), a) and torch.equal(lb, la)
