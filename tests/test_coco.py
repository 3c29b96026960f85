"""He et al. 2019 on the toy COCO: the instances files through pycocotools, torchvision's Mask R-CNN with a GN
ResNet-FPN trained by `finetune.py coco` from scratch and from a toy pre-training, COCOeval, an exact resume after
kill -9, a 2-process gloo run, and one-line errors for malformed COCO data."""
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest
import torch

from conftest import ROOT, run, run_here

# A detector two CPU cores train in about a second an iteration: the real code at a small size.
TINY_DET = ['--arch', 'resnet18', '--scale', '64', '--max-size', '96', '--fpn-channels', '32', '--rois-per-image', '16',
            '--anchor-sizes', '8', '16', '32', '64', '128', '--test-proposals', '20', '--batch-size', '2',
            '--workers', '1', '--lr', '0.01', '--warmup', '2', '--log-every', '1']


@pytest.fixture(scope='module')
def coco(tmp_path_factory):
    """A toy COCO written by the real command line: 8 train2017 and 4 val2017 images."""
    out = tmp_path_factory.mktemp('coco')
    run_here('toydata.py', '--out', str(out), '--train-per-class', '1', '--val-per-class', '1', '--sun-per-class', '0',
             '--places-train', '0', '--voc07-trainval', '0', '--voc07-test', '0', '--voc12-per-action', '0',
             '--transfer-per-class', '0', '--coco-train', '8', '--coco-val', '4')
    return str(out / 'COCO')


def coco_args(coco, out, *extra, init='scratch'):
    args = ['finetune.py', 'coco', '--coco', coco, '--init', init, '--out', str(out), *TINY_DET, *extra]
    return args if init == 'scratch' else [a for a in args if a not in ('--arch', 'resnet18')]


def test_toy_coco_is_read_by_pycocotools(coco):
    from pycocotools import mask as mask_utils
    from pycocotools.coco import COCO

    from datasets import read_coco
    from toydata import COCO_CATEGORIES
    gt = COCO(os.path.join(coco, 'annotations', 'instances_train2017.json'))
    assert sorted(gt.getCatIds()) == sorted(i for i, _, _ in COCO_CATEGORIES.values())
    anns = gt.loadAnns(gt.getAnnIds())
    assert anns and len(gt.getImgIds()) == 8
    for a in anns:
        rle = gt.annToRLE(a)
        assert float(mask_utils.area(rle)) == a['area']  # as COCO's: the area of the segmentation
        # bbox: the box of the polygons' points; the rasterised mask lies inside it and fills most of it (thin spikes
        # of a polygon draw no pixel, as in COCO's own files)
        (x, y, w, h), (bx, by, bw, bh) = mask_utils.toBbox(rle), a['bbox']
        assert bx - 0.5 <= x and by - 0.5 <= y and x + w <= bx + bw + 0.5 and y + h <= by + bh + 0.5, (x, y, w, h, a)
        assert w * h > 0.8 * bw * bh, (x, y, w, h, a)
    records, categories = read_coco(coco, 'train2017')
    assert [c['id'] for c in categories] == sorted(gt.getCatIds())
    crowd_free = [a for a in anns if not a['iscrowd']]
    assert sum(len(r['boxes']) for r in records) == len(crowd_free)
    first = records[0]
    mine = [a for a in crowd_free if a['image_id'] == first['id']]
    x, y, w, h = np.array([a['bbox'] for a in mine], np.float32).T
    # the loader's convention: COCO's continuous box with x1, y1 moved by one (datasets.read_coco)
    assert np.allclose(first['boxes'], np.stack([x + 1, y + 1, x + w, y + h], 1))
    assert [categories[k - 1]['id'] for k in first['labels']] == [a['category_id'] for a in mine]


def test_coco_ap_of_perfect_and_shifted_detections(coco):
    from pycocotools.coco import COCO

    from eval.metrics import coco_ap
    path = os.path.join(coco, 'annotations', 'instances_val2017.json')
    gt = COCO(path)
    anns = [a for a in gt.loadAnns(gt.getAnnIds()) if not a['iscrowd']]
    perfect = []
    for a in anns:
        rle = gt.annToRLE(a)
        perfect.append({'image_id': a['image_id'], 'category_id': a['category_id'], 'bbox': a['bbox'], 'score': 1.0,
                        'segmentation': {'size': rle['size'], 'counts': rle['counts'].decode()}})
    m = coco_ap(path, perfect, gt.getImgIds())
    assert m['bbox/AP'] == pytest.approx(100) and m['segm/AP'] == pytest.approx(100) and m['bbox/AP50'] == pytest.approx(100)
    # boxes moved by 40% of their size: no longer matches at IoU 0.5
    moved = [dict(d, bbox=[d['bbox'][0] + 0.4 * d['bbox'][2], d['bbox'][1] + 0.4 * d['bbox'][3], *d['bbox'][2:]]) for d in perfect]
    assert coco_ap(path, moved, gt.getImgIds(), ('bbox',))['bbox/AP'] < 20
    assert coco_ap(path, [], gt.getImgIds())['segm/AP'] == 0.0


def test_fpn_detector_from_scratch_trains_everything_with_gn():
    import torch.nn as nn

    from detection import fpn_detector
    model, frozen = fpn_detector('resnet18', 3, 'gn', channels=32)
    assert not frozen and all(p.requires_grad for p in model.parameters())
    norms = [m for m in model.modules() if isinstance(m, (nn.GroupNorm, nn.modules.batchnorm._BatchNorm))]
    assert norms and all(isinstance(m, nn.GroupNorm) for m in norms)
    net = model.net
    for part in (net.backbone.body, net.backbone.fpn, net.roi_heads.box_head, net.roi_heads.mask_head):
        assert any(isinstance(m, nn.GroupNorm) for m in part.modules()), type(part).__name__
    # pre-trained: the stem and res2 stay fixed (Detectron's FREEZE_AT 2), the norms train
    init = {k: v for k, v in fpn_detector('resnet18', 3, 'gn', channels=32)[0].net.backbone.body.state_dict().items()}
    model, frozen = fpn_detector('resnet18', 3, 'gn', init=init, channels=32)
    body = model.net.backbone.body
    assert not any(p.requires_grad for p in body.layer1.parameters()) and all(p.requires_grad for p in body.layer2.parameters())
    assert torch.equal(body.layer3[0].conv1.weight, init['layer3.0.conv1.weight'])


@pytest.fixture(scope='module')
def gn_pretrained(toy, tmp_path_factory):
    """A toy pre-training of a GroupNorm ResNet-18 (a few iterations: the pre-trained path, not a good network)."""
    out = tmp_path_factory.mktemp('gn') / 'run'
    run_here('train.py', '--subset', toy['subset'], '--out', str(out), '--arch', 'resnet18', '--norm', 'gn',
             '--crop', '64', '--resize', '72', '--batch-size', '16', '--lr', '0.01', '--iters', '4', '--eval-every', '4',
             '--save-every', '4', '--workers', '2')
    return out / 'checkpoint.pth'


def test_coco_from_scratch_and_pretrained(coco, gn_pretrained, tmp_path):
    for init in ('scratch', str(gn_pretrained)):
        out = tmp_path / ('scratch' if init == 'scratch' else 'pretrained')
        p = run_here(*coco_args(coco, out, '--iters', '4', '--eval-every', '2', init=init))
        result = json.loads((out / 'transfer.json').read_text())
        for k in ('test_bbox/AP', 'test_bbox/AP50', 'test_segm/AP', 'test_segm/APl'):
            assert k in result and (result[k] != result[k] or 0 <= result[k] <= 100), (k, result)
        assert result['test_n'] == 4 and result['step'] == 4
        curve = [(r['step'], r['val/bbox/AP']) for r in map(json.loads, (out / 'log.jsonl').read_text().splitlines())
                 if 'val/bbox/AP' in r]
        assert [s for s, _ in curve] == [2, 4]  # the AP-against-iterations curve
        args = json.loads((out / 'args.json').read_text())
        assert args['norm'] == 'gn' and args['init'] == init
        assert ('trainable parameters' in p.stdout) and ('init scratch' in p.stdout) == (init == 'scratch')


def test_coco_resume_after_kill_is_exact(coco, tmp_path):
    extra = ['--iters', '8', '--lr-steps', '6', '--save-every', '2', '--eval-every', '8', '--seed', '1']
    whole, killed = tmp_path / 'whole', tmp_path / 'killed'
    run_here(*coco_args(coco, whole, *extra))
    proc = subprocess.Popen([sys.executable, *coco_args(coco, killed, *extra)], cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 180
    while time.time() < deadline and proc.poll() is None:
        ckpt = killed / 'checkpoint.pth'
        if ckpt.exists() and (killed / 'log.jsonl').exists() and any(
                json.loads(l)['step'] >= 3 for l in (killed / 'log.jsonl').read_text().splitlines()):
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL, 'the run finished before it could be killed'
    step = torch.load(killed / 'checkpoint.pth', weights_only=True)['step']
    assert 0 < step < 8
    p = run_here(*coco_args(coco, killed, *extra))
    assert f'at iteration {step}' in p.stdout
    a, b = (torch.load(d / 'checkpoint.pth', weights_only=True) for d in (whole, killed))
    assert a['step'] == b['step'] == 8
    for k in a['model']:
        assert torch.equal(a['model'][k], b['model'][k]), k
    assert json.loads((whole / 'transfer.json').read_text())['test_bbox/AP'] == json.loads((killed / 'transfer.json').read_text())['test_bbox/AP']


def test_coco_two_processes_gloo(coco, tmp_path):
    out = tmp_path / 'ddp'
    run('-m', 'torch.distributed.run', '--standalone', '--nproc_per_node', '2',
        *coco_args(coco, out, '--iters', '2', '--eval-every', '2'))
    result = json.loads((out / 'transfer.json').read_text())
    assert result['test_n'] == 4 and 'test_segm/AP' in result  # every val image tested once over both processes
    ckpt = torch.load(out / 'checkpoint.pth', weights_only=True)
    assert len(ckpt['loader']) == 2 and ckpt['step'] == 2


def broken(coco, tmp_path, name, edit):
    """A copy of the toy COCO whose val2017 instances file `edit` changes (or, given bytes, replaces)."""
    root = tmp_path / name
    shutil.copytree(coco, root)
    path = root / 'annotations' / 'instances_val2017.json'
    data = json.loads(path.read_text())
    if callable(edit):
        edit(data)
        path.write_text(json.dumps(data))
    else:
        path.write_bytes(edit)
    return str(root), str(path)


def test_coco_bad_input_is_one_line_before_anything_is_written(coco, tmp_path):
    def first_polygon(d):
        a = next(a for a in d['annotations'] if not a['iscrowd'])
        a['segmentation'] = [a['segmentation'][0][:4]]

    cases = [('json', b'{"images": [', 'malformed JSON'),
             ('image', lambda d: d['annotations'][0].update(image_id=999999), 'names image 999999, which "images" does not list'),
             ('category', lambda d: d['annotations'][0].update(category_id=1000), 'has category_id 1000, which is not among'),
             ('polygon', first_polygon, 'has 2 point(s); a polygon needs at least 3'),
             ('missing', lambda d: d['images'][0].update(file_name='gone.jpg'), 'which is not on disk')]
    for name, edit, message in cases:
        root, path = broken(coco, tmp_path, name, edit)
        out = tmp_path / f'out-{name}'
        p = run_here(*coco_args(root, out, '--iters', '2'), check=False)
        assert p.returncode != 0 and 'Traceback' not in p.stderr, p.stderr
        lines = p.stderr.strip().splitlines()
        assert len(lines) == 1 and message in lines[0], (name, p.stderr)
        assert not out.exists(), name
    out = tmp_path / 'too-many'
    p = run_here(*coco_args(coco, out, '--train-images', '9'), check=False)
    assert p.returncode != 0 and '--train-images 9 is larger than the 8 training images' in p.stderr and not out.exists()


def test_voc07_with_the_fpn_detector(toy, tmp_path):
    """He et al. §5: the same detector on VOC 2007 (Faster R-CNN, no masks), scored by the devkit's 11-point mAP."""
    voc = os.path.join(toy['root'], 'VOCdevkit')
    out = tmp_path / 'voc'
    args = ['finetune.py', 'voc07', '--detector', 'fpn', '--voc', voc, '--init', 'scratch', '--out', str(out), *TINY_DET,
            '--iters', '2', '--train-images', '8', '--test-set', 'val']
    p = run_here(*args)
    result = json.loads((out / 'transfer.json').read_text())
    assert 'Faster R-CNN' in p.stdout and result['test_n'] == 100 and 0 <= result['test_mAP'] <= 100
    assert 'test_segm/AP' not in result and json.loads((out / 'args.json').read_text())['mask'] is False


def test_multiscale_training_draws_a_shorter_side_per_image(coco):
    from data_dali import detection_loader
    from datasets import read_coco
    records, _ = read_coco(coco, 'train2017')

    def sides(checkpoint=None):
        loader = detection_loader(coco, records, 2, True, (48, 80), 400, 1, seed=3, checkpoint=checkpoint)
        return [round(min(records[i]['size']) * s) for _, _, info, idx, _ in loader for i, s in zip(idx, info[:, 2].tolist())]
    drawn = sides()
    assert set(drawn) == {48, 80}  # each image resized to one of the scales, both drawn
    assert sides(checkpoint=2)[:4] == drawn[4:8]  # the draw is part of the order: a resumed loader sees the same
