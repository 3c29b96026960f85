"""detection.py's box, NMS and RoIAlign ops against naive loops written straight from their definitions."""
import math

import pytest
import torch

from detection import batched_nms, box_iou, nms, roi_align, tv_nms


# ---------------------------------------------------------------------------------------------- naive references

def naive_iou(a, b):
    """Python floats, py-faster-rcnn's +1 convention and order of operations; sides clamped at 0, union 0 -> 0."""
    area_a = max(0.0, a[2] - a[0] + 1) * max(0.0, a[3] - a[1] + 1)
    area_b = max(0.0, b[2] - b[0] + 1) * max(0.0, b[3] - b[1] + 1)
    w = max(0.0, min(a[2], b[2]) - max(a[0], b[0]) + 1)
    h = max(0.0, min(a[3], b[3]) - max(a[1], b[1]) + 1)
    inter = w * h
    union = area_a + area_b - inter
    return inter / union if union > 0 else 0.0


def naive_nms(boxes, scores, thresh):
    """The greedy loop: by decreasing score (ties: lower index first), keep a box unless a kept one overlaps it by
    IoU > thresh."""
    b, s = boxes.tolist(), scores.tolist()
    order = sorted(range(len(s)), key=lambda i: (-s[i], i))
    keep = []
    for i in order:
        if all(naive_iou(b[k], b[i]) <= thresh for k in keep):
            keep.append(i)
    return keep


def naive_roi_align(features, rois, oh, ow, scale, sr, aligned=False):
    """Per RoI, bin and sample point, Detectron's bilinear_interpolate written out; differentiable (autograd)."""
    B, C, H, W = features.shape
    out = []
    for roi in rois.tolist():
        b = int(roi[0])
        off = 0.5 if aligned else 0.0
        x1, y1, x2, y2 = (v * scale - off for v in roi[1:])
        rw, rh = x2 - x1, y2 - y1
        if not aligned:
            rw, rh = max(rw, 1.0), max(rh, 1.0)
        bh, bw = rh / oh, rw / ow
        bins = []
        for ph in range(oh):
            for pw in range(ow):
                acc = torch.zeros(C, dtype=features.dtype)
                for iy in range(sr):
                    for ix in range(sr):
                        y = y1 + ph * bh + (iy + 0.5) * bh / sr
                        x = x1 + pw * bw + (ix + 0.5) * bw / sr
                        if y < -1 or y > H or x < -1 or x > W:
                            continue
                        y, x = max(y, 0.0), max(x, 0.0)
                        y0, x0 = int(y), int(x)
                        if y0 >= H - 1:
                            y0 = y1_ = H - 1
                            y = float(y0)
                        else:
                            y1_ = y0 + 1
                        if x0 >= W - 1:
                            x0 = x1_ = W - 1
                            x = float(x0)
                        else:
                            x1_ = x0 + 1
                        ly, lx = y - y0, x - x0
                        hy, hx = 1 - ly, 1 - lx
                        f = features[b]
                        acc = acc + hy * hx * f[:, y0, x0] + hy * lx * f[:, y0, x1_] + \
                            ly * hx * f[:, y1_, x0] + ly * lx * f[:, y1_, x1_]
                bins.append(acc / (sr * sr))
        out.append(torch.stack(bins, 1).view(C, oh, ow))
    return torch.stack(out)


# --------------------------------------------------------------------------------------------------------- inputs

def overlapping_boxes(n, seed, integer=True, dtype=torch.float64):
    """n boxes crowded into a 60 x 60 px area (many overlaps), integer corners by default (so IoUs hit thresholds
    like 0.5 exactly), a few degenerate, and scores from 5 values (many ties)."""
    g = torch.Generator().manual_seed(seed)
    xy = torch.rand(n, 2, generator=g) * 50
    wh = torch.rand(n, 2, generator=g) * 25 + 2
    boxes = torch.cat([xy, xy + wh], 1)
    if integer:
        boxes = boxes.round()
    bad = torch.rand(n, generator=g) < 0.05  # x2 < x1 - 1 or y2 < y1 - 1: zero area under the +1 convention
    boxes[bad, 2] = boxes[bad, 0] - 3
    scores = torch.randint(0, 5, (n,), generator=g).to(dtype) / 4
    return boxes.to(dtype), scores


# ------------------------------------------------------------------------------------------------------ box_iou

def test_box_iou_hand_case():
    # [0,0,9,9] and [5,0,14,9] are 10 x 10 px each and share 5 x 10 px: 50 / (100 + 100 - 50) = 1/3
    iou = box_iou(torch.tensor([[0., 0, 9, 9]]), torch.tensor([[5., 0, 14, 9], [10., 0, 19, 9], [0., 0, 9, 9]]))
    assert iou.shape == (1, 3) and iou.dtype == torch.float32
    assert torch.allclose(iou, torch.tensor([[1 / 3, 0, 1]]))


@pytest.mark.parametrize('seed', [0, 1])
def test_box_iou_matches_naive(seed):
    a, _ = overlapping_boxes(40, seed, integer=seed == 0)
    b, _ = overlapping_boxes(30, seed + 10, integer=seed == 0)
    ref = torch.tensor([[naive_iou(x, y) for y in b.tolist()] for x in a.tolist()], dtype=torch.float64)
    assert torch.equal(box_iou(a, b), ref)  # float64 and the same order of operations: bit-identical
    assert torch.allclose(box_iou(a.float(), b.float()), ref.float(), atol=1e-6)


# ---------------------------------------------------------------------------------------------------------- nms

@pytest.mark.parametrize('n,seed,integer,thresh', [
    (50, 0, True, 0.5), (200, 1, True, 0.5), (300, 2, False, 0.7), (700, 3, True, 0.3),
    (1300, 4, True, 0.7), (1300, 5, False, 0.5)])
def test_nms_matches_greedy(n, seed, integer, thresh):
    boxes, scores = overlapping_boxes(n, seed, integer)
    keep = nms(boxes, scores, thresh)
    assert keep.dtype == torch.long
    assert keep.tolist() == naive_nms(boxes, scores, thresh)


def test_nms_small_block_and_float32():
    """Many blocks, each with chains that need several Cluster-NMS iterations; float32 boxes against a float32
    naive loop would need float32 arithmetic, so compare float32 with integer corners (exact in both)."""
    import detection
    boxes, scores = overlapping_boxes(400, 6)
    ref = naive_nms(boxes, scores, 0.5)
    for block in (1, 7, 64):
        order = torch.sort(scores, descending=True, stable=True).indices
        assert order[detection._greedy_nms_sorted(boxes[order], 0.5, block=block)].tolist() == ref
    assert nms(boxes.float(), scores.float(), 0.5).tolist() == ref


def test_nms_max_keep_is_a_prefix():
    boxes, scores = overlapping_boxes(1000, 7)
    labels = torch.randint(0, 3, (1000,), generator=torch.Generator().manual_seed(7))
    full, full_b = nms(boxes, scores, 0.5), batched_nms(boxes, scores, labels, 0.5)
    for k in (0, 1, 5, 300, 301, len(full), 5000):
        assert torch.equal(nms(boxes, scores, 0.5, max_keep=k), full[:k])
        assert torch.equal(batched_nms(boxes, scores, labels, 0.5, max_keep=k), full_b[:k])


def test_nms_strictly_greater_and_ties():
    # IoU exactly 1/3 between the first two: kept at threshold 1/3 (suppression needs IoU > threshold)
    boxes = torch.tensor([[0., 0, 9, 9], [5., 0, 14, 9], [0., 0, 9, 9], [100., 100, 90, 120]])
    scores = torch.tensor([1., 1, 1, 2])
    assert nms(boxes, scores, 1 / 3).tolist() == [3, 0, 1]  # box 2 equals box 0 (IoU 1), same score, later index
    assert nms(boxes, scores, 0.3).tolist() == [3, 0]
    assert nms(boxes, scores, 1.0).tolist() == [3, 0, 1, 2]  # IoU 1 is not > 1


def test_nms_edge_sizes():
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.5).tolist() == []
    assert nms(torch.tensor([[1., 2, 3, 4]]), torch.tensor([0.3]), 0.5).tolist() == [0]
    # degenerate boxes: zero area, IoU 0 with everything (also with an identical degenerate box): all kept
    deg = torch.tensor([[5., 5, 3, 9], [5., 5, 3, 9], [0., 0, 9, 9]])
    assert nms(deg, torch.tensor([0.9, 0.8, 0.1]), 0.5).tolist() == [0, 1, 2]
    assert tv_nms(deg, torch.tensor([0.9, 0.8, 0.1]), 0.5).tolist() == [0, 1, 2]  # the GPU's path, run on the CPU


@pytest.mark.parametrize('seed', [0, 1, 2])
def test_batched_nms_matches_per_class(seed):
    boxes, scores = overlapping_boxes(600, seed, integer=seed != 2)
    labels = torch.randint(0, 4, (600,), generator=torch.Generator().manual_seed(seed))
    keep = batched_nms(boxes, scores, labels, 0.4)
    ref = []
    for c in labels.unique().tolist():
        idx = (labels == c).nonzero().squeeze(1)
        ref += idx[naive_nms(boxes[idx], scores[idx], 0.4)].tolist()
    ref.sort(key=lambda i: (-scores[i].item(), i))
    assert keep.tolist() == ref
    assert batched_nms(torch.zeros(0, 4), torch.zeros(0), torch.zeros(0, dtype=torch.long), 0.5).tolist() == []


# ---------------------------------------------------------------------------------------------------- roi_align

def random_rois(k, batch, H, W, scale, seed):
    """RoIs in image pixels over a map of H x W cells at `scale`, some reaching past the border and some tiny."""
    g = torch.Generator().manual_seed(seed)
    img_h, img_w = H / scale, W / scale
    xy = torch.rand(k, 2, generator=g) * torch.tensor([img_w, img_h]) * 1.2 - torch.tensor([img_w, img_h]) * 0.1
    wh = torch.rand(k, 2, generator=g) * torch.tensor([img_w, img_h]) * 0.6
    wh[: k // 5] *= 0.02  # below one cell: Detectron widens them to 1 x 1
    b = torch.randint(0, batch, (k, 1), generator=g).double()
    return torch.cat([b, xy, xy + wh], 1).double()


@pytest.mark.parametrize('oh,ow,sr,aligned,seed', [(3, 3, 2, False, 0), (2, 4, 1, False, 1), (3, 2, 3, True, 2)])
def test_roi_align_forward_and_gradient(oh, ow, sr, aligned, seed):
    g = torch.Generator().manual_seed(seed)
    B, C, H, W, scale = 2, 3, 7, 9, 1 / 8
    feats = torch.randn(B, C, H, W, generator=g, dtype=torch.float64, requires_grad=True)
    rois = random_rois(12, B, H, W, scale, seed)
    out = roi_align(feats, rois, (oh, ow), scale, sr, aligned)
    ref = naive_roi_align(feats, rois, oh, ow, scale, sr, aligned)
    assert out.shape == (12, C, oh, ow) and out.dtype == torch.float64
    assert torch.allclose(out, ref, atol=1e-12)
    probe = torch.randn(out.shape, generator=g, dtype=torch.float64)  # a random linear functional of the output
    grad, = torch.autograd.grad((out * probe).sum(), feats)
    grad_ref, = torch.autograd.grad((ref * probe).sum(), feats)
    assert torch.allclose(grad, grad_ref, atol=1e-12)
    assert grad.abs().sum() > 0


def test_roi_align_outside_rule_and_edges():
    feats = torch.arange(1., 13).view(1, 1, 3, 4)
    # a 1 x 1 output sampled at one point (sampling_ratio 1) at the RoI centre; aligned=False, scale 1
    def at(x, y):  # centre (x, y): a RoI [x - 0.5, y - 0.5, x + 0.5, y + 0.5]
        return roi_align(feats, torch.tensor([[0., x - .5, y - .5, x + .5, y + .5]]), 1, 1.0, 1).item()
    assert at(-1.5, 1) == 0 and at(1, 3.5) == 0            # y or x beyond -1 / H: nothing
    assert at(-0.5, 0) == 1 and at(1, -0.9) == 2           # within 1 of the border: clamped to row / column 0
    assert at(3.7, 2.5) == 12                              # past the last column and row: the corner cell
    assert at(1.5, 0.5) == pytest.approx((2 + 3 + 6 + 7) / 4)
    assert roi_align(feats, torch.zeros(0, 5), (2, 3), 1.0).shape == (0, 1, 2, 3)
    with pytest.raises(ValueError):
        roi_align(feats, torch.zeros(1, 5), 2, 1.0, sampling_ratio=0)


def test_roi_align_low_precision():
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(1, 16, 38, 63, generator=g)
    rois = random_rois(20, 1, 38, 63, 1 / 16, 0).float()
    ref = roi_align(feats, rois, 6, 1 / 16)
    for dt in (torch.bfloat16, torch.float16):
        out = roi_align(feats.to(dt), rois, 6, 1 / 16)
        assert out.dtype == dt and torch.allclose(out.float(), ref, atol=0.05, rtol=0.02)
    conv = torch.nn.Conv2d(16, 8, 3, padding=1)
    with torch.autocast('cpu', dtype=torch.bfloat16):
        y = conv(feats)
        out = roi_align(y, rois, 6, 1 / 16)
        assert y.dtype == out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert conv.weight.grad is not None and torch.isfinite(conv.weight.grad).all()
    assert torch.allclose(out.float(), roi_align(conv(feats), rois, 6, 1 / 16), atol=0.1, rtol=0.05)


# ------------------------------------------------------------------------------------------ against torchvision.ops

def test_ops_match_torchvision():
    """detection.py's ops give torchvision.ops' answers, once boxes move to torchvision's exclusive convention
    (x2 + 1, y2 + 1): IoUs equal, NMS through tv_nms (the GPU's path) keeps the same boxes in the same order (ties
    and degenerate boxes included), batched NMS the same boxes (torchvision's order among equal scores is not by
    index), RoIAlign the same values and gradients. bench/detection_ops.py times both."""
    import torchvision.ops as tv

    def exclusive(b):
        return torch.cat([b[:, :2], b[:, 2:] + 1], 1)

    for seed, integer in ((0, True), (1, False), (2, True)):
        boxes, scores = overlapping_boxes(1300, seed, integer)  # 5% degenerate, scores from 5 values (ties)
        labels = torch.randint(0, 4, (1300,), generator=torch.Generator().manual_seed(seed))
        proper = (boxes[:, 2] >= boxes[:, 0]) & (boxes[:, 3] >= boxes[:, 1])  # torchvision's area of a degenerate box is not 0
        assert torch.equal(box_iou(boxes[proper], boxes[proper]), tv.box_iou(exclusive(boxes[proper]), exclusive(boxes[proper])))
        for t in (0.3, 0.5, 0.7):
            # tv_nms: what nms and batched_nms run on a GPU (torchvision's kernels), here on the CPU
            assert torch.equal(nms(boxes, scores, t), tv_nms(boxes, scores, t)), (seed, t)
            ours, theirs = batched_nms(boxes, scores, labels, t), tv_nms(boxes, scores, t, labels)
            assert sorted(ours.tolist()) == sorted(theirs.tolist()) and torch.equal(scores[ours], scores[theirs]), (seed, t)

    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64, requires_grad=True)
    rois = random_rois(12, 2, 7, 9, 1 / 8, 0)
    probe = torch.randn(12, 3, 3, 2, generator=g, dtype=torch.float64)
    for aligned in (False, True):
        for sr in (1, 2, 3):
            ours, theirs = roi_align(feats, rois, (3, 2), 1 / 8, sr, aligned), tv.roi_align(feats, rois, (3, 2), 1 / 8, sr, aligned)
            assert torch.allclose(ours, theirs, atol=1e-12)
            grads = [torch.autograd.grad((o * probe).sum(), feats)[0] for o in (ours, theirs)]
            assert torch.allclose(*grads, atol=1e-12)


def naive_roi_pool(features, rois, oh, ow, scale):
    """caffe-fast-rcnn's ROIPooling (roi_pooling_layer.cpp, py-faster-rcnn's) written out: corners rounded to cells
    (C's round, half away from zero), a RoI at least one cell, bin edges floor / ceil, clipped, an empty bin 0."""
    def c_round(v):
        return math.floor(v + 0.5) if v >= 0 else -math.floor(-v + 0.5)
    _, C, H, W = features.shape
    out = []
    for roi in rois.tolist():
        b = int(roi[0])
        x1, y1, x2, y2 = (c_round(v * scale) for v in roi[1:])
        bh, bw = max(y2 - y1 + 1, 1) / oh, max(x2 - x1 + 1, 1) / ow
        bins = []
        for ph in range(oh):
            for pw in range(ow):
                h0, h1 = min(max(math.floor(ph * bh) + y1, 0), H), min(max(math.ceil((ph + 1) * bh) + y1, 0), H)
                w0, w1 = min(max(math.floor(pw * bw) + x1, 0), W), min(max(math.ceil((pw + 1) * bw) + x1, 0), W)
                empty = h1 <= h0 or w1 <= w0
                bins.append(features.new_zeros(C) if empty else features[b, :, h0:h1, w0:w1].amax((1, 2)))
        out.append(torch.stack(bins, 1).view(C, oh, ow))
    return torch.stack(out)


def test_roi_max_pooling_matches_py_faster_rcnn():
    """pool_rois(op='pool'), the AlexNet detector's default, is Fast R-CNN's RoI max pooling as py-faster-rcnn
    computes it, forward and gradient, RoIs past the border and below one cell included."""
    from detection import pool_rois
    g = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 3, 7, 9, generator=g, dtype=torch.float64, requires_grad=True)
    rois = random_rois(20, 2, 7, 9, 1 / 8, 3)
    out, ref = pool_rois(feats, rois, (3, 2), 1 / 8, 'pool'), naive_roi_pool(feats, rois, 3, 2, 1 / 8)
    assert out.shape == (20, 3, 3, 2) and torch.equal(out, ref)
    probe = torch.randn(out.shape, generator=g, dtype=torch.float64)
    assert torch.allclose(*(torch.autograd.grad((o * probe).sum(), feats)[0] for o in (out, ref)), atol=1e-12)
