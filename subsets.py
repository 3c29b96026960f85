"""ImageNet folder -> index -> subset manifests: every pre-training set of Huh, Agrawal & Efros 2016.
Training reads manifests; it never rebuilds them.

    python subsets.py index --imagenet data/toy --out subsets/toy          # scan train/ and val/ once
    python subsets.py make full --index subsets/toy/index.tsv              # -> subsets/toy/full/
    python subsets.py make taxonomy --method bottom-up --num-classes 9 --index subsets/toy/index.tsv
    python subsets.py taxonomies                                           # every WordNet taxonomy and its size
    python subsets.py index --imagenet /data/imagenet && python subsets.py paper --out subsets/
                                                                           # every manifest the paper trains on

The kinds of `make` (each also takes --per-class N, --seed, --if-short, --index, --out):
    full                                     every class of the index
    classes --num-classes K                  K classes of the index drawn uniformly (paper Table 2)
    taxonomy --method bottom-up|top-down --num-classes K   coarser WordNet classes (paper Fig. 2, Table 1)
    pascal-removed [--rule authors|wordnet]  ImageNet without the PASCAL classes (paper Table 3)
    split --split minimal|random --side A|B  half of the classes (paper Figs. 7, 9)
    list --file FILE                         your own wnids, one a line, or `leaf<TAB>class` to relabel
`make full --per-class N` draws N images of every class (paper Fig. 1).

A subset directory holds `train.txt` and `val.txt` (`relative/path label`, paths relative to the image root),
`classes.tsv` (label, class wnid, name, leaf classes, images), `leaf_to_class.tsv` and `meta.json` (kind,
parameters, seed, counts, warnings, image root, sha256 of train.txt). The same inputs give byte-identical files.

Classes vs the index: the WordNet kinds (taxonomy, pascal-removed, split) are defined on the 1000 ILSVRC-2012
classes, as in the paper; a subset keeps the leaves the index holds, so a toy index of 20 classes gets the
coarse classes those 20 fall into. Both the leaves missing from the index and the index classes outside the
definition are counted in meta.json and printed as a warning, never dropped silently.
"""
import argparse
import functools
import hashlib
import json
import os
import random
import re
import shutil
import sys
import time
import warnings
from collections import defaultdict

from datasets import ilsvrc_classes, read_tsv, safe_relpath, scan_imagenet, scan_lists
from engine import UserError, ranged, read_json, run_main, write_atomic

HERE = os.path.dirname(os.path.abspath(__file__))
KINDS = ('full', 'classes', 'taxonomy', 'pascal-removed', 'split', 'list')
METHODS = ('bottom-up', 'top-down')
WNID = re.compile(r'^n\d{8}$')
# an index's class: an ILSVRC wnid, or any data set's class name (a folder name, Places' 'a/airfield')
CLASS = re.compile(r'^[^\s]+$')


# ----------------------------------------------------------------------------------------------------------
# The index: one scan of the image folders, reused by every `make`


def write_index(root, out, lists=None):
    """ROOT's images as OUT/index.tsv: ILSVRC's layout or any class folders (scan_imagenet), or official list files
    (lists: (train list, its image folder, val list, its image folder), datasets.scan_lists)."""
    rows = scan_lists(root, *lists) if lists else scan_imagenet(root)
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
    rows = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            if line.startswith('#') or not line.strip():
                continue
            r = tuple(line.rstrip('\n').split('\t'))
            # An index may have been edited or come from elsewhere: every row must be a real one.
            if len(r) != 3 or r[0] not in ('train', 'val') or not CLASS.match(r[2]):
                raise UserError(f'{path}:{i}: expected "train|val<TAB>relative/path<TAB>class", got {line.strip()[:80]!r}')
            safe_relpath(r[1], f'{path}:{i}')
            rows.append(r)
    return first[1], rows


def read_exclude(index, root, old_scan=False):
    """(path, {relpath: reason}) of the exclude list beside the index that `python data_dali.py scan` writes: the
    files DALI cannot decode. The dict is None when there is none. One older than the index (re-indexed since the
    scan) has not seen the index's new files: refused unless old_scan."""
    path = os.path.join(os.path.dirname(os.path.abspath(index)), 'exclude.txt')
    if not os.path.exists(path):
        return path, None
    if not old_scan and os.path.getmtime(path) < os.path.getmtime(index):
        raise UserError(f'{path} is older than {index}: files indexed since the data scan are unchecked; scan again '
                        f'(python data_dali.py scan {os.path.dirname(path)}: it decodes only the new files) or pass '
                        f'--old-scan to use it as it is')
    with open(path) as f:
        head = [line.rstrip('\n') for line in f if line.startswith('#')]
    if f'# root\t{root}' not in head:
        raise UserError(f'{path} is not an exclude list of the image root {root} of {index}; scan it again: '
                        f'python data_dali.py scan {os.path.dirname(path)}')
    if any(line.startswith('# stopped') for line in head):
        print(f'warning: {path}: the data scan was stopped before its end, so files it did not reach may be broken; '
              f'the same scan command finishes it', file=sys.stderr)
    return path, {r[0]: r[-1] for r in read_tsv(path)}


def load_index(index, old_scan=False):
    """(root, group() of the index, {wnid: files left out} or None) for every `make`: the index less the files the
    data scan excluded. DALI stops the whole pipeline on a file it cannot decode, and cannot skip one (issue 8);
    leaving them out here, once and before any draw, keeps them out of every subset and every draw."""
    root, rows = read_index(index)
    path, excluded = read_exclude(index, root, old_scan)
    if excluded is None:
        print(f'note: no data scan beside the index ({path} is missing), so a file DALI cannot decode would stop '
              f'training; to find such files: python data_dali.py scan {os.path.dirname(os.path.abspath(index))}')
        return root, group(rows), None
    left_out = defaultdict(int)
    for _, relpath, wnid in rows:
        if relpath in excluded:
            left_out[wnid] += 1
    print(f'left out {sum(left_out.values())} files of the index that the data scan excluded ({path})')
    return root, group([r for r in rows if r[1] not in excluded]), dict(left_out)


def group(rows):
    """{'train': {wnid: [relpath, ...]}, 'val': {...}} with each list in index (sorted) order. Every `make`
    works on this; a draw of N images per class is the same dict with shorter train lists."""
    g = {'train': defaultdict(list), 'val': defaultdict(list)}
    for split, path, wnid in rows:
        g[split][wnid].append(path)
    return {split: dict(d) for split, d in g.items()}


# ----------------------------------------------------------------------------------------------------------
# WordNet 3.0 and the paper's tree


NLTK_DATA = os.path.join(HERE, '.venv', 'nltk_data')  # where setup_wordnet.py puts it
ENTITY = 'n00001740'  # entity.n.01, the root of the noun hierarchy
ARTIFACT = 'n00021939'  # artifact.n.01: the minimal split's side A (paper §6)


@functools.cache
def wordnet():
    """nltk's WordNet reader, loaded once (about 3 s). NLTK >= 3.10 opens files only under its data roots, so
    the project's folder is added to them."""
    import nltk
    for d in (NLTK_DATA, os.path.join(sys.prefix, 'nltk_data')):
        if d not in nltk.data.path:
            nltk.data.path.append(d)
    from nltk.corpus import wordnet as wn
    try:
        wn.ensure_loaded()
    except LookupError:
        raise UserError('WordNet 3.0 is not installed for nltk; run: python setup_wordnet.py') from None
    if wn.get_version() != '3.0':
        # ImageNet wnids are WordNet 3.0 noun offsets; another version maps them to other synsets.
        raise UserError(f'nltk found WordNet {wn.get_version()}; ImageNet wnids need 3.0 (run: python setup_wordnet.py)')
    return wn


def synset(wnid):
    if not WNID.match(wnid):
        raise UserError(f'unknown wnid {wnid!r}: expected n + 8 digits, e.g. n01440764')
    wn = wordnet()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter('ignore')  # nltk 3.10 warns and returns None for an unknown offset
            s = wn.synset_from_pos_and_offset('n', int(wnid[1:]))
    except Exception:  # older nltk raises WordNetError or ValueError
        s = None
    if s is None:
        raise UserError(f'unknown wnid {wnid}: not a WordNet 3.0 noun')
    return s


def wnid_of(s):
    return f'n{s.offset():08d}'


def parent(s):
    """The paper's parent of a synset: its first hypernym when hypernyms are ordered by synset name. NLTK <= 3.2
    returned hypernyms in that order and the authors' label sets were made with it. Today's NLTK (3.10) keeps a
    synset's pointers in a set, so hypernyms() comes in an order that changes with PYTHONHASHSEED; taking its
    first element would give other, and unstable, taxonomies. Instance hypernyms are not followed: no ILSVRC
    class is an instance."""
    hypernyms = s.hypernyms()
    return min(hypernyms, key=lambda h: h.name()) if hypernyms else None


@functools.cache
def chain(wnid):
    """(wnid, its parent, ..., entity) in the paper's tree. A class's depth is len(chain) - 1."""
    out, s = [wnid], parent(synset(wnid))
    while s is not None:
        out.append(wnid_of(s))
        s = parent(s)
    if out[-1] != ENTITY:
        raise UserError(f'{wnid} does not reach entity.n.01 in WordNet; it cannot be placed in the tree')
    return tuple(out)


def depth(wnid):
    return len(chain(wnid)) - 1


def ancestor_at(wnid, d):
    """The ancestor of `wnid` at depth d (itself when its depth is d); None when it is shallower."""
    c = chain(wnid)
    return c[len(c) - 1 - d] if d < len(c) else None


@functools.cache
def class_name(wnid):
    """ILSVRC's name for its 1000 classes, WordNet's lemmas for any other synset; a non-wnid label as it is."""
    names = ilsvrc_classes()
    if wnid in names:
        return names[wnid]
    if not WNID.match(wnid):
        return wnid
    return ', '.join(n.replace('_', ' ') for n in synset(wnid).lemma_names())


def ilsvrc_leaves():
    return tuple(sorted(ilsvrc_classes()))


# ----------------------------------------------------------------------------------------------------------
# Taxonomies (paper §5.1 Fig. 2, Table 1): coarser labels for the same images


@functools.cache
def taxonomies(method, leaves=None):
    """Every taxonomy a method makes, finest first: a tuple of {leaf: class}. Leaves default to the ILSVRC 1000.

    bottom-up: repeat: replace every class whose depth is the current maximum by its parent; record the
      classes after each step (1000 -> 999, 977, ..., 2, 1: 18 taxonomies).
    top-down: up to 3 times: replace every class by its parent, then merge each class that lies below another
      current class into it (-> 127, 10, 2)."""
    leaves = leaves or ilsvrc_leaves()
    # A class is always on its leaves' chains, so a taxonomy is one position on each leaf's chain.
    chains = {w: chain(w) for w in leaves}
    pos = dict.fromkeys(leaves, 0)
    out = []
    if method == 'bottom-up':
        while True:
            # depth of leaf w's class = len(chain) - 1 - pos
            deepest = max(len(chains[w]) - 1 - pos[w] for w in leaves)
            if deepest == 0:
                break
            for w in leaves:
                if len(chains[w]) - 1 - pos[w] == deepest:
                    pos[w] += 1
            out.append({w: chains[w][pos[w]] for w in leaves})
    elif method == 'top-down':
        for _ in range(3):
            if len({chains[w][pos[w]] for w in leaves}) == 1:
                break
            for w in leaves:
                pos[w] = min(pos[w] + 1, len(chains[w]) - 1)
            current = {chains[w][pos[w]] for w in leaves}
            for w in leaves:
                # the highest current class on the chain above this leaf's class absorbs it
                pos[w] = max(i for i in range(pos[w], len(chains[w])) if chains[w][i] in current)
            out.append({w: chains[w][pos[w]] for w in leaves})
    else:
        raise UserError(f'unknown taxonomy method {method!r}; choose from {", ".join(METHODS)}')
    return tuple(out)


def taxonomy_sizes(method, leaves=None):
    return [len(set(t.values())) for t in taxonomies(method, leaves)]


def taxonomy(method, num_classes, leaves=None):
    """{leaf wnid: class wnid} of the `method` taxonomy with `num_classes` classes, e.g. ('bottom-up', 918).
    Were two steps ever to give the same size, the finer one is taken."""
    sizes = taxonomy_sizes(method, leaves)
    if num_classes not in sizes:
        raise UserError(f'no {method} taxonomy has {num_classes} classes; the sizes are {", ".join(map(str, sizes))}')
    return dict(taxonomies(method, leaves)[sizes.index(num_classes)])


# ----------------------------------------------------------------------------------------------------------
# Splits (paper §6, Figs. 7 and 9)


def minimal_split(leaves=None):
    """(A, B): the classes grouped by their ancestor at depth 4 of the tree; A is the artifact.n.01 group
    (522 of the 1000), B everything else (478). Checked: no ancestor at depth >= 4 is shared across sides."""
    leaves = leaves or ilsvrc_leaves()
    a = sorted(w for w in leaves if ancestor_at(w, 4) == ARTIFACT)
    b = sorted(set(leaves) - set(a))
    check_split(a, b)
    return a, b


def check_split(a, b, min_depth=4):
    """Raise if a class of `a` and a class of `b` share an ancestor at depth >= min_depth (in the paper's tree)."""
    if set(a) & set(b):
        raise UserError(f'split sides overlap: {sorted(set(a) & set(b))[:5]}')
    deep_a = {x for w in a for x in chain(w)[:depth(w) - min_depth + 1]}
    shared = sorted(x for w in b for x in chain(w)[:depth(w) - min_depth + 1] if x in deep_a)
    if shared:
        raise UserError(f'split sides share ancestors at depth >= {min_depth}: {", ".join(shared[:5])}')


def random_split(seed=0, leaves=None):
    """(A, B): the classes shuffled with `seed`, A the first as many as the minimal split's A (522)."""
    leaves = sorted(leaves or ilsvrc_leaves())
    n_a = len(minimal_split(tuple(leaves))[0])
    order = list(leaves)
    random.Random(f'split:{seed}').shuffle(order)
    return sorted(order[:n_a]), sorted(order[n_a:])


# ----------------------------------------------------------------------------------------------------------
# PASCAL-removed ImageNet (paper §5.6, Table 3)

# One WordNet 3.0 synset for each of the 20 PASCAL VOC classes: the synset whose subtree the class covers.
PASCAL_SYNSETS = {
    'aeroplane': 'airplane.n.01', 'bicycle': 'bicycle.n.01', 'bird': 'bird.n.01', 'boat': 'boat.n.01',
    'bottle': 'bottle.n.01', 'bus': 'bus.n.01', 'car': 'car.n.01', 'cat': 'cat.n.01', 'chair': 'chair.n.01',
    'cow': 'cattle.n.01', 'diningtable': 'dining_table.n.01', 'dog': 'dog.n.01', 'horse': 'horse.n.01',
    'motorbike': 'motorcycle.n.01', 'person': 'person.n.01', 'pottedplant': 'pot_plant.n.01',
    'sheep': 'sheep.n.01', 'sofa': 'sofa.n.01', 'train': 'train.n.01', 'tvmonitor': 'television_receiver.n.01',
}


def pascal_removed(rule='authors', leaves=None):
    """{removed ILSVRC wnid: PASCAL class}. 'authors': the 229 classes the paper's authors listed
    (meta/pascal_removed_classes.tsv; 771 kept). 'wordnet': every class under one of PASCAL_SYNSETS by any
    hypernym path (for WordNet 3.0 the paper's tree gives the same set)."""
    leaves = leaves or ilsvrc_leaves()
    if rule == 'authors':
        rows = read_tsv(os.path.join(HERE, 'meta', 'pascal_removed_classes.tsv'))
        return {r[0]: r[1] for r in rows if r[0] in set(leaves)}
    if rule != 'wordnet':
        raise UserError(f'unknown PASCAL rule {rule!r}; choose authors or wordnet')
    wn = wordnet()
    roots = {wn.synset(name): cls for cls, name in PASCAL_SYNSETS.items()}
    out = {}
    for w in leaves:
        s = synset(w)
        above = {s} | set(s.closure(lambda x: x.hypernyms() + x.instance_hypernyms()))
        hit = sorted(roots[r] for r in above if r in roots)
        if hit:
            out[w] = ','.join(hit)
    return out


def pascal_difference():
    """How the WordNet rule differs from the authors' list: {'only_wordnet': {...}, 'only_authors': {...}}."""
    a, w = pascal_removed('authors'), pascal_removed('wordnet')
    return {'only_wordnet': {k: f'{class_name(k)} ({w[k]})' for k in sorted(set(w) - set(a))},
            'only_authors': {k: f'{class_name(k)} ({a[k]})' for k in sorted(set(a) - set(w))}}


# ----------------------------------------------------------------------------------------------------------
# Class lists from a file (for forks and new ablations)


def read_class_list(path):
    """{leaf: class} from a file of `wnid` lines (each its own class) or `leaf<TAB>class` lines (a many-to-one
    relabelling; a class may be a wnid or any label without spaces). '#' starts a comment."""
    if not os.path.isfile(path):
        raise UserError(f'class list not found: {path}')
    out = {}
    for i, line in enumerate(open(path), 1):
        line = line.split('#', 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 2:
            raise UserError(f'{path}:{i}: expected "wnid" or "wnid<TAB>class", got {line[:80]!r}')
        leaf, cls = parts[0], parts[-1]
        if not WNID.match(leaf):
            raise UserError(f'{path}:{i}: unknown wnid {leaf!r} (expected n + 8 digits, e.g. n01440764)')
        if leaf in out:
            raise UserError(f'{path}:{i}: {leaf} is listed twice')
        out[leaf] = cls
    if not out:
        raise UserError(f'{path} lists no classes')
    return out


# ----------------------------------------------------------------------------------------------------------
# Drawing images and classes (paper §4 Fig. 1, §5.5 Table 2)


def shuffled(paths, seed, wnid):
    """The images of one class in a seeded random order. Each class has its own stream, keyed by seed and wnid,
    so that a class gets the same images whichever other classes a subset holds, and taking the first N makes
    the draws nested: the 50 images of a class are among its 125, its 250, ... (less noise between the points
    of one curve). random.Random(str) and shuffle are stable across Python 3 versions."""
    order = list(paths)
    random.Random(f'images:{seed}:{wnid}').shuffle(order)
    return order


def draw_images(train, n, seed=0, if_short='error', orders=None):
    """({wnid: the first n of its shuffled images, in index order}, {wnid: images it holds when fewer than n}).
    if_short: 'error' stops at a class with fewer than n images; 'all' takes all of them (the caller warns)."""
    out, short = {}, {}
    for w in sorted(train):
        paths = train[w]
        if len(paths) < n:
            if if_short == 'error':
                raise UserError(f'class {w} has {len(paths)} training images, fewer than --per-class {n} '
                                f'(pass --if-short all to take all images of such classes)')
            short[w] = len(paths)
        order = orders[w] if orders is not None else shuffled(paths, seed, w)
        rank = {p: i for i, p in enumerate(paths)}
        out[w] = sorted(order[:n], key=rank.__getitem__)
    return out, short


def draw_classes(classes, k, seed=0):
    """k of `classes` drawn uniformly with `seed`, sorted. Nested like the images: the 125 are among the 250."""
    classes = sorted(classes)
    if k > len(classes):
        raise UserError(f'--num-classes {k} is more than the {len(classes)} classes of the index')
    if k < 1:
        raise UserError(f'--num-classes must be >= 1, got {k}')
    order = list(classes)
    random.Random(f'classes:{seed}').shuffle(order)
    return sorted(order[:k])


# ----------------------------------------------------------------------------------------------------------
# Writing one subset


def write_subset(out, root, rows, leaf_to_class, kind, params, seed=None, names=None, extra=None):
    """Write the manifests of the subset whose classes are given by `leaf_to_class` ({leaf wnid: class wnid};
    leaves not in it are dropped). `rows` is the index ([(split, relpath, wnid)]) or its `group()`, whose
    train lists may be drawn down. Labels are class wnids in sorted order; lines are in index order. Written
    to a temporary folder and renamed, so an interrupted `make` never leaves a half-written subset."""
    g = group(rows) if isinstance(rows, list) else rows
    names = names or class_name
    classes = sorted(set(leaf_to_class.values()))
    label = {c: i for i, c in enumerate(classes)}
    counts = defaultdict(int)
    leaves = defaultdict(list)
    for leaf, c in sorted(leaf_to_class.items()):
        leaves[c].append(leaf)
    text = {}
    for split in ('train', 'val'):
        parts = []
        for leaf in sorted(leaf_to_class):
            paths = g[split].get(leaf, ())
            if paths:
                end = f' {label[leaf_to_class[leaf]]}\n'
                parts.append(end.join(paths) + end)  # one C-level join per class: 1.28M lines in ~0.3 s
                if split == 'train':
                    counts[leaf_to_class[leaf]] += len(paths)
        text[split] = ''.join(parts)
    meta = {'kind': kind, 'params': params, 'seed': seed, 'root': root, 'classes': len(classes),
            'leaves': len(leaf_to_class), 'train_images': text['train'].count('\n'),
            'val_images': text['val'].count('\n'),
            'train_sha256': hashlib.sha256(text['train'].encode()).hexdigest(), **(extra or {})}
    old = os.path.join(out, 'meta.json')
    if os.path.exists(old):
        # Runs may have trained on it: another definition under its name is refused, never swapped in. The same
        # definition on a new index or scan (files excluded since) replaces it with a note; runs made on the old
        # manifests keep their sha256 and refuse to resume on the new ones (train.py's run identity).
        before, now = read_json(old, fix='delete the folder to make it again'), json.loads(json.dumps(meta))
        differ = [k for k in ('kind', 'params', 'seed', 'root') if before.get(k) != now.get(k)]
        if differ:
            raise UserError(f'{out} holds another subset ({differ[0]}: {before.get(differ[0])!r} there, '
                            f'{meta.get(differ[0])!r} now); pass another --out, or delete it to make it again')
        changed = [k for k in sorted(set(before) | set(now)) if before.get(k) != now.get(k)]
        if changed:
            print(f'note: {out} is made again from a changed index or scan ({", ".join(changed)} differ); '
                  f'runs trained on the old manifests will not resume on these')
    tmp = out.rstrip('/') + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for split in ('train', 'val'):
        with open(os.path.join(tmp, f'{split}.txt'), 'w') as f:
            f.write(text[split])
    with open(os.path.join(tmp, 'classes.tsv'), 'w') as f:
        f.write('label\twnid\tname\tleaves\timages\n')
        for c in classes:
            f.write(f'{label[c]}\t{c}\t{names(c)}\t{len(leaves[c])}\t{counts[c]}\n')
    with open(os.path.join(tmp, 'leaf_to_class.tsv'), 'w') as f:
        f.write(''.join(f'{leaf}\t{c}\n' for leaf, c in sorted(leaf_to_class.items())))
    with open(os.path.join(tmp, 'meta.json'), 'w') as f:
        json.dump(meta, f, indent=1, sort_keys=True)
        f.write('\n')
    if os.path.exists(out):
        shutil.rmtree(out)
    os.replace(tmp, out)
    return meta


# ----------------------------------------------------------------------------------------------------------
# One `make`: a definition of classes, restricted to the index, drawn down, written


def define(kind, args, index_leaves):
    """(leaf_to_class over the leaves the definition covers, params, extra meta, default folder name)."""
    if kind == 'full':
        return {w: w for w in index_leaves}, {}, {}, 'full'
    if kind == 'classes':
        picked = draw_classes(index_leaves, args.num_classes, args.seed)
        return {w: w for w in picked}, {'num_classes': args.num_classes}, {}, f'classes-{args.num_classes}'
    if kind == 'taxonomy':
        t = taxonomy(args.method, args.num_classes)
        return t, {'method': args.method, 'num_classes': args.num_classes}, {'wordnet': '3.0'}, \
            f'{args.method}-{args.num_classes}'
    if kind == 'pascal-removed':
        removed = pascal_removed(args.rule)
        kept = {w: w for w in ilsvrc_leaves() if w not in removed}
        extra = {'removed': len(removed), 'wordnet': '3.0',
                 'wordnet_rule_vs_authors': pascal_difference(), 'pascal_synsets': PASCAL_SYNSETS}
        return kept, {'rule': args.rule}, extra, 'pascal-removed' + ('-wordnet' if args.rule == 'wordnet' else '')
    if kind == 'split':
        a, b = minimal_split() if args.split == 'minimal' else random_split(args.seed)
        side = a if args.side == 'A' else b
        extra = {'wordnet': '3.0', 'sides': [len(a), len(b)]}
        return {w: w for w in side}, {'split': args.split, 'side': args.side}, extra, f'split-{args.split}-{args.side}'
    if kind == 'list':
        m = read_class_list(args.file)
        with open(args.file, 'rb') as f:
            sha = hashlib.sha256(f.read()).hexdigest()
        missing = sorted(set(m) - set(index_leaves))
        if missing:
            # A typo in a hand-written list should stop here, not quietly shrink the class set.
            raise UserError(f'{args.file}: {len(missing)} wnid(s) not in the index, e.g. {missing[0]} '
                            f'({"no images of it" if _is_noun(missing[0]) else "unknown wnid: not a WordNet 3.0 noun"})')
        name = 'list-' + os.path.splitext(os.path.basename(args.file))[0]
        return m, {'file': os.path.abspath(args.file), 'file_sha256': sha}, {}, name
    raise UserError(f'unknown kind {kind!r}')


def _is_noun(wnid):
    try:
        synset(wnid)
        return True
    except UserError:
        return False


def warn(msg, notes):
    print(f'warning: {msg}', file=sys.stderr)
    notes.append(msg)


def make(kind, args, root, g, out=None, orders=None, left_out=None):
    """Write one subset of the grouped index `g`; returns (folder, meta). left_out: {wnid: files the data scan
    excluded} (load_index), counted in meta.json for this subset's classes."""
    index_leaves = sorted(set(g['train']))
    leaf_to_class, params, extra, name = define(kind, args, index_leaves)
    notes = []
    missing = sorted(set(leaf_to_class) - set(index_leaves))
    if missing:
        n_cls = len(set(leaf_to_class.values()))
        leaf_to_class = {w: c for w, c in leaf_to_class.items() if w in g['train']}
        warn(f'the index lacks {len(missing)} of the {len(missing) + len(leaf_to_class)} classes this subset '
             f'is defined on; {len(set(leaf_to_class.values()))} of its {n_cls} classes remain', notes)
        extra['defined_classes'] = n_cls
        extra['missing_leaves'] = len(missing)
    if not leaf_to_class:
        raise UserError(f'no class of this subset is in the index ({len(index_leaves)} classes)')
    if kind in ('taxonomy', 'pascal-removed', 'split'):
        outside = sorted(set(index_leaves) - set(ilsvrc_leaves()))
        if outside:
            warn(f'{len(outside)} index classes are not ILSVRC-2012 classes, on which this subset is defined; '
                 f'they are left out', notes)
            extra['outside_definition'] = len(outside)
    seed = None
    if kind == 'classes' or (kind == 'split' and args.split == 'random'):
        seed = args.seed
    if args.per_class is not None:
        if args.per_class < 1:
            raise UserError(f'--per-class must be >= 1, got {args.per_class}')
        seed = args.seed
        train = {w: g['train'][w] for w in leaf_to_class}
        drawn, short = draw_images(train, args.per_class, args.seed, args.if_short, orders)
        if short:
            warn(f'{len(short)} classes have fewer than {args.per_class} training images; all of theirs are taken '
                 f'(--if-short all)', notes)
            extra['short_classes'] = short
        g = {'train': drawn, 'val': g['val']}
        params = {**params, 'per_class': args.per_class, 'if_short': args.if_short}
        name = f'images-{args.per_class}' if kind == 'full' else f'{name}x{args.per_class}'
    if seed:
        name += f'-seed{seed}'
    if left_out is not None:
        extra['excluded'] = sum(left_out.get(w, 0) for w in leaf_to_class)  # files of its classes, left out
    extra['warnings'] = notes
    out = out or os.path.join(os.path.dirname(os.path.abspath(args.index)), name)
    meta = write_subset(out, root, g, leaf_to_class, kind, params, seed, extra=extra)
    return out, meta


def summary(out, meta):
    text = f'{out}: {meta["classes"]} classes, {meta["train_images"]} train / {meta["val_images"]} val images'
    return text + (f' ({meta["excluded"]} files left out: exclude.txt)' if meta.get('excluded') else '')


# ----------------------------------------------------------------------------------------------------------
# Every manifest of the paper


def paper_plan():
    """[(folder, kind, options, what it is for)] of every subset the paper trains on."""
    plan = [('full', 'full', {}, 'ImageNet, all 1000 classes: the baseline of every table')]
    for n in (50, 125, 250, 500, 1000):
        why = 'Fig. 1 (images per class)' + ('; Table 2: 1000 classes x %d = %dK images' % (n, n) if n <= 500 else '')
        plan.append((f'images-{n}', 'full', {'per_class': n}, why))
    for k in (500, 250, 125):
        plan.append((f'classes-{k}x1000', 'classes', {'num_classes': k, 'per_class': 1000},
                     f'Table 2: {k} classes x 1000 images = {k}K images'))
    for k in (918, 753, 486, 79, 9):
        plan.append((f'bottom-up-{k}', 'taxonomy', {'method': 'bottom-up', 'num_classes': k}, 'Fig. 2 (coarser classes)'))
    plan.append(('top-down-127', 'taxonomy', {'method': 'top-down', 'num_classes': 127}, 'Table 1 (127 classes)'))
    plan.append(('pascal-removed', 'pascal-removed', {'rule': 'authors'}, 'Table 3: the authors\' 229 classes removed'))
    plan.append(('pascal-removed-wordnet', 'pascal-removed', {'rule': 'wordnet'}, 'Table 3, by the WordNet rule'))
    for split in ('random', 'minimal'):
        for side in 'AB':
            plan.append((f'split-{split}-{side}', 'split', {'split': split, 'side': side}, 'Figs. 7, 9 (splits)'))
    return plan


def write_paper(args):
    t0 = time.time()
    root, g, left_out = load_index(args.index, getattr(args, 'old_scan', False))
    missing = sorted(set(ilsvrc_leaves()) - set(g['train']))
    if missing:
        # Most of them could be made, but a draw of 500 classes from fewer, or a split missing half its side,
        # would not be the paper's; `make` makes any single subset of a partial index, with a warning.
        raise UserError(f'the paper\'s subsets are of the 1000 ILSVRC classes; the index lacks {len(missing)} '
                        f'(e.g. {missing[0]}); use `subsets.py make` for single subsets of this index')
    # Shuffle every class once: all draws of one seed share it (and are nested).
    orders = {w: shuffled(paths, args.seed, w) for w, paths in g['train'].items()}
    print(f'read {sum(len(p) for d in g.values() for p in d.values())} index rows in {time.time() - t0:.1f}s')
    written = []
    for folder, kind, opts, why in paper_plan():
        t = time.time()
        a = argparse.Namespace(**{'index': args.index, 'seed': args.seed, 'if_short': 'all', 'per_class': None, **opts})
        out, meta = make(kind, a, root, g, out=os.path.join(args.out, folder), orders=orders, left_out=left_out)
        written.append((folder, meta, why))
        print(f'{summary(out, meta)} ({time.time() - t:.1f}s)  {why}')
    print(f'wrote {len(written)} subsets to {args.out} in {time.time() - t0:.1f}s')
    return written


# ----------------------------------------------------------------------------------------------------------
# Command line


def get_args_parser():
    p = argparse.ArgumentParser(description='Build the index and the subset manifests of the paper.')
    sub = p.add_subparsers(dest='cmd', required=True)
    i = sub.add_parser('index', help='scan ROOT/train and ROOT/val once (or read list files) and write DIR/index.tsv')
    i.add_argument('--imagenet', '--root', dest='imagenet', required=True,
                   help='image root: ILSVRC-2012\'s train/ and val/, or any data set of class folders ROOT/train/<class>/ '
                        '(and ROOT/val/<class>/); with --train-list, the folder its paths are relative to')
    i.add_argument('--train-list', default=None,
                   help='an official list file, "<image> <label>" a line, e.g. Places365\'s places365_train_standard.txt')
    i.add_argument('--train-images', default=None, help='folder the --train-list paths start from (default: the list\'s folder)')
    i.add_argument('--val-list', default=None, help='its validation list, e.g. places365_val.txt (optional)')
    i.add_argument('--val-images', default=None, help='folder the --val-list paths start from (default: the list\'s folder)')
    i.add_argument('--out', default='subsets', help='folder for index.tsv (and, by default, the subsets)')

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument('--index', default='subsets/index.tsv')
    common.add_argument('--out', default=None, help='subset folder (default: <index folder>/<name of the subset>)')
    common.add_argument('--per-class', type=ranged(int, 1), default=None,
                        help='draw N training images of every ImageNet class (paper Fig. 1)')
    common.add_argument('--seed', type=ranged(int, 0), default=0, help='seed of every random draw (images, classes, random split)')
    common.add_argument('--old-scan', action='store_true',
                        help='use an exclude.txt older than the index (made before a re-index) as it is')
    common.add_argument('--if-short', default='error', choices=('error', 'all'),
                        help='a class with fewer than --per-class images: stop, or take all it has (recorded in meta.json)')
    m = sub.add_parser('make', help='write one subset from an index')
    kinds = m.add_subparsers(dest='kind', required=True, metavar='KIND')
    kinds.add_parser('full', parents=[common], help='every class of the index (with --per-class: paper Fig. 1)')
    k = kinds.add_parser('classes', parents=[common], help='K classes drawn uniformly (paper Table 2)')
    k.add_argument('--num-classes', type=ranged(int, 1), required=True)
    k = kinds.add_parser('taxonomy', parents=[common], help='coarser WordNet classes (paper Fig. 2, Table 1)')
    k.add_argument('--method', choices=METHODS, required=True)
    k.add_argument('--num-classes', type=ranged(int, 1), required=True, help='see: python subsets.py taxonomies')
    k = kinds.add_parser('pascal-removed', parents=[common], help='without the PASCAL classes (paper Table 3)')
    k.add_argument('--rule', choices=('authors', 'wordnet'), default='authors',
                   help="authors: the paper's list of 229 (771 kept); wordnet: subtrees of the 20 PASCAL synsets")
    k = kinds.add_parser('split', parents=[common], help='one side of a split of the classes (paper Figs. 7, 9)')
    k.add_argument('--split', choices=('minimal', 'random'), required=True)
    k.add_argument('--side', choices=('A', 'B'), required=True, help='minimal: A is artifact.n.01 (522), B the rest (478)')
    k = kinds.add_parser('list', parents=[common], help='classes from a file: wnids, or leaf<TAB>class to relabel')
    k.add_argument('--file', required=True)

    sub.add_parser('taxonomies', help='print every WordNet taxonomy and its size')
    pp = sub.add_parser('paper', help='write every subset the paper trains on')
    pp.add_argument('--index', default='subsets/index.tsv')
    pp.add_argument('--out', default=None, help='folder for the subsets (default: the index folder)')
    pp.add_argument('--seed', type=ranged(int, 0), default=0)
    pp.add_argument('--old-scan', action='store_true', help='use an exclude.txt older than the index as it is')
    return p


def print_taxonomies():
    paper = {('bottom-up', k) for k in (918, 753, 486, 79, 9)} | {('top-down', 127)}
    every = {method: taxonomies(method) for method in METHODS}  # before printing: WordNet may be missing
    print('method     classes  trained in the paper / classes')
    for method in METHODS:
        for t in every[method]:
            classes = sorted(set(t.values()))
            mark = '*' if (method, len(classes)) in paper else ' '
            shown = ' '.join(synset(c).name() for c in classes) if len(classes) <= 10 else ''
            print(f'{method:10} {len(classes):7} {mark} {shown}')


def main(args):
    if args.cmd == 'index':
        if (args.val_list or args.train_images or args.val_images) and not args.train_list:
            raise UserError('--val-list, --train-images and --val-images go with --train-list')
        lists = (args.train_list, args.train_images, args.val_list, args.val_images) if args.train_list else None
        path, rows = write_index(args.imagenet, args.out, lists)
        n_train = sum(r[0] == 'train' for r in rows)
        n_classes = len({r[2] for r in rows})
        print(f'indexed {n_train} train + {len(rows) - n_train} val images of {n_classes} classes -> {path}')
    elif args.cmd == 'make':
        root, g, left_out = load_index(args.index, getattr(args, 'old_scan', False))
        out, meta = make(args.kind, args, root, g, out=args.out, left_out=left_out)
        print(summary(out, meta))
    elif args.cmd == 'taxonomies':
        print_taxonomies()
    elif args.cmd == 'paper':
        args.out = args.out or os.path.dirname(os.path.abspath(args.index))
        write_paper(args)


if __name__ == '__main__':
    run_main(main, get_args_parser().parse_args())
