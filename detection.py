"""Detection for the paper's PASCAL VOC transfer (Huh et al. 2016, Table 2): what detection needs and torch lacks.

    from detection import box_iou, nms, batched_nms, roi_align
    keep = nms(proposals, objectness, 0.7)[:2000]                      # py-faster-rcnn RPN, training
    keep = batched_nms(boxes, scores, labels, 0.3)                     # per-class NMS at test time
    pooled = roi_align(conv5, rois, (6, 6), spatial_scale=1 / 16)      # [K, 256, 6, 6] for AlexNet's fc6

torchvision has these ops, but it cannot be imported beside this project's CPU torch, so they are written here in
plain torch: vectorised, on any device, checked against naive loops in tests/test_detection_ops.py and timed by
bench/detection_ops.py.

Boxes are x1, y1, x2, y2 in pixels with py-faster-rcnn's inclusive "+1" convention: a box's width is x2 - x1 + 1
(lib/utils/bbox.pyx bbox_overlaps, lib/nms/*), so [0, 0, 9, 9] is 10 x 10 pixels.
"""
import torch
import torch.nn.functional as F


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
    the same as [:max_keep] but stopping early (py-faster-rcnn's RPN keeps 2000 in training, 300 at test).

    Exactly greedy NMS: in order of decreasing score, a box is dropped when its IoU with a box already kept is
    strictly greater than iou_threshold. That is py-faster-rcnn's GPU kernel (nms_kernel.cu: devIoU > thresh, the
    one its training uses, USE_GPU_NMS) and py_cpu_nms.py (keeps ovr <= thresh); its cpu_nms.pyx drops at
    ovr >= thresh instead, which differs only on exact ties with the threshold. Equal scores rank by index, first
    index first (a stable sort; py-faster-rcnn's argsort()[::-1] leaves their order unspecified). IoUs are computed
    in float32 (float64 for float64 boxes); degenerate boxes (zero area) have IoU 0 with everything, so they are
    kept unless NMS is preceded, as in py-faster-rcnn, by a minimum-size filter. Memory and time: see NMS_BLOCK."""
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[_greedy_nms_sorted(boxes[order].to(_compute_dtype(boxes)), iou_threshold, max_keep=max_keep)]


def batched_nms(boxes, scores, idxs, iou_threshold, max_keep=None):
    """nms independently within each value of idxs [N] (a class, or an image), as py-faster-rcnn's test_net does
    class by class; returns the kept indices by decreasing score (all classes merged), on boxes' device.

    Instead of torchvision's coordinate-offset trick (shift each class's boxes by class * (max coordinate + 1) so
    that classes cannot overlap), pairs of different classes are masked out of the overlap matrix: the offset
    changes the float rounding of the coordinates (float32 has a 2^-8 px step at 21 classes x 1000 px), so it is
    not exactly per-class NMS, while the mask is, for one more pass over each block's pairs."""
    if boxes.shape[0] == 0:
        return torch.empty(0, dtype=torch.long, device=boxes.device)
    order = torch.sort(scores, descending=True, stable=True).indices
    return order[_greedy_nms_sorted(boxes[order].to(_compute_dtype(boxes)), iou_threshold, labels=idxs[order],
                                    max_keep=max_keep)]


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
