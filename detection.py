"""Detection for the paper's PASCAL VOC transfer (Huh et al. 2016, Table 2): what detection needs and torch lacks.

    from detection import box_iou, nms, batched_nms, roi_align
    keep = nms(proposals, objectness, 0.7)[:2000]                      # py-faster-rcnn RPN, training
    keep = batched_nms(boxes, scores, labels, 0.3)                     # per-class NMS at test time
    pooled = roi_align(conv5, rois, (6, 6), spatial_scale=1 / 16)      # [K, 256, 6, 6] for AlexNet's fc6

torchvision.ops has these ops too, and tests/test_detection_ops.py checks that ours give its answers (and those of
naive loops). On the CPU ours run, because they are faster there (bench/detection_ops.py, BENCHMARKS.md, 2-core
CPU): nms stops at max_keep, 5x torchvision's at py-faster-rcnn's 12000 -> 2000 and 45x at 6000 -> 300; roi_align
forward + backward is 3x torchvision's (its forward alone is 1.5x ours). On a GPU, nms and batched_nms hand over to
torchvision's CUDA kernel (tv_nms): ours, a few kernel launches and a device sync per block, took 21 ms of a
97 ms Faster R-CNN step on an H100 (BENCHMARKS.md), where py-faster-rcnn itself used a fused CUDA kernel
(lib/nms/nms_kernel.cu, the one torchvision's descends from). `bench/detection_ops.py --device cuda` times both.

Boxes are x1, y1, x2, y2 in pixels with py-faster-rcnn's inclusive "+1" convention: a box's width is x2 - x1 + 1
(lib/utils/bbox.pyx bbox_overlaps, lib/nms/*), so [0, 0, 9, 9] is 10 x 10 pixels.
"""
import math

import torch
import torch.nn as nn
import torch.nn.functional as F

from engine import UserError


# ---------------------------------------------------------------------------------------- boxes, NMS, RoI pooling

def _compute_dtype(*tensors):
    """float64 when any input is, else float32: box coordinates up to ~1000 px do not survive fp16/bf16."""
    return torch.float64 if any(t.dtype == torch.float64 for t in tensors) else torch.float32


def _areas(boxes):
    """(x2 - x1 + 1) * (y2 - y1 + 1), each side clamped at 0 so that a degenerate box (x2 < x1 - 1) has area 0
    rather than py-faster-rcnn's product of two negative sides."""
    return (boxes[:, 2] - boxes[:, 0] + 1).clamp(min=0) * (boxes[:, 3] - boxes[:, 1] + 1).clamp(min=0)


def _inter_union(a, area_a, b, area_b):
    """Intersection and union areas [N, M], the arithmetic in py-faster-rcnn's order (cpu_nms.pyx: w = xx2 - xx1
    + 1, inter / (iarea + areas[j] - inter)) so that a greedy loop in the same dtype gets bit-identical IoUs.
    In-place where possible: at NMS's sizes these passes over N x M temporaries are the whole cost."""
    w = torch.min(a[:, None, 2], b[None, :, 2]).sub_(torch.max(a[:, None, 0], b[None, :, 0])).add_(1).clamp_(min=0)
    h = torch.min(a[:, None, 3], b[None, :, 3]).sub_(torch.max(a[:, None, 1], b[None, :, 1])).add_(1).clamp_(min=0)
    inter = w.mul_(h)
    return inter, (area_a[:, None] + area_b[None, :]).sub_(inter)


def _iou(a, area_a, b, area_b):
    """IoU [N, M]. A pair whose union is 0 (two degenerate boxes) has IoU 0: it neither suppresses nor is
    suppressed."""
    inter, union = _inter_union(a, area_a, b, area_b)
    return torch.where(union > 0, inter / union, torch.zeros((), dtype=inter.dtype, device=inter.device))


def _overlapped(a, area_a, b, area_b, iou_threshold):
    """IoU > iou_threshold [N, M] as bool, one pass cheaper than _iou: a zero union gives 0 / 0 = NaN, and NaN >
    t is False, as IoU 0 > t is for any t >= 0."""
    if iou_threshold < 0:
        return _iou(a, area_a, b, area_b) > iou_threshold
    inter, union = _inter_union(a, area_a, b, area_b)
    return inter.div_(union) > iou_threshold


def box_iou(a, b):
    """IoU matrix [N, M] of boxes a [N, 4] and b [M, 4] (x1, y1, x2, y2, inclusive +1 convention as in
    py-faster-rcnn's bbox_overlaps). float32 (float64 if either input is), on the inputs' device."""
    dt = _compute_dtype(a, b)
    a, b = a.to(dt), b.to(dt)
    return _iou(a, _areas(a), b, _areas(b))


# Boxes per block in nms (256: fastest of 128-1024 on the CPU, bench/detection_ops.py; untested on a GPU, where
# fewer, larger blocks mean fewer kernel launches and syncs). Cost at N boxes of which K are kept: the IoUs of
# each block against the boxes kept before it, N x K pairs at most, evaluated 256 columns at a time (so ~K x 256
# floats per temporary: 3.5 MB at K = 3500), and each block's surviving boxes among themselves. Never the N x N
# matrix (576 MB of float32 at py-faster-rcnn's 12000 training proposals, times the temporaries). A Python loop
# runs over the N / 256 blocks (47 at 12000) and the few Cluster-NMS iterations of each, never over boxes.
NMS_BLOCK = 256


def _greedy_nms_sorted(boxes, iou_threshold, labels=None, max_keep=None, block=NMS_BLOCK):
    """Positions (into the score-sorted boxes) that greedy NMS keeps, ascending, the first max_keep of them.
    labels: boxes of different labels never suppress each other.

    Blocked Cluster-NMS (Zheng et al. 2020, "Enhancing Geometric Factors in Model Learning and Inference for
    Object Detection and Instance Segmentation", Sec. 4). Block by block in score order: drop the boxes that
    a box already kept (all in earlier blocks) overlaps by more than the threshold, then solve the block's
    survivors among themselves by iterating keep_j = not any(keep_i and IoU_ij > t for i < j) until it stops
    changing. That map has greedy NMS's answer as its only fixed point, and after t iterations the first t
    entries are already right (by induction over j), so it stops at exactly greedy's answer within block + 1
    iterations (4-8 per 512-box block on bench/detection_ops.py's proposals)."""
    n, dev = boxes.shape[0], boxes.device
    areas = _areas(boxes)
    kept_pos, n_kept = [], 0
    kept_boxes, kept_areas, kept_labels = boxes[:0], areas[:0], None if labels is None else labels[:0]
    for s in range(0, n, block):
        cand, cand_areas = boxes[s:s + block], areas[s:s + block]
        pos = torch.arange(s, s + cand.shape[0], device=dev)
        cand_labels = None if labels is None else labels[s:s + block]
        if n_kept:
            hit = _overlapped(kept_boxes, kept_areas, cand, cand_areas, iou_threshold)
            if labels is not None:
                hit &= kept_labels[:, None] == cand_labels[None, :]
            alive = (~hit.any(0)).nonzero().squeeze(1)
            cand, cand_areas, pos = cand[alive], cand_areas[alive], pos[alive]
            cand_labels = None if labels is None else cand_labels[alive]
        if cand.shape[0] == 0:
            continue
        over = _overlapped(cand, cand_areas, cand, cand_areas, iou_threshold)
        if labels is not None:
            over &= cand_labels[:, None] == cand_labels[None, :]
        # row i may suppress column j only when i ranks higher (i < j); as 0/1 floats so that "is j overlapped by
        # a kept box" is one matrix-vector product (counts up to block are exact in float32)
        over = over.triu_(1).to(boxes.dtype)
        keep = torch.ones(cand.shape[0], dtype=torch.bool, device=dev)
        while True:
            new = (keep.to(over.dtype) @ over) == 0
            if torch.equal(new, keep):  # one device sync per iteration
                break
            keep = new
        idx = keep.nonzero().squeeze(1)
        kept_pos.append(pos[idx])
        n_kept += idx.numel()
        if max_keep is not None and n_kept >= max_keep:
            break
        kept_boxes = torch.cat([kept_boxes, cand[idx]])
        kept_areas = torch.cat([kept_areas, cand_areas[idx]])
        if labels is not None:
            kept_labels = torch.cat([kept_labels, cand_labels[idx]])
    if not kept_pos:
        return torch.empty(0, dtype=torch.long, device=dev)
    return torch.cat(kept_pos)[:max_keep]


def nms(boxes, scores, iou_threshold, max_keep=None):
    """Greedy non-maximum suppression. boxes [N, 4] (x1, y1, x2, y2, +1 convention), scores [N]; returns the int64
    indices of the kept boxes, by decreasing score, on boxes' device. max_keep: the first max_keep of them only,
    the same as [:max_keep] (py-faster-rcnn's RPN keeps 2000 in training, 300 at test).

    Exactly greedy NMS: in order of decreasing score, a box is dropped when its IoU with a box already kept is
    strictly greater than iou_threshold. That is py-faster-rcnn's GPU kernel (nms_kernel.cu: devIoU > thresh, the
    one its training uses, USE_GPU_NMS) and py_cpu_nms.py (keeps ovr <= thresh); its cpu_nms.pyx drops at
    ovr >= thresh instead, which differs only on exact ties with the threshold. IoUs are computed in float32
    (float64 for float64 boxes); degenerate boxes (zero area) have IoU 0 with everything, so they are kept unless
    NMS is preceded, as in py-faster-rcnn, by a minimum-size filter. On the CPU: greedy_nms; on a GPU: tv_nms."""
    return batched_nms(boxes, scores, None, iou_threshold, max_keep)


def batched_nms(boxes, scores, idxs, iou_threshold, max_keep=None):
    """nms independently within each value of idxs [N] (a class, or an image), as py-faster-rcnn's test_net does
    class by class; returns the kept indices by decreasing score (all classes merged), on boxes' device.
    idxs None: one group, plain nms. On the CPU: greedy_nms (exactly per-class); on a GPU: tv_nms."""
    if boxes.is_cuda and boxes.shape[0]:
        return tv_nms(boxes, scores, iou_threshold, idxs)[:max_keep]
    return greedy_nms(boxes, scores, iou_threshold, labels=idxs, max_keep=max_keep)


def greedy_nms(boxes, scores, iou_threshold, labels=None, max_keep=None):
    """Our nms (labels: batched_nms), on any device: Cluster-NMS in blocks (_greedy_nms_sorted), which stops once
    max_keep boxes are kept. Equal scores rank by index, first index first (a stable sort; py-faster-rcnn's
    argsort()[::-1] leaves their order unspecified). Memory and time: see NMS_BLOCK.

    With labels, instead of torchvision's coordinate-offset trick (shift each class's boxes by class * (max
    coordinate + 1) so that classes cannot overlap), pairs of different classes are masked out of the overlap
    matrix: the offset changes the float rounding of the coordinates (float32 has a 2^-8 px step at 21 classes x
    1000 px), so it is not exactly per-class NMS, while the mask is, for one more pass over each block's pairs."""
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[_greedy_nms_sorted(boxes[order].to(_compute_dtype(boxes)), iou_threshold,
                                    labels=None if labels is None else labels[order], max_keep=max_keep)]


def tv_nms(boxes, scores, iou_threshold, idxs=None):
    """nms (batched_nms, given idxs) by torchvision.ops, in our box convention: x2 + 1, y2 + 1 turn the inclusive
    boxes into torchvision's exclusive ones. A degenerate box gets no area clamp there, but its intersection with
    anything is 0, so its IoU is 0, -0 or NaN, never above a threshold: kept and suppressing nothing, as in ours.
    It keeps the boxes greedy_nms keeps (batched: up to the offset trick's rounding), though equal scores may come
    in another order (tests/test_detection_ops.py). The whole NMS runs, then [:max_keep]: no early stop."""
    import torchvision.ops
    b = boxes.to(_compute_dtype(boxes))
    b = torch.cat([b[:, :2], b[:, 2:] + 1], 1)
    if idxs is None:
        return torchvision.ops.nms(b, scores.to(b.dtype), iou_threshold)
    return torchvision.ops.batched_nms(b, scores.to(b.dtype), idxs, iou_threshold)


def _axis_samples(start, size, bins, sampling_ratio, length):
    """Per RoI, the sample coordinates along one axis ([K, bins, sampling_ratio], Detectron's formula
    start + p * bin + (i + 0.5) * bin / sampling_ratio) and, for each, its two neighbouring rows (or columns)
    [K, bins, sr, 2] with their bilinear weights, zeroed outside the map (Detectron: y < -1 or y > H)."""
    bin_size = size / bins
    p = torch.arange(bins, dtype=start.dtype, device=start.device)
    i = torch.arange(sampling_ratio, dtype=start.dtype, device=start.device) + 0.5
    c = (start[:, None, None] + p[None, :, None] * bin_size[:, None, None]) + \
        (i[None, None, :] * bin_size[:, None, None]) / sampling_ratio
    inside = (c >= -1) & (c <= length)
    c = c.clamp(min=0)
    low = c.floor().long()
    edge = low >= length - 1  # Detectron: y_high = y_low = H - 1 and y = y_low, so all weight on the last row
    low = torch.where(edge, length - 1, low)
    high = torch.where(edge, length - 1, low + 1)
    frac = torch.where(edge, 0, c - low)
    w = torch.stack([1 - frac, frac], -1) * inside[..., None]
    return torch.stack([low, high], -1), w


def roi_align(features, rois, output_size, spatial_scale, sampling_ratio=2, aligned=False):
    """RoIAlign (He et al. 2017, Mask R-CNN), Detectron's caffe2 RoIAlign op with a fixed sampling_ratio.

    features [B, C, H, W]; rois [K, 5]: batch index, x1, y1, x2, y2 in input-image pixels; output_size int or
    (oh, ow); spatial_scale maps image pixels to feature cells (1/16 for AlexNet's conv5). Returns [K, C, oh, ow]
    in features' dtype on its device. Each bin averages sampling_ratio^2 bilinear samples at
    roi_start + (p + (i + 0.5) / sampling_ratio) * bin_size. aligned=False (Detectron1, the default): RoI corners
    are x * spatial_scale and a RoI is at least 1 x 1 cell; aligned=True (Detectron2): corners shifted by -0.5 and
    no minimum size. Samples with y < -1 or y > H (x likewise) contribute 0; others are clamped into the map.

    Vectorised: every sample's four neighbours are indices into the channels-last map flattened to
    [B * H * W, C], and embedding_bag gathers them and sums with the bilinear weights in one call, one bag per
    output bin, with no [K, bins, samples, C] intermediate. Gradients flow to features through autograd (rois
    are constants, as in Faster R-CNN). The sampling and the sums run in float32 (float64 for float64 inputs)
    whatever the autocast state; bf16/fp16 features are upcast and the result cast back."""
    if sampling_ratio <= 0:
        raise ValueError(f'sampling_ratio must be > 0 (adaptive sampling is not vectorised), got {sampling_ratio}')
    oh, ow = (output_size, output_size) if isinstance(output_size, int) else tuple(output_size)
    B, C, H, W = features.shape
    K = rois.shape[0]
    if K == 0:
        return features.new_zeros((0, C, oh, ow))
    dt = _compute_dtype(features, rois)
    with torch.autocast(features.device.type, enabled=False):
        r = rois.to(dt)
        shift = 0.5 if aligned else 0.0
        x1, y1 = r[:, 1] * spatial_scale - shift, r[:, 2] * spatial_scale - shift
        x2, y2 = r[:, 3] * spatial_scale - shift, r[:, 4] * spatial_scale - shift
        rw, rh = x2 - x1, y2 - y1
        if not aligned:  # Detectron: "Force malformed ROIs to be 1x1"
            rw, rh = rw.clamp(min=1), rh.clamp(min=1)
        ys, wy = _axis_samples(y1, rh, oh, sampling_ratio, H)  # [K, oh, s, 2]
        xs, wx = _axis_samples(x1, rw, ow, sampling_ratio, W)  # [K, ow, s, 2]
        s = sampling_ratio
        base = (r[:, 0].long() * (H * W))[:, None, None, None, None, None, None]
        # [K, oh, ow, s (y), s (x), 2 (y neighbour), 2 (x neighbour)]
        index = base + ys[:, :, None, :, None, :, None] * W + xs[:, None, :, None, :, None, :]
        weight = wy[:, :, None, :, None, :, None] * wx[:, None, :, None, :, None, :] / (s * s)
        table = features.permute(0, 2, 3, 1).reshape(B * H * W, C).to(dt)
        out = F.embedding_bag(index.reshape(K * oh * ow, 4 * s * s), table,
                              per_sample_weights=weight.reshape(K * oh * ow, 4 * s * s), mode='sum')
    return out.view(K, oh, ow, C).permute(0, 3, 1, 2).contiguous().to(features.dtype)


def pool_rois(features, rois, output_size, spatial_scale, op='pool'):
    """RoI features [K, C, oh, ow]: op 'pool' is Fast R-CNN's RoI max pooling as py-faster-rcnn's ROIPooling layer
    computes it (caffe-fast-rcnn roi_pooling_layer: corners rounded to cells, bins floor/ceil, an empty bin 0),
    which torchvision.ops.roi_pool implements; 'align' is roi_align above (sampling_ratio 2, Detectron)."""
    if op == 'align':
        return roi_align(features, rois, output_size, spatial_scale)
    from torchvision.ops import roi_pool
    # coordinates never in 16 bits (a 4 px step at 600 px in bf16); under autocast torchvision pools in float32
    return roi_pool(features, rois.to(torch.promote_types(features.dtype, torch.float32)), output_size, spatial_scale)


# ---------------------------------------------------------------------------------------- anchors and box coding

# py-faster-rcnn lib/fast_rcnn/config.py (TRAIN.BBOX_NORMALIZE_STDS): the Fast R-CNN head regresses targets divided
# by these; the RPN regresses raw ones.
BOX_STDS = (0.1, 0.1, 0.2, 0.2)
# Detectron (BBOX_XFORM_CLIP): no predicted log-size above log(1000/16), so exp() cannot overflow into inf boxes.
MAX_LOG_SIZE = math.log(1000. / 16)


def generate_anchors(base_size=16, ratios=(0.5, 1, 2), scales=(8, 16, 32)):
    """py-faster-rcnn lib/rpn/generate_anchors.py: [len(ratios) * len(scales), 4] anchors centred on the first
    base_size cell, ratio-major, with its rounding (round half to even, as np.round). The defaults give areas
    128^2, 256^2, 512^2 at aspect ratios 0.5, 1, 2."""
    ctr = (base_size - 1) / 2
    out = []
    for r in ratios:
        ws = round(math.sqrt(base_size * base_size / r))
        hs = round(ws * r)
        for s in scales:
            w, h = ws * s, hs * s
            out.append([ctr - (w - 1) / 2, ctr - (h - 1) / 2, ctr + (w - 1) / 2, ctr + (h - 1) / 2])
    return torch.tensor(out, dtype=torch.float32)


def shifted_anchors(anchors, height, width, stride):
    """Every anchor at every cell of a height x width feature map: [height * width * A, 4], cell-major (row, then
    column, then anchor), the order of an RPN output permuted to [H, W, A] (py-faster-rcnn anchor_target_layer)."""
    ys = torch.arange(height, dtype=anchors.dtype, device=anchors.device) * stride
    xs = torch.arange(width, dtype=anchors.dtype, device=anchors.device) * stride
    y, x = torch.meshgrid(ys, xs, indexing='ij')
    shifts = torch.stack([x, y, x, y], -1).reshape(-1, 1, 4)
    return (shifts + anchors[None]).reshape(-1, 4)


def encode(boxes, targets, stds=(1., 1., 1., 1.)):
    """Regression targets (dx, dy, dw, dh) from boxes to targets, +1 convention (py-faster-rcnn bbox_transform)."""
    w, h = boxes[:, 2] - boxes[:, 0] + 1, boxes[:, 3] - boxes[:, 1] + 1
    tw, th = targets[:, 2] - targets[:, 0] + 1, targets[:, 3] - targets[:, 1] + 1
    d = torch.stack([(targets[:, 0] + 0.5 * tw - boxes[:, 0] - 0.5 * w) / w,
                     (targets[:, 1] + 0.5 * th - boxes[:, 1] - 0.5 * h) / h,
                     torch.log(tw / w), torch.log(th / h)], 1)
    return d / d.new_tensor(stds)


def decode(boxes, deltas, stds=(1., 1., 1., 1.)):
    """py-faster-rcnn's bbox_transform_inv for deltas [N, 4k] (k boxes per row, class-specific), in float32. As
    there, the far corner is centre + w / 2, so a decoded box is one pixel wider and taller than the box encode
    was given (decode(encode(b, t)) = t + [0, 0, 1, 1]); Detectron later subtracted 1 to make it the exact
    inverse. Kept as py-faster-rcnn has it: its trained detectors, and the paper's numbers, include it."""
    boxes, deltas = boxes.float(), deltas.float().reshape(len(deltas), -1, 4) * deltas.new_tensor(stds).float()
    w, h = boxes[:, 2:3] - boxes[:, 0:1] + 1, boxes[:, 3:4] - boxes[:, 1:2] + 1
    cx, cy = boxes[:, 0:1] + 0.5 * w + deltas[..., 0] * w, boxes[:, 1:2] + 0.5 * h + deltas[..., 1] * h
    pw = torch.exp(deltas[..., 2].clamp(max=MAX_LOG_SIZE)) * w
    ph = torch.exp(deltas[..., 3].clamp(max=MAX_LOG_SIZE)) * h
    out = torch.stack([cx - 0.5 * pw, cy - 0.5 * ph, cx + 0.5 * pw, cy + 0.5 * ph], -1)
    return out.reshape(len(boxes), -1)


def clip_boxes(boxes, height, width):
    """Clip [N, 4k] boxes to the image: x in [0, width - 1], y in [0, height - 1]."""
    b = boxes.reshape(len(boxes), -1, 4)
    x, y = b[..., 0::2].clamp(0, width - 1), b[..., 1::2].clamp(0, height - 1)
    return torch.stack([x[..., 0], y[..., 0], x[..., 1], y[..., 1]], -1).reshape(boxes.shape)


def sample(mask, n):
    """At most n random indices where mask is true (torch's RNG: seeded, and saved in checkpoints)."""
    idx = mask.nonzero().squeeze(1)
    return idx[torch.randperm(len(idx), device=idx.device)[:n]] if len(idx) > n else idx


def smooth_l1(x, sigma):
    """py-faster-rcnn's smooth L1 (smooth_L1_loss_layer.cu): 0.5 (sigma x)^2 if |x| < 1 / sigma^2, else |x| - 0.5 / sigma^2."""
    ax = x.abs()
    return torch.where(ax < 1 / sigma ** 2, 0.5 * (sigma * x) ** 2, ax - 0.5 / sigma ** 2)


# ---------------------------------------------------------------------------------------- Faster R-CNN

# Defaults: py-faster-rcnn, experiments/cfgs/faster_rcnn_end2end.yml over lib/fast_rcnn/config.py.
RPN = dict(batch=256, fg_fraction=0.5, fg_iou=0.7, bg_iou=0.3,  # TRAIN.RPN_BATCHSIZE, _FG_FRACTION, _POSITIVE/NEGATIVE_OVERLAP
           pre_nms_train=12000, post_nms_train=2000, pre_nms_test=6000, post_nms_test=300, nms=0.7,  # RPN_PRE/POST_NMS_TOP_N
           min_size=16)  # RPN_MIN_SIZE, in original-image pixels
ROI = dict(batch=128, fg_fraction=0.25, fg_iou=0.5, bg_hi=0.5, bg_lo=0.0,  # TRAIN.BATCH_SIZE, FG_FRACTION, FG_THRESH, BG_THRESH_HI/LO (end2end: 0)
           test_score=0.05, test_nms=0.3, max_dets=100)  # test_net: thresh 0.05, TEST.NMS, max_per_image


class FasterRCNN(nn.Module):
    """Faster R-CNN (Ren et al. 2015), end to end, as py-faster-rcnn trains it, on a pre-trained classifier.

    backbone: images -> features at `stride`; head: pooled RoI features [K, C, pool, pool] -> [K, head_channels].
    forward(images, im_info, targets) returns the four losses in training, and at test a list (per image) of
    (boxes [N, 4] in the resized image's pixels, scores [N], labels [N] in 0..num_classes-1)."""

    def __init__(self, backbone, head, channels, head_channels, num_classes, stride=16, pool=6,
                 anchor_scales=(8, 16, 32), anchor_ratios=(0.5, 1, 2), roi_op='pool'):
        super().__init__()
        self.backbone, self.box_head, self.stride, self.pool, self.num_classes = backbone, head, stride, pool, num_classes
        self.roi_op = roi_op  # 'pool': py-faster-rcnn's RoI max pooling; 'align': RoIAlign (Mask R-CNN, Detectron)
        self.register_buffer('anchors', generate_anchors(stride, anchor_ratios, anchor_scales), persistent=False)
        A = len(self.anchors)
        # RPN: a 3x3 conv as wide as the features (ZF: 256, as AlexNet's conv5), then per-anchor objectness and
        # deltas. One logit per anchor with a sigmoid is py-faster-rcnn's two-way softmax, reparametrised.
        self.rpn_conv = nn.Conv2d(channels, channels, 3, padding=1)
        self.rpn_cls = nn.Conv2d(channels, A, 1)
        self.rpn_box = nn.Conv2d(channels, 4 * A, 1)
        self.cls_score = nn.Linear(head_channels, num_classes + 1)  # + background, class 0
        self.bbox_pred = nn.Linear(head_channels, 4 * (num_classes + 1))  # class-specific boxes
        for m, std in ((self.rpn_conv, 0.01), (self.rpn_cls, 0.01), (self.rpn_box, 0.01), (self.cls_score, 0.01),
                       (self.bbox_pred, 0.001)):  # py-faster-rcnn's prototxt fillers
            nn.init.normal_(m.weight, std=std)
            nn.init.zeros_(m.bias)

    def proposals(self, anchors, logits, deltas, info, train):
        """py-faster-rcnn proposal_layer for one image: decode, clip, drop tiny boxes, top-N, NMS, top-N."""
        pre, post = (RPN['pre_nms_train'], RPN['post_nms_train']) if train else (RPN['pre_nms_test'], RPN['post_nms_test'])
        h, w, scale = info.tolist()
        boxes = clip_boxes(decode(anchors, deltas), h, w)
        min_size = RPN['min_size'] * scale
        keep = ((boxes[:, 2] - boxes[:, 0] + 1) >= min_size) & ((boxes[:, 3] - boxes[:, 1] + 1) >= min_size)
        boxes, scores = boxes[keep], logits.float()[keep]
        top = scores.topk(min(pre, len(scores))).indices
        boxes, scores = boxes[top], scores[top]
        return boxes[nms(boxes, scores, RPN['nms'], max_keep=post)]

    def rpn_loss(self, anchors, logits, deltas, gt, info):
        """py-faster-rcnn anchor_target_layer + losses for one image: anchors inside the image only; fg: IoU >= 0.7
        or the best anchor of a ground-truth box, bg: IoU < 0.3; 256 sampled, at most half fg. Objectness
        cross-entropy over the sample; smooth L1 (sigma 3) on fg deltas, divided by the sample size."""
        h, w = info[0].item(), info[1].item()
        inside = ((anchors[:, 0] >= 0) & (anchors[:, 1] >= 0) & (anchors[:, 2] < w) & (anchors[:, 3] < h)).nonzero().squeeze(1)
        a = anchors[inside]
        labels = torch.full((len(a),), -1, device=a.device)
        if len(gt):
            iou = box_iou(a, gt)  # [anchors, gt]
            best, arg = iou.max(1)
            labels[best < RPN['bg_iou']] = 0
            gt_best = iou.max(0).values
            labels[((iou == gt_best[None]) & (gt_best[None] > 0)).any(1)] = 1  # ties included, as np.where(overlaps == max)
            labels[best >= RPN['fg_iou']] = 1
        else:
            labels[:] = 0
        fg = sample(labels == 1, int(RPN['fg_fraction'] * RPN['batch']))
        bg = sample(labels == 0, RPN['batch'] - len(fg))
        idx = torch.cat([fg, bg])
        target = torch.cat([torch.ones(len(fg)), torch.zeros(len(bg))]).to(logits)
        loss_cls = F.binary_cross_entropy_with_logits(logits[inside[idx]].float(), target.float())
        loss_box = logits.new_zeros(()).float()
        if len(fg):
            t = encode(a[fg], gt[arg[fg]])
            loss_box = smooth_l1(deltas[inside[fg]].float() - t, 3.0).sum() / max(1, len(idx))
        return loss_cls, loss_box

    def sample_rois(self, proposals, gt, gt_labels):
        """py-faster-rcnn proposal_target_layer for one image: ground truth added to the proposals; 128 RoIs, at
        most 25% fg (IoU >= 0.5), the rest bg (IoU in [0, 0.5)); class-specific targets normalised by BOX_STDS."""
        rois = torch.cat([proposals, gt]) if len(gt) else proposals
        if len(gt):
            best, arg = box_iou(rois, gt).max(1)
        else:
            best, arg = rois.new_zeros(len(rois)), torch.zeros(len(rois), dtype=torch.long, device=rois.device)
        fg = sample(best >= ROI['fg_iou'], round(ROI['fg_fraction'] * ROI['batch']))
        bg = sample((best < ROI['bg_hi']) & (best >= ROI['bg_lo']), ROI['batch'] - len(fg))
        keep = torch.cat([fg, bg])
        labels = torch.zeros(len(keep), dtype=torch.long, device=rois.device)
        targets = rois.new_zeros(len(keep), 4)
        if len(fg):
            labels[:len(fg)] = gt_labels[arg[fg]] + 1
            targets[:len(fg)] = encode(rois[fg], gt[arg[fg]], BOX_STDS)
        return rois[keep], labels, targets

    def forward(self, images, im_info, targets=None):
        feats = self.backbone(images)
        x = F.relu(self.rpn_conv(feats))
        B, _, fh, fw = feats.shape
        logits = self.rpn_cls(x).permute(0, 2, 3, 1).reshape(B, -1)
        deltas = self.rpn_box(x).permute(0, 2, 3, 1).reshape(B, -1, 4)
        anchors = shifted_anchors(self.anchors, fh, fw, self.stride)
        im_info = im_info.to(feats.device)
        train = targets is not None
        rois, losses = [], {'rpn_cls': 0., 'rpn_box': 0.}
        labels, box_targets = [], []
        for b in range(B):
            with torch.no_grad():
                props = self.proposals(anchors, logits[b].detach(), deltas[b].detach(), im_info[b], train)
            if train:
                gt, gt_labels = targets[b]
                for k, v in zip(('rpn_cls', 'rpn_box'), self.rpn_loss(anchors, logits[b], deltas[b], gt, im_info[b])):
                    losses[k] = losses[k] + v / B
                props, lab, tgt = self.sample_rois(props, gt, gt_labels)
                labels.append(lab)
                box_targets.append(tgt)
            rois.append(torch.cat([props.new_full((len(props), 1), b), props], 1))
        rois = torch.cat(rois)
        pooled = pool_rois(feats, rois, self.pool, 1 / self.stride, self.roi_op)
        h = self.box_head(pooled)
        scores, box_deltas = self.cls_score(h), self.bbox_pred(h)
        if train:
            labels, box_targets = torch.cat(labels), torch.cat(box_targets)
            losses['cls'] = F.cross_entropy(scores.float(), labels)
            fg = (labels > 0).nonzero().squeeze(1)
            pred = box_deltas.float().reshape(len(rois), -1, 4)[fg, labels[fg]]
            # SmoothL1Loss (sigma 1) over the fg class-specific deltas, divided by the number of RoIs
            losses['box'] = smooth_l1(pred - box_targets[fg], 1.0).sum() / max(1, len(rois))
            return losses
        return self.detections(rois, scores.float(), box_deltas.float(), im_info, B)

    def detections(self, rois, scores, box_deltas, im_info, batch):
        """py-faster-rcnn test_net: class probabilities, class-specific boxes, per class score > 0.05 and NMS 0.3,
        then the best 100 of the image."""
        probs = scores.softmax(1)
        out = []
        for b in range(batch):
            mine = rois[:, 0] == b
            h, w, _ = im_info[b].tolist()
            boxes = clip_boxes(decode(rois[mine, 1:], box_deltas[mine], BOX_STDS), h, w).reshape(-1, self.num_classes + 1, 4)
            p = probs[mine]
            cand = (p[:, 1:] > ROI['test_score']).nonzero()  # (roi, class - 1)
            bx, sc, lb = boxes[cand[:, 0], cand[:, 1] + 1], p[cand[:, 0], cand[:, 1] + 1], cand[:, 1]
            keep = batched_nms(bx, sc, lb, ROI['test_nms'], max_keep=ROI['max_dets'])
            out.append((bx[keep], sc[keep], lb[keep]))
        return out


def split_classifier(net):
    """(backbone, head, feature channels, head channels, stride, pool size) of a models.py classifier, for
    region-based heads. AlexNet: conv1-5 without pool5 (stride 16), and fc6 + fc7 on 6 x 6 RoIs (py-faster-rcnn's
    CaffeNet / ZF models). ResNet: C4, stem to res4 (stride 16), and res5 + global pooling on 14 x 14 RoIs
    (He et al. 2016 §A; Detectron's ResNet C4)."""
    from torchvision.models import ResNet

    from models import AlexNet
    if not isinstance(net, (AlexNet, ResNet)):
        raise UserError(f'the py-faster-rcnn-era detector takes an AlexNet (alexnet, alexnet_tv) or a torchvision ResNet '
                        f'(C4), not a {type(net).__name__}')
    if isinstance(net, AlexNet):
        backbone = net.features[:-1]
        channels = [m for m in backbone if isinstance(m, nn.Conv2d)][-1].out_channels
        head = nn.Sequential(nn.Flatten(), *net.classifier[:6])
        return backbone, head, channels, net.classifier[6].in_features, 16, 6
    backbone = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1, net.layer2, net.layer3)
    head = nn.Sequential(net.layer4, net.avgpool, nn.Flatten())
    channels = net.layer3[-1].conv1.in_channels
    return backbone, head, channels, net.fc.in_features, 16, 14


def freeze(net, arch):
    """Layers fine-tuning leaves fixed. AlexNet: conv1 (Fast R-CNN §4.5: conv1 of the small nets is generic, and
    py-faster-rcnn's CaffeNet / ZF models do not train it). ResNet: the stem and res2 (Detectron's FREEZE_AT 2), and
    BatchNorm statistics and affines everywhere, since one or two images per batch cannot estimate them
    (Detectron's AffineChannel). Returns the frozen norm modules, which must stay in eval mode."""
    if arch.startswith('alexnet'):
        for p in net.features[0].parameters():
            p.requires_grad_(False)
        return []
    for m in (net.conv1, net.bn1, net.layer1):
        for p in m.parameters():
            p.requires_grad_(False)
    frozen = [m for m in net.modules() if isinstance(m, nn.BatchNorm2d)]
    for m in frozen:
        for p in m.parameters():
            p.requires_grad_(False)
    return frozen


# ---------------------------------------------------------------------------------------- R*CNN (actions)

# R*CNN as its code trains it (Gkioxari et al. 2015; github.com/gkioxari/RstarCNN lib/fast_rcnn/config.py,
# lib/roi_data_layer/minibatch.py, lib/fast_rcnn/test.py, models/*RstarCNN/train.prototxt):
RSTAR = dict(primaries=15,  # TRAIN.BATCH_SIZE 30 RoIs over IMS_PER_BATCH 2 images, all foreground (FG_FRACTION 1)
             fg_iou=0.5,  # TRAIN.FG_THRESH: a primary is any box with IoU >= 0.5 to a person (the person's own box too)
             secondaries=10,  # TRAIN.CONTEXT_NUM_ROIS, drawn per primary (with replacement when fewer are available)
             iou=(0.2, 0.75))  # TRAIN/TEST.IOU_LB, IOU_UB: a secondary region's IoU with its primary
# The devkit's distractors ('other': a person doing none of the ten actions) are R*CNN's 11th class
# (lib/datasets/pascal_voc.py _classes), trained like the actions and never scored.
OTHER = 10


def action_labels(actions):
    """R*CNN's one label per person (pascal_voc.py _load_pascal_annotation): the first action flagged, in VOC's order,
    and OTHER for a person with none. actions: [P, 10] 0/1 flags -> int64 [P]."""
    actions = torch.as_tensor(actions)
    first = actions.float().argmax(1)  # argmax returns the first of equal maxima
    return torch.where(actions.any(1), first, torch.full_like(first, OTHER))


def sample_rstar(persons, labels, regions):
    """R*CNN's minibatch for one image (minibatch.py _sample_rois). Candidates are the person boxes and the regions;
    up to 15 primaries among those with IoU >= 0.5 to a person, each labelled with that person's label and regressed
    towards its box; for each primary, 10 secondaries drawn from the candidates whose IoU with it is in [0.2, 0.75]
    (without replacement when there are more, with replacement when fewer); a primary without any is dropped.
    Returns (primaries [N, 4], labels [N], box targets [N, 4] (encode / BOX_STDS), secondaries [N, 10, 4])."""
    boxes = torch.cat([persons, regions])
    best, arg = box_iou(boxes, persons).max(1)
    prim = sample(best >= RSTAR['fg_iou'], RSTAR['primaries'])
    iou = box_iou(boxes[prim], boxes)
    ok = (iou >= RSTAR['iou'][0]) & (iou <= RSTAR['iou'][1])
    keep, sec, k = [], [], RSTAR['secondaries']
    for i in range(len(prim)):
        cand = ok[i].nonzero().squeeze(1)
        if len(cand):
            pick = torch.randperm(len(cand), device=cand.device)[:k] if len(cand) > k else \
                torch.randint(len(cand), (k,), device=cand.device)
            keep.append(i)
            sec.append(boxes[cand[pick]])
    prim = prim[keep]
    sec = torch.stack(sec) if sec else boxes.new_zeros(0, k, 4)
    return boxes[prim], labels[arg[prim]], encode(boxes[prim], persons[arg[prim]], BOX_STDS), sec


def grid_regions(height, width, fractions=(0.25, 0.4, 0.6, 0.85), ratios=(0.5, 1, 2), device=None):
    """Candidate regions without Selective Search (finetune.py --regions grid): a fixed multi-scale grid, boxes whose
    area is fraction^2 of the shorter side squared at each aspect ratio (height / width), stepped by half a box.
    Deterministic and free; about 200 boxes that cover every place at every scale a prop can occupy."""
    out = []
    short = min(height, width)
    for f in fractions:
        for r in ratios:
            bw, bh = min(width, f * short / math.sqrt(r)), min(height, f * short * math.sqrt(r))
            xs = torch.linspace(0, width - bw, max(1, math.ceil(2 * (width - bw) / bw) + 1), device=device)
            ys = torch.linspace(0, height - bh, max(1, math.ceil(2 * (height - bh) / bh) + 1), device=device)
            y, x = torch.meshgrid(ys, xs, indexing='ij')
            out.append(torch.stack([x, y, x + bw - 1, y + bh - 1], -1).reshape(-1, 4))
    return torch.cat(out)


OPENCV_HINT = 'pip install opencv-contrib-python-headless (OpenCV\'s ximgproc module)'


def opencv_selective_search():
    """(cv2, its Selective Search factory), or a UserError that says how to install them."""
    try:
        import cv2
        return cv2, cv2.ximgproc.segmentation.createSelectiveSearchSegmentation
    except (ImportError, AttributeError):
        raise UserError(f'--regions selective-search needs OpenCV with its contrib modules: {OPENCV_HINT}; '
                        'or use --regions grid') from None


def selective_search(path):
    """Selective Search boxes of one image, [N, 4] int64 in VOC's 1-based inclusive pixels, as R*CNN read them from
    its .mat files. R*CNN took Uijlings et al.'s MATLAB code in its fast mode (as R-CNN); this is OpenCV's
    implementation of the same algorithm (ximgproc.segmentation, switchToSelectiveSearchFast)."""
    cv2, make = opencv_selective_search()
    cv2.setNumThreads(1)  # one image a process; the caller runs several processes
    image = cv2.imread(path, cv2.IMREAD_COLOR)
    if image is None:
        raise UserError(f'OpenCV cannot decode {path}')
    ss = make()
    ss.setBaseImage(image)
    ss.switchToSelectiveSearchFast()
    xywh = torch.as_tensor(ss.process(), dtype=torch.int64).reshape(-1, 4)
    boxes = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:] - 1], 1) + 1
    return torch.unique(boxes, dim=0)


class RStarCNN(nn.Module):
    """R*CNN (Gkioxari et al. 2015): the score of class a for a person is its primary region's plus the best of its
    secondary regions', score(a) = w_p.phi(primary) + max_s w_s.phi(s), softmax over the ten actions and 'other'.
    Both regions go through the same fc6-fc7 (the prototxt shares fc6_w, fc7_w between them); each has its own
    scoring layer, and the primary a class-specific box regressor (trained beside the action loss, unused at test).

    forward(images, im_info, persons, regions, labels=None), per image: persons [P, 4], regions [R, 4] (both in the
    resized image's pixels), labels [P] (action_labels). Training returns the losses (sample_rstar picks the
    primaries and secondaries); test returns the [persons, 11] scores of every person box, in order, with the
    person box as the primary and as secondaries every region in the IoU band (test.py)."""

    def __init__(self, backbone, head, head_channels, num_actions, stride=16, pool=6, roi_op='pool'):
        super().__init__()
        self.backbone, self.head, self.stride, self.pool, self.roi_op = backbone, head, stride, pool, roi_op
        self.primary_score = nn.Linear(head_channels, num_actions + 1)  # + 'other'
        self.secondary_score = nn.Linear(head_channels, num_actions + 1)
        self.bbox_pred = nn.Linear(head_channels, 4 * (num_actions + 1))
        for m, std in ((self.primary_score, 0.01), (self.secondary_score, 0.01), (self.bbox_pred, 0.001)):
            nn.init.normal_(m.weight, std=std)  # the prototxt's fillers
            nn.init.zeros_(m.bias)

    def features(self, feats, rois):
        return self.head(pool_rois(feats, rois, self.pool, 1 / self.stride, self.roi_op))

    def forward(self, images, im_info, persons, regions, labels=None):
        feats = self.backbone(images)
        if labels is not None:
            return self.losses(feats, persons, regions, labels)
        prim, sec, masks = [], [], []
        for b, (p, r) in enumerate(zip(persons, regions)):
            iou = box_iou(p, r)
            ok = (iou >= RSTAR['iou'][0]) & (iou <= RSTAR['iou'][1])  # [P, R]
            used = ok.any(0)  # only regions that are secondary for someone are pooled
            prim.append(torch.cat([p.new_full((len(p), 1), b), p], 1))
            sec.append(torch.cat([p.new_full((int(used.sum()), 1), b), r[used]], 1))
            masks.append(ok[:, used])
        scores = self.primary_score(self.features(feats, torch.cat(prim))).float()
        s = self.secondary_score(self.features(feats, torch.cat(sec))).float()
        out, start = [], 0
        for m in masks:
            mine = s[start:start + m.shape[1]]  # [R, A]
            start += m.shape[1]
            best = mine[None].masked_fill(~m[..., None], float('-inf')).amax(1) if m.shape[1] else None
            # a person with no region in the IoU band is scored by its own box alone (test.py)
            out.append(torch.zeros(len(m), s.shape[1], device=s.device) if best is None else
                       torch.where(torch.isinf(best), 0., best))
        return scores + torch.cat(out)

    def losses(self, feats, persons, regions, labels):
        """Softmax loss of the summed scores and smooth L1 (sigma 1) on the primaries' class-specific deltas, each
        averaged over the primaries (SoftmaxWithLoss, SmoothL1Loss; loss_weight 1 each)."""
        prim, lab, tgt, sec = [], [], [], []
        for b, (p, r, y) in enumerate(zip(persons, regions, labels)):
            pb, yb, tb, sb = sample_rstar(p, y, r)
            prim.append(torch.cat([pb.new_full((len(pb), 1), b), pb], 1))
            sec.append(torch.cat([sb.new_full((*sb.shape[:2], 1), b), sb], 2).reshape(-1, 5))
            lab.append(yb)
            tgt.append(tb)
        prim, lab, tgt, sec = torch.cat(prim), torch.cat(lab), torch.cat(tgt), torch.cat(sec)
        if not len(prim):  # no person with a secondary region in the batch: nothing to learn, a zero loss
            return {'cls': feats.sum() * 0, 'box': feats.sum() * 0}
        h = self.features(feats, prim)
        s = self.secondary_score(self.features(feats, sec)).float().reshape(len(prim), RSTAR['secondaries'], -1)
        scores = self.primary_score(h).float() + s.amax(1)
        deltas = self.bbox_pred(h).float().reshape(len(prim), -1, 4)[torch.arange(len(prim)), lab]
        return {'cls': F.cross_entropy(scores, lab), 'box': smooth_l1(deltas - tgt, 1.0).sum() / len(prim)}


# ---------------------------------------------------------------------------------------- He et al. 2019: FPN R-CNNs
# Mask R-CNN and Faster R-CNN with a ResNet-FPN backbone, built from torchvision's parts (not hand-written: the
# hand-written detector above is the py-faster-rcnn of Huh et al.). The recipes are Detectron's, which He, Girshick
# and Dollar ran (arXiv 1811.08883 §4): GroupNorm or SyncBN in the backbone, the FPN and the heads (the 4conv1fc box
# head and 4-conv mask head of Detectron's GN configs); a pre-trained baseline with frozen BN has Detectron's plain
# heads (2fc box head, mask head without norm).

FPN_NORMS = ('gn', 'syncbn', 'frozen-bn')


class FPNDetector(nn.Module):
    """torchvision's Mask / Faster R-CNN on the batches of data_dali.DetectionLoader, which has resized, normalised,
    mirrored and zero-padded the images already: torchvision's own GeneralizedRCNNTransform (which would resize and
    normalise again) is skipped. Training returns the loss dict; testing, per image, {'boxes', 'labels', 'scores'
    (, 'masks': [N, 1, 28, 28] probabilities in each box)} in the resized image's pixels."""

    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, images, sizes, targets=None):
        from torchvision.models.detection.image_list import ImageList
        # FPN's coarsest level has stride 32 (torchvision's size_divisible): pad with zeros, the mean after normalising
        images = F.pad(images, (0, -images.shape[-1] % 32, 0, -images.shape[-2] % 32))
        image_list = ImageList(images, [(int(h), int(w)) for h, w in sizes])
        features = self.net.backbone(images)
        proposals, rpn_losses = self.net.rpn(image_list, features, targets)
        detections, roi_losses = self.net.roi_heads(features, proposals, image_list.image_sizes, targets)
        return {**rpn_losses, **roi_losses} if self.training else detections


def fpn_detector(arch, num_classes, norm='gn', mask=True, init=None, channels=256, rois_per_image=512,
                 anchor_sizes=(32, 64, 128, 256, 512), test_proposals=1000):
    """(FPNDetector, the norm modules to keep in eval mode) for `num_classes` object classes (+ background).

    arch: a torchvision ResNet (resnet50, resnet101, resnext50_32x4d, ... or resnet18 for the toy runs); norm: gn
    (GroupNorm, 32 groups, everywhere), syncbn (BatchNorm everywhere, synchronised across processes by the caller's
    nn.SyncBatchNorm.convert_sync_batchnorm), or frozen-bn (the pre-trained baseline: BN statistics and affines fixed,
    plain heads). init: None (from scratch: every parameter trains, He et al.) or a state_dict of the classifier,
    whose stem and res2 then stay fixed (Detectron's FREEZE_AT 2). channels: FPN and head width (256);
    rois_per_image: sampled RoIs per image (Detectron's 512); anchor_sizes: one per FPN level P2-P6 (32-512);
    test_proposals: RPN proposals kept per image at test time (Detectron's 1000)."""
    from torchvision.models import ResNet
    from torchvision.models.detection import FasterRCNN, MaskRCNN
    from torchvision.models.detection.anchor_utils import AnchorGenerator
    from torchvision.models.detection.backbone_utils import BackboneWithFPN
    from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, RPNHead, TwoMLPHead
    from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
    from torchvision.ops.feature_pyramid_network import LastLevelMaxPool

    import engine
    from models import get_model
    if norm not in FPN_NORMS:
        raise UserError(f'--norm {norm}: the FPN detector takes {", ".join(FPN_NORMS)}')
    if norm == 'frozen-bn' and init is None:
        raise UserError('--norm frozen-bn is the pre-trained baseline: from scratch, BN statistics cannot be frozen; '
                        'use gn or syncbn (He et al. 2019)')
    net = get_model(arch, 1000, 'gn' if norm == 'gn' else 'bn')
    if not isinstance(net, ResNet):
        raise UserError(f'--arch {arch}: the FPN detector takes a torchvision ResNet or ResNeXt (resnet50, resnet101, ...)')
    if init is not None:
        engine.load_init(net, init, 'the --init weights')
    frozen_norms = []
    if init is not None:
        frozen_norms = freeze(net, arch) if norm == 'frozen-bn' else []
        if norm != 'frozen-bn':  # stem and res2 fixed, the norms train (Detectron's GN configs, FREEZE_AT 2)
            for m in (net.conv1, net.bn1, net.layer1):
                for p in m.parameters():
                    p.requires_grad_(False)
    head_norm = {'gn': lambda c: nn.GroupNorm(32, c), 'syncbn': nn.BatchNorm2d, 'frozen-bn': None}[norm]
    widths = [net.fc.in_features // 2 ** k for k in (3, 2, 1, 0)]  # res2..res5
    backbone = BackboneWithFPN(net, {f'layer{k}': str(k - 1) for k in range(1, 5)}, widths, channels,
                               extra_blocks=LastLevelMaxPool(), norm_layer=head_norm)
    anchors = AnchorGenerator(tuple((s,) for s in anchor_sizes), ((0.5, 1.0, 2.0),) * len(anchor_sizes))
    if head_norm is None:  # Detectron's FPN baseline: 2fc box head of 1024
        box_head = TwoMLPHead(channels * 7 * 7, 1024)
    else:  # Detectron's GN configs: 4conv1fc, each conv with the norm
        box_head = FastRCNNConvFCHead((channels, 7, 7), [channels] * 4, [1024], norm_layer=head_norm)
    kw = dict(rpn_anchor_generator=anchors, rpn_head=RPNHead(channels, 3), box_head=box_head,
              box_predictor=FastRCNNPredictor(1024, num_classes + 1), box_batch_size_per_image=rois_per_image,
              rpn_pre_nms_top_n_test=test_proposals, rpn_post_nms_top_n_test=test_proposals)
    if mask:  # torchvision's mask predictor assumes 256 channels unless given
        model = MaskRCNN(backbone, mask_head=MaskRCNNHeads(channels, [channels] * 4, 1, norm_layer=head_norm),
                         mask_predictor=MaskRCNNPredictor(channels, channels, num_classes + 1), **kw)
    else:
        model = FasterRCNN(backbone, **kw)
    return FPNDetector(model), frozen_norms
