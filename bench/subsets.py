"""Benchmark subsets.py: every paper manifest from an index of ImageNet's size, and the scan per 100K files.

    .venv/bin/python bench/subsets.py --cold                   # 1000 x 1280 synthetic index + 100K-file scan
    .venv/bin/python bench/subsets.py --scan-files 0 --no-write  # only the manifests; leave BENCHMARKS.md alone

Target (issue 3): `subsets.py paper` on 1.28M images in under 60 s on 2 cores. The index is synthetic (the
manifests need only paths and wnids, never the images), with the 1000 real ILSVRC wnids so that every
WordNet subset applies. The scan is timed on a tree of tiny files with a JPEG header, which is what
scan_imagenet reads of each file (a listing plus 4 bytes); on a real disk the cold scan is I/O bound, and
--cold also times it after dropping the page cache. Results go to BENCHMARKS.md, section `## subsets.py`.
"""
import argparse
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, HERE)

from datasets import ilsvrc_classes, scan_imagenet  # noqa: E402

SECTION = '## subsets.py'


def synthetic_index(path, per_class, val_per_class):
    """An index.tsv of len(ILSVRC) x per_class train and x val_per_class val rows (the official flat val/)."""
    wnids = sorted(ilsvrc_classes())
    lines = ['# root\t/nonexistent/imagenet\n']
    for w in wnids:
        lines += [f'train\ttrain/{w}/{w}_{i}.JPEG\t{w}\n' for i in range(per_class)]
    k = 0
    for w in wnids:
        for _ in range(val_per_class):
            k += 1
            lines.append(f'val\tval/ILSVRC2012_val_{k:08d}.JPEG\t{w}\n')
    with open(path, 'w') as f:
        f.write(''.join(lines))
    return len(lines) - 1


def time_paper(index, out):
    t = time.time()
    p = subprocess.run([sys.executable, os.path.join(HERE, 'subsets.py'), 'paper', '--index', index, '--out', out],
                       capture_output=True, text=True)
    wall = time.time() - t
    if p.returncode:
        sys.exit(f'subsets.py paper failed:\n{p.stdout}\n{p.stderr}')
    return wall, p.stdout


def time_scan(base, n_files, cold, per_folder=1000):
    """{'cold': s, 'warm': s} to scan_imagenet() a tree of n_files tiny 'JPEGs'; 'cold' (after dropping the
    page cache) only when asked and allowed."""
    root = os.path.join(base, 'tree')
    head = b'\xff\xd8\xff\xe0' + bytes(60)
    for k in range(n_files):
        d = os.path.join(root, 'train', f'n{k // per_folder:08d}')
        if k % per_folder == 0:
            os.makedirs(d)
        with open(os.path.join(d, f'{k}.JPEG'), 'wb') as f:
            f.write(head)
    out = {}
    for label in ('cold', 'warm'):
        if label == 'cold':
            if not cold:
                continue
            os.sync()
            try:  # needs root and a writable /proc/sys (not in most containers)
                with open('/proc/sys/vm/drop_caches', 'w') as f:
                    f.write('3\n')
            except OSError:
                continue
        t = time.time()
        rows = scan_imagenet(root)
        out[label] = time.time() - t
        assert len(rows) == n_files
    return out


def write_section(text):
    """Replace (or append) this benchmark's section of BENCHMARKS.md, leaving the others as they are. The file is
    read right before writing, since other benchmarks write their own sections."""
    path = os.path.join(HERE, 'BENCHMARKS.md')
    old = open(path).read() if os.path.exists(path) else '# Benchmarks\n'
    pattern = re.compile(r'^' + re.escape(SECTION) + r'\n.*?(?=^## |\Z)', re.S | re.M)
    text = text.rstrip('\n') + '\n'
    if pattern.search(old):
        new = pattern.sub(lambda m: text + '\n', old).rstrip('\n') + '\n'
    else:
        new = old.rstrip('\n') + '\n\n' + text
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(new)
    os.replace(tmp, path)
    return path


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--per-class', type=int, default=1280, help='train images per class (ImageNet: 732-1300, mean 1281)')
    p.add_argument('--val-per-class', type=int, default=50)
    p.add_argument('--scan-files', type=int, default=100000, help='files in the scan benchmark (0: skip)')
    p.add_argument('--cold', action='store_true',
                   help='also scan with a cold page cache: drops the cache of the whole machine (root only; slows '
                   'whatever else runs there for a moment)')
    p.add_argument('--no-write', action='store_true', help='print only; leave BENCHMARKS.md as it is')
    args = p.parse_args()
    base = tempfile.mkdtemp(prefix='bench-subsets-', dir=os.environ.get('TMPDIR'))
    try:
        index = os.path.join(base, 'index.tsv')
        t = time.time()
        n = synthetic_index(index, args.per_class, args.val_per_class)
        print(f'synthetic index: {n} rows in {time.time() - t:.1f}s')
        wall, log = time_paper(index, os.path.join(base, 'subsets'))
        print(log)
        made = os.path.join(base, 'subsets')
        n_subsets = sum(os.path.isdir(os.path.join(made, d)) for d in os.listdir(made))
        size = sum(os.path.getsize(os.path.join(dp, f)) for dp, _, fs in os.walk(made) for f in fs)
        print(f'subsets.py paper: {wall:.1f}s wall for {n_subsets} subsets ({size / 1e9:.2f} GB written)')
        scan = time_scan(base, args.scan_files, args.cold) if args.scan_files else {}
        for label, s in scan.items():
            print(f'scan ({label} cache): {s:.2f}s for {args.scan_files} files = {s * 1e5 / args.scan_files:.2f}s per 100K')
    finally:
        shutil.rmtree(base, ignore_errors=True)
    machine = (f'{os.cpu_count()} cores ({len(os.sched_getaffinity(0))} usable), '
               f'{platform.processor() or platform.machine()}, Python {platform.python_version()}')
    lines = [SECTION, '',
             f'`{" ".join(["bench/subsets.py", *sys.argv[1:]])}` on {time.strftime("%Y-%m-%d")}, {machine}.', '',
             '| what | input | result |', '| --- | --- | --- |',
             f'| `subsets.py paper` (every paper manifest, process start and WordNet load included) | synthetic index, '
             f'{n} rows (1000 classes x {args.per_class} train + {args.val_per_class} val) | {wall:.1f} s for {n_subsets} '
             f'subsets, {size / 1e9:.2f} GB of manifests (target < 60 s) |']
    for label, s in scan.items():
        lines.append(f'| `scan_imagenet` ({label} page cache) | {args.scan_files} tiny files, 1000 per folder | '
                     f'{s * 1e5 / args.scan_files:.2f} s per 100K files |')
    per_100k = scan.get('cold', scan.get('warm'))
    lines += ['', 'The scan reads each class folder\'s listing and the first 4 bytes of each file. '
              + (f'At the {"cold" if "cold" in scan else "warm"} rate above, ImageNet\'s 1.33M files take about '
                 f'{per_100k * 13.3 / 60:.1f} min on this disk; ' if per_100k else '')
              + 'a network file system or a spinning disk is slower, bound by I/O latency. It is done once per data '
              'set (`subsets.py index`); every `make` then reads the index only.', '']
    text = '\n'.join(lines)
    print(text)
    if not args.no_write:
        print('updated', write_section(text))


if __name__ == '__main__':
    main()
