"""Readers of on-disk formats: the ILSVRC-2012 folders and val labels, the project's own manifests, SUN397
partitions, the PASCAL VOCdevkit (VOC 2007 detection, VOC 2012 action classification) and the official layouts of
Kornblith et al. 2019's twelve transfer data sets (read_transfer). Nothing here decodes images; CIFAR's pickled
arrays are written out once as PNGs (export_cifar), because the pipeline reads image files.

    from datasets import scan_imagenet
    rows = scan_imagenet('/data/imagenet')   # [(split, relative path, wnid)], sorted
"""
import json
import os
import pickle
import random
import re
import shutil
import sys
import xml.etree.ElementTree as ET
import xml.parsers.expat

import numpy as np
from PIL import Image
from tqdm import tqdm

from engine import UserError

HERE = os.path.dirname(os.path.abspath(__file__))
IMAGE_EXTS = ('.jpeg', '.jpg', '.png')  # ImageNet is .JPEG; a PNG hides among them (see meta/)
MAGIC = (b'\xff\xd8\xff', b'\x89PNG')  # JPEG SOI marker, PNG signature: what the decoders accept


def read_tsv(path, comment='#'):
    """Rows of a tab-separated file, skipping blank and comment lines."""
    with open(path) as f:
        return [line.rstrip('\n').split('\t') for line in f if line.strip() and not line.startswith(comment)]


def ilsvrc_classes():
    """{wnid: name} of the 1000 ILSVRC-2012 classes, in label order."""
    return {r[0]: r[1] for r in read_tsv(os.path.join(HERE, 'meta', 'ilsvrc2012_classes.tsv'))}


def _images_in(folder, odd):
    """Image files of one folder, sorted. Hidden files are ignored; anything else that is not an image is an error,
    because a stray file in a class folder usually means the wrong folder was given. Files whose first bytes are
    not a JPEG's or a PNG's (empty, text, GIF) are listed but appended to `odd`: the data scan
    (`python data_dali.py scan`) decides which of them DALI cannot decode, and subsets.py leaves those out."""
    names = []
    for name in sorted(os.listdir(folder)):
        if name.startswith('.'):
            continue
        path = os.path.join(folder, name)
        if not name.lower().endswith(IMAGE_EXTS):
            raise UserError(f'not an image file: {path} (expected {"/".join(IMAGE_EXTS)})')
        with open(path, 'rb') as f:
            head = f.read(4)
        if not head.startswith(MAGIC):
            odd.append(path + (' (empty file)' if not head else ''))
        names.append(name)
    return names


def _class_folders(split_dir, odd):
    rows = []
    for wnid in sorted(os.listdir(split_dir)):
        d = os.path.join(split_dir, wnid)
        if wnid.startswith('.') or not os.path.isdir(d):
            continue
        names = _images_in(d, odd)
        if not names:
            raise UserError(f'empty class folder: {d}')
        rows += [(f'{os.path.basename(split_dir)}/{wnid}/{n}', wnid) for n in names]
    return rows


def scan_imagenet(root):
    """[(split, relpath, wnid)] for ROOT/train/<wnid>/* and ROOT/val.

    val/ may hold class folders (the common re-arranged layout) or the 50,000 files of the official flat
    folder, which are labelled from meta/ilsvrc2012_val_labels.tsv."""
    train = os.path.join(root, 'train')
    if not os.path.isdir(root):
        raise UserError(f'image root not found: {root}')
    if not os.path.isdir(train):
        raise UserError(f'no train/ folder in {root} (expected {root}/train/<wnid>/*.JPEG)')
    odd = []
    rows = [('train', p, w) for p, w in _class_folders(train, odd)]
    if not rows:
        raise UserError(f'no class folders in {train}')
    val = os.path.join(root, 'val')
    if os.path.isdir(val):
        entries = [e for e in os.listdir(val) if not e.startswith('.')]
        if any(os.path.isdir(os.path.join(val, e)) for e in entries):
            rows += [('val', p, w) for p, w in _class_folders(val, odd)]
        else:
            labels = dict(read_tsv(os.path.join(HERE, 'meta', 'ilsvrc2012_val_labels.tsv')))
            for name in _images_in(val, odd):
                if name not in labels:
                    raise UserError(f'{os.path.join(val, name)} is not an ILSVRC-2012 val file; a flat val/ must hold the official files')
                rows.append(('val', f'val/{name}', labels[name]))
    if odd:
        # A warning, not an error: one empty file must not stop the index of 1.28M, and a BMP named .jpg decodes.
        print(f'warning: {len(odd)} files do not begin as a JPEG or PNG does, e.g. {odd[0]}; '
              f'`python data_dali.py scan` finds those DALI cannot decode, and subsets.py then leaves them out',
              file=sys.stderr)
    return rows


def scan_lists(root, train_list, train_images, val_list=None, val_images=None):
    """[(split, relpath, class)] from official list files, `<image path> <label>` a line, as Places205
    (`trainvalsplit_places205/train_places205.csv`: `a/abbey/00000001.jpg 0`) and Places365
    (`places365_train_standard.txt`: `/a/airfield/00000001.jpg 0`, whose images are under data_256/) ship them.
    An image path is relative to `*_images` (default: the list's folder). A training image's class is its folder
    ('a/airfield'); a val list may be flat (`Places365_val_00000001.jpg 0`) and takes its classes from the
    training list's labels. relpaths are relative to ROOT. Every listed image must exist."""
    if not os.path.isdir(root):
        raise UserError(f'image root not found: {root}')
    names, rows = {}, []
    for split, path, images in (('train', train_list, train_images), ('val', val_list, val_images)):
        if path is None:
            continue
        images = images or os.path.dirname(os.path.abspath(path))
        try:
            with open(path) as f:
                lines = f.read().splitlines()
        except OSError as e:
            raise UserError(f'cannot read the list file {path}: {e.strerror}') from None
        for i, line in enumerate(lines, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].isdigit():
                raise UserError(f'{path}:{i}: expected "<image path> <integer label>", got {line.strip()[:80]!r}')
            rel, label = parts[0].lstrip('/'), int(parts[1])
            full = os.path.join(images, rel)
            if not rel.lower().endswith(IMAGE_EXTS) or not os.path.isfile(full):
                raise UserError(f'{path}:{i}: image not found: {full}')
            if split == 'train':
                cls = os.path.dirname(rel)
                if not cls:
                    raise UserError(f'{path}:{i}: {rel} is in no class folder; a training list names <class>/<image>')
                if names.setdefault(label, cls) != cls:
                    raise UserError(f'{path}:{i}: label {label} is {cls!r} here and {names[label]!r} before')
            elif label not in names:
                raise UserError(f'{path}:{i}: label {label} is not in the training list {train_list}')
            rows.append((split, safe_relpath(os.path.relpath(full, root), f'{path}:{i}'), names[label]))
    if not rows:
        raise UserError(f'{train_list} lists no image')
    return rows


def safe_relpath(rel, where):
    """`rel` if it stays inside its data root; a UserError naming `where` (file:line) otherwise. A manifest or
    partition file may come from someone else: '..' or an absolute path must not reach outside the root."""
    if os.path.isabs(rel) or '..' in rel.replace('\\', '/').split('/') or '\0' in rel or not rel:
        raise UserError(f'{where}: path {rel[:80]!r} would leave the data root (absolute, empty or with "..")')
    return rel


def read_manifest(path):
    """[(relpath, label)] of a manifest (`relative/path label` per line)."""
    rows = []
    with open(path) as f:
        for i, line in enumerate(f, 1):
            parts = line.rstrip('\n').rsplit(' ', 1)
            if len(parts) != 2 or not parts[1].isdigit():
                raise UserError(f'{path}:{i}: expected "relative/path label", got {line.strip()[:80]!r}')
            rows.append((safe_relpath(parts[0], f'{path}:{i}'), int(parts[1])))
    return rows


def write_manifest(path, rows):
    with open(path, 'w') as f:
        f.write(''.join(f'{p} {label}\n' for p, label in rows))


# ----------------------------------------------------------------------------------------------------------
# SUN397 (Xiao et al. 2010): ROOT/<letter>/<category>/*.jpg, ClassName.txt, Partitions/{Training,Testing}_NN.txt


def read_sun397(root, split):
    """(categories, train rows, test rows) of one of SUN397's 10 official splits. Rows are (relpath, label),
    with labels in ClassName.txt order. Every listed file must exist: a partition naming a missing file or
    category is an error that names the partition file and line."""
    names = os.path.join(root, 'ClassName.txt')
    if not os.path.isfile(names):
        raise UserError(f'{names} not found (expected the SUN397 release: ROOT/ClassName.txt, ROOT/Partitions/, ROOT/a/abbey/...)')
    with open(names) as f:
        cats = [line.strip() for line in f if line.strip()]
    label = {c: i for i, c in enumerate(cats)}
    out = []
    for kind in ('Training', 'Testing'):
        path = os.path.join(root, 'Partitions', f'{kind}_{split:02d}.txt')
        if not os.path.isfile(path):
            raise UserError(f'split file not found: {path} (SUN397 has splits 1-10)')
        rows = []
        with open(path) as f:
            lines = f.read().splitlines()
        for i, line in enumerate(lines, 1):
            line = line.strip()
            if not line:
                continue
            rel = safe_relpath(line.lstrip('/'), f'{path}:{i}')  # partitions list paths as /a/abbey/sun_x.jpg
            cat = '/' + os.path.dirname(rel)
            if cat not in label:
                raise UserError(f'{path}:{i}: category {cat} is not in {names}')
            if not os.path.isfile(os.path.join(root, rel)):
                raise UserError(f'{path}:{i}: image not found: {os.path.join(root, rel)}')
            rows.append((rel, label[cat]))
        if not rows:
            raise UserError(f'{path} lists no images')
        out.append(rows)
    return cats, out[0], out[1]


# ----------------------------------------------------------------------------------------------------------
# PASCAL VOC annotations (VOCdevkit: VOC2007/Annotations/*.xml; VOC2012 action annotations add <actions>)

VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow', 'diningtable',
               'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')
# VOC 2012 action classes (devkit doc §2.3); people doing none of them are labelled 'other', which is never scored.
VOC_ACTIONS = ('jumping', 'phoning', 'playinginstrument', 'reading', 'ridingbike', 'ridinghorse', 'running',
               'takingphoto', 'usingcomputer', 'walking')


def parse_xml(path):
    """The root element of an XML file, parsed with expat directly so that no DTD is accepted: with no DTD
    there are no entity declarations to expand ("billion laughs") and no external entities to fetch.
    VOC annotations never have one."""
    def refuse(*_):
        raise UserError(f'{path}: XML with a DTD or entity declarations is refused (entities are never expanded)')
    builder = ET.TreeBuilder()
    parser = xml.parsers.expat.ParserCreate()
    parser.StartDoctypeDeclHandler = refuse
    parser.EntityDeclHandler = refuse
    parser.ExternalEntityRefHandler = refuse
    parser.StartElementHandler = builder.start
    parser.EndElementHandler = builder.end
    parser.CharacterDataHandler = builder.data
    try:
        with open(path, 'rb') as f:
            parser.ParseFile(f)
        return builder.close()
    except xml.parsers.expat.ExpatError as e:
        raise UserError(f'{path}: not well-formed XML ({e})') from None
    except AssertionError:  # TreeBuilder.close() on a document with no element
        raise UserError(f'{path}: no XML element') from None


def read_voc_annotation(path):
    """{'filename', 'size': (width, height), 'objects': [{'name', 'bbox': (xmin, ymin, xmax, ymax), 'difficult',
    'truncated', 'actions': {action: 0 or 1} (VOC 2012 action sets only)}]}. Boxes are VOC's 1-based pixel
    coordinates, as written."""
    root = parse_xml(path)

    def field(el, name, convert=str, default=None):
        found = el.find(name)
        if found is None or found.text is None:
            if default is not None:
                return default
            raise UserError(f'{path}: <{el.tag}> has no <{name}>')
        try:
            return convert(found.text.strip())
        except (ValueError, OverflowError):  # int(float('inf')) is an OverflowError
            raise UserError(f'{path}: <{name}> holds {found.text.strip()[:40]!r}, not a number') from None

    def number(text):
        return int(float(text))  # some VOC boxes are written as decimals
    if root.tag != 'annotation':
        raise UserError(f'{path}: the root element is <{root.tag}>, not <annotation>')
    size = root.find('size')
    out = {'filename': field(root, 'filename'),
           'size': (field(size, 'width', number), field(size, 'height', number)) if size is not None else None,
           'objects': []}
    for obj in root.findall('object'):
        box = obj.find('bndbox')
        if box is None:
            raise UserError(f'{path}: an <object> has no <bndbox>')
        o = {'name': field(obj, 'name'), 'bbox': tuple(field(box, k, number) for k in ('xmin', 'ymin', 'xmax', 'ymax')),
             'difficult': field(obj, 'difficult', number, 0), 'truncated': field(obj, 'truncated', number, 0)}
        actions = obj.find('actions')
        if actions is not None:
            o['actions'] = {a.tag: field(actions, a.tag, number) for a in actions}
        out['objects'].append(o)
    return out


# ----------------------------------------------------------------------------------------------------------
# VOCdevkit image sets: ROOT/ImageSets/{Main,Action}/<set>.txt, ROOT/Annotations/<id>.xml, ROOT/JPEGImages/<id>.jpg
# (ROOT is VOCdevkit/VOC2007 or VOCdevkit/VOC2012; the devkit's VOCinit.m builds the same paths from an id.)

VOC_ID = re.compile(r'[A-Za-z0-9_][A-Za-z0-9_.-]*$')  # 000005, 2008_000001; never a path, never '..'


def _voc_ids(path):
    """[(line number, image id)] of an ImageSets file: one id per line, as Main/<set>.txt and Action/<set>.txt are."""
    if not os.path.isfile(path):
        raise UserError(f'image set file not found: {path} (expected a VOCdevkit/VOC20xx folder: ImageSets/, Annotations/, JPEGImages/)')
    try:
        with open(path, 'rb') as f:
            lines = f.read().decode('utf-8').splitlines()
    except UnicodeDecodeError as e:
        raise UserError(f'{path}: not a text file ({e.reason} at byte {e.start})') from None
    rows, seen = [], set()
    for i, line in enumerate(lines, 1):
        parts = line.split()
        if not parts:
            continue
        if len(parts) != 1 or not VOC_ID.match(parts[0]):
            raise UserError(f'{path}:{i}: expected one image id per line (letters, digits, "_", "-", "."), got {line.strip()[:80]!r}')
        if parts[0] in seen:
            raise UserError(f'{path}:{i}: image {parts[0]} is listed twice')
        seen.add(parts[0])
        rows.append((i, parts[0]))
    if not rows:
        raise UserError(f'{path} lists no images')
    return rows


def _voc_image(root, image_id, where):
    """(annotation path, image path relative to root, read_voc_annotation's dict) of one listed id; every file
    must exist, and the size must be there, because boxes are checked against it."""
    ann_path = os.path.join(root, 'Annotations', f'{image_id}.xml')
    rel = f'JPEGImages/{image_id}.jpg'
    if not os.path.isfile(ann_path):
        raise UserError(f'{where}: annotation not found: {ann_path}')
    if not os.path.isfile(os.path.join(root, rel)):
        raise UserError(f'{where}: image not found: {os.path.join(root, rel)}')
    ann = read_voc_annotation(ann_path)
    if ann['size'] is None or min(ann['size']) < 1:
        raise UserError(f'{ann_path}: no <size> with a positive <width> and <height>')
    return ann_path, rel, ann


def _voc_box(obj, k, size, path):
    """The object's box as written, or a UserError if it leaves the image. VOC boxes are 1-based inclusive pixels
    (the devkit counts x2 - x1 + 1 pixels across), so 1 <= xmin <= xmax <= width; xmin == xmax is one pixel."""
    (x1, y1, x2, y2), (w, h) = obj['bbox'], size
    if not (1 <= x1 <= x2 <= w and 1 <= y1 <= y2 <= h):
        raise UserError(f'{path}: object {k} ({obj["name"][:40]!r}) has box {obj["bbox"]}, not within the {w}x{h} image '
                        f'(VOC boxes are 1-based: 1 <= xmin <= xmax <= width, 1 <= ymin <= ymax <= height)')
    return obj['bbox']


def read_voc_detection(root, image_set, classes=VOC_CLASSES):
    """The images of ROOT/ImageSets/Main/<image_set>.txt (train, val, trainval, test) in that file's order, with
    their ground truth from Annotations/<id>.xml. ROOT is a VOCdevkit/VOC2007-style folder.

    Each row: {'id': '000005', 'path': 'JPEGImages/000005.jpg' (relative to ROOT), 'size': (width, height),
    'boxes': int64 [M, 4] x1, y1, x2, y2 as written (VOC's 1-based inclusive pixels), 'labels': int64 [M] index into
    `classes`, 'difficult': bool [M], 'truncated': bool [M]}, objects in the XML's order. An image without objects
    has empty arrays. A missing file, malformed XML, an object whose class is not in `classes`, or a box outside
    its image is a one-line UserError naming the file."""
    set_path = os.path.join(root, 'ImageSets', 'Main', f'{image_set}.txt')
    index = {c: i for i, c in enumerate(classes)}
    out = []
    for line, image_id in _voc_ids(set_path):
        ann_path, rel, ann = _voc_image(root, image_id, f'{set_path}:{line}')
        boxes, labels, difficult, truncated = [], [], [], []
        for k, obj in enumerate(ann['objects'], 1):  # k: 1-based, as the devkit's rec.objects(k)
            if obj['name'] not in index:
                raise UserError(f'{ann_path}: object {k} is a {obj["name"][:40]!r}, not one of the {len(classes)} classes '
                                f'({" ".join(classes)})')
            boxes.append(_voc_box(obj, k, ann['size'], ann_path))
            labels.append(index[obj['name']])
            difficult.append(obj['difficult'] != 0)
            truncated.append(obj['truncated'] != 0)
        out.append({'id': image_id, 'path': rel, 'size': ann['size'], 'boxes': np.array(boxes, np.int64).reshape(-1, 4),
                    'labels': np.array(labels, np.int64), 'difficult': np.array(difficult, bool),
                    'truncated': np.array(truncated, bool)})
    return out


def read_voc_actions(root, image_set):
    """The images of ROOT/ImageSets/Action/<image_set>.txt (train, val, trainval) in that file's order, with the
    persons annotated for actions in Annotations/<id>.xml. ROOT is a VOCdevkit/VOC2012-style folder.

    Each row: {'id', 'path' ('JPEGImages/<id>.jpg'), 'size': (width, height), 'boxes': int64 [P, 4] of the persons
    (1-based, as written), 'actions': int64 [P, 10] in VOC_ACTIONS order, 1 if the person does the action and 0 if
    not, as the XML's <actions> children say, 'object_ids': int64 [P]}. Only <object>s with an <actions> element
    are listed; a person whose only flag is <other> (the devkit's distractors) gets a row of zeros.

    The format, from the VOC2012 devkit (doc §2.3 and §6, VOCinit.m, example_action.m, VOCevalaction.m):
    Action/<set>.txt lists image ids, one per line; Action/<action>_<set>.txt lists `<id> <object index> <label>`
    with label 1 or -1, one line per annotated person, and the object index is the person's 1-based position among
    all the <object>s of its XML (example_action.m reads rec.objects(objids(i))). That index is 'object_ids', the
    second column of the result files (`comp10_action_test_<action>.txt: <id> <object index> <score>`). This reader
    takes the labels from the XML, where they are 1/0; the per-action files hold the same labels as 1/-1, which is
    what eval.metrics.label_ap wants: labels = 2 * actions - 1. Errors as read_voc_detection's, plus an <actions>
    on a non-person, an action child missing, or a flag other than 0 or 1."""
    set_path = os.path.join(root, 'ImageSets', 'Action', f'{image_set}.txt')
    out = []
    for line, image_id in _voc_ids(set_path):
        ann_path, rel, ann = _voc_image(root, image_id, f'{set_path}:{line}')
        boxes, actions, object_ids = [], [], []
        for k, obj in enumerate(ann['objects'], 1):
            if 'actions' not in obj:
                continue
            if obj['name'] != 'person':
                raise UserError(f'{ann_path}: object {k} is a {obj["name"][:40]!r} with <actions>; only persons have actions')
            flags = obj['actions']
            for a in VOC_ACTIONS:
                if a not in flags:
                    raise UserError(f'{ann_path}: object {k} has no <{a}> in its <actions> (expected all of {" ".join(VOC_ACTIONS)})')
                if flags[a] not in (0, 1):
                    raise UserError(f'{ann_path}: object {k} has <{a}>{flags[a]}</{a}>; action flags are 0 or 1')
            boxes.append(_voc_box(obj, k, ann['size'], ann_path))
            actions.append([flags[a] for a in VOC_ACTIONS])
            object_ids.append(k)
        out.append({'id': image_id, 'path': rel, 'size': ann['size'], 'boxes': np.array(boxes, np.int64).reshape(-1, 4),
                    'actions': np.array(actions, np.int64).reshape(-1, len(VOC_ACTIONS)),
                    'object_ids': np.array(object_ids, np.int64)})
    return out


# ----------------------------------------------------------------------------------------------------------
# The twelve transfer data sets of Kornblith, Shlens & Le 2019 ("Do Better ImageNet Models Transfer Better?",
# Table 1 and appendix A.1), each read from the layout its own download unpacks to (torchvision's dataset classes
# expect the same). Plain readers: no md5 checks, no downloads. Every listed image must exist (Birdsnap excepted:
# it is distributed as Flickr URLs, many of them dead).

TRANSFER_SETS = {  # name -> (the paper's metric, the layout under ROOT)
    'food101': ('top1', 'ROOT/meta/{train,test}.json, ROOT/meta/classes.txt, ROOT/images/<class>/<id>.jpg'),
    'cifar10': ('top1', 'ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} (or ROOT is that folder; '
                        'PNGs are exported once into its wmig-png/)'),
    'cifar100': ('top1', 'ROOT/cifar-100-python/{train,test,meta} (or ROOT is that folder; PNGs are exported once '
                         'into its wmig-png/)'),
    'birdsnap': ('top1', 'ROOT/{species.txt,images.txt,test_images.txt}, ROOT/download/images/<path of images.txt> '
                         '(as the release\'s get_birdsnap.py downloads them)'),
    'sun397': ('top1', 'ROOT/ClassName.txt, ROOT/Partitions/{Training,Testing}_01.txt, ROOT/<letter>/<category>/*.jpg'),
    'cars': ('top1', 'ROOT/devkit/{cars_meta,cars_train_annos}.mat, ROOT/cars_test_annos_withlabels.mat, '
                     'ROOT/cars_train/*.jpg, ROOT/cars_test/*.jpg'),
    'aircraft': ('mean_class', 'ROOT/data/variants.txt, ROOT/data/images_variant_{train,val,test}.txt, '
                               'ROOT/data/images/<id>.jpg (ROOT is fgvc-aircraft-2013b)'),
    'voc07-cls': ('map11', 'ROOT/VOC2007/ImageSets/Main/{train,val,test}.txt and <class>_{train,val,test}.txt, '
                           'ROOT/VOC2007/JPEGImages/<id>.jpg (ROOT is the VOCdevkit folder)'),
    'dtd': ('top1', 'ROOT/images/<class>/<file>.jpg, ROOT/labels/{train1,val1,test1}.txt'),
    'pets': ('mean_class', 'ROOT/images/<Breed>_<n>.jpg, ROOT/annotations/{trainval,test}.txt'),
    'caltech101': ('mean_class', 'ROOT/101_ObjectCategories/<class>/image_NNNN.jpg (102 folders, BACKGROUND_Google included)'),
    'flowers102': ('mean_class', 'ROOT/jpg/image_NNNNN.jpg, ROOT/imagelabels.mat, ROOT/setid.mat'),
}
# Kornblith et al. 2019 appendix A.1: Caltech-101 has no official split; 30 random images of each class train and
# the rest test (Table 1: 3,060 = 30 x 102 training images, so BACKGROUND_Google is one of the classes).
CALTECH_TRAIN_PER_CLASS = 30


def read_transfer(name, root, seed=0):
    """dict(names=[class names], image_root=the folder relpaths are relative to, train/val/test=[(relpath, label)]
    (val: the official validation split, [] if there is none), notes=[lines worth printing]) of one of
    TRANSFER_SETS. A label is an int, except for voc07-cls: a tuple of 20 ints in VOC_CLASSES order as the devkit's
    <class>_<set>.txt files give them (1 present, 0 difficult only, -1 absent). `seed` draws Caltech-101's split.
    Any problem with the files is a one-line UserError naming the path and the expected layout."""
    if name not in TRANSFER_SETS:
        raise UserError(f'unknown transfer data set {name!r}; known: {", ".join(TRANSFER_SETS)}')
    layout = TRANSFER_SETS[name][1]
    try:
        if not os.path.isdir(root):
            raise UserError(f'data folder not found: {root}')
        out = _READERS[name](root, seed)
        for split in ('train', 'val', 'test'):
            for rel, _ in out[split]:
                if not os.path.isfile(os.path.join(out['image_root'], rel)):
                    raise UserError(f'a {split} image is listed but not found: {os.path.join(out["image_root"], rel)}')
        for split in ('train', 'test'):
            if not out[split]:
                raise UserError(f'no {split} images listed under {root}')
    except UserError as e:
        raise UserError(f'{name}: {e} (expected {layout})') from None
    except OSError as e:  # a folder that cannot be listed, a file that cannot be read
        raise UserError(f'{name}: {e.filename or root}: {e.strerror} (expected {layout})') from None
    out.setdefault('notes', [])
    return out


def _need(path):
    if not os.path.isfile(path):
        raise UserError(f'not found: {path}')
    return path


def _lines(path):
    """[(line number, stripped line)] of a text file's non-blank lines."""
    try:
        with open(_need(path), 'rb') as f:
            text = f.read().decode('utf-8')
    except UnicodeDecodeError as e:
        raise UserError(f'{path}: not a text file ({e.reason} at byte {e.start})') from None
    return [(i, line.strip()) for i, line in enumerate(text.splitlines(), 1) if line.strip()]


def _why(e):
    """An exception as one short line: its type and the first line of its message."""
    return f'{type(e).__name__}: {(str(e).splitlines() or [""])[0][:80]}'


def _label(value, n, where, base=1):
    """An integer label 0..n-1 from a stored label counted from `base` (the .mat files count from 1)."""
    try:
        label = int(value) - base
        if label == float(value) - base and 0 <= label < n:
            return label
    except (TypeError, ValueError, OverflowError):
        pass
    raise UserError(f'{where}: label {str(value)[:20]!r} is not an integer in {base}..{n - 1 + base}')


def _names_from_dirs(folder):
    """Sorted class folder names, as torchvision's DTD and Caltech101 order them."""
    if not os.path.isdir(folder):
        raise UserError(f'folder not found: {folder}')
    names = sorted(d for d in os.listdir(folder) if not d.startswith('.') and os.path.isdir(os.path.join(folder, d)))
    if not names:
        raise UserError(f'no class folders in {folder}')
    return names


def _split_files(split_files, parse):
    """{split: [(relpath, label)]} of list files, one image per line ('#' lines are comments):
    parse(line, where) -> (relpath, label)."""
    out = {}
    for split, path in split_files.items():
        out[split] = [parse(line, f'{path}:{i}') for i, line in _lines(path) if not line.startswith('#')]
        if not out[split] and split != 'val':
            raise UserError(f'{path} lists no images')
    return out


def _food101(root, seed):
    """Food-101 (Bossard et al. 2014): 750 training and 250 test images of each class, as meta/{train,test}.json
    list them ({class: ["class/id", ...]})."""
    names = [line for _, line in _lines(os.path.join(root, 'meta', 'classes.txt'))]
    index = {c: i for i, c in enumerate(names)}
    out = {'names': names, 'image_root': root, 'val': []}
    for split in ('train', 'test'):
        path = _need(os.path.join(root, 'meta', f'{split}.json'))
        try:
            with open(path, 'rb') as f:
                listing = json.loads(f.read().decode('utf-8'))
        except (ValueError, UnicodeDecodeError) as e:
            raise UserError(f'{path}: not valid JSON ({str(e).splitlines()[0][:80]})') from None
        if not isinstance(listing, dict) or not all(isinstance(v, list) and all(isinstance(s, str) for s in v)
                                                    for v in listing.values()):
            raise UserError(f'{path}: expected {{"<class>": ["<class>/<id>", ...]}}')
        rows = []
        for cls, ids in listing.items():
            if cls not in index:
                raise UserError(f'{path}: class {cls[:40]!r} is not in {os.path.join(root, "meta", "classes.txt")}')
            rows += [(safe_relpath(f'images/{i}.jpg', path), index[cls]) for i in ids]
        out[split] = rows
    return out


# CIFAR-10/100 (Krizhevsky 2009): the "python version" batches are pickles of {data: uint8 N x 3072 (1024 red,
# then green, then blue values, each a row-major 32 x 32 plane), labels (CIFAR-100: fine_labels)}. The pipeline reads
# image files only, so each set is exported once to lossless PNGs beside its batches.
CIFAR = {'cifar10': ('cifar-10-batches-py', 'batches.meta', 'labels', 'label_names',
                     {'train': [f'data_batch_{k}' for k in range(1, 6)], 'test': ['test_batch']}),
         'cifar100': ('cifar-100-python', 'meta', 'fine_labels', 'fine_label_names', {'train': ['train'], 'test': ['test']})}
# What a CIFAR pickle may build: numpy arrays (Python 2's numpy.core and today's numpy._core) and Python 3's bytes.
# Anything else is refused, because unpickling a file can run any code.
_PICKLE_GLOBALS = {('numpy.core.multiarray', '_reconstruct'), ('numpy._core.multiarray', '_reconstruct'),
                   ('numpy.core.numeric', '_frombuffer'), ('numpy._core.numeric', '_frombuffer'),
                   ('numpy', 'ndarray'), ('numpy', 'dtype'), ('_codecs', 'encode')}


class _ArrayUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _PICKLE_GLOBALS:
            raise pickle.UnpicklingError(f'it would build {module}.{name}, and only numpy arrays are allowed')
        return super().find_class(module, name)


def _read_pickle(path):
    """A CIFAR pickle as a dict with str keys: Python 2 wrote str keys, which load as str with latin1 (as
    torchvision does); a Python 3 copy has bytes keys."""
    try:
        with open(_need(path), 'rb') as f:
            d = _ArrayUnpickler(f, encoding='latin1').load()
    except Exception as e:  # noqa: BLE001 -- a damaged pickle raises any of a dozen types; all mean the same
        raise UserError(f'{path}: not a readable CIFAR pickle ({_why(e)})') from None
    if not isinstance(d, dict):
        raise UserError(f'{path}: not a CIFAR pickle (holds a {type(d).__name__}, not a dict)')
    return {k.decode('latin1') if isinstance(k, bytes) else k: v for k, v in d.items()}


def _cifar_folder(root, name):
    folder, meta = CIFAR[name][:2]
    if os.path.isfile(os.path.join(root, folder, meta)):
        return os.path.join(root, folder)
    if os.path.isfile(os.path.join(root, meta)):
        return root
    raise UserError(f'not found: {os.path.join(root, folder, meta)} (nor {os.path.join(root, meta)})')


def export_cifar(root, name='cifar10'):
    """(batches folder, class names, {'train': [(relpath, label)], 'test': [...]}) of CIFAR-10 or CIFAR-100, with
    every image exported once as a lossless PNG to <batches folder>/wmig-png/{train,test}/NNNNN.png, numbered in the
    batches' order. The export is written into a temporary folder and renamed when complete, so a finished
    wmig-png/ is always whole and is reused; relpaths are relative to the batches folder."""
    folder = _cifar_folder(root, name)
    _, meta, label_key, names_key, files = CIFAR[name]
    d = _read_pickle(os.path.join(folder, meta))
    names = [n.decode('latin1') if isinstance(n, bytes) else str(n) for n in d.get(names_key, [])]
    if not names:
        raise UserError(f'{os.path.join(folder, meta)}: no {names_key}')
    data, rows = {}, {}
    for split, batches in files.items():
        arrays, labels = [], []
        for b in batches:
            path = os.path.join(folder, b)
            d = _read_pickle(path)
            x, y = d.get('data'), d.get(label_key)
            if not isinstance(x, np.ndarray) or x.dtype != np.uint8 or x.ndim != 2 or x.shape[1] != 3072 \
                    or not isinstance(y, list) or len(y) != len(x):
                raise UserError(f'{path}: expected "data" (uint8 N x 3072) and "{label_key}" (N labels)')
            arrays.append(x)
            labels += [_label(v, len(names), path, base=0) for v in y]
        data[split] = np.concatenate(arrays)
        rows[split] = [(f'wmig-png/{split}/{i:05d}.png', label) for i, label in enumerate(labels)]
    final = os.path.join(folder, 'wmig-png')
    if os.path.isdir(final):
        for split, x in data.items():
            got = os.path.join(final, split)
            if not os.path.isdir(got) or len(os.listdir(got)) != len(x):
                raise UserError(f'{os.path.join(final, split)} does not hold the {len(x)} images of its batches; '
                                f'remove {final} and it is exported again')
        return folder, names, rows
    tmp = f'{final}.tmp{os.getpid()}'
    try:
        for split in data:
            os.makedirs(os.path.join(tmp, split))
    except OSError as e:
        raise UserError(f'cannot write the PNG export into {folder} ({e.strerror}): the pipeline reads image files; '
                        f'copy {folder} to a writable folder and give that') from None
    try:
        with tqdm(total=sum(len(x) for x in data.values()), unit='img', desc=f'{name} -> {final}',
                  disable=not sys.stderr.isatty()) as bar:
            for split, x in data.items():
                for i, row in enumerate(x):
                    Image.fromarray(row.reshape(3, 32, 32).transpose(1, 2, 0)).save(
                        os.path.join(tmp, split, f'{i:05d}.png'))
                    bar.update()
        try:
            os.rename(tmp, final)
        except OSError:
            if not os.path.isdir(final):  # else another process exported the same batches first: use theirs
                raise
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # a failed or interrupted export, or another process finished first
    return folder, names, rows


def _cifar(name):
    def read(root, seed):
        done = os.path.isdir(os.path.join(_cifar_folder(root, name), 'wmig-png'))
        folder, names, rows = export_cifar(root, name)
        note = f'{name}: {"reused the PNG export" if done else "exported the images as PNGs"} in {folder}/wmig-png'
        return {'names': names, 'image_root': folder, 'train': rows['train'], 'val': [], 'test': rows['test'],
                'notes': [note]}
    return read


def _birdsnap(root, seed):
    """Birdsnap (Berg et al. 2014): test = the 2,443 images of test_images.txt, train = the rest of images.txt.
    Only the images present are used (Kornblith et al.: "the available images"); get_birdsnap.py saves each one, after
    its md5 checks out, to <output_dir>/images/<path> with output_dir 'download' by default."""
    def table(path, fields):  # a tab-separated file with a header line, as the release's readme describes
        lines = _lines(path)
        header = lines[0][1].split('\t') if lines else []
        if not all(f in header for f in fields):
            raise UserError(f'{path}: the header line has no {" / ".join(fields)} column')
        rows = []
        for i, line in lines[1:]:
            values = line.split('\t')
            if len(values) != len(header):
                raise UserError(f'{path}:{i}: {len(values)} tab-separated fields, the header has {len(header)}')
            rows.append((f'{path}:{i}', dict(zip(header, values))))
        return rows
    species = {r['id']: r['common'] for _, r in table(os.path.join(root, 'species.txt'), ('id', 'common'))}
    names = [species.get(str(k)) for k in range(1, len(species) + 1)]
    if None in names:
        raise UserError(f'{os.path.join(root, "species.txt")}: species ids are not 1..{len(species)}')
    test_path = os.path.join(root, 'test_images.txt')
    test = {r['path'] for _, r in table(test_path, ('path',))}
    out, missing, listed = {'names': names, 'image_root': root, 'train': [], 'val': [], 'test': []}, [], set()
    for where, r in table(os.path.join(root, 'images.txt'), ('path', 'species_id')):
        rel = safe_relpath(f'download/images/{safe_relpath(r["path"], where)}', where)
        label = _label(r['species_id'], len(names), where)
        listed.add(r['path'])
        split = 'test' if r['path'] in test else 'train'
        if os.path.isfile(os.path.join(root, rel)):
            out[split].append((rel, label))
        else:
            missing.append(split)
    if test - listed:
        raise UserError(f'{test_path}: {sorted(test - listed)[0][:80]!r} is not in images.txt')
    out['notes'] = [f'birdsnap: {len(missing)} listed images missing under {root}/download/images, skipped '
                    f'({missing.count("train")} train, {missing.count("test")} test)'] if missing else []
    return out


def _sun397(root, seed):
    names, train, test = read_sun397(root, 1)  # Kornblith et al.: the first of the 10 official splits
    return {'names': names, 'image_root': root, 'train': train, 'val': [], 'test': test}


def _loadmat(path, *keys):
    """The named variables of a MATLAB file, squeezed as torchvision reads them (scipy.io.loadmat)."""
    try:
        import scipy.io  # only the Cars and Flowers readers need scipy
    except ImportError:
        raise UserError(f'reading {path} needs scipy: pip install -r requirements.txt') from None
    try:
        mat = scipy.io.loadmat(_need(path), squeeze_me=True)
    except Exception as e:  # noqa: BLE001 -- scipy raises many types for a damaged file
        raise UserError(f'{path}: not a readable MATLAB .mat file ({_why(e)})') from None
    for k in keys:
        if k not in mat:
            raise UserError(f'{path}: no variable {k!r}')
    return [np.atleast_1d(mat[k]) for k in keys]  # a 1-element array is squeezed to a scalar


def _cars(root, seed):
    """Stanford Cars (Krause et al. 2013), as the devkit and the separately released test labels ship it:
    'annotations' is a struct array (bbox_x1, bbox_y1, bbox_x2, bbox_y2, class 1..196, fname)."""
    names, = _loadmat(os.path.join(root, 'devkit', 'cars_meta.mat'), 'class_names')
    out = {'names': [str(n) for n in names], 'image_root': root, 'val': []}
    for split, mat, folder in (('train', os.path.join('devkit', 'cars_train_annos.mat'), 'cars_train'),
                               ('test', 'cars_test_annos_withlabels.mat', 'cars_test')):
        path = os.path.join(root, mat)
        ann, = _loadmat(path, 'annotations')
        if not ann.dtype.names or not {'class', 'fname'} <= set(ann.dtype.names):
            raise UserError(f'{path}: "annotations" has no class and fname fields (the unlabelled '
                            f'devkit/cars_test_annos.mat will not do for the test set)')
        out[split] = [(safe_relpath(f'{folder}/{a["fname"]}', path), _label(a['class'], len(names), f'{path} #{k + 1}'))
                      for k, a in enumerate(ann)]
    return out


def _aircraft(root, seed):
    """FGVC-Aircraft 2013b (Maji et al. 2013) at the variant level (100 classes): images_variant_<split>.txt lines
    are "<id> <variant>", and a variant's name may hold spaces and slashes ("Cessna 172", "F-16A/B")."""
    data = os.path.join(root, 'data')
    names = [line for _, line in _lines(os.path.join(data, 'variants.txt'))]
    index = {v: i for i, v in enumerate(names)}

    def parse(line, where):
        image_id, _, variant = line.partition(' ')
        if variant not in index:
            raise UserError(f'{where}: variant {variant[:40]!r} is not in {os.path.join(data, "variants.txt")}')
        return safe_relpath(f'data/images/{image_id}.jpg', where), index[variant]
    out = _split_files({s: os.path.join(data, f'images_variant_{s}.txt') for s in ('train', 'val', 'test')}, parse)
    return {'names': names, 'image_root': root, **out}


def _voc07_cls(root, seed):
    """PASCAL VOC 2007 classification: Main/<set>.txt lists the images, Main/<class>_<set>.txt gives each image's
    label for the class (1, 0 for difficult only, -1). train and val are the devkit's (trainval = train + val)."""
    voc = os.path.join(root, 'VOC2007')
    if not os.path.isdir(voc):
        raise UserError(f'not found: {voc} (ROOT is the VOCdevkit folder that holds VOC2007/)')
    main = os.path.join(voc, 'ImageSets', 'Main')
    out = {'names': list(VOC_CLASSES), 'image_root': voc}
    for split in ('train', 'val', 'test'):
        ids = [i for _, i in _voc_ids(os.path.join(main, f'{split}.txt'))]
        labels = {i: [] for i in ids}
        for c in VOC_CLASSES:
            path = os.path.join(main, f'{c}_{split}.txt')
            given = {}
            for k, line in _lines(path):
                parts = line.split()
                if len(parts) != 2 or parts[1] not in ('1', '0', '-1'):
                    raise UserError(f'{path}:{k}: expected "<image id> <1, 0 or -1>", got {line[:80]!r}')
                given[parts[0]] = int(parts[1])
            for i in ids:
                if i not in given:
                    raise UserError(f'{path}: image {i} of {split}.txt is not listed')
                labels[i].append(given[i])
        out[split] = [(f'JPEGImages/{i}.jpg', tuple(labels[i])) for i in ids]
    return out


def _dtd(root, seed):
    """Describable Textures (Cimpoi et al. 2014), split 1 of 10 (Kornblith et al.): labels/<split>1.txt lines are
    "<class>/<file>.jpg" under images/."""
    names = _names_from_dirs(os.path.join(root, 'images'))
    index = {c: i for i, c in enumerate(names)}

    def parse(line, where):
        cls = line.split('/')[0]
        if cls not in index:
            raise UserError(f'{where}: class {cls[:40]!r} has no folder in {os.path.join(root, "images")}')
        return safe_relpath(f'images/{line}', where), index[cls]
    out = _split_files({s: os.path.join(root, 'labels', f'{s}1.txt') for s in ('train', 'val', 'test')}, parse)
    return {'names': names, 'image_root': root, **out}


def _pets(root, seed):
    """Oxford-IIIT Pet (Parkhi et al. 2012): annotations/{trainval,test}.txt lines "Abyssinian_100 1 1 1" (image,
    class id 1..37, species, breed id); '#' lines are comments (list.txt's header). A class's name is its images'
    prefix. There is no official val split apart from trainval."""
    names = {}

    def parse(line, where):
        parts = line.split()
        if len(parts) != 4 or not parts[1].isdigit() or int(parts[1]) < 1 or '_' not in parts[0]:
            raise UserError(f'{where}: expected "<Breed>_<n> <class id 1..37> <species> <breed id>", got {line[:80]!r}')
        breed = parts[0].rsplit('_', 1)[0]
        if names.setdefault(int(parts[1]), breed) != breed:
            raise UserError(f'{where}: class {parts[1]} is {breed!r} here and {names[int(parts[1])]!r} before')
        return safe_relpath(f'images/{parts[0]}.jpg', where), int(parts[1]) - 1
    out = _split_files({s: os.path.join(root, 'annotations', f'{s}.txt') for s in ('trainval', 'test')}, parse)
    missing = [k for k in range(1, max(names, default=0) + 1) if k not in names]
    if missing:
        raise UserError(f'{os.path.join(root, "annotations")}: no image of class id {missing[0]}')
    return {'names': [names[k] for k in sorted(names)], 'image_root': root, 'val': [],
            'train': out['trainval'], 'test': out['test']}


def _caltech101(root, seed):
    """Caltech-101 (Fei-Fei et al. 2004): 102 class folders, BACKGROUND_Google included, in sorted order (as
    torchvision's); CALTECH_TRAIN_PER_CLASS random images of each train, the rest test. Each class draws from its
    own random source keyed by (seed, class), so a class's split depends on nothing else."""
    top = os.path.join(root, '101_ObjectCategories')
    names = _names_from_dirs(top)
    out = {'names': names, 'image_root': root, 'train': [], 'val': [], 'test': []}
    for label, cls in enumerate(names):
        files = sorted(f for f in os.listdir(os.path.join(top, cls)) if f.lower().endswith(IMAGE_EXTS) and not f.startswith('.'))
        if not files:
            raise UserError(f'no images in {os.path.join(top, cls)}')
        random.Random(f'caltech101:{seed}:{cls}').shuffle(files)
        out['train'] += [(f'101_ObjectCategories/{cls}/{f}', label) for f in files[:CALTECH_TRAIN_PER_CLASS]]
        out['test'] += [(f'101_ObjectCategories/{cls}/{f}', label) for f in files[CALTECH_TRAIN_PER_CLASS:]]
    out['notes'] = [f'caltech101: {CALTECH_TRAIN_PER_CLASS} random training images per class (seed {seed}), the rest test']
    return out


# The release names no classes; these are the names in common use (torchvision's Flowers102.classes), by label.
FLOWERS102_NAMES = (
    'pink primrose', 'hard-leaved pocket orchid', 'canterbury bells', 'sweet pea', 'english marigold', 'tiger lily',
    'moon orchid', 'bird of paradise', 'monkshood', 'globe thistle', 'snapdragon', "colt's foot", 'king protea',
    'spear thistle', 'yellow iris', 'globe-flower', 'purple coneflower', 'peruvian lily', 'balloon flower',
    'giant white arum lily', 'fire lily', 'pincushion flower', 'fritillary', 'red ginger', 'grape hyacinth',
    'corn poppy', 'prince of wales feathers', 'stemless gentian', 'artichoke', 'sweet william', 'carnation',
    'garden phlox', 'love in the mist', 'mexican aster', 'alpine sea holly', 'ruby-lipped cattleya', 'cape flower',
    'great masterwort', 'siam tulip', 'lenten rose', 'barbeton daisy', 'daffodil', 'sword lily', 'poinsettia',
    'bolero deep blue', 'wallflower', 'marigold', 'buttercup', 'oxeye daisy', 'common dandelion', 'petunia',
    'wild pansy', 'primula', 'sunflower', 'pelargonium', 'bishop of llandaff', 'gaura', 'geranium', 'orange dahlia',
    'pink-yellow dahlia?', 'cautleya spicata', 'japanese anemone', 'black-eyed susan', 'silverbush',
    'californian poppy', 'osteospermum', 'spring crocus', 'bearded iris', 'windflower', 'tree poppy', 'gazania',
    'azalea', 'water lily', 'rose', 'thorn apple', 'morning glory', 'passion flower', 'lotus', 'toad lily',
    'anthurium', 'frangipani', 'clematis', 'hibiscus', 'columbine', 'desert-rose', 'tree mallow', 'magnolia',
    'cyclamen', 'watercress', 'canna lily', 'hippeastrum', 'bee balm', 'ball moss', 'foxglove', 'bougainvillea',
    'camellia', 'mallow', 'mexican petunia', 'bromelia', 'blanket flower', 'trumpet creeper', 'blackberry lily')


def _flowers102(root, seed):
    """Oxford 102 Flowers (Nilsback & Zisserman 2008): imagelabels.mat 'labels' (1..102, the n-th for
    jpg/image_<n>.jpg), setid.mat 'trnid', 'valid', 'tstid' (image numbers). Classes are named by FLOWERS102_NAMES
    ('class_103'... past its 102)."""
    labels_path, setid_path = os.path.join(root, 'imagelabels.mat'), os.path.join(root, 'setid.mat')
    labels, = _loadmat(labels_path, 'labels')
    if labels.size == 0 or labels.dtype.kind not in 'iuf' or not np.isfinite(labels).all() or labels.min() < 1:
        raise UserError(f'{labels_path}: "labels" is not a list of class numbers counted from 1')
    n = int(labels.max())  # a class is a label that occurs: 1..102 in the release
    out = {'names': [FLOWERS102_NAMES[k] if k < len(FLOWERS102_NAMES) else f'class_{k + 1:03d}' for k in range(n)],
           'image_root': root}
    for split, ids in zip(('train', 'val', 'test'), _loadmat(setid_path, 'trnid', 'valid', 'tstid')):
        image = [_label(i, len(labels), f'{setid_path} ({split})') for i in ids]  # image numbers 1..len(labels)
        out[split] = [(f'jpg/image_{i + 1:05d}.jpg', _label(labels[i], n, f'{labels_path} (image {i + 1})')) for i in image]
    return out


_READERS = {'food101': _food101, 'cifar10': _cifar('cifar10'), 'cifar100': _cifar('cifar100'), 'birdsnap': _birdsnap,
            'sun397': _sun397, 'cars': _cars, 'aircraft': _aircraft, 'voc07-cls': _voc07_cls, 'dtd': _dtd,
            'pets': _pets, 'caltech101': _caltech101, 'flowers102': _flowers102}


# ----------------------------------------------------------------------------------------------------------
# COCO (He et al. 2019): the official 2017 layout, ROOT/{train2017,val2017}/<file_name>, ROOT/annotations/
# instances_{train2017,val2017}.json, as cocodataset.org's zips unpack.

COCO_LAYOUT = 'ROOT/annotations/instances_{split}.json and ROOT/{split}/<file_name> (split train2017 or val2017)'


def coco_paths(root, split):
    """(annotation file, image folder) of a COCO split."""
    return os.path.join(root, 'annotations', f'instances_{split}.json'), os.path.join(root, split)


def _coco_polygons(seg, where):
    """The polygons of a non-crowd annotation's segmentation: [[x1, y1, x2, y2, ...], ...] with 3 points or more."""
    if not isinstance(seg, list) or not seg:
        raise UserError(f'{where}: "segmentation" is not a list of polygons (iscrowd 0 takes polygons, iscrowd 1 RLE)')
    for k, poly in enumerate(seg):
        if not isinstance(poly, list) or len(poly) % 2 or not all(isinstance(v, (int, float)) for v in poly):
            raise UserError(f'{where}: polygon {k} is not a flat list of x, y numbers')
        if len(poly) < 6:
            raise UserError(f'{where}: polygon {k} has {len(poly) // 2} point(s); a polygon needs at least 3')
    return seg


def read_coco(root, split):
    """(records, categories) of one COCO split, checked whole before anything trains on it.

    categories: the file's [{'id', 'name', ...}] sorted by id; a record's label k (1-based, 0 is the background of
    torchvision's detectors) is categories[k - 1]. records, one per image in the file's order: {'id' (COCO's image id),
    'path' (relative to ROOT), 'size' (width, height), 'boxes' float32 [M, 4], 'labels' int64 [M], 'polygons' [M
    lists of polygons]} of the non-crowd objects. Boxes are in the loader's convention (data_dali.DetectionLoader,
    VOC's): x1 + 1, y1 + 1, x2, y2 of COCO's continuous [x, y, w, h], so that the loader's -1 gives COCO's back.
    Crowd regions are left out of training, as torchvision's reference (references/detection/coco_utils.py) does;
    COCOeval ignores detections on them. Degenerate boxes (w or h <= 0) are dropped as there too.

    Each problem is a one-line UserError naming the file: malformed JSON, a missing key, an annotation of an image the
    file does not list, a category id outside its categories, a polygon of fewer than 3 points, a listed image that is
    not on disk."""
    ann_path, _ = coco_paths(root, split)
    if not os.path.isfile(ann_path):
        raise UserError(f'COCO annotations not found: {ann_path} (expected {COCO_LAYOUT})')
    try:
        with open(ann_path, 'rb') as f:
            data = json.load(f)
    except json.JSONDecodeError as e:
        raise UserError(f'{ann_path}: malformed JSON ({e.msg} at line {e.lineno} column {e.colno})') from None
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f'{ann_path}: cannot read it ({_why(e)})') from None
    if not isinstance(data, dict) or not all(isinstance(data.get(k), list) for k in ('images', 'annotations', 'categories')):
        raise UserError(f'{ann_path}: not a COCO instances file (it needs lists "images", "annotations" and "categories")')
    try:
        categories = sorted(data['categories'], key=lambda c: c['id'])
        label = {c['id']: k for k, c in enumerate(categories, 1)}
        records, at = [], {}
        for im in data['images']:
            rel = safe_relpath(os.path.join(split, im['file_name']), ann_path)
            at[im['id']] = len(records)
            records.append({'id': im['id'], 'path': rel, 'size': (int(im['width']), int(im['height'])),
                            'boxes': [], 'labels': [], 'polygons': []})
        for a in data['annotations']:
            where = f'{ann_path}: annotation {a.get("id")}'
            if a['image_id'] not in at:
                raise UserError(f'{where} names image {a["image_id"]!r}, which "images" does not list')
            if a['category_id'] not in label:
                raise UserError(f'{where} has category_id {a["category_id"]!r}, which is not among the {len(label)} '
                                f'"categories" (ids {min(label, default="-")}..{max(label, default="-")})')
            if a.get('iscrowd', 0):
                continue
            polygons = _coco_polygons(a['segmentation'], where)
            x, y, w, h = (float(v) for v in a['bbox'])
            if w <= 0 or h <= 0:
                continue
            r = records[at[a['image_id']]]
            r['boxes'].append((x + 1, y + 1, x + w, y + h))
            r['labels'].append(label[a['category_id']])
            r['polygons'].append(polygons)
    except (KeyError, TypeError, ValueError) as e:
        raise UserError(f'{ann_path}: not a COCO instances file ({_why(e)})') from None
    for r in records:
        if not os.path.isfile(os.path.join(root, r['path'])):
            raise UserError(f'{ann_path} lists image {r["id"]}, which is not on disk: {os.path.join(root, r["path"])}')
        r['boxes'] = np.array(r['boxes'], np.float32).reshape(-1, 4)
        r['labels'] = np.array(r['labels'], np.int64)
    return records, categories


def seeded_subset(records, n, seed):
    """A seeded draw of n of the training records, in their order (He et al. 2019's 1K-, 10K- and 35K-image
    ablations)."""
    if n > len(records):
        raise UserError(f'--train-images {n} is larger than the {len(records)} training images (with objects) of the set')
    keep = set(random.Random(f'{seed}/coco-subset').sample(range(len(records)), n))
    return [r for i, r in enumerate(records) if i in keep]
