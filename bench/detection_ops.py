"""Time detection.py's nms and roi_align at py-faster-rcnn's sizes, against a Python-loop NMS.

    .venv/bin/python bench/detection_ops.py --repeats 2        # a quick look (about a minute on 2 cores)
    .venv/bin/python bench/detection_ops.py --threads 1 --repeats 5 --loop-repeats 5 --record   # the CPU table
    .venv/bin/python bench/detection_ops.py --device cuda --record   # on a GPU (H100 figures in BENCHMARKS.md)

Each op is timed beside torchvision.ops' (nms through detection.tv_nms, which shifts the boxes to torchvision's
exclusive convention, x2 + 1, y2 + 1; roi_align with the same arguments), which tests/test_detection_ops.py checks
give the same answers. The `nms` rows are ours (detection.greedy_nms) on any device; detection.nms itself runs
ours on the CPU and torchvision's (the `torchvision.ops.nms` rows) on a GPU.

NMS runs on RPN-like proposals: py-faster-rcnn's 9 anchors (generate_anchors: base 16, ratios 0.5/1/2, scales
8/16/32) at every cell of a stride-16 conv5 map of a 600 x 1000 image (38 x 63 cells, 21,546 anchors), moved by
random regression deltas, clipped to the image, the ones under 16 px dropped (RPN_MIN_SIZE), and the top N by a
random score kept: dense, heavily overlapping boxes. Sizes from py-faster-rcnn's config: 12000 -> 2000 at IoU 0.7
in training (RPN_PRE_NMS_TOP_N, RPN_POST_NMS_TOP_N, RPN_NMS_THRESH), 6000 -> 300 at test. The loop baseline is
py_cpu_nms.py written in torch on the same device: a Python loop over the kept boxes, each vectorised over the
boxes that remain, which is what one writes without a kernel (and the same greedy answer, checked each round).

On a shared 2-core machine use --threads 1: with 2 torch threads and a busy neighbour every small op waits for a
descheduled thread (a 512 x 512 bool `&` took 6.6 ms with 2 threads against 0.01 ms with 1, measured once), and
NMS is many small ops.

RoIAlign runs on an AlexNet conv5-like map [1, 256, 38, 63] at spatial_scale 1/16, 6 x 6 output (AlexNet's pool5,
the input of fc6), sampling_ratio 2, with 128 RoIs (py-faster-rcnn's BATCH_SIZE per image in training) and 300
(test-time proposals), each RoI a random proposal from the same generator; forward alone, and forward + backward
of a random linear functional of the output (the gradient to the features, as in training).
"""
import argparse
import datetime
import os
import shlex
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # run as `python bench/detection_ops.py` from anywhere
from bench.common import cpu_description, git_sha, record  # noqa: E402
from detection import greedy_nms, roi_align, tv_nms  # noqa: E402
import torchvision.ops  # noqa: E402

SECTION = '## Detection ops'
INTRO = ('Written by `bench/detection_ops.py --record`, one block per command: detection.py\'s vectorised `nms` '
         '(blocked Cluster-NMS, exactly greedy NMS) and `roi_align` (embedding_bag gathers) at py-faster-rcnn\'s '
         'sizes, beside `torchvision.ops.nms` / `roi_align` (the same answers, tests/test_detection_ops.py) and a '
         'Python-loop NMS for the ratio. See the script\'s docstring for the inputs. Times are the '
         'median of the rounds, each round running every row once; the machine may be shared, so compare ratios '
         'within one block.')
IMAGE = (600, 1000)  # py-faster-rcnn SCALES=(600,), MAX_SIZE=1000
STRIDE = 16          # AlexNet / VGG16 conv5
# (what, pre-NMS top N, post-NMS top N, IoU threshold): py-faster-rcnn lib/fast_rcnn/config.py, TRAIN and TEST
NMS_CASES = (('train', 12000, 2000, 0.7), ('test', 6000, 300, 0.7))
ROI_CASES = (('train', 128), ('test', 300))


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--repeats', type=int, default=5, help='rounds over all rows; the table gives the median')
    p.add_argument('--loop-repeats', type=int, default=1,
                   help='rounds that also run the slow Python-loop NMS (the first rounds)')
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch\'s own)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--record', action='store_true', help='write the result into BENCHMARKS.md (this command\'s block)')
    return p


# -------------------------------------------------------------------------------------------------------- inputs

def anchors():
    """py-faster-rcnn's generate_anchors() (9 anchors around a 16 x 16 base, +1 convention) at every conv5 cell."""
    base = torch.tensor([0., 0, 15, 15])
    w, h = base[2] - base[0] + 1, base[3] - base[1] + 1
    cx, cy = base[0] + 0.5 * (w - 1), base[1] + 0.5 * (h - 1)
    out = []
    for ratio in (0.5, 1, 2):
        ws = torch.round(torch.sqrt(w * h / ratio))
        hs = torch.round(ws * ratio)
        for scale in (8, 16, 32):
            aw, ah = ws * scale, hs * scale
            out.append(torch.stack([cx - 0.5 * (aw - 1), cy - 0.5 * (ah - 1), cx + 0.5 * (aw - 1), cy + 0.5 * (ah - 1)]))
    cell = torch.stack(out)  # [9, 4]
    fh, fw = -(-IMAGE[0] // STRIDE), -(-IMAGE[1] // STRIDE)  # 38 x 63
    sy, sx = torch.meshgrid(torch.arange(fh) * STRIDE, torch.arange(fw) * STRIDE, indexing='ij')
    shifts = torch.stack([sx, sy, sx, sy], -1).reshape(-1, 1, 4).float()
    return (shifts + cell).reshape(-1, 4)


def proposals(n, seed):
    """The top n RPN-like proposals by a random score: anchors moved by random deltas (bbox_transform_inv), clipped,
    the ones under 16 px dropped. Returns boxes [n, 4], scores [n] (float32, CPU)."""
    g = torch.Generator().manual_seed(seed)
    a = anchors()
    w, h = a[:, 2] - a[:, 0] + 1, a[:, 3] - a[:, 1] + 1
    cx, cy = a[:, 0] + 0.5 * w, a[:, 1] + 0.5 * h
    d = torch.randn(a.shape[0], 4, generator=g) * torch.tensor([0.1, 0.1, 0.2, 0.2])
    cx, cy, w, h = cx + d[:, 0] * w, cy + d[:, 1] * h, w * d[:, 2].exp(), h * d[:, 3].exp()
    boxes = torch.stack([cx - 0.5 * w, cy - 0.5 * h, cx + 0.5 * w, cy + 0.5 * h], 1)
    boxes[:, 0::2] = boxes[:, 0::2].clamp(0, IMAGE[1] - 1)
    boxes[:, 1::2] = boxes[:, 1::2].clamp(0, IMAGE[0] - 1)
    ok = (boxes[:, 2] - boxes[:, 0] + 1 >= 16) & (boxes[:, 3] - boxes[:, 1] + 1 >= 16)
    boxes = boxes[ok]
    scores = torch.rand(boxes.shape[0], generator=g)
    top = torch.sort(scores, descending=True, stable=True).indices[:n]
    assert top.numel() == n, f'only {top.numel()} proposals'
    return boxes[top], scores[top]


def loop_nms(boxes, scores, thresh, max_keep=None):
    """py-faster-rcnn's py_cpu_nms.py in torch: a Python loop over the kept boxes (same tie order as nms),
    stopping at max_keep kept boxes like nms."""
    x1, y1, x2, y2 = boxes.unbind(1)
    areas = (x2 - x1 + 1) * (y2 - y1 + 1)
    order = torch.sort(scores, descending=True, stable=True).indices
    keep = []
    while order.numel() > 0 and (max_keep is None or len(keep) < max_keep):
        i = order[0]
        keep.append(i)
        rest = order[1:]
        w = (torch.min(x2[i], x2[rest]) - torch.max(x1[i], x1[rest]) + 1).clamp(min=0)
        h = (torch.min(y2[i], y2[rest]) - torch.max(y1[i], y1[rest]) + 1).clamp(min=0)
        inter = w * h
        ovr = inter / (areas[i] + areas[rest] - inter)
        order = rest[ovr <= thresh]
    return torch.stack(keep) if keep else order


# --------------------------------------------------------------------------------------------------------- timing

def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


def timed(fn, device):
    sync(device)
    t = time.perf_counter()
    out = fn()
    sync(device)
    return time.perf_counter() - t, out


def busy_seconds():
    """(CPU seconds all processes have used, CPU seconds this process has used): /proc/stat's busy jiffies."""
    ticks = [int(x) for x in open('/proc/stat').readline().split()[1:]]
    t = os.times()
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf('SC_CLK_TCK'), t.user + t.system


def machine(device):
    if device.type == 'cuda':
        return f'{torch.cuda.get_device_name()}, CUDA {torch.version.cuda}'
    return f'{cpu_description()}; {torch.get_num_threads()} torch threads'


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    print(' '.join(f'{k}={v}' for k, v in sorted(vars(args).items())))
    sha = git_sha()
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda needs CUDA')
    device = torch.device(args.device)
    print(f'git {sha}; {machine(device)}; torch {torch.__version__}')

    g = torch.Generator().manual_seed(args.seed)
    nms_inputs = {name: tuple(t.to(device) for t in proposals(n, args.seed)) for name, n, _, _ in NMS_CASES}
    feats = torch.randn(1, 256, -(-IMAGE[0] // STRIDE), -(-IMAGE[1] // STRIDE), generator=g).to(device).requires_grad_()
    roi_inputs = {}
    for name, k in ROI_CASES:
        boxes, _ = proposals(2000, args.seed + 1)
        pick = torch.randperm(boxes.shape[0], generator=g)[:k]
        rois = torch.cat([torch.zeros(k, 1), boxes[pick]], 1).to(device)
        roi_inputs[name] = (rois, torch.randn(k, 256, 6, 6, generator=g).to(device))

    def run_nms(name, loop=False, cut=False):
        _, _, post, thresh = next(c for c in NMS_CASES if c[0] == name)
        boxes, scores = nms_inputs[name]
        return (loop_nms if loop else greedy_nms)(boxes, scores, thresh, max_keep=post if cut else None)

    def run_tv_nms(name, cut=False):
        _, _, post, thresh = next(c for c in NMS_CASES if c[0] == name)
        boxes, scores = nms_inputs[name]
        keep = tv_nms(boxes, scores, thresh)  # what detection.nms runs on a GPU
        return keep[:post] if cut else keep  # no early stop: the whole NMS, then the first post

    def run_roi(name, backward, op=roi_align):
        rois, probe = roi_inputs[name]
        out = op(feats, rois, (6, 6), 1 / STRIDE, 2)
        if backward:
            feats.grad = None
            (out * probe).sum().backward()
        return out

    rows = [(f'nms {name}: {n} boxes at {t}, all kept', lambda name=name: run_nms(name)) for name, n, _, t in NMS_CASES]
    rows += [(f'nms {name}: {n} boxes at {t}, max_keep={post}', lambda name=name: run_nms(name, cut=True))
             for name, n, post, t in NMS_CASES]
    rows += [(f'roi_align {name}: {k} RoIs, forward', lambda name=name: run_roi(name, False)) for name, k in ROI_CASES]
    rows += [(f'roi_align {name}: {k} RoIs, forward + backward', lambda name=name: run_roi(name, True))
             for name, k in ROI_CASES]
    rows += [(f'torchvision.ops.nms {name}: {n} boxes at {t}, all kept', lambda name=name: run_tv_nms(name))
             for name, n, _, t in NMS_CASES]
    rows += [(f'torchvision.ops.nms {name}: {n} boxes at {t}, max_keep={post}', lambda name=name: run_tv_nms(name, cut=True))
             for name, n, post, t in NMS_CASES]
    rows += [(f'torchvision.ops.roi_align {name}: {k} RoIs, forward{bw}',
              lambda name=name, b=b: run_roi(name, b, torchvision.ops.roi_align))
             for b, bw in ((False, ''), (True, ' + backward')) for name, k in ROI_CASES]
    loop_rows = [(f'Python-loop nms {name}: {n} boxes at {t}, all kept', lambda name=name: run_nms(name, loop=True))
                 for name, n, _, t in NMS_CASES]
    loop_rows += [(f'Python-loop nms {name}: {n} boxes at {t}, max_keep={post}',
                   lambda name=name: run_nms(name, loop=True, cut=True)) for name, n, post, t in NMS_CASES]

    for _, fn in rows:  # warm-up: thread pools, allocator, the CUDA context
        fn()
    kept = {label: fn() for label, fn in rows if label.startswith(('nms', 'torchvision.ops.nms'))}
    same = {label: torch.equal(kept[label], kept[label.replace('torchvision.ops.', '')])
            for label in kept if label.startswith('torchvision')}
    times = {label: [] for label, _ in rows + loop_rows}
    busy0, t0 = busy_seconds(), time.perf_counter()
    for r in range(args.repeats):
        for i, (label, fn) in enumerate(rows + (loop_rows if r < args.loop_repeats else [])):
            sec, out = timed(fn, device)
            times[label].append(sec)
            if label.startswith('Python-loop'):  # the loop is the reference: the same boxes, in the same order
                assert torch.equal(out, kept[label.replace('Python-loop ', '')]), label
            print(f'round {r} {label}: {sec * 1e3:.1f} ms', flush=True)
    busy1 = busy_seconds()
    others = ((busy1[0] - busy0[0]) - (busy1[1] - busy0[1])) / (time.perf_counter() - t0)
    quiet = f'other processes took {max(others, 0):.2f} cores on average during the timed rounds'
    print(quiet)

    med = {label: statistics.median(ts) for label, ts in times.items() if ts}
    lines = ['| what | ms (median) | min-max | rounds | note |', '|---|---:|---:|---:|---|']
    for label, _ in rows + loop_rows:
        ts = times[label]
        note = ''
        if label.startswith('torchvision.ops.'):
            ours = med[label.replace('torchvision.ops.', '')]
            note = (f'same boxes as ours: {same[label]}; ' if label in same else '') + \
                (f'ours {med[label] / ours:.1f}x faster' if ours < med[label] else f'**torchvision {ours / med[label]:.1f}x faster**')
        if label.startswith('nms'):
            loop = 'Python-loop ' + label
            if label.endswith('all kept'):
                note = f'{kept[label].numel()} kept'
            if loop in med:
                note += ('; ' if note else '') + f'**{med[loop] / med[label]:.0f}x faster than the Python loop**'
        lines.append(f'| {label} | {med[label] * 1e3:.1f} | {min(ts) * 1e3:.1f}-{max(ts) * 1e3:.1f} | {len(ts)} '
                     f'| {note} |')
    out = '\n'.join(lines)
    print(out)
    if args.record:
        cmd = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
        block = (f'### `{cmd}`\n\n{datetime.date.today().isoformat()}; git {sha}; {machine(device)}; '
                 f'torch {torch.__version__}.\n{args.repeats} rounds ({args.loop_repeats} with the loop NMS); '
                 f'{quiet}.\n\n{out}\n')
        record(SECTION, INTRO, f'`{cmd}`', block)


if __name__ == '__main__':
    main(get_args_parser().parse_args())
