"""eval/metrics.py against brute-force references on random inputs, and PASCAL VOC AP on cases worked out by hand."""
import math
import random

import numpy as np
import torch

from eval.metrics import label_ap, detection_ap, knn, mean_ap, mean_class_accuracy, per_class_counts, topk_hits, voc_ap


def test_topk_hits():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(500, 13, generator=g), torch.randint(0, 13, (500,), generator=g)
    order = logits.argsort(1, descending=True).tolist()
    for k, got in zip((1, 5), topk_hits(logits, labels, (1, 5))):
        assert got.item() == sum(labels[i].item() in order[i][:k] for i in range(500))
    assert topk_hits(logits[:, :3], labels.clamp(max=2), (5,))[0].item() == 500  # k capped at the class count


def test_mean_class_accuracy():
    g = torch.Generator().manual_seed(1)
    labels = torch.cat([torch.randint(0, 7, (300,), generator=g), torch.full((50,), 9)])  # class 8 has no images
    preds = torch.where(torch.rand(350, generator=g) < 0.6, labels, torch.randint(0, 10, (350,), generator=g))
    correct, total = per_class_counts(preds, labels, 10)
    per_class = [sum(1 for p, y in zip(preds, labels) if y == c and p == y) / sum(1 for y in labels if y == c)
                 for c in range(10) if (labels == c).any()]
    assert abs(mean_class_accuracy(correct, total) - 100 * sum(per_class) / len(per_class)) < 1e-9
    assert total.sum() == 350 and total[8] == 0


def test_knn_matches_brute_force():
    g = torch.Generator().manual_seed(2)
    q, db = torch.randn(37, 16, generator=g, dtype=torch.float64), torch.randn(1000, 16, generator=g, dtype=torch.float64)
    for metric in ('l2', 'cosine'):
        if metric == 'l2':
            ref = torch.cdist(q, db)
        else:
            ref = -(torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(db, dim=1).T)
        want_d, want_i = ref.topk(5, dim=1, largest=False)
        for chunk in (7, 100, 4096):  # chunks smaller than k, uneven, and one chunk for everything
            d, i = knn(q, db, 5, metric, chunk=chunk)
            assert torch.equal(i, want_i), (metric, chunk)
            assert torch.allclose(d, want_d, atol=1e-6)
    assert knn(q, db[:3], 5)[1].shape == (37, 3)  # fewer database rows than k


# ---------------------------------------------------------------------------------------------------------------------
# PASCAL VOC AP. Boxes are inclusive pixel coordinates: [0, 0, 9, 9] is 10 x 10 = 100 pixels.
# ---------------------------------------------------------------------------------------------------------------------

def _close(got, want):
    assert abs(got - want) < 1e-12, (got, want)


def test_voc_ap_11_point_vs_area():
    # tp, fp, tp with 2 positives: recall .5 .5 1, precision 1 .5 2/3.
    # 11-point: t = 0 .. .5 (6 points) best precision 1; t = .6 .. 1 (5 points) 2/3 -> (6 + 10/3) / 11 = 28/33.
    # Area: envelope 1 on recall (0, .5], 2/3 on (.5, 1] -> .5 + 1/3 = 5/6.
    recall, precision = np.array([.5, .5, 1.]), np.array([1., .5, 2 / 3])
    _close(voc_ap(recall, precision, use_07_metric=True), 28 / 33)
    _close(voc_ap(recall, precision, use_07_metric=False), 5 / 6)
    # voc_eval.py's np.arange thresholds: 0.1 * 6 = 0.6000000000000001 > 3/5, so recall 3/5 reaches 6 points, not 7.
    _close(voc_ap([3 / 5], [1.]), 6 / 11)


def _one_class(dets, gts):
    """detection_ap of class 0 on one image; dets: (box, score), gts: (box, difficult)."""
    det = ([b for b, _ in dets], [s for _, s in dets], [0] * len(dets))
    gt = ([b for b, _ in gts], [0] * len(gts), [d for _, d in gts])
    ap, curves = detection_ap([det], [gt], 1)
    return ap[0], curves[0]


def test_detection_difficult_is_ignored():
    # Ignored (on the difficult box), tp, fp: tp 0 1 1, fp 0 0 1, 1 positive -> recall 0 1 1, precision 0 1 .5, AP 1.
    # Were the difficult box's detection a fp, AP would be .5; were the difficult box a miss, recall would stop at .5.
    ap, (recall, precision) = _one_class([([50, 50, 59, 59], .9), ([0, 0, 9, 9], .8), ([100, 0, 109, 9], .7)],
                                         [([0, 0, 9, 9], False), ([50, 50, 59, 59], True)])
    _close(ap, 1.)
    np.testing.assert_array_equal(recall, [0, 1, 1])
    np.testing.assert_array_equal(precision, [0, 1, .5])


def test_detection_duplicate_is_false_positive():
    # On A, again on A, on B: tp, fp (duplicate), tp -> the curve of test_voc_ap_11_point_vs_area: 28/33, or 5/6.
    dets = [([0, 0, 9, 9], .9), ([1, 0, 9, 9], .8), ([20, 0, 29, 9], .7)]
    gts = [([0, 0, 9, 9], False), ([20, 0, 29, 9], False)]
    ap, (recall, precision) = _one_class(dets, gts)
    _close(ap, 28 / 33)
    np.testing.assert_array_equal(recall, [.5, .5, 1])
    det, gt = ([b for b, _ in dets], [s for _, s in dets], [0, 0, 0]), ([b for b, _ in gts], [0, 0], [False, False])
    _close(detection_ap([det], [gt], 1, use_07_metric=False)[0][0], 5 / 6)


def test_detection_iou_threshold_is_strict():
    # Ground truth 10 x 10 = 100 pixels. [0, 0, 9, 4] is 10 x 5 inside it: IoU 50 / 100 = 0.5 exactly, not > 0.5: fp,
    # AP 0. [0, 0, 9, 4.01]: IoU 50.1 / 100 > 0.5: tp, AP 1. Without the +1 both would be under 0.5 (9 * 4 / 81).
    _close(_one_class([([0, 0, 9, 4], .9)], [([0, 0, 9, 9], False)])[0], 0.)
    _close(_one_class([([0, 0, 9, 4.01], .9)], [([0, 0, 9, 9], False)])[0], 1.)


def test_detection_ap_across_images():
    # Classes 0, 1, 2. Image 0: A (class 0) and B (class 1), far apart. Image 1: C (class 0). Image 2: nothing.
    # Image 3: D (class 1), no detections.
    # Class 0 by score: .9 on C tp; .8 in image 2, no class-0 box there: fp; .7 on B, a class-1 box: fp; .6 on A tp.
    #   tp 1 1 1 2, fp 0 1 2 2, 2 positives -> recall .5 .5 .5 1, precision 1 .5 1/3 .5.
    #   11-point: 6 points at 1, 5 at .5 -> 8.5 / 11 = 17/22.
    # Class 1: .5 on B tp, D missed -> recall .5, precision 1 -> 6 points at 1 -> 6/11.
    # Class 2: one detection and no ground truth -> nan. mean_ap = (17/22 + 12/22) / 2 = 29/44.
    A, B, C, D = [0, 0, 9, 9], [50, 50, 69, 69], [10, 10, 29, 39], [5, 5, 14, 14]
    detections = [
        (np.array([A, B, B], float), np.array([.6, .7, .5]), np.array([0, 0, 1])),
        (torch.tensor([C], dtype=torch.float32), torch.tensor([.9]), torch.tensor([0])),  # CPU tensors work too
        (np.array([C, D], float), np.array([.8, .4]), np.array([0, 2])),
        (np.zeros((0, 4)), np.zeros(0), np.zeros(0, int)),
    ]
    ground_truth = [
        (np.array([A, B]), np.array([0, 1]), np.array([False, False])),
        (torch.tensor([C]), torch.tensor([0]), torch.tensor([False])),
        (np.zeros((0, 4)), np.zeros(0, int), np.zeros(0, bool)),
        (np.array([D]), np.array([1]), np.array([False])),
    ]
    ap, curves = detection_ap(detections, ground_truth, 3)
    _close(ap[0], 17 / 22)
    _close(ap[1], 6 / 11)
    assert math.isnan(ap[2])
    np.testing.assert_allclose(curves[0][1], [1, .5, 1 / 3, .5], rtol=0, atol=1e-15)
    _close(mean_ap(ap), 29 / 44)


def _naive_detection_ap(detections, ground_truth, num_classes, use_07_metric):
    """The devkit's loop (VOCevaldet.m / voc_eval.py) in plain Python, one detection at a time."""
    aps = []
    for c in range(num_classes):
        gt = [[(list(map(float, b)), bool(d)) for b, l, d in zip(*g) if l == c] for g in ground_truth]
        taken = [[False] * len(g) for g in gt]
        npos = sum(not d for g in gt for _, d in g)
        dets = [(float(s), i, list(map(float, b))) for i, (bs, ss, ls) in enumerate(detections)
                for b, s, l in zip(bs, ss, ls) if l == c]
        dets = sorted(dets, key=lambda d: -d[0])  # Python's sort is stable, as MATLAB's
        tp, fp = [], []
        for _, i, bb in dets:
            ovmax, jmax = -math.inf, None
            for j, (g, _) in enumerate(gt[i]):
                iw = max(min(bb[2], g[2]) - max(bb[0], g[0]) + 1., 0.)
                ih = max(min(bb[3], g[3]) - max(bb[1], g[1]) + 1., 0.)
                ua = (bb[2] - bb[0] + 1.) * (bb[3] - bb[1] + 1.) + (g[2] - g[0] + 1.) * (g[3] - g[1] + 1.) - iw * ih
                if iw * ih / ua > ovmax:
                    ovmax, jmax = iw * ih / ua, j
            t = f = 0
            if ovmax > 0.5:
                if not gt[i][jmax][1]:
                    if not taken[i][jmax]:
                        t, taken[i][jmax] = 1, True
                    else:
                        f = 1
            else:
                f = 1
            tp.append((tp[-1] if tp else 0) + t)
            fp.append((fp[-1] if fp else 0) + f)
        if npos == 0:
            aps.append(math.nan)
            continue
        rec = [t / npos for t in tp]
        prec = [t / max(t + f, np.finfo(float).eps) for t, f in zip(tp, fp)]
        if use_07_metric:
            aps.append(sum(max([p for r, p in zip(rec, prec) if r >= 0.1 * k], default=0.) / 11. for k in range(11)))
        else:
            ap, best = 0., 0.
            for k in range(len(rec) - 1, -1, -1):  # walk from the right, keeping the best precision so far
                best = max(best, prec[k])
                ap += (rec[k] - (rec[k - 1] if k else 0.)) * best
            aps.append(ap)
    return np.array(aps)


def test_detection_ap_matches_naive_devkit_loop():
    rng = random.Random(0)
    detections, ground_truth = [], []
    for _ in range(12):
        gt_boxes = []
        for _ in range(rng.randrange(5)):
            x, y = rng.randrange(60), rng.randrange(60)
            gt_boxes.append([x, y, x + rng.randrange(5, 40), y + rng.randrange(5, 40)])
        gt_labels = [rng.randrange(4) for _ in gt_boxes]  # class 4 of 5 never has ground truth: nan
        twice = [k for k in range(len(gt_boxes)) if rng.random() < 0.3]  # the same box twice: an IoU tie, first wins
        gt_boxes, gt_labels = gt_boxes + [gt_boxes[k] for k in twice], gt_labels + [gt_labels[k] for k in twice]
        det_boxes, det_labels = [], []
        for _ in range(rng.randrange(25)):
            if gt_boxes and rng.random() < 0.7:  # near a ground truth box (integer jitter: exact IoU ties happen)
                k = rng.randrange(len(gt_boxes))
                det_boxes.append([v + rng.randint(-4, 4) for v in gt_boxes[k]])
                det_labels.append(gt_labels[k] if rng.random() < 0.8 else rng.randrange(5))
            else:
                x, y = rng.uniform(0, 80), rng.uniform(0, 80)
                det_boxes.append([x, y, x + rng.uniform(2, 40), y + rng.uniform(2, 40)])
                det_labels.append(rng.randrange(5))
        scores = [round(rng.random(), 1) for _ in det_boxes]  # 1 decimal: many ties, across images and within
        detections.append((np.array(det_boxes, float).reshape(-1, 4), np.array(scores), np.array(det_labels, int)))
        ground_truth.append((np.array(gt_boxes, float).reshape(-1, 4), np.array(gt_labels, int),
                             np.array([rng.random() < 0.2 for _ in gt_boxes], bool)))
    for use_07_metric in (True, False):
        want = _naive_detection_ap(detections, ground_truth, 5, use_07_metric)
        got = detection_ap(detections, ground_truth, 5, use_07_metric=use_07_metric)[0]
        assert math.isnan(got[4]) and not np.isnan(got[:4]).any()
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-12, equal_nan=True)


def test_label_ap():
    # Action 0, by score: 0 (ignored), 1, 0, -1, 1, 0, -1 -> tp 0 1 1 1 2 2 2, fp 0 0 0 1 1 1 2, 2 positives:
    # recall 0 .5 .5 .5 1 1 1, precision 0 1 1 .5 2/3 2/3 .5. Area: 1 on (0, .5], 2/3 on (.5, 1] -> 5/6
    # (with the 0s as negatives it would be .5 * 1 + .5 * .5 = .75). Action 1 has no positive: nan.
    score = np.array([.95, .9, .8, .7, .6, .5, .4])
    label = np.array([0, 1, 0, -1, 1, 0, -1])
    perm = np.random.default_rng(0).permutation(7)  # rows in any order
    scores = np.stack([score, score], 1)[perm]
    labels = np.stack([label, np.minimum(label, 0)], 1)[perm]
    ap, curves = label_ap(scores, labels)
    _close(ap[0], 5 / 6)
    assert math.isnan(ap[1])
    np.testing.assert_array_equal(curves[0][0], [0, .5, .5, .5, 1, 1, 1])


def test_transfer_metrics_against_brute_force():
    """Mean per-class accuracy and VOC 2007's 11-point mAP on a multi-label set, against direct definitions."""
    from eval.metrics import transfer_metrics
    g = torch.Generator().manual_seed(0)
    scores, labels = torch.randn(50, 4, generator=g), torch.randint(0, 4, (50,), generator=g)
    m = transfer_metrics(scores, labels)
    pred = scores.argmax(1)
    per_class = [(pred[labels == c] == c).float().mean().item() for c in range(4)]
    assert abs(m['mean_class_acc'] - 100 * sum(per_class) / 4) < 1e-4  # float32 means in the reference
    assert m['top1'] == 100 * (pred == labels).sum().item() / 50
    # multi-label: 1 present, -1 absent, 0 difficult (neither); AP = mean over t in 0, .1, .., 1 of the best precision
    # among the score thresholds whose recall reaches t, every threshold tried (t as the devkit's np.arange: voc_ap)
    y = torch.randint(-1, 2, (40, 3), generator=g)
    y[0] = 1  # every class has a positive
    s = torch.randn(40, 3, generator=g) + y  # informative, not perfect
    aps = []
    for c in range(3):
        keep = y[:, c] != 0
        sc, gt = s[keep, c].tolist(), (y[keep, c] > 0).tolist()
        curve = []
        for th in sc:
            chosen = [g_ for v, g_ in zip(sc, gt) if v >= th]
            curve.append((sum(chosen) / sum(gt), sum(chosen) / len(chosen)))
        aps.append(sum(max([p for r, p in curve if r >= t] or [0]) for t in np.arange(0., 1.1, 0.1)) / 11)
    assert abs(transfer_metrics(s, y)['mAP'] - 100 * sum(aps) / 3) < 1e-9
