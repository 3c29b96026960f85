"""Time finetune.py's Faster R-CNN (voc07) and R*CNN (voc12-action): training iterations/s and test images/s, each
split into data time (the DALI detection pipeline) and model time, with the share of proposals + NMS and RoIAlign.

    .venv/bin/python bench/detection.py --settings toy --iters 2          # a quick look (about a minute on 2 cores)
    .venv/bin/python bench/detection.py --threads 1 --record              # the CPU table (about 4 min on 2 cores)
    .venv/bin/python bench/detection.py --device cuda --record            # on a GPU (H100 figures in BENCHMARKS.md)

Settings. paper: py-faster-rcnn's (scale 600, max size 1000, anchors 8/16/32) on the full-width Caffe AlexNet
(`finetune.py voc07 --width 1.0`); toy: what the tests and the demo use (width 0.25, scale 192, max size 320,
anchors 2/4/8). One image a batch (REGION_RECIPE), SGD as finetune.region_task builds it (engine.sgd, Caffe biases,
momentum 0.9, weight decay 5e-4), train.py's autocast rule (bf16 on CUDA, fp32 on CPU), channels_last.

Data. --images toy scenes drawn by toydata.py (draw_voc07 for detection, draw_voc12 for actions) into a temporary
folder as q90 JPEGs: at their own 160-320 px for the toy setting, resized up to VOC's typical 500 x 375 for the
paper setting (so 800 x 600 after the resize to 600), their boxes scaled with them. Data time is the DALI pipeline
alone (detection_loader, batch 1, --workers threads, its prefetch queue full): the median wall time per batch of
--data-batches batches after a warm-up. Model time is forward + backward + SGD step (training) or an eval-mode
forward that returns detections / action scores (test), on the same batches already in memory: the median of
--iters iterations after --warmup. "Together" runs the loader and the model in one loop as train.fit does (the two
share the CPU cores, so on a CPU this is less than 1 / (data + model) suggests is possible with overlap).

On a shared 2-core machine use --threads 1 (as bench/detection_ops.py): with 2 torch threads and a busy
neighbour every parallel elementwise op waits for a descheduled thread, and NMS is hundreds of them (one RPN NMS
took 5.7 s with 2 threads against 56 ms with 1, same input, measured once).

Where the model time goes: a second pass of --iters iterations with detection.py's `nms`, `batched_nms`,
`roi_align` and the model's `proposals` wrapped by timers (a device sync around each on CUDA, so this pass is
slower there than the clean one, and shares are of the wrapped pass's time). RoIAlign's backward is timed by two
identity autograd functions around it, whose backward calls bracket the embedding_bag backward. The weights are
random (a scratch backbone): an untrained RPN scores every anchor alike, and an untrained classifier gives each
of 21 classes ~1/21 < the 0.05 test threshold, so test-time per-class NMS sees few candidates (counted in the
table); a trained detector's is dearer.

im_info: data_dali's loader yields the original image's height and width with the scale (not the resized image's,
as its docstring and py-faster-rcnn's im_info say), and the models clip proposals, select anchors inside the image
and lay R*CNN's grid with them; timed here as the code is.
"""
import argparse
import datetime
import os
import random
import shlex
import statistics
import sys
import tempfile
import time

import numpy as np
import torch

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)  # run as `python bench/detection.py` from anywhere
import detection  # noqa: E402
import engine  # noqa: E402
import toydata  # noqa: E402
from bench.common import cpu_description, git_sha, gpu_description, record  # noqa: E402
from data_dali import detection_loader  # noqa: E402
from datasets import VOC_ACTIONS, VOC_CLASSES  # noqa: E402
from detection import FasterRCNN, RStarCNN, action_labels, freeze, split_classifier  # noqa: E402
from finetune import split_regions  # noqa: E402
from models import get_model  # noqa: E402

SECTION = '## Detection: training and test speed'  # not a prefix of '## Detection ops': record() finds sections by substring
SETTINGS = {  # width, scale, max size, anchor scales, image size written (None: toydata's own 160-320 px)
    'toy': dict(width=0.25, scale=192, max_size=320, anchors=(2, 4, 8), size=None),
    'paper': dict(width=1.0, scale=600, max_size=1000, anchors=(8, 16, 32), size=(500, 375)),
}
MODELS = ('faster-rcnn', 'rstar-cnn')
TARGET_ITERS, TARGET_SECONDS = 70000, 3600  # paper schedule (finetune.REGION_RECIPE) in an hour on one H100
INTRO = (f'Written by `bench/detection.py --record`, one block per command: finetune.py\'s Faster R-CNN (voc07) and '
         f'R*CNN (voc12-action) at one image a batch, training iterations/s and test images/s, split into data time '
         f'(the DALI detection pipeline alone, on toy JPEG scenes) and model time (forward + backward + SGD, or an '
         f'eval forward, on the same batches in memory), and the share of the model time spent in the proposal layer '
         f'(with its NMS) and in RoIAlign. See the script\'s docstring for the method. The target is the paper\'s '
         f'{TARGET_ITERS // 1000}K-iteration AlexNet schedule in under one hour on one H100, i.e. >= '
         f'{TARGET_ITERS / TARGET_SECONDS:.1f} training it/s. The CPU blocks say where the time goes; the CUDA block '
         f'(one H100, `bash bench/gpu.sh detection`) says the target is missed: 10.3 it/s, the proposal layer\'s NMS '
         f'taking 74% of the step.')


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--settings', nargs='+', default=['toy', 'paper'], choices=list(SETTINGS))
    p.add_argument('--models', nargs='+', default=list(MODELS), choices=MODELS)
    p.add_argument('--images', type=int, default=50, help='toy scenes written per setting and model')
    p.add_argument('--warmup', type=int, default=2, help='untimed model iterations first')
    p.add_argument('--iters', type=int, default=5, help='timed model iterations (median), and as many in the other passes')
    p.add_argument('--toy-iters', type=int, default=10, help='--iters of the toy setting (cheap, and noisier)')
    p.add_argument('--data-batches', type=int, default=12, help='timed loader batches (median), after 3 untimed')
    p.add_argument('--workers', type=int, default=len(os.sched_getaffinity(0)), help='DALI threads')
    p.add_argument('--device', default='cpu', choices=['cpu', 'cuda'])
    p.add_argument('--threads', type=int, default=None, help='torch intra-op threads (default: torch\'s own)')
    p.add_argument('--seed', type=int, default=0)
    p.add_argument('--record', action='store_true', help='write the result into BENCHMARKS.md (this command\'s block)')
    return p


# -------------------------------------------------------------------------------------------------------- data

def _scaled_box(box, sx, sy):
    """A VOC box (1-based inclusive) of an image resized by (sx, sy): through continuous coordinates [x1 - 1, x2)."""
    x1, y1, x2, y2 = box
    return (round((x1 - 1) * sx) + 1, round((y1 - 1) * sy) + 1, max(round((x1 - 1) * sx) + 1, round(x2 * sx)),
            max(round((y1 - 1) * sy) + 1, round(y2 * sy)))


def write_scenes(folder, kind, n, size, seed):
    """n toy scenes as JPEGs in folder, and their records (datasets.read_voc_* rows: path, boxes, labels/actions)."""
    os.makedirs(folder, exist_ok=True)
    records = []
    for i in range(n):
        rng = random.Random(f'{seed}/bench/{kind}/{i}')
        if kind == 'faster-rcnn':
            img, objects = toydata.draw_voc07(rng)
        else:
            img, objects = toydata.draw_voc12(rng.sample(VOC_ACTIONS, rng.randint(1, 2)), rng)
        sx = sy = 1.0
        if size is not None:
            sx, sy = size[0] / img.width, size[1] / img.height
            img = img.resize(size)
        path = f'{i:06d}.jpg'
        img.save(os.path.join(folder, path), quality=90)
        boxes = np.array([_scaled_box(o['box'], sx, sy) for o in objects], dtype=np.float32).reshape(-1, 4)
        if kind == 'faster-rcnn':
            records.append({'path': path, 'boxes': boxes,
                            'labels': np.array([VOC_CLASSES.index(o['name']) for o in objects], dtype=np.int64)})
        else:
            actions = np.array([[a == o['action'] for a in VOC_ACTIONS] for o in objects], dtype=np.int64)
            records.append({'path': path, 'boxes': boxes, 'actions': actions})
    return records


# ------------------------------------------------------------------------------------------------------- model

def build(kind, setting, device):
    """The model, optimiser and autocast dtype of finetune.region_task, on random (scratch) weights."""
    s = SETTINGS[setting]
    net = get_model('alexnet', 1, 'bn', 0.5, s['width'])
    backbone, head, channels, head_channels, stride, pool = split_classifier(net)
    freeze(net, 'alexnet')
    if kind == 'faster-rcnn':
        model = FasterRCNN(backbone, head, channels, head_channels, len(VOC_CLASSES), stride, pool, s['anchors'])
    else:
        model = RStarCNN(backbone, head, head_channels, len(VOC_ACTIONS), stride, pool)
    model = model.to(device).to(memory_format=torch.channels_last)
    optimizer = engine.sgd(model, 0.001, 0.9, 5e-4, caffe_bias=True)
    return model, optimizer, torch.bfloat16 if device.type == 'cuda' else torch.float32


def step(kind, model, optimizer, batch, records, train, device, amp_dtype):
    """One training iteration as train.fit + finetune.region_task's loss_of, or one test forward as test_regions.
    Returns what test-time produced (detections per image, or action scores)."""
    images, boxes, info, idx, _ = batch
    images, boxes = images.to(device, non_blocking=True), [b.to(device) for b in boxes]
    with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32), \
            torch.set_grad_enabled(train):
        if kind == 'faster-rcnn':
            if not train:
                return model(images, info)
            targets = [(b, torch.as_tensor(records[i]['labels'], device=device)) for b, i in zip(boxes, idx)]
            loss = sum(model(images, info, targets).values())
        else:  # the grid's regions (--regions grid): Selective Search is computed once, before training
            persons, regions = split_regions(boxes, info, None, grid=True)
            if not train:
                return model(images, info, persons, regions)
            labels = [action_labels(records[i]['actions']).to(device) for i in idx]
            loss = sum(model(images, info, persons, regions, labels).values())
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()
    return loss.detach()


# ------------------------------------------------------------------------------------------------------ timing

def sync(device):
    if device.type == 'cuda':
        torch.cuda.synchronize()


class Timers:
    """Wraps detection.py's nms, batched_nms and roi_align (module globals, which FasterRCNN and RStarCNN call) and
    model.proposals with timers; RoIAlign's backward between two identity autograd functions. Undone by close()."""

    def __init__(self, model, device):
        self.model, self.device, self.t = model, device, {}
        self.saved = {k: getattr(detection, k) for k in ('nms', 'batched_nms', 'roi_align')}
        self.count = {'class NMS candidates': 0}
        for name in ('nms', 'batched_nms'):
            setattr(detection, name, self._wrap(name, self.saved[name]))
        detection.roi_align = self._roi_align
        if isinstance(model, FasterRCNN):
            model.proposals = self._wrap('proposals', model.proposals)
        timers = self

        class Start(torch.autograd.Function):  # on the way back, first: RoIAlign's backward starts
            @staticmethod
            def forward(ctx, x):
                return x.view_as(x)

            @staticmethod
            def backward(ctx, g):
                sync(timers.device)
                timers.back0 = time.perf_counter()
                return g

        class End(torch.autograd.Function):  # on the way back, last: the gradient reached the features
            @staticmethod
            def forward(ctx, x):
                return x.view_as(x)

            @staticmethod
            def backward(ctx, g):
                sync(timers.device)
                timers.add('roi_align backward', time.perf_counter() - timers.back0)
                return g

        self.Start, self.End = Start, End

    def add(self, name, sec):
        self.t[name] = self.t.get(name, 0.0) + sec

    def _wrap(self, name, fn):
        def timed(*a, **k):
            if name == 'batched_nms':
                self.count['class NMS candidates'] += a[0].shape[0]
            sync(self.device)
            t0 = time.perf_counter()
            out = fn(*a, **k)
            sync(self.device)
            self.add(name, time.perf_counter() - t0)
            return out
        return timed

    def _roi_align(self, features, *a, **k):
        sync(self.device)
        t0 = time.perf_counter()
        grad = torch.is_grad_enabled() and features.requires_grad
        out = self.saved['roi_align'](self.End.apply(features) if grad else features, *a, **k)
        out = self.Start.apply(out) if grad else out
        sync(self.device)
        self.add('roi_align forward', time.perf_counter() - t0)
        return out

    def close(self):
        for k, v in self.saved.items():
            setattr(detection, k, v)
        self.model.__dict__.pop('proposals', None)


def data_times(loader, n, device):
    """Median seconds per batch of the loader alone (3 untimed batches first), and the n timed batches."""
    it = iter(loader)
    for _ in range(3):
        next(it)
    times, batches = [], []
    for _ in range(n):
        t0 = time.perf_counter()
        batches.append(next(it))
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), batches


def model_times(run, batches, warmup, iters, device):
    for i in range(warmup):
        run(batches[i % len(batches)])
    times = []
    for i in range(iters):
        sync(device)
        t0 = time.perf_counter()
        run(batches[(warmup + i) % len(batches)])
        sync(device)
        times.append(time.perf_counter() - t0)
    return statistics.median(times), times


def together(run, loader, iters, device):
    """Seconds per iteration with the loader feeding the model in one loop (train.fit's shape), the loader's
    prefetch running beside the model; and the share of that time spent waiting for data."""
    it = iter(loader)
    run(next(it))  # the first batch waits for the pipeline's start
    sync(device)
    wait, t_start = 0.0, time.perf_counter()
    for _ in range(iters):
        t0 = time.perf_counter()
        batch = next(it)
        wait += time.perf_counter() - t0
        run(batch)
    sync(device)
    total = time.perf_counter() - t_start
    return total / iters, wait / total


def busy_seconds():
    """(CPU seconds all processes have used, CPU seconds this process has used): /proc/stat's busy jiffies."""
    ticks = [int(x) for x in open('/proc/stat').readline().split()[1:]]
    t = os.times()
    return (sum(ticks) - ticks[3] - ticks[4]) / os.sysconf('SC_CLK_TCK'), t.user + t.system


def machine(device):
    if device.type == 'cuda':
        return gpu_description(device.index or 0)
    return f'{cpu_description()}; {torch.get_num_threads()} torch threads'


# -------------------------------------------------------------------------------------------------------- main

def measure(args, kind, setting, phase, tmp, device):
    """One row: data, model, together and the breakdown for (model, setting, train|test)."""
    s = SETTINGS[setting]
    train = phase == 'train'
    folder = os.path.join(tmp, f'{kind}-{setting}')
    records = measure.records[folder]
    torch.manual_seed(args.seed)
    model, optimizer, amp_dtype = build(kind, setting, device)
    model.train(train)
    dev_id = device.index if device.type == 'cuda' else None

    def loader():
        return detection_loader(folder, records, 1, train, s['scale'], s['max_size'], args.workers, dev_id, args.seed)

    def run(batch):
        return step(kind, model, optimizer, batch, records, train, device, amp_dtype)

    data_s, batches = data_times(loader(), args.data_batches, device)
    h, w = batches[0][0].shape[-2:]  # the resized image (im_info holds the original size, see the docstring)
    iters = args.toy_iters if setting == 'toy' else args.iters
    model_s, times = model_times(run, batches, args.warmup, iters, device)
    both_s, wait = together(run, loader(), iters, device)
    timers = Timers(model, device)
    walls = []
    try:
        for i in range(iters):
            sync(device)
            t0 = time.perf_counter()
            run(batches[i % len(batches)])
            sync(device)
            walls.append(time.perf_counter() - t0)
    finally:
        timers.close()
    share = {k: v / sum(walls) for k, v in timers.t.items()}
    row = dict(model=kind, setting=setting, phase=phase, size=f'{w} x {h}', data=data_s, model_s=model_s,
               model_range=(min(times), max(times)), both=both_s, wait=wait, share=share,
               candidates=timers.count['class NMS candidates'] / iters)
    print(f'{kind} {setting} {phase} ({w} x {h}): data {data_s * 1e3:.1f} ms, model {model_s * 1e3:.1f} ms '
          f'({", ".join(f"{t * 1e3:.0f}" for t in times)}), together {both_s * 1e3:.1f} ms ({wait:.0%} waiting); '
          + ', '.join(f'{k} {v:.1%}' for k, v in share.items()), flush=True)
    return row


def main(args):
    if args.threads:
        torch.set_num_threads(args.threads)
    print(' '.join(f'{k}={v}' for k, v in sorted(vars(args).items())))
    sha = git_sha()
    if args.device == 'cuda' and not torch.cuda.is_available():
        raise SystemExit('--device cuda needs CUDA')
    device = torch.device(args.device, 0) if args.device == 'cuda' else torch.device('cpu')
    import nvidia.dali
    versions = f'torch {torch.__version__}, DALI {nvidia.dali.__version__}'
    print(f'git {sha}; {machine(device)}; {versions}')

    rows = []
    busy0, t0 = busy_seconds(), time.perf_counter()
    with tempfile.TemporaryDirectory(prefix='bench-detection-') as tmp:
        for setting in args.settings:
            for kind in args.models:
                folder = os.path.join(tmp, f'{kind}-{setting}')
                measure.records[folder] = write_scenes(folder, kind, args.images, SETTINGS[setting]['size'], args.seed)
                for phase in ('train', 'test'):
                    rows.append(measure(args, kind, setting, phase, tmp, device))
    busy1 = busy_seconds()
    elapsed = time.perf_counter() - t0
    others = ((busy1[0] - busy0[0]) - (busy1[1] - busy0[1])) / elapsed
    quiet = f'other processes took {max(others, 0):.2f} cores on average during the run ({elapsed:.0f} s)'
    print(quiet)

    lines = ['| model | setting | phase | image (w x h) | data ms/img | model ms/img (min-max) | model-only it/s | '
             'together ms/img (data wait) | together it/s | proposal layer (of which NMS) | test class NMS (candidates) | '
             'RoIAlign fwd + bwd |',
             '|---|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|']
    for r in rows:
        sh = r['share']
        props = (f'{sh.get("proposals", 0):.1%} ({sh.get("nms", 0):.1%})' if r['model'] == 'faster-rcnn' else '-')
        cls_nms = (f'{sh.get("batched_nms", 0):.1%} ({r["candidates"]:.0f})'
                   if r['model'] == 'faster-rcnn' and r['phase'] == 'test' else '-')
        roi = f'{sh.get("roi_align forward", 0):.1%}' + (f' + {sh.get("roi_align backward", 0):.1%}' if r['phase'] == 'train' else '')
        lo, hi = r['model_range']
        lines.append(f'| {r["model"]} | {r["setting"]} | {r["phase"]} | {r["size"]} | {r["data"] * 1e3:.1f} | '
                     f'{r["model_s"] * 1e3:.0f} ({lo * 1e3:.0f}-{hi * 1e3:.0f}) | {1 / r["model_s"]:.2f} | '
                     f'{r["both"] * 1e3:.0f} ({r["wait"]:.0%}) | **{1 / r["both"]:.2f}** | {props} | {cls_nms} | {roi} |')
    out = '\n'.join(lines)
    print(out)
    target = TARGET_ITERS / TARGET_SECONDS
    notes = []
    for r in rows:
        if r['model'] == 'faster-rcnn' and r['setting'] == 'paper' and r['phase'] == 'train':
            notes.append(f'- Measured on {"this GPU" if device.type == "cuda" else "this CPU"}: the paper-setting Faster '
                         f'R-CNN trains at {1 / r["both"]:.2f} it/s with the loader ({1 / r["model_s"]:.2f} it/s model '
                         f'only), so {TARGET_ITERS // 1000}K iterations take {TARGET_ITERS * r["both"] / 3600:.0f} h; '
                         f'the target is >= {target:.1f} it/s (70K in 1 h on one H100).')
    if args.record:
        cmd = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
        block = (f'### `{cmd}`\n\n{datetime.date.today().isoformat()}; git {sha}; {machine(device)}; {versions}.\n'
                 f'{args.images} toy scenes per model and setting (paper: resized up to 500 x 375); {args.workers} DALI '
                 f'threads; model: {args.warmup} warm-up + {args.iters} timed iterations ({args.toy_iters} toy; median), data: 3 + '
                 f'{args.data_batches} batches (median); random weights; {quiet}. Shares are of the model time of a '
                 f'separate pass with the ops wrapped by timers.\n\n{out}\n\n' + '\n'.join(notes) + '\n')
        record(SECTION, INTRO, f'`{cmd}`', block)


measure.records = {}

if __name__ == '__main__':
    main(get_args_parser().parse_args())
