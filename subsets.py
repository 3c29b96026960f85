"""ImageNet folder -> index -> subset manifests. Training reads manifests; it never rebuilds them.

    python subsets.py index --imagenet data/toy --out subsets/toy     # scan train/ and val/ once
    python subsets.py make full --index subsets/toy/index.tsv         # -> subsets/toy/full/{train,val}.txt ...

A subset directory holds `train.txt` and `val.txt` (`relative/path label`, paths relative to the image root),
`classes.tsv` (label, class wnid, name, leaf classes, images), `leaf_to_class.tsv` and `meta.json` (kind,
parameters, seed, counts, image root, sha256 of train.txt). The same inputs give byte-identical files.
"""
import argparse
import hashlib
import json
import os
import shutil
from collections import defaultdict

from datasets import ilsvrc_classes, read_tsv, scan_imagenet
from engine import UserError, run_main, write_atomic

KINDS = ('full',)


# ----------------------------------------------------------------------------------------------------------
# The index: one scan of the image folders, reused by every `make`


def write_index(root, out):
    rows = scan_imagenet(root)
    os.makedirs(out, exist_ok=True)
    path = os.path.join(out, 'index.tsv')
    # The root is recorded so that manifests made from this index know where their images live.
    text = f'# root\t{os.path.abspath(root)}\n' + ''.join(f'{s}\t{p}\t{w}\n' for s, p, w in rows)
    write_atomic(path, text)
    return path, rows


def read_index(path):
    """(root, [(split, relpath, wnid)])."""
    if not os.path.exists(path):
        raise UserError(f'index not found: {path} (make it with: python subsets.py index --imagenet ROOT --out DIR)')
    with open(path) as f:
        first = f.readline().rstrip('\n').split('\t')
    if first[0] != '# root' or len(first) != 2:
        raise UserError(f'{path} is not a subsets.py index (its first line should be "# root<TAB>PATH")')
    return first[1], [tuple(r) for r in read_tsv(path)]


# ----------------------------------------------------------------------------------------------------------
# Writing one subset


def write_subset(out, root, rows, leaf_to_class, kind, params, seed=None):
    """Write the manifests of the subset whose classes are given by `leaf_to_class` ({leaf wnid: class wnid};
    leaves not in it are dropped). Labels are class wnids in sorted order. Written to a temporary folder and
    renamed, so an interrupted `make` never leaves a half-written subset."""
    classes = sorted(set(leaf_to_class.values()))
    label = {c: i for i, c in enumerate(classes)}
    names = ilsvrc_classes()
    lines = {'train': [], 'val': []}
    counts = defaultdict(int)
    leaves = defaultdict(list)
    for leaf, c in sorted(leaf_to_class.items()):
        leaves[c].append(leaf)
    for split, path, wnid in rows:
        if wnid in leaf_to_class:
            c = leaf_to_class[wnid]
            lines[split].append(f'{path} {label[c]}\n')
            if split == 'train':
                counts[c] += 1
    tmp = out.rstrip('/') + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    train_txt = ''.join(lines['train'])
    for split in ('train', 'val'):
        with open(os.path.join(tmp, f'{split}.txt'), 'w') as f:
            f.write(''.join(lines[split]))
    with open(os.path.join(tmp, 'classes.tsv'), 'w') as f:
        f.write('label\twnid\tname\tleaves\timages\n')
        for c in classes:
            f.write(f'{label[c]}\t{c}\t{names.get(c, c)}\t{len(leaves[c])}\t{counts[c]}\n')
    with open(os.path.join(tmp, 'leaf_to_class.tsv'), 'w') as f:
        f.write(''.join(f'{leaf}\t{c}\n' for leaf, c in sorted(leaf_to_class.items())))
    meta = {'kind': kind, 'params': params, 'seed': seed, 'root': root, 'classes': len(classes),
            'leaves': len(leaf_to_class), 'train_images': len(lines['train']), 'val_images': len(lines['val']),
            'train_sha256': hashlib.sha256(train_txt.encode()).hexdigest()}
    with open(os.path.join(tmp, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write('\n')
    if os.path.exists(out):
        shutil.rmtree(out)
    os.replace(tmp, out)
    return meta


# ----------------------------------------------------------------------------------------------------------
# Command line


def get_args_parser():
    p = argparse.ArgumentParser(description='Build the index and the subset manifests.')
    sub = p.add_subparsers(dest='cmd', required=True)
    i = sub.add_parser('index', help='scan ROOT/train and ROOT/val once and write DIR/index.tsv')
    i.add_argument('--imagenet', required=True, help='image root holding train/ and val/')
    i.add_argument('--out', default='subsets', help='folder for index.tsv (and, by default, the subsets)')
    m = sub.add_parser('make', help='write one subset from an index')
    m.add_argument('kind', choices=KINDS)
    m.add_argument('--index', default='subsets/index.tsv')
    m.add_argument('--out', default=None, help='subset folder (default: <index folder>/<kind>)')
    return p


def main(args):
    if args.cmd == 'index':
        path, rows = write_index(args.imagenet, args.out)
        n_train = sum(r[0] == 'train' for r in rows)
        print(f'indexed {n_train} train + {len(rows) - n_train} val images of {len({r[2] for r in rows})} classes -> {path}')
    elif args.cmd == 'make':
        root, rows = read_index(args.index)
        out = args.out or os.path.join(os.path.dirname(args.index), args.kind)
        leaf_to_class = {w: w for _, _, w in rows}  # 'full': every class of the index, as it is
        meta = write_subset(out, root, rows, leaf_to_class, args.kind, {})
        print(f'{out}: {meta["classes"]} classes, {meta["train_images"]} train / {meta["val_images"]} val images')


if __name__ == '__main__':
    run_main(main, get_args_parser().parse_args())
