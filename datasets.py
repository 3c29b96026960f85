"""Readers of on-disk formats: the ILSVRC-2012 folders and val labels, the project's own manifests, SUN397
partitions and the PASCAL VOCdevkit (VOC 2007 detection, VOC 2012 action classification). Nothing here decodes
images.

    from datasets import scan_imagenet
    rows = scan_imagenet('/data/imagenet')   # [(split, relative path, wnid)], sorted
"""
import os
import re
import sys
import xml.etree.ElementTree as ET
import xml.parsers.expat

import numpy as np

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
    cats = [line.strip() for line in open(names) if line.strip()]
    label = {c: i for i, c in enumerate(cats)}
    out = []
    for kind in ('Training', 'Testing'):
        path = os.path.join(root, 'Partitions', f'{kind}_{split:02d}.txt')
        if not os.path.isfile(path):
            raise UserError(f'split file not found: {path} (SUN397 has splits 1-10)')
        rows = []
        for i, line in enumerate(open(path), 1):
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
    what eval.metrics.action_ap wants: labels = 2 * actions - 1. Errors as read_voc_detection's, plus an <actions>
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
