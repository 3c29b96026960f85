"""Metrics, each a small function tested against a brute-force or hand-computed reference (tests/test_metrics.py).

    from eval.metrics import topk_hits, per_class_counts, mean_class_accuracy, knn
    from eval.metrics import voc_ap, detection_ap, mean_ap, label_ap  # PASCAL VOC, numpy
"""
import numpy as np
import torch


def topk_hits(logits, labels, ks=(1, 5)):
    """Number of rows whose label is among the top-k logits, for each k (k is capped at the class count)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top == labels[:, None]
    return [hit[:, :k].any(1).sum() for k in ks]


def per_class_counts(preds, labels, num_classes):
    """(correct, total) per class as float64 tensors: what mean class accuracy needs, and what sums across
    batches and ranks."""
    total = torch.zeros(num_classes, dtype=torch.float64, device=labels.device)
    correct = torch.zeros_like(total)
    ones = torch.ones_like(labels, dtype=torch.float64)
    total.index_add_(0, labels, ones)
    correct.index_add_(0, labels, (preds == labels).double())
    return correct, total


def mean_class_accuracy(correct, total):
    """Mean over the classes that have images of each class's accuracy, in %: SUN397's measure (Xiao et al.
    2010), which weighs every category equally whatever its test count."""
    seen = total > 0
    return 100 * (correct[seen] / total[seen]).mean().item()


@torch.no_grad()
def knn(queries, database, k, metric='l2', chunk=8192):
    """(distances or negative similarities, indices) of the k nearest database rows of every query, best first.

    The database is walked in chunks and the running k best are merged, so memory is
    O(len(queries) * (chunk + k)): a 1.28M x 4096 database never needs all pairwise distances at once.
    chunk 8192 took 0.77x the time of 65536 on 2 CPU cores, with 8x less memory (BENCHMARKS.md, kNN).
    Call it with batches of queries (and tensors on the GPU to run there).
    metric: 'l2' (Euclidean) or 'cosine' (rows are L2-normalised; the score is -cosine similarity)."""
    if metric == 'cosine':
        queries = torch.nn.functional.normalize(queries, dim=1)
    k = min(k, len(database))
    best_d = torch.full((len(queries), 0), float('inf'), device=queries.device)
    best_i = torch.zeros((len(queries), 0), dtype=torch.long, device=queries.device)
    q2 = (queries * queries).sum(1, keepdim=True)
    for start in range(0, len(database), chunk):
        db = database[start:start + chunk].to(queries.device, queries.dtype)
        if metric == 'cosine':
            d = -(queries @ torch.nn.functional.normalize(db, dim=1).T)
        else:  # |q - x|^2 = |q|^2 - 2 q.x + |x|^2, without the N x M x D difference tensor
            d = q2 - 2 * queries @ db.T + (db * db).sum(1)[None]
        d, i = torch.cat([best_d, d], 1), torch.cat([best_i, torch.arange(start, start + len(db), device=d.device).expand(len(d), -1)], 1)
        best_d, pos = d.topk(k, dim=1, largest=False)
        best_i = i.gather(1, pos)
    if metric == 'l2':
        best_d = best_d.clamp_min(0).sqrt()
    return best_d, best_i


# ---------------------------------------------------------------------------------------------------------------------
# PASCAL VOC average precision. numpy, not torch: these run once over a whole test set, after inference, on CPU.
# AP is in [0, 1] as the devkit prints it; the paper's tables are 100x.
# Sources: VOCdevkit VOCevaldet.m (2007: 11-point), VOCap.m (2010+: area under the curve), VOCevalaction.m (2012);
# py-faster-rcnn lib/datasets/voc_eval.py (voc_ap, voc_eval), the Python port most detection code reports with.
# ---------------------------------------------------------------------------------------------------------------------

def voc_ap(recall, precision, use_07_metric=True):
    """AP of one precision/recall curve (arrays in the order of decreasing score).

    use_07_metric=True: VOC 2007's 11-point interpolated AP, the mean over t = 0, 0.1, ..., 1 of the best precision at
    recall >= t (0 where recall never reaches t). The thresholds are voc_eval.py's np.arange(0., 1.1, 0.1), whose 0.3,
    0.6 and 0.7 are a hair above the decimal (0.1 * 6 = 0.6000000000000001), so a recall of exactly 3/5 does not
    count for t = 0.6 there; we keep that to give voc_eval.py's numbers to the last digit.
    use_07_metric=False: VOC 2010+ (VOCap.m): the area under the curve once precision is made monotone from the
    right."""
    recall, precision = np.asarray(recall, dtype=np.float64), np.asarray(precision, dtype=np.float64)
    if use_07_metric:
        ap = 0.0
        for t in np.arange(0., 1.1, 0.1):
            reached = recall >= t
            ap += (precision[reached].max() if reached.any() else 0.0) / 11.
        return float(ap)
    mrec = np.concatenate(([0.], recall, [1.]))
    mpre = np.concatenate(([0.], precision, [0.]))
    mpre = np.maximum.accumulate(mpre[::-1])[::-1]  # the envelope: best precision at this recall or beyond
    step = np.flatnonzero(mrec[1:] != mrec[:-1]) + 1
    return float(np.sum((mrec[step] - mrec[step - 1]) * mpre[step]))


def _iou_inclusive(a, b):
    """[N, M] IoU of boxes a [N, 4] and b [M, 4] in inclusive pixel coordinates (x1, y1, x2, y2): a box covers
    x2 - x1 + 1 pixels across, as VOCevaldet.m and voc_eval.py count them. Same operations in the same order as
    voc_eval.py, so an IoU of exactly 0.5 stays exactly 0.5 here too."""
    iw = np.maximum(np.minimum(a[:, None, 2], b[None, :, 2]) - np.maximum(a[:, None, 0], b[None, :, 0]) + 1., 0.)
    ih = np.maximum(np.minimum(a[:, None, 3], b[None, :, 3]) - np.maximum(a[:, None, 1], b[None, :, 1]) + 1., 0.)
    inters = iw * ih
    area_a = (a[:, 2] - a[:, 0] + 1.) * (a[:, 3] - a[:, 1] + 1.)
    area_b = (b[:, 2] - b[:, 0] + 1.) * (b[:, 3] - b[:, 1] + 1.)
    return inters / (area_a[:, None] + area_b[None, :] - inters)


def detection_ap(detections, ground_truth, num_classes, iou_threshold=0.5, use_07_metric=True):
    """PASCAL VOC detection AP per class: (ap [num_classes] float64, [(recall, precision)] per class).

    detections: per image, (boxes [N, 4], scores [N], labels [N] class index in [0, num_classes)).
    ground_truth: per image in the same order, (boxes [M, 4], labels [M], difficult [M] bool).
    Anything np.asarray takes (numpy, lists, CPU tensors). Boxes are x1, y1, x2, y2 in inclusive pixel coordinates,
    the VOC annotation convention (width = x2 - x1 + 1); 0- or 1-based does not matter as long as detections and
    ground truth agree. A class with no non-difficult ground truth box has AP nan (mean_ap skips it).

    The rule is voc_eval.py's: per class, detections of all images in order of decreasing score; each one takes the
    box of its class in its image with the highest IoU (the first on a tie). IoU > iou_threshold to a box not taken
    yet: true positive, and the box is taken; to a box already taken: false positive (a duplicate); IoU <=
    iou_threshold, or no box of the class in the image: false positive. A detection whose best box is difficult (and
    over the threshold) is ignored, and difficult boxes are not counted in the recall's denominator.
    Note VOCevaldet.m accepts ovmax >= minoverlap where voc_eval.py wants ovmax > ovthresh: the two differ on a
    detection at IoU exactly 0.5, and we follow voc_eval.py.

    Each detection's best box does not depend on the others, and among the detections whose best box is the same
    non-difficult box and above the threshold, the first in score order is the true positive and the rest are
    duplicates. So the greedy devkit loop is: IoUs per image, then one sort and one np.unique per class."""
    scores, labels, best_ov, best_gt = [], [], [], []  # per detection, over all images
    gt_labels, gt_difficult = [], []  # per ground truth box, over all images
    offset = 0
    for (boxes, score, label), (gt_boxes, gt_label, difficult) in zip(detections, ground_truth, strict=True):
        boxes, gt_boxes = np.asarray(boxes, np.float64).reshape(-1, 4), np.asarray(gt_boxes, np.float64).reshape(-1, 4)
        label, gt_label = np.asarray(label, np.int64).reshape(-1), np.asarray(gt_label, np.int64).reshape(-1)
        iou = _iou_inclusive(boxes, gt_boxes)
        iou[label[:, None] != gt_label[None, :]] = -np.inf  # only boxes of the detection's class compete
        best_ov.append(iou.max(1, initial=-np.inf))
        best_gt.append(offset + (iou.argmax(1) if len(gt_boxes) else np.zeros(len(boxes), np.int64)))
        scores.append(np.asarray(score, np.float64).reshape(-1))
        labels.append(label)
        gt_labels.append(gt_label)
        gt_difficult.append(np.asarray(difficult, bool).reshape(-1))
        offset += len(gt_boxes)
    scores, labels, best_ov, best_gt = map(np.concatenate, (scores, labels, best_ov, best_gt))
    gt_labels, gt_difficult = np.concatenate(gt_labels), np.concatenate(gt_difficult)

    ap, curves = np.full(num_classes, np.nan), []
    for c in range(num_classes):
        mine = np.flatnonzero(labels == c)
        # Stable, so tied scores keep image order, as MATLAB's sort in VOCevaldet.m does. py-faster-rcnn's
        # np.argsort(-confidence) is not stable (and it writes scores with 3 decimals), so its ties may order
        # differently and its AP differ in the last digits.
        order = mine[np.argsort(-scores[mine], kind='stable')]
        hit = best_ov[order] > iou_threshold
        box = best_gt[order]
        ignored = np.zeros_like(hit)
        ignored[hit] = gt_difficult[box[hit]]
        claims = np.flatnonzero(hit & ~ignored)
        tp = np.zeros_like(hit)
        tp[claims[np.unique(box[claims], return_index=True)[1]]] = True  # return_index: the first claim on each box
        fp = ~tp & ~ignored
        tp, fp = np.cumsum(tp, dtype=np.float64), np.cumsum(fp, dtype=np.float64)
        npos = int(np.sum((gt_labels == c) & ~gt_difficult))
        recall = tp / npos if npos else np.full_like(tp, np.nan)
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)  # voc_eval.py: 0, not 0/0, before any tp or fp
        if npos:
            ap[c] = voc_ap(recall, precision, use_07_metric)
        curves.append((recall, precision))
    return ap, curves


def mean_ap(ap):
    """Mean of the per-class APs over the classes that have an AP (not nan: those with ground truth)."""
    ap = np.asarray(ap, dtype=np.float64)
    seen = ~np.isnan(ap)
    return float(ap[seen].mean()) if seen.any() else float('nan')


def label_ap(scores, labels, use_07_metric=False):
    """Per-label AP of a multi-label classification, as the VOC devkit scores it: (ap [A] float64, [(recall, precision)]).
    PASCAL VOC 2012 actions (VOCevalaction.m, area under the curve) and VOC 2007 classification (VOCevalcls.m, whose
    2007 devkit takes the 11-point AP: use_07_metric=True; Kornblith et al. 2019's VOC 2007 measure).

    scores [N, A]: one row per annotated person (image), one column per action (class). labels [N, A]: 1 positive,
    -1 negative, 0 ignored (VOCevalaction.m and VOCevalcls.m count tp = gt > 0 and fp = gt < 0, so a 0, VOC 2007's
    "difficult", is neither). Per label, rows by decreasing score (stable, as MATLAB's sort), and AP is voc_ap's.
    A label with no positive has AP nan. The devkit gives -inf to a row with no submitted score; here every
    row needs one. Its precision is tp ./ (fp + tp), NaN before the first tp or fp, which VOCap's max skips; we divide
    by max(tp + fp, eps) as voc_eval.py, 0 there, which gives the same AP."""
    scores, labels = np.asarray(scores, dtype=np.float64), np.asarray(labels)
    ap, curves = np.full(scores.shape[1], np.nan), []
    for a in range(scores.shape[1]):
        gt = labels[np.argsort(-scores[:, a], kind='stable'), a]
        tp, fp = np.cumsum(gt > 0, dtype=np.float64), np.cumsum(gt < 0, dtype=np.float64)
        npos = int(np.sum(gt > 0))
        recall = tp / npos if npos else np.full_like(tp, np.nan)
        precision = tp / np.maximum(tp + fp, np.finfo(np.float64).eps)
        if npos:
            ap[a] = voc_ap(recall, precision, use_07_metric)
        curves.append((recall, precision))
    return ap, curves


# ---------------------------------------------------------------------------------------------------------------------
# Kornblith et al. 2019's measures, one per data set (datasets.TRANSFER_SETS): top-1, mean per-class accuracy, or
# VOC 2007's 11-point mAP over its 20 classes (multi-label).

SCORE_KEY = {'top1': 'top1', 'mean_class': 'mean_class_acc', 'map11': 'mAP'}


def transfer_metrics(scores, labels):
    """Test measures of a classifier's scores [N, C]: labels [N] (class ids) gives top-1, top-5 and mean class
    accuracy in %; labels [N, C] (1 / 0 / -1, multi-label) gives the 11-point mAP in % (label_ap, VOC 2007)."""
    if labels.ndim == 2:
        ap, _ = label_ap(scores.float().numpy(), labels.numpy(), use_07_metric=True)
        return {'mAP': 100 * mean_ap(ap), 'n': len(labels)}
    top1, top5 = topk_hits(scores, labels)
    correct, total = per_class_counts(scores.argmax(1), labels, scores.shape[1])
    return {'top1': 100 * top1.item() / len(labels), 'top5': 100 * top5.item() / len(labels),
            'mean_class_acc': mean_class_accuracy(correct, total), 'n': len(labels)}


# ----------------------------------------------------------------------------------------------------------
# COCO detection and instance segmentation AP: pycocotools' COCOeval, the measure He et al. 2019 report

COCO_STATS = ('AP', 'AP50', 'AP75', 'APs', 'APm', 'APl')  # COCOeval.stats[0:6]


def coco_ap(ann_file, results, image_ids, iou_types=('bbox', 'segm')):
    """{'bbox/AP': ..., 'bbox/AP50', ..., 'segm/APl'} in percent, by pycocotools' COCOeval over `image_ids` of the
    instances file `ann_file`. results: COCO's result format, [{'image_id', 'category_id', 'score', 'bbox' [x, y, w,
    h] (, 'segmentation': RLE)}]. No detection at all scores 0 (COCO.loadRes refuses an empty list)."""
    import contextlib
    import io

    from pycocotools.coco import COCO
    from pycocotools.cocoeval import COCOeval
    if not results:
        return {f'{t}/{k}': 0.0 for t in iou_types for k in COCO_STATS}
    out = {}
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints its progress and its table
        gt = COCO(ann_file)
        dt = gt.loadRes(results)
        for t in iou_types:
            e = COCOeval(gt, dt, t)
            e.params.imgIds = sorted(image_ids)
            e.evaluate()
            e.accumulate()
            e.summarize()
            # -1 where no ground truth falls in a size range: nan, as detection_ap's class without ground truth
            out.update({f'{t}/{k}': (100 * float(v) if v >= 0 else float('nan')) for k, v in zip(COCO_STATS, e.stats)})
    return out
