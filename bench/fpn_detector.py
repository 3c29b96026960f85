"""He et al. 2019's detector, its training speed: iterations/s of torchvision's Mask R-CNN with a GroupNorm
ResNet-50-FPN (detection.fpn_detector, the one `finetune.py coco` trains) at batch 2 per device, and the device-hours
a 6x schedule (540K iterations at batch 16) would take at that speed.

    .venv/bin/python bench/fpn_detector.py --iters 1 --size 320 480        # a smoke run
    .venv/bin/python bench/fpn_detector.py --record                         # CPU: 2 images of 800 x 1088
    .venv/bin/python bench/fpn_detector.py --device cuda --iters 20 --record

The batch is synthetic and seeded: images of Detectron's test size (shorter side 800; 1088 is a COCO 4:3 image's
1066 padded to FPN's multiple of 32), 7 objects an image (COCO's mean) with their boxes and masks. The data
pipeline is left out: this measures the model's step (forward, backward, SGD), the part He et al.'s schedules
multiply.
"""
import argparse
import datetime
import os
import shlex
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.dirname(HERE))  # run as `python bench/fpn_detector.py` from anywhere
from bench.common import cpu_description, git_sha, record  # noqa: E402
from bench.loader import versions  # noqa: E402

SECTION = '## He et al. 2019: Mask R-CNN R-50-FPN training step'
INTRO = ('Written by `bench/fpn_detector.py --record`, one block per command: torchvision\'s Mask R-CNN with a GN '
         'ResNet-50-FPN (detection.fpn_detector) on a synthetic batch, and the device-hours of the 6x schedule '
         '(540K iterations at batch 16) at the measured speed.')


def get_args_parser():
    p = argparse.ArgumentParser(description=__doc__.split('\n')[0], formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument('--arch', default='resnet50')
    p.add_argument('--norm', default='gn', choices=('gn', 'syncbn'))
    p.add_argument('--batch-size', type=int, default=2, help='images per device (Detectron: 2 a GPU, 8 GPUs)')
    p.add_argument('--size', type=int, nargs=2, default=[800, 1088], help='image height and width')
    p.add_argument('--objects', type=int, default=7, help='objects an image (COCO train2017: 7.3)')
    p.add_argument('--iters', type=int, default=3, help='timed iterations, after one warm-up')
    p.add_argument('--threads', type=int, default=None, help='torch CPU threads (default: torch\'s)')
    p.add_argument('--device', default='cpu', choices=('cpu', 'cuda'))
    p.add_argument('--record', action='store_true', help='write the result into BENCHMARKS.md')
    return p


def batch(args, device, g):
    h, w = args.size
    images = torch.randn(args.batch_size, 3, h, w, generator=g).to(device)
    targets = []
    for _ in range(args.batch_size):
        xy = torch.rand(args.objects, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
        wh = 32 + torch.rand(args.objects, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3])
        boxes = torch.cat([xy, xy + wh], 1)
        masks = torch.zeros(args.objects, h, w, dtype=torch.uint8)
        for k, (x1, y1, x2, y2) in enumerate(boxes.round().int().tolist()):
            masks[k, y1:y2, x1:x2] = 1
        targets.append({'boxes': boxes.to(device), 'labels': torch.randint(1, 81, (args.objects,), generator=g).to(device),
                        'masks': masks.to(device)})
    return images, torch.tensor([[h, w]] * args.batch_size), targets


def main(args):
    from detection import fpn_detector
    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    torch.manual_seed(0)
    model, _ = fpn_detector(args.arch, 80, args.norm)
    model = model.to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=0.02, momentum=0.9, weight_decay=1e-4)
    amp = torch.bfloat16 if device.type == 'cuda' else torch.float32
    images, sizes, targets = batch(args, device, torch.Generator().manual_seed(0))

    def step():
        with torch.autocast(device.type, dtype=amp, enabled=amp != torch.float32):
            loss = sum(model(images, sizes, targets).values())
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        if device.type == 'cuda':
            torch.cuda.synchronize()

    step()  # warm-up: allocations, kernels
    t0 = time.perf_counter()
    for _ in range(args.iters):
        step()
    rate = args.iters / (time.perf_counter() - t0)
    hours = 540000 * 16 / (args.batch_size * rate) / 3600  # device-hours of 6x: 540K iterations of 16 images
    sha, where = git_sha(), cpu_description()
    print(f'git {sha}; {where}; {versions(device.type == "cuda")}')
    out = '\n'.join([
        '| measure | value |', '|---|---:|',
        f'| training step, Mask R-CNN {args.arch}-FPN {args.norm}, batch {args.batch_size} of {args.size[0]} x {args.size[1]}, '
        f'{"bf16 autocast" if amp != torch.float32 else "fp32"} | {rate:.3f} iterations/s ({1 / rate:.2f} s an iteration) |',
        f'| 6x (540K iterations at batch 16) at this speed, one device | {hours:,.0f} device-hours |'])
    print(out)
    if args.record:
        cmd = 'python ' + ' '.join(shlex.quote(a) for a in sys.argv)
        block = (f'### `{cmd}`\n\n{datetime.date.today().isoformat()}; git {sha}; {where}; {versions(device.type == "cuda")}; '
                 f'{torch.get_num_threads()} torch threads; {args.iters} timed iterations after one warm-up.\n\n{out}\n')
        record(SECTION, INTRO, f'`{cmd}`', block)


if __name__ == '__main__':
    main(get_args_parser().parse_args())
