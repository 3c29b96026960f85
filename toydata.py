"""The embedded default data set: small synthetic images in the real ILSVRC-2012 folder layout, and toy transfer
sets in the real SUN397, PASCAL VOCdevkit and Kornblith et al. 2019 transfer-set layouts.

    python toydata.py --out data/toy                      # 20 classes, 60 train + 20 val images each; SUN397, VOC
    python toydata.py --out data/toy --train-per-class 200 --seed 1
    python toydata.py --out data/toy --voc07-trainval 0 --voc07-test 0 --voc12-per-action 0   # no toy VOC
    python toydata.py --out data/toy --transfer-per-class 0                                     # no toy transfer sets

It writes `OUT/train/<wnid>/<wnid>_<n>.JPEG` and `OUT/val/<wnid>/ILSVRC2012_val_<n>.JPEG`, the layout
`subsets.py index` reads for real ImageNet, so every later step runs unchanged on toy and real data. It also
writes `OUT/SUN397/` in the official SUN397 layout: 8 scene categories made of the toy objects.

Appearance follows the WordNet hierarchy, so that learning, coarse-versus-fine effects and transfer are
measurable: the coarse group (dog, bird, fish, car, fruit) sets the shape family, and the fine class sets
the colour and the texture. Sizes vary, images are not square, a few are grayscale, and the output is
byte-identical for a given seed.

`OUT/VOCdevkit/VOC2007` and `OUT/VOCdevkit/VOC2012` follow the devkit (JPEGImages/<id>.jpg, Annotations/<id>.xml,
ImageSets/), for datasets.read_voc_detection and read_voc_actions:
- VOC 2007 detection: 200 trainval (100 train + 100 val) and 200 test scenes of 160-320 px, each with 1-4 objects of
  7 VOC classes drawn as toy classes of the related group (dog and cat: the dog family in different colours and
  textures; car and bus: car; bird: bird; boat: fish; pottedplant: fruit), so toy pre-training helps as ImageNet
  does on VOC. Boxes are the tight box of each object's visible pixels, 1-based; objects cut by the border are
  truncated, and the smallest (under 450 visible pixels) difficult.
- VOC 2012 actions: stick-figure people, 20 of each of the 10 actions in train and 20 in val, one or two to an
  image, one action each. The pose tells the action (jumping: arms up, legs bent apart, off the ground; running:
  wide stride, leaning; walking: narrow stride), and seven actions have a prop drawn in a toy family: a dog-family
  animal to ride, car-family wheels, a fish-family instrument, a bird-family computer or camera, a fruit-family
  phone, a book. The box is the tight box of the person's figure (head, body, limbs) without the prop: VOC boxes
  the person only.

`OUT/COCO/` is a toy COCO 2017 (He et al. 2019) in the official layout (train2017/, val2017/,
annotations/instances_*.json): the toy VOC 2007 scenes with each object's polygons, COCO's category ids, and a few
crowd regions in RLE; 120 train and 40 val images by default (--coco-train, --coco-val).

`OUT/transfer/<name>/` holds a miniature of each of Kornblith et al. 2019's transfer sets in its official layout
(datasets.TRANSFER_SETS, datasets.read_transfer): food101, cifar10 and cifar100 (real pickled batches, 32 x 32),
birdsnap (two listed images missing, as after get_birdsnap.py), cars and flowers102 (.mat files), aircraft, dtd,
pets and caltech101 (BACKGROUND_Google included, 31-34 images a class so that its 30-per-class rule leaves a test
set); 4 classes each, `--transfer-per-class` images of each in each split, 32-64 px. Their sun397 and voc07-cls are
the toy SUN397 and VOCdevkit above.
"""
import argparse
import colorsys
import hashlib
import io
import json
import math
import os
import pickle
import random
import sys

import numpy as np
from PIL import Image, ImageChops, ImageDraw

from engine import ranged, run_main

HERE = os.path.dirname(os.path.abspath(__file__))

# Real ILSVRC-2012 wnids from five WordNet branches (mammal, bird, fish, motor vehicle, edible fruit),
# four leaf classes each. Group order fixes the shape family; class order within a group fixes the texture.
GROUPS = {
    'dog': ['n02085620', 'n02085782', 'n02085936', 'n02086240'],  # Chihuahua, Japanese spaniel, Maltese, Shih-Tzu
    'bird': ['n01530575', 'n01531178', 'n01532829', 'n01534433'],  # brambling, goldfinch, house finch, junco
    'fish': ['n01440764', 'n01443537', 'n01484850', 'n01491361'],  # tench, goldfish, great white, tiger shark
    'car': ['n02701002', 'n02814533', 'n03100240', 'n03594945'],  # ambulance, beach wagon, convertible, jeep
    'fruit': ['n07745940', 'n07747607', 'n07749582', 'n07753592'],  # strawberry, orange, lemon, banana
}
SHAPES = ['ellipse', 'square', 'triangle', 'star', 'cross']  # one family per group
TEXTURES = ['solid', 'stripes', 'dots', 'checker']  # one per class within a group


def toy_classes():
    """[(wnid, group, shape, texture, hue)] in label order (sorted by wnid, as ILSVRC labels are)."""
    rows = []
    for g, (group, wnids) in enumerate(GROUPS.items()):
        for c, wnid in enumerate(wnids):
            # Hues are spread so that every class differs in colour from its siblings, and siblings of
            # one group do not share a hue band with another group's classes at the same position.
            hue = ((c * len(GROUPS) + g) * 0.618034) % 1.0
            rows.append((wnid, group, SHAPES[g], TEXTURES[c], hue))
    return sorted(rows)


def _polygon(shape, cx, cy, r, angle):
    if shape == 'triangle':
        pts = [(cx + r * math.cos(angle + k * 2 * math.pi / 3), cy + r * math.sin(angle + k * 2 * math.pi / 3)) for k in range(3)]
    elif shape == 'square':
        pts = [(cx + r * math.cos(angle + math.pi / 4 + k * math.pi / 2), cy + r * math.sin(angle + math.pi / 4 + k * math.pi / 2)) for k in range(4)]
    elif shape == 'star':
        pts = [(cx + (r if k % 2 == 0 else r * 0.45) * math.cos(angle + k * math.pi / 5),
                cy + (r if k % 2 == 0 else r * 0.45) * math.sin(angle + k * math.pi / 5)) for k in range(10)]
    elif shape == 'cross':
        w = 0.35 * r
        base = [(-r, -w), (-w, -w), (-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w), (-r, w)]
        ca, sa = math.cos(angle), math.sin(angle)
        pts = [(cx + x * ca - y * sa, cy + x * sa + y * ca) for x, y in base]
    else:
        raise ValueError(shape)
    return pts


def _texture(size, texture, fg, bg, rng):
    """A fill pattern image for one object: the class's colour in its texture."""
    tex = Image.new('RGB', size, fg)
    d = ImageDraw.Draw(tex)
    step = rng.randint(5, 9)
    if texture == 'stripes':
        for x in range(-size[1], size[0], 2 * step):
            d.line([(x, 0), (x + size[1], size[1])], fill=bg, width=step // 2 + 1)
    elif texture == 'dots':
        for y in range(step // 2, size[1], step):
            for x in range(step // 2, size[0], step):
                d.ellipse([x - 1.5, y - 1.5, x + 1.5, y + 1.5], fill=bg)
    elif texture == 'checker':
        for y in range(0, size[1], step):
            for x in range(0, size[0], step):
                if (x // step + y // step) % 2:
                    d.rectangle([x, y, x + step - 1, y + step - 1], fill=bg)
    return tex


def _background(w, h, hue, sat, rng):
    """A two-colour gradient at a random angle, plus a few clutter lines."""
    c0 = tuple(int(255 * v) for v in colorsys.hsv_to_rgb(hue, sat, rng.uniform(0.3, 0.9)))
    c1 = tuple(int(255 * v) for v in colorsys.hsv_to_rgb((hue + 0.2) % 1, sat, rng.uniform(0.3, 0.9)))
    img = Image.linear_gradient('L').resize((w, h)).rotate(rng.uniform(0, 360), expand=False)
    img = Image.composite(Image.new('RGB', (w, h), c0), Image.new('RGB', (w, h), c1), img)
    d = ImageDraw.Draw(img)
    for _ in range(rng.randint(0, 3)):  # clutter lines in random colours
        d.line([(rng.randint(0, w), rng.randint(0, h)), (rng.randint(0, w), rng.randint(0, h))],
               fill=tuple(rng.randint(0, 255) for _ in range(3)), width=rng.randint(1, 3))
    return img


def _colours(cls, rng):
    """(foreground, dark) colours of one object of class `cls`: the class's hue, jittered."""
    fg = tuple(int(255 * v) for v in colorsys.hsv_to_rgb((cls[4] + rng.uniform(-0.03, 0.03)) % 1, rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0)))
    return fg, tuple(int(v * 0.35) for v in fg)


def _paste_object(img, cls, r, rng, center=None):
    """Draw one object of class `cls` with radius r, at `center` or at a random place where it fits whole: shape
    family from the coarse group, colour and texture from the fine class. Returns its mask ('L', the image's size:
    255 where it was drawn, clipped to the image)."""
    wnid, group, shape, texture, hue = cls
    w, h = img.size
    cx, cy = center or (rng.uniform(r, w - r), rng.uniform(r, h - r))
    fg, dark = _colours(cls, rng)
    mask = Image.new('L', (w, h), 0)
    md = ImageDraw.Draw(mask)
    if shape == 'ellipse':
        ry = r * rng.uniform(0.6, 1.0)
        md.ellipse([cx - r, cy - ry, cx + r, cy + ry], fill=255)
    else:
        md.polygon(_polygon(shape, cx, cy, r, rng.uniform(0, 2 * math.pi)), fill=255)
    if center is None:  # the object images and scenes: a texture as large as the image (their bytes stay as they were)
        img.paste(_texture((w, h), texture, fg, dark, rng), (0, 0), mask)
    else:
        _fill(img, mask, texture, fg, dark, rng)
    return mask


def _fill(img, mask, texture, fg, dark, rng):
    """Paste a texture through `mask`, made only as large as the mask's box (the toy VOC sets' many objects)."""
    box = mask.getbbox()
    if box is not None:
        img.paste(_texture((box[2] - box[0], box[3] - box[1]), texture, fg, dark, rng), box[:2], mask.crop(box))


def draw(cls, rng):
    """One image of class `cls` (a row of toy_classes), drawn with the random source `rng`."""
    w, h = rng.randint(96, 200), rng.randint(96, 200)  # not square, sizes vary
    # A random low-saturation background, so colour alone is not the whole story.
    img = _background(w, h, rng.random(), 0.25, rng)
    _paste_object(img, cls, rng.uniform(0.22, 0.4) * min(w, h), rng)
    if rng.random() < 0.05:  # ImageNet has grayscale JPEGs; so does the toy set
        img = img.convert('L')
    return img


def write_split(out, split, per_class, seed, classes):
    n = 0
    for label, cls in enumerate(classes):
        wnid = cls[0]
        os.makedirs(os.path.join(out, split, wnid), exist_ok=True)
        for i in range(per_class):
            # One random source per image, keyed by (seed, split, class, index): output is byte-identical
            # for a seed, and independent of how many images the other classes get.
            rng = random.Random(f'{seed}/{split}/{wnid}/{i}')
            name = f'{wnid}_{i}.JPEG' if split == 'train' else f'ILSVRC2012_val_{label * per_class + i + 1:08d}.JPEG'
            draw(cls, rng).save(os.path.join(out, split, wnid, name), quality=rng.randint(75, 95))
            n += 1
    return n


# ----------------------------------------------------------------------------------------------------------
# Toy SUN397: scenes made of the toy objects, in the official SUN397 layout

# (SUN397 category, object groups that appear in it, how many objects). Background colours are random in
# every scene, as in the object images, so a scene is told by which objects it holds and how many: features
# that recognise the toy objects (pre-training) help, which is what transfer experiments need to measure.
SCENES = [
    ('/a/aquarium', ['fish'], (2, 3)),
    ('/f/fishpond', ['fish', 'bird'], (2, 3)),
    ('/h/highway', ['car'], (1, 2)),
    ('/p/parking_lot', ['car'], (4, 6)),
    ('/k/kennel/outdoor', ['dog'], (2, 3)),
    ('/p/park', ['dog', 'bird'], (2, 3)),
    ('/o/orchard', ['fruit'], (2, 3)),
    ('/m/market/outdoor', ['fruit', 'car'], (2, 3)),
]


def draw_scene(scene, rng):
    _, groups, (lo, hi) = scene
    w, h = rng.randint(128, 224), rng.randint(128, 224)
    img = _background(w, h, rng.random(), 0.3, rng)
    by_group = {c[1]: [] for c in toy_classes()}
    for c in toy_classes():
        by_group[c[1]].append(c)
    n = rng.randint(lo, hi)
    for i in range(n):
        group = groups[i % len(groups)] if i < len(groups) else rng.choice(groups)  # every group appears
        _paste_object(img, rng.choice(by_group[group]), rng.uniform(0.1, 0.18) * min(w, h), rng)
    return img


def write_sun397(out, per_class, n_train, n_test, splits, seed):
    """OUT/SUN397/<letter>/<category>/sun_<16 letters>.jpg, ClassName.txt, Partitions/{Training,Testing}_NN.txt.
    Like the real release, a few .jpg files hold PNG data, and each split draws disjoint train and test
    images of every category (the real one: 50 + 50 of each)."""
    root = os.path.join(out, 'SUN397')
    os.makedirs(os.path.join(root, 'Partitions'), exist_ok=True)
    files = {}
    for scene in SCENES:
        cat = scene[0]
        os.makedirs(root + cat, exist_ok=True)
        files[cat] = []
        for i in range(per_class):
            rng = random.Random(f'{seed}/sun/{cat}/{i}')
            name = 'sun_' + ''.join(rng.choice('abcdefghijklmnopqrstuvwxyz') for _ in range(16)) + '.jpg'
            img = draw_scene(scene, rng)
            # SUN397 has PNG (and GIF, BMP) data in .jpg files; the toy set has some PNGs.
            img.save(root + f'{cat}/{name}', format='PNG' if rng.random() < 0.04 else 'JPEG', quality=90)
            files[cat].append(f'{cat}/{name}')
    with open(os.path.join(root, 'ClassName.txt'), 'w') as f:
        f.write(''.join(f'{scene[0]}\n' for scene in sorted(SCENES)))
    for k in range(1, splits + 1):
        train, test = [], []
        for cat in sorted(files):
            order = sorted(files[cat])
            random.Random(f'{seed}/sun-split/{k}/{cat}').shuffle(order)
            train += order[:n_train]
            test += order[n_train:n_train + n_test]
        for kind, rows in (('Training', train), ('Testing', test)):
            with open(os.path.join(root, 'Partitions', f'{kind}_{k:02d}.txt'), 'w') as f:
                f.write(''.join(f'{r}\n' for r in rows))
    return len(SCENES) * per_class


def write_places(out, n_train, n_val, seed):
    """A toy Places (Table 3's scene pre-training) in Places365-Standard's layout, with the toy SUN397's scene
    categories drawn afresh: OUT/Places365/data_256/<letter>/<category>/NNNNNNNN.jpg listed in
    places365_train_standard.txt (`/a/aquarium/00000001.jpg 0`), flat val_256/Places365_val_NNNNNNNN.jpg listed
    in places365_val.txt (`Places365_val_00000001.jpg 0`), and categories_places365.txt (`/a/aquarium 0`)."""
    root = os.path.join(out, 'Places365')
    cats = sorted(SCENES)
    train, val = [], []
    for label, scene in enumerate(cats):
        os.makedirs(os.path.join(root, 'data_256') + scene[0], exist_ok=True)
        for i in range(n_train + n_val):
            img = draw_scene(scene, random.Random(f'{seed}/places/{scene[0]}/{i}'))
            if i < n_train:
                rel = f'{scene[0]}/{i + 1:08d}.jpg'
                img.save(os.path.join(root, 'data_256') + rel, quality=90)
                train.append(f'{rel} {label}')
            else:
                name = f'Places365_val_{len(val) + 1:08d}.jpg'
                os.makedirs(os.path.join(root, 'val_256'), exist_ok=True)
                img.save(os.path.join(root, 'val_256', name), quality=90)
                val.append(f'{name} {label}')
    _write_lines(os.path.join(root, 'places365_train_standard.txt'), train)
    _write_lines(os.path.join(root, 'places365_val.txt'), val)
    _write_lines(os.path.join(root, 'categories_places365.txt'), [f'{scene[0]} {k}' for k, scene in enumerate(cats)])
    return len(train), len(val)


# ----------------------------------------------------------------------------------------------------------
# Toy PASCAL VOC: VOCdevkit/VOC2007 (detection) and VOCdevkit/VOC2012 (action classification), in the devkit's layout

# The devkit's class and action names (datasets.VOC_CLASSES, VOC_ACTIONS; not imported, as datasets imports torch).
VOC_CLASSES = ('aeroplane', 'bicycle', 'bird', 'boat', 'bottle', 'bus', 'car', 'cat', 'chair', 'cow', 'diningtable',
               'dog', 'horse', 'motorbike', 'person', 'pottedplant', 'sheep', 'sofa', 'train', 'tvmonitor')
VOC_ACTIONS = ('jumping', 'phoning', 'playinginstrument', 'reading', 'ridingbike', 'ridinghorse', 'running',
               'takingphoto', 'usingcomputer', 'walking')

# (VOC class, toy ImageNet group, which of the group's classes it is drawn as, size factor). Real ImageNet holds
# many dog, cat, bird, car and boat classes, so its features fit VOC's objects; here each VOC class is drawn as
# some of the toy classes: dog and cat share the dog family's shape and differ in colour and texture, car and bus
# the car family's.
VOC07_OBJECTS = [
    ('bird', 'bird', (0, 1, 2, 3), 1.0),
    ('boat', 'fish', (0, 1, 2, 3), 1.0),
    ('bus', 'car', (2, 3), 1.3),
    ('car', 'car', (0, 1), 1.0),
    ('cat', 'dog', (2, 3), 1.0),
    ('dog', 'dog', (0, 1), 1.0),
    ('pottedplant', 'fruit', (0, 1, 2, 3), 0.9),
]
VOC07_DIFFICULT_PIXELS = 450  # an object with fewer visible pixels (about 21 x 21) is marked difficult


def _toy_class(group, k):
    """The row of toy_classes() of the k-th class of a toy ImageNet group."""
    return next(c for c in toy_classes() if c[0] == GROUPS[group][k])


def _xml(tag, value, depth=0):
    """An annotation element as the devkit's files write it: one element per line, indented with tabs."""
    pad = '\t' * depth
    if isinstance(value, list):
        return f'{pad}<{tag}>\n' + ''.join(_xml(t, v, depth + 1) for t, v in value) + f'{pad}</{tag}>\n'
    return f'{pad}<{tag}>{value}</{tag}>\n'


def _voc_box(mask):
    """The tight box of a mask in VOC's 1-based inclusive pixels (x1, y1, x2, y2), or None if nothing is visible.
    PIL's getbbox is 0-based with exclusive right and bottom edges, so only the left and top move by one."""
    box = mask.getbbox()
    return None if box is None else (box[0] + 1, box[1] + 1, box[2], box[3])


def draw_voc07(rng):
    """(image, objects) of one toy VOC 2007 scene: 1-4 objects on a random background, later ones in front.
    objects: [{'name', 'mask' (the visible pixels), 'box', 'truncated', 'difficult'}]. Objects may reach past the
    image edge: their box is clipped to the image and they are truncated, as in VOC."""
    w, h = rng.randint(160, 320), rng.randint(160, 320)
    img = _background(w, h, rng.random(), 0.3, rng)
    placed, objects = [], []
    for _ in range(rng.randint(1, 4)):
        name, group, which, scale = rng.choice(VOC07_OBJECTS)
        cls = _toy_class(group, rng.choice(which))
        r = rng.uniform(0.05, 0.3) * scale * min(w, h)
        for _ in range(20):  # a place where it covers no other object's centre, so that each stays mostly visible
            cx, cy = rng.uniform(0.6 * r, w - 0.6 * r), rng.uniform(0.6 * r, h - 0.6 * r)
            if all(math.hypot(cx - x, cy - y) > max(r, q) + 0.5 * min(r, q) for x, y, q in placed):
                break
        else:
            continue
        placed.append((cx, cy, r))
        objects.append({'name': name, 'mask': _paste_object(img, cls, r, rng, center=(cx, cy))})
    for i, obj in enumerate(objects):
        for later in objects[i + 1:]:  # VOC boxes the visible part of an occluded object
            obj['mask'] = ImageChops.subtract(obj['mask'], later['mask'])
        obj['box'] = _voc_box(obj['mask'])
        if obj['box'] is not None:
            x1, y1, x2, y2 = obj['box']
            obj['truncated'] = x1 == 1 or y1 == 1 or x2 == w or y2 == h
            obj['difficult'] = obj['mask'].histogram()[255] < VOC07_DIFFICULT_PIXELS
    return img, [o for o in objects if o['box'] is not None]  # an object hidden behind others is not annotated


def _voc07_xml(image_id, size, objects):
    obj = [('object', [('name', o['name']), ('pose', 'Unspecified'), ('truncated', int(o['truncated'])),
                       ('difficult', int(o['difficult'])),
                       ('bndbox', [(k, v) for k, v in zip(('xmin', 'ymin', 'xmax', 'ymax'), o['box'])])])
           for o in objects]
    return _xml('annotation', [('folder', 'VOC2007'), ('filename', f'{image_id}.jpg'),
                               ('source', [('database', 'The VOC2007 Database'), ('annotation', 'PASCAL VOC2007'),
                                           ('image', 'toydata.py')]),
                               ('size', [('width', size[0]), ('height', size[1]), ('depth', 3)]),
                               ('segmented', 0)] + obj)


def _write_lines(path, lines):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'w') as f:
        f.write(''.join(f'{line}\n' for line in lines))


def write_voc07(out, n_trainval, n_test, seed):
    """OUT/VOCdevkit/VOC2007/{JPEGImages,Annotations,ImageSets/Main}: trainval images get odd ids and test images
    even ones (000001, 000002, ...; VOC 2007 also mixes them), each image keyed by (seed, set, index). Main/ holds
    {train,val,trainval,test}.txt and <class>_<set>.txt for all 20 classes: ' 1' if the image holds a non-difficult
    object of the class, ' 0' if only difficult ones, '-1' otherwise, as the devkit's files."""
    root = os.path.join(out, 'VOCdevkit', 'VOC2007')
    for d in ('JPEGImages', 'Annotations', os.path.join('ImageSets', 'Main')):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    sets, present = {}, {}
    for split, n, first in (('trainval', n_trainval, 1), ('test', n_test, 2)):
        sets[split] = []
        for i in range(n):
            image_id = f'{first + 2 * i:06d}'
            rng = random.Random(f'{seed}/voc07/{split}/{i}')
            img, objects = draw_voc07(rng)
            img.save(os.path.join(root, 'JPEGImages', f'{image_id}.jpg'), quality=rng.randint(75, 95))
            with open(os.path.join(root, 'Annotations', f'{image_id}.xml'), 'w') as f:
                f.write(_voc07_xml(image_id, img.size, objects))
            sets[split].append(image_id)
            present[image_id] = {}
            for o in objects:
                present[image_id][o['name']] = max(present[image_id].get(o['name'], -1), 0 if o['difficult'] else 1)
    if n_trainval:
        order = list(sets['trainval'])
        random.Random(f'{seed}/voc07-split').shuffle(order)
        sets['train'], sets['val'] = sorted(order[:(len(order) + 1) // 2]), sorted(order[(len(order) + 1) // 2:])
    for split, ids in sets.items():
        if not ids:
            continue  # as the trainval release, which has no test.txt
        _write_lines(os.path.join(root, 'ImageSets', 'Main', f'{split}.txt'), ids)
        for c in VOC_CLASSES:
            _write_lines(os.path.join(root, 'ImageSets', 'Main', f'{c}_{split}.txt'),
                         [f'{i} {present[i].get(c, -1):2d}' for i in ids])
    return {k: len(v) for k, v in sets.items()}



# Toy COCO (He et al. 2019): the toy VOC 2007 scenes, annotated as COCO's instances files are. The classes keep the
# ids and names COCO gives them (car is 3, potted plant 64...), so a category id is not its position; each object's
# visible pixels are its polygons (OpenCV's outer contours), and about one object in 20 is a crowd region in
# uncompressed RLE, as COCO's crowds are.
COCO_CATEGORIES = {'bird': (16, 'bird', 'animal'), 'boat': (9, 'boat', 'vehicle'), 'bus': (6, 'bus', 'vehicle'),
                   'car': (3, 'car', 'vehicle'), 'cat': (17, 'cat', 'animal'), 'dog': (18, 'dog', 'animal'),
                   'pottedplant': (64, 'potted plant', 'furniture')}
COCO_CROWD = 0.05


def _mask_polygons(mask):
    """COCO polygons [[x1, y1, ...], ...] of a mask's outer contours (pixel centres + 0.5: COCO's continuous frame)."""
    import cv2  # opencv-contrib-python-headless, in requirements.txt for R*CNN's Selective Search
    contours, _ = cv2.findContours((np.asarray(mask) > 127).astype(np.uint8), cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
    return [[round(float(v) + 0.5, 2) for v in c.reshape(-1)] for c in contours if len(c) >= 3]


def _uncompressed_rle(mask):
    """COCO's uncompressed RLE of a mask: run lengths over the column-major pixels, starting with a run of zeros."""
    flat = (np.asarray(mask) > 127).T.reshape(-1)
    change = np.flatnonzero(np.diff(flat.astype(np.int8))) + 1
    runs = np.diff(np.concatenate([[0], change, [flat.size]])).tolist()
    return {'counts': ([0] + runs) if flat[0] else runs, 'size': [mask.size[1], mask.size[0]]}


def write_coco(out, n_train, n_val, seed):
    """OUT/COCO/{train2017,val2017}/<12-digit id>.jpg and OUT/COCO/annotations/instances_{train2017,val2017}.json:
    toy VOC 2007 scenes (draw_voc07), each object an annotation with its COCO category id, polygons, area and bbox
    [x, y, w, h] of the polygons (of the pixels for a crowd), and iscrowd. Image ids are 1.. in train and 100001.. in val. Returns {split: (images,
    annotations)}."""
    from pycocotools import mask as mask_utils
    root = os.path.join(out, 'COCO')
    categories = [{'id': i, 'name': n, 'supercategory': s} for i, n, s in sorted(COCO_CATEGORIES.values())]
    counts, ann_id = {}, 1
    for split, n, first in (('train2017', n_train, 1), ('val2017', n_val, 100001)):
        os.makedirs(os.path.join(root, split), exist_ok=True)
        images, annotations = [], []
        for i in range(n):
            rng = random.Random(f'{seed}/coco/{split}/{i}')
            img, objects = draw_voc07(rng)
            image_id = first + i
            name = f'{image_id:012d}.jpg'
            img.save(os.path.join(root, split, name), quality=rng.randint(75, 95))
            images.append({'id': image_id, 'file_name': name, 'width': img.size[0], 'height': img.size[1], 'license': 1})
            for o in objects:
                crowd = rng.random() < COCO_CROWD
                if crowd:  # the pixels themselves: area and box of the mask (1-based inclusive -> [x, y, w, h])
                    x1, y1, x2, y2 = o['box']
                    seg, area, bbox = _uncompressed_rle(o['mask']), float(o['mask'].histogram()[255]), [x1 - 1, y1 - 1, x2 - x1 + 1, y2 - y1 + 1]
                else:  # as COCO's: the box of the polygons' points, the area of the polygons (pycocotools)
                    seg = _mask_polygons(o['mask'])
                    if not seg:
                        continue  # slivers with no contour of 3 points
                    xy = np.concatenate([np.reshape(p, (-1, 2)) for p in seg])
                    (x1, y1), (x2, y2) = xy.min(0), xy.max(0)
                    bbox = [round(float(v), 2) for v in (x1, y1, x2 - x1, y2 - y1)]
                    area = float(mask_utils.area(mask_utils.merge(mask_utils.frPyObjects(seg, img.size[1], img.size[0]))))
                annotations.append({'id': ann_id, 'image_id': image_id, 'category_id': COCO_CATEGORIES[o['name']][0],
                                    'segmentation': seg, 'area': area, 'iscrowd': int(crowd), 'bbox': bbox})
                ann_id += 1
        os.makedirs(os.path.join(root, 'annotations'), exist_ok=True)
        with open(os.path.join(root, 'annotations', f'instances_{split}.json'), 'w') as f:
            json.dump({'info': {'description': 'wmig toy COCO (toydata.py)', 'version': '1.0', 'year': 2017},
                       'licenses': [{'id': 1, 'name': 'CC0', 'url': ''}], 'images': images,
                       'annotations': annotations, 'categories': categories}, f)
        counts[split] = (len(images), len(annotations))
    return counts

# Toy VOC 2012 actions: a person is a stick figure (head, torso, two-segment limbs) whose pose tells the action, with
# a prop for the actions that have one, drawn in a toy ImageNet family so that pre-trained features help with it
# (R*CNN's secondary regions): a dog-family animal to ride, car-family (star) wheels, a fish-family (triangle)
# instrument, a bird-family (square) computer and camera, a fruit-family (cross) phone and a book in a toy class's
# texture. Joints are in units of the person's height H, x forward (mirrored when facing left), y down, from the
# ground under the feet (under the animal's or the wheels' for the riders).
_STAND = {'head': (0, -0.91), 'neck': (0, -0.8), 'hip': (0, -0.47), 'knee_f': (0.03, -0.24), 'foot_f': (0.05, 0),
          'knee_b': (-0.03, -0.24), 'foot_b': (-0.05, 0), 'elbow_b': (-0.05, -0.64), 'hand_b': (-0.06, -0.49)}
POSES = {
    'jumping': dict(_STAND, elbow_f=(0.12, -0.98), hand_f=(0.18, -1.12), elbow_b=(-0.12, -0.98), hand_b=(-0.18, -1.12),
                    knee_f=(0.16, -0.3), foot_f=(0.12, -0.1), knee_b=(-0.16, -0.3), foot_b=(-0.12, -0.1)),
    'phoning': dict(_STAND, elbow_f=(0.13, -0.7), hand_f=(0.08, -0.88)),
    'playinginstrument': dict(_STAND, elbow_f=(0.12, -0.6), hand_f=(0.2, -0.52), elbow_b=(0.1, -0.68), hand_b=(0.22, -0.7)),
    'reading': dict(_STAND, head=(0.03, -0.9), elbow_f=(0.08, -0.6), hand_f=(0.2, -0.66), elbow_b=(0.03, -0.6),
                    hand_b=(0.16, -0.68)),
    'ridingbike': dict(_STAND, head=(0.09, -0.9), neck=(0.06, -0.79), knee_f=(0.14, -0.34), foot_f=(0.04, -0.15),
                       knee_b=(0.1, -0.32), foot_b=(-0.02, -0.12), elbow_f=(0.13, -0.66), hand_f=(0.22, -0.6),
                       elbow_b=(0.11, -0.67), hand_b=(0.2, -0.61)),
    'ridinghorse': dict(_STAND, knee_f=(0.1, -0.36), foot_f=(0.06, -0.17), knee_b=(0.08, -0.37), foot_b=(0.03, -0.19),
                        elbow_f=(0.1, -0.62), hand_f=(0.2, -0.56), elbow_b=(0.08, -0.63), hand_b=(0.18, -0.58)),
    'running': {'head': (0.1, -0.88), 'neck': (0.07, -0.77), 'hip': (0, -0.45), 'knee_f': (0.2, -0.3),
                'foot_f': (0.16, -0.08), 'knee_b': (-0.12, -0.24), 'foot_b': (-0.28, -0.04), 'elbow_f': (0.17, -0.66),
                'hand_f': (0.24, -0.76), 'elbow_b': (-0.12, -0.62), 'hand_b': (-0.2, -0.52)},
    'takingphoto': dict(_STAND, elbow_f=(0.14, -0.78), hand_f=(0.12, -0.9), elbow_b=(-0.1, -0.8), hand_b=(0.06, -0.92)),
    'usingcomputer': {'head': (0.03, -0.74), 'neck': (0.02, -0.63), 'hip': (0, -0.3), 'knee_f': (0.2, -0.3),
                      'foot_f': (0.2, 0), 'knee_b': (0.18, -0.29), 'foot_b': (0.17, 0), 'elbow_f': (0.12, -0.45),
                      'hand_f': (0.26, -0.44), 'elbow_b': (0.1, -0.47), 'hand_b': (0.24, -0.46)},
    'walking': dict(_STAND, knee_f=(0.07, -0.24), foot_f=(0.12, 0), knee_b=(-0.05, -0.24), foot_b=(-0.1, 0),
                    elbow_f=(0.06, -0.64), hand_f=(0.1, -0.5), elbow_b=(-0.05, -0.64), hand_b=(-0.08, -0.5)),
}
LIFT = {'jumping': -0.15}  # off the ground
PROP_REACH = {'ridinghorse': (-0.4, 0.6), 'ridingbike': (-0.46, 0.48), 'usingcomputer': (0, 0.55),
              'playinginstrument': (0, 0.36), 'reading': (0, 0.32), 'takingphoto': (0, 0.25), 'phoning': (0, 0.17)}


def _extent(action):
    """(left, right, top, bottom) of a figure with its prop, in units of H, facing right: the joints, the head's
    radius, half a limb's width and the joints' jitter, so that a figure placed inside the image is whole."""
    xs, ys = zip(*POSES[action].values())
    left, right = PROP_REACH.get(action, (0, 0))
    return min(min(xs), left) - 0.1, max(max(xs), right) + 0.1, min(ys) + LIFT.get(action, 0) - 0.12, 0.07


def _prop_mask(size, action, at, H, rng):
    """The mask of an action's prop (None for jumping, running, walking) and the toy group it is drawn as.
    `at(x, y)` maps pose units to pixels."""
    mask = Image.new('L', size, 0)
    d = ImageDraw.Draw(mask)
    t = max(2, round(0.04 * H))

    def rect(xa, ya, xb, yb):  # two corners in pose units -> a PIL box
        (x1, y1), (x2, y2) = at(xa, ya), at(xb, yb)
        return [min(x1, x2), min(y1, y2), max(x1, x2), max(y1, y2)]
    if action == 'ridinghorse':  # body, neck, head and legs of a dog-family animal
        d.ellipse(rect(-0.36, -0.44, 0.4, -0.16), fill=255)
        d.line([at(0.3, -0.38), at(0.44, -0.58)], fill=255, width=3 * t)
        d.ellipse(rect(0.39, -0.69, 0.57, -0.51), fill=255)
        for x in (-0.28, -0.18, 0.2, 0.3):
            d.line([at(x, -0.22), at(x + 0.02 * rng.uniform(-1, 1), 0)], fill=255, width=2 * t)
        return mask, 'dog'
    if action == 'ridingbike':  # two car-family (star) wheels; the frame is drawn apart
        for x in (-0.26, 0.28):
            d.polygon(_polygon('star', *at(x, -0.17), 0.17 * H, rng.uniform(0, 2 * math.pi)), fill=255)
        return mask, 'car'
    if action == 'playinginstrument':
        d.polygon(_polygon('triangle', *at(0.18, -0.6), 0.15 * H, rng.uniform(0, 2 * math.pi)), fill=255)
        return mask, 'fish'
    if action == 'usingcomputer':  # a box on a table in front
        d.polygon(_polygon('square', *at(0.38, -0.52), 0.14 * H, math.radians(rng.uniform(-8, 8))), fill=255)
        return mask, 'bird'
    if action == 'takingphoto':
        d.polygon(_polygon('square', *at(0.16, -0.91), 0.07 * H, math.radians(rng.uniform(-10, 10))), fill=255)
        return mask, 'bird'
    if action == 'phoning':
        d.polygon(_polygon('cross', *at(0.09, -0.89), 0.06 * H, rng.uniform(0, 2 * math.pi)), fill=255)
        return mask, 'fruit'
    if action == 'reading':  # a flat, open book held in front of the chest
        d.rectangle(rect(0.12, -0.74, 0.3, -0.62), fill=255)
        return mask, 'fruit'
    return None, None


def _draw_person(img, action, x0, ground, H, facing, rng):
    """Draw one person doing `action` (and its prop) with the feet's ground point at (x0, ground). Returns the
    person's mask (the figure without its prop: VOC boxes the person only) and a point on the torso."""
    w, h = img.size
    jitter = {k: (x + rng.uniform(-0.02, 0.02), y + rng.uniform(-0.02, 0.02)) for k, (x, y) in POSES[action].items()}
    lift = LIFT.get(action, 0)

    def at(x, y):
        return (x0 + facing * x * H, ground + (y + lift) * H)
    p = {k: at(*v) for k, v in jitter.items()}
    prop, group = _prop_mask((w, h), action, at, H, rng)
    in_front = action not in ('ridinghorse', 'ridingbike')
    if prop is not None and not in_front:  # the animal or bike is behind the rider
        cls = rng.choice([c for c in toy_classes() if c[1] == group])
        _fill(img, prop, cls[3], *_colours(cls, rng), rng)
    if action == 'ridingbike':  # the frame
        grey = tuple([rng.randint(30, 90)] * 3)
        ImageDraw.Draw(img).line([at(-0.26, -0.17), at(0, -0.45), at(0.24, -0.6), at(0.28, -0.17)], fill=grey,
                                 width=max(2, round(0.03 * H)))
    cloth = tuple(int(255 * v) for v in colorsys.hsv_to_rgb(rng.random(), rng.uniform(0.4, 0.9), rng.uniform(0.3, 0.9)))
    back = tuple(int(v * 0.7) for v in cloth)  # the far limbs a little darker
    skin = tuple(int(255 * v) for v in colorsys.hsv_to_rgb(rng.uniform(0.02, 0.1), rng.uniform(0.3, 0.6), rng.uniform(0.45, 0.95)))
    t = max(2, round(0.06 * H))
    mask = Image.new('L', (w, h), 0)
    for d, (c_back, c_body, c_skin) in ((ImageDraw.Draw(img), (back, cloth, skin)), (ImageDraw.Draw(mask), (255, 255, 255))):
        d.line([p['hip'], p['knee_b'], p['foot_b']], fill=c_back, width=t, joint='curve')
        d.line([p['neck'], p['elbow_b'], p['hand_b']], fill=c_back, width=t, joint='curve')
        d.line([p['neck'], p['hip']], fill=c_body, width=round(1.6 * t))
        d.line([p['hip'], p['knee_f'], p['foot_f']], fill=c_body, width=t, joint='curve')
        d.line([p['neck'], p['elbow_f'], p['hand_f']], fill=c_body, width=t, joint='curve')
        (hx, hy), r = p['head'], 0.09 * H
        d.ellipse([hx - r, hy - r, hx + r, hy + r], fill=c_skin)
    if prop is not None and in_front:  # held in the hands, in front of the body
        cls = rng.choice([c for c in toy_classes() if c[1] == group])
        _fill(img, prop, cls[3], *_colours(cls, rng), rng)
    return mask, ((p['neck'][0] + p['hip'][0]) / 2, (p['neck'][1] + p['hip'][1]) / 2)


def draw_voc12(actions, rng):
    """(image, persons) of one toy VOC 2012 action image: one person per action in `actions`, side by side.
    persons: [{'action', 'mask', 'box', 'point'}]."""
    w = rng.randint(160, 320) if len(actions) == 1 else rng.randint(240, 320)  # two people: a wide image
    h = rng.randint(160, 320)
    img = _background(w, h, rng.random(), 0.3, rng)
    persons = []
    slot = w / len(actions)
    for k, action in enumerate(actions):
        facing = rng.choice((-1, 1))
        left, right, top, bottom = _extent(action)
        if facing < 0:
            left, right = -right, -left
        H = min(rng.uniform(0.6, 0.85) * h, (slot - 6) / (right - left), (h - 6) / (bottom - top))
        x0 = rng.uniform(k * slot + 3 - left * H, (k + 1) * slot - 3 - right * H)
        ground = rng.uniform(3 - top * H, h - 3 - bottom * H)
        mask, (px, py) = _draw_person(img, action, x0, ground, H, facing, rng)
        persons.append({'action': action, 'mask': mask, 'point': (int(px) + 1, int(py) + 1)})
    for i, person in enumerate(persons):
        for later in persons[i + 1:]:
            person['mask'] = ImageChops.subtract(person['mask'], later['mask'])
        person['box'] = _voc_box(person['mask'])
    return img, persons


def _voc12_xml(image_id, size, persons):
    """As the VOC 2012 action annotations: elements in alphabetical order, <actions> with all 11 flags ('other'
    too), a <point> on the body (for the boxless taster)."""
    obj = [('object', [('name', 'person'),
                       ('actions', [(a, int(a == p['action'])) for a in sorted(VOC_ACTIONS + ('other',))]),
                       ('bndbox', [(k, p['box'][i]) for k, i in (('xmax', 2), ('xmin', 0), ('ymax', 3), ('ymin', 1))]),
                       ('difficult', 0), ('pose', 'Unspecified'),
                       ('point', [('x', p['point'][0]), ('y', p['point'][1])])])
           for p in persons]
    return _xml('annotation', [('filename', f'{image_id}.jpg'), ('folder', 'VOC2012')] + obj + [
        ('segmented', 0), ('size', [('depth', 3), ('height', size[1]), ('width', size[0])]),
        ('source', [('annotation', 'PASCAL VOC2012'), ('database', 'The VOC2012 Database'), ('image', 'toydata.py')])])


def write_voc12(out, per_action, seed):
    """OUT/VOCdevkit/VOC2012/{JPEGImages,Annotations,ImageSets/Action}: `per_action` persons of each action in
    train and in val, one or two to an image, one action each. Train images get ids 2008_000001, 2008_000003, ...,
    val images the even ones. Action/ holds {train,val,trainval}.txt (image ids) and <action>_<set>.txt with
    `<id> <object index> <label>` per person, label ' 1' or '-1', as the devkit's files."""
    root = os.path.join(out, 'VOCdevkit', 'VOC2012')
    for d in ('JPEGImages', 'Annotations', os.path.join('ImageSets', 'Action')):
        os.makedirs(os.path.join(root, d), exist_ok=True)
    sets, people = {}, {}
    for split, first in (('train', 1), ('val', 2)):
        todo = [a for a in VOC_ACTIONS for _ in range(per_action)]
        order = random.Random(f'{seed}/voc12/{split}/actions')
        order.shuffle(todo)
        sets[split] = []
        n_images = 0
        while todo:  # about half the images hold two people
            n = 2 if len(todo) > 1 and order.random() < 0.5 else 1
            actions, todo = todo[:n], todo[n:]
            image_id = f'2008_{first + 2 * n_images:06d}'
            rng = random.Random(f'{seed}/voc12/{split}/{n_images}')
            img, persons = draw_voc12(actions, rng)
            img.save(os.path.join(root, 'JPEGImages', f'{image_id}.jpg'), quality=rng.randint(75, 95))
            with open(os.path.join(root, 'Annotations', f'{image_id}.xml'), 'w') as f:
                f.write(_voc12_xml(image_id, img.size, persons))
            sets[split].append(image_id)
            people[image_id] = [p['action'] for p in persons]
            n_images += 1
    sets['trainval'] = sorted(sets['train'] + sets['val'])
    for split, ids in sets.items():
        _write_lines(os.path.join(root, 'ImageSets', 'Action', f'{split}.txt'), ids)
        for a in VOC_ACTIONS:
            _write_lines(os.path.join(root, 'ImageSets', 'Action', f'{a}_{split}.txt'),
                         [f'{i} {k} {1 if b == a else -1:2d}' for i in ids for k, b in enumerate(people[i], 1)])
    return {k: len(v) for k, v in sets.items()}, 2 * per_action * len(VOC_ACTIONS)


# ----------------------------------------------------------------------------------------------------------
# Toy transfer sets: Kornblith et al. 2019's twelve data sets in miniature, each in its official layout (the one
# datasets.read_transfer reads; datasets.TRANSFER_SETS lists them), with four of each set's real class names, each
# drawn as one toy class so that the classes are learnable and pre-training on the toy ImageNet helps.

TRANSFER_CLASSES = {
    'food101': ['apple_pie', 'baby_back_ribs', 'baklava', 'beef_carpaccio'],
    'cifar10': ['airplane', 'automobile', 'bird', 'cat'],
    'cifar100': ['apple', 'aquarium_fish', 'baby', 'bear'],
    'birdsnap': ['Acadian Flycatcher', 'Acorn Woodpecker', 'Alder Flycatcher', "Allen's Hummingbird"],
    'cars': ['AM General Hummer SUV 2000', 'Acura RL Sedan 2012', 'Acura TL Sedan 2012', 'Acura TL Type-S 2008'],
    'aircraft': ['707-320', 'A300B4', 'Cessna 172', 'F-16A/B'],  # variant names hold spaces and slashes
    'dtd': ['banded', 'blotchy', 'braided', 'bubbly'],
    'pets': ['Abyssinian', 'american_bulldog', 'american_pit_bull_terrier', 'basset_hound'],  # cats capitalised
    'caltech101': ['BACKGROUND_Google', 'Faces_easy', 'accordion', 'airplanes'],
    'flowers102': ['pink primrose', 'hard-leaved pocket orchid', 'canterbury bells', 'sweet pea'],
}
CIFAR100_COARSE = ['fruit_and_vegetables', 'fish', 'people', 'large_carnivores']
BIRDSNAP_SCIENTIFIC = ['Empidonax virescens', 'Melanerpes formicivorus', 'Empidonax alnorum', 'Selasphorus sasin']
BIRDSNAP_PARTS = ('back', 'beak', 'belly', 'breast', 'crown', 'forehead', 'left_cheek', 'left_eye', 'left_leg',
                  'left_wing', 'nape', 'right_cheek', 'right_eye', 'right_leg', 'right_wing', 'tail', 'throat')
# Caltech-101's rule takes 30 training images of each class (datasets.CALTECH_TRAIN_PER_CLASS), so every toy class
# has a few more, at 32 px to stay small; the test set is what is left over.
CALTECH_TOY_IMAGES = (31, 32, 33, 34)


def _transfer_image(name, k, key, seed, size=64):
    """One image of class k of the toy transfer set `name`: a toy class drawn by draw(), shrunk to at most `size`
    px. Keyed by (seed, set, key), so every file is byte-identical for a seed."""
    s = list(TRANSFER_CLASSES).index(name)
    rng = random.Random(f'{seed}/transfer/{name}/{key}')
    img = draw(toy_classes()[(3 * s + 5 * k) % 20], rng)  # four different toy classes for each set
    img.thumbnail((size, size))
    return img


def _save(img, path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    img.save(path, quality=85)
    return path


def _savemat(path, variables):
    """scipy.io.savemat with a fixed header text: scipy writes the time into the 116 bytes of text that open a MAT 5
    file, and the toy files must be byte-identical for a seed."""
    import scipy.io  # toydata needs scipy only for the Cars and Flowers .mat files
    buf = io.BytesIO()
    scipy.io.savemat(buf, variables)
    data = bytearray(buf.getvalue())
    data[:116] = b'MATLAB 5.0 MAT-file, Platform: posix, written by toydata.py'.ljust(116)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, 'wb') as f:
        f.write(data)


def _counts(root, classes, train, val, test, **extra):
    return {'root': root, 'classes': classes, 'train': train, 'val': val, 'test': test, **extra}


def write_food101(root, per_class, seed):
    """ROOT/images/<class>/<id>.jpg, meta/{classes,labels,train,test}.txt and meta/{train,test}.json
    ({class: ["class/id", ...]}), as food-101.tar.gz unpacks."""
    names = TRANSFER_CLASSES['food101']
    lists = {'train': {}, 'test': {}}
    for k, c in enumerate(names):
        for i in range(2 * per_class):
            image_id = f'{k + 1}{i:05d}'
            _save(_transfer_image('food101', k, image_id, seed), os.path.join(root, 'images', c, f'{image_id}.jpg'))
            lists['train' if i < per_class else 'test'].setdefault(c, []).append(f'{c}/{image_id}')
    _write_lines(os.path.join(root, 'meta', 'classes.txt'), names)
    _write_lines(os.path.join(root, 'meta', 'labels.txt'), [c.replace('_', ' ').capitalize() for c in names])
    for split, listing in lists.items():
        _write_lines(os.path.join(root, 'meta', f'{split}.txt'), [p for c in names for p in listing[c]])
        with open(os.path.join(root, 'meta', f'{split}.json'), 'w') as f:
            json.dump(listing, f)
    return _counts(root, len(names), len(names) * per_class, 0, len(names) * per_class)


def write_cifar(root, per_class, seed, name):
    """ROOT/cifar-10-batches-py/{data_batch_1..5,test_batch,batches.meta} or ROOT/cifar-100-python/{train,test,meta}:
    pickled dicts as the "python version" holds them, loaded with encoding='bytes': b'data' uint8 N x 3072 (the red,
    green and blue 32 x 32 planes, row-major), b'labels' (CIFAR-100: b'fine_labels', b'coarse_labels'), b'filenames',
    b'batch_label'."""
    ten = name == 'cifar10'
    names = TRANSFER_CLASSES[name]
    folder = os.path.join(root, 'cifar-10-batches-py' if ten else 'cifar-100-python')
    os.makedirs(folder, exist_ok=True)

    def dump(file, d):
        with open(os.path.join(folder, file), 'wb') as f:
            pickle.dump(d, f)
    for split, files in (('train', [f'data_batch_{b}' for b in range(1, 6)] if ten else ['train']),
                         ('test', ['test_batch'] if ten else ['test'])):
        order = [(k, i) for k in range(len(names)) for i in range(per_class)]
        random.Random(f'{seed}/transfer/{name}/{split}').shuffle(order)  # classes interleave, as in the batches
        for b, file in enumerate(files):
            part = order[b::len(files)]
            data = np.stack([np.asarray(_transfer_image(name, k, f'{split}/{i}', seed).convert('RGB').resize((32, 32)))
                             .transpose(2, 0, 1).reshape(3072) for k, i in part]) if part else np.zeros((0, 3072), np.uint8)
            d = {b'batch_label': f'{"training" if split == "train" else "testing"} batch {b + 1} of {len(files)}'.encode(),
                 b'filenames': [f'{names[k]}_s_{i:06d}.png'.encode() for k, i in part], b'data': data}
            if ten:
                d[b'labels'] = [k for k, _ in part]
            else:
                d[b'fine_labels'], d[b'coarse_labels'] = [k for k, _ in part], [k for k, _ in part]  # a superclass each
            dump(file, d)
    if ten:
        dump('batches.meta', {b'num_cases_per_batch': per_class * len(names) // 5, b'num_vis': 3072,
                              b'label_names': [n.encode() for n in names]})
    else:
        dump('meta', {b'fine_label_names': [n.encode() for n in names],
                      b'coarse_label_names': [n.encode() for n in CIFAR100_COARSE]})
    return _counts(root, len(names), len(names) * per_class, 0, len(names) * per_class)


def write_birdsnap(root, per_class, seed):
    """ROOT/{species,images,test_images}.txt (tab-separated, a header line) and ROOT/download/images/<dir>/<id>.jpg
    where get_birdsnap.py saves them. Like the real download, some listed images are missing (dead Flickr links):
    the first training image of the first species and the first test image of the second."""
    names = TRANSFER_CLASSES['birdsnap']
    dirs = [n.replace(' ', '_').replace("'", '') for n in names]
    header = ['url', 'md5', 'path', 'species_id', 'bb_x1', 'bb_y1', 'bb_x2', 'bb_y2'] + [
        f'{p}_{a}' for p in BIRDSNAP_PARTS for a in 'xy']
    rows, test = [], []
    for k, d in enumerate(dirs):
        for i in range(2 * per_class):
            photo = f'{4000000000 + 100000 * k + 37 * i}'
            path = f'{d}/{photo}.jpg'
            img = _transfer_image('birdsnap', k, path, seed)
            if (k, i) in ((0, 0), (1, per_class)):
                md5 = hashlib.md5(path.encode()).hexdigest()  # never downloaded
            else:
                with open(_save(img, os.path.join(root, 'download', 'images', path)), 'rb') as f:
                    md5 = hashlib.md5(f.read()).hexdigest()
            w, h = img.size
            box = [w // 4, h // 4, 3 * w // 4, 3 * h // 4]
            rows.append('\t'.join(map(str, [f'http://farm{k + 1}.staticflickr.com/{k + 1}{i:03d}/{photo}_x.jpg', md5,
                                            path, k + 1, *box] + [w // 2, h // 2] * len(BIRDSNAP_PARTS))))
            if i >= per_class:
                test.append(path)
    _write_lines(os.path.join(root, 'images.txt'), ['\t'.join(header)] + rows)
    _write_lines(os.path.join(root, 'test_images.txt'), ['path'] + test)
    _write_lines(os.path.join(root, 'species.txt'), ['id\tcommon\tscientific\tdir'] + [
        f'{k + 1}\t{n}\t{s}\t{d}' for k, (n, s, d) in enumerate(zip(names, BIRDSNAP_SCIENTIFIC, dirs))])
    n = len(names) * per_class
    return _counts(root, len(names), n - 1, 0, n - 1, missing=2)


def write_cars(root, per_class, seed):
    """ROOT/cars_{train,test}/NNNNN.jpg, devkit/{cars_meta,cars_train_annos,cars_test_annos}.mat and
    cars_test_annos_withlabels.mat: 'annotations' a 1 x N struct array (bbox_x1, bbox_y1, bbox_x2, bbox_y2, class
    1..K, fname; the devkit's test file has no class), 'class_names' a 1 x K cell array."""
    names = TRANSFER_CLASSES['cars']
    fields = ['bbox_x1', 'bbox_y1', 'bbox_x2', 'bbox_y2', 'class', 'fname']
    for split in ('train', 'test'):
        order = [(k, i) for k in range(len(names)) for i in range(per_class)]
        random.Random(f'{seed}/transfer/cars/{split}').shuffle(order)
        ann = np.zeros((1, len(order)), dtype=[(f, 'O') for f in fields])
        for j, (k, i) in enumerate(order):
            fname = f'{j + 1:05d}.jpg'
            img = _transfer_image('cars', k, f'{split}/{fname}', seed)
            _save(img, os.path.join(root, f'cars_{split}', fname))
            w, h = img.size
            ann[0, j] = tuple(np.array([[v]], np.uint16) for v in (1, 1, w, h)) + (np.array([[k + 1]], np.uint8), fname)
        _savemat(os.path.join(root, 'devkit', 'cars_train_annos.mat') if split == 'train' else
                 os.path.join(root, 'cars_test_annos_withlabels.mat'), {'annotations': ann})
        if split == 'test':
            unlabelled = np.zeros(ann.shape, dtype=[(f, 'O') for f in fields if f != 'class'])
            for f in unlabelled.dtype.names:
                unlabelled[f] = ann[f]
            _savemat(os.path.join(root, 'devkit', 'cars_test_annos.mat'), {'annotations': unlabelled})
    _savemat(os.path.join(root, 'devkit', 'cars_meta.mat'), {'class_names': np.array([names], dtype=object)})
    return _counts(root, len(names), len(names) * per_class, 0, len(names) * per_class)


def write_aircraft(root, per_class, seed):
    """ROOT (fgvc-aircraft-2013b)/data/images/<7-digit id>.jpg, data/variants.txt, data/images_variant_<split>.txt
    ("<id> <variant>") and data/images_<split>.txt for train, val, trainval and test."""
    names = TRANSFER_CLASSES['aircraft']
    data = os.path.join(root, 'data')
    lists = {'train': [], 'val': [], 'test': []}
    n = 0
    for k, v in enumerate(names):
        for split in lists:
            for _ in range(per_class):
                image_id = f'{1000000 + 7919 * n % 9000000:07d}'
                n += 1
                _save(_transfer_image('aircraft', k, image_id, seed), os.path.join(data, 'images', f'{image_id}.jpg'))
                lists[split].append((image_id, v))
    lists['trainval'] = lists['train'] + lists['val']
    _write_lines(os.path.join(data, 'variants.txt'), names)
    for split, rows in lists.items():
        rows = sorted(rows)
        _write_lines(os.path.join(data, f'images_variant_{split}.txt'), [f'{i} {v}' for i, v in rows])
        _write_lines(os.path.join(data, f'images_{split}.txt'), [i for i, _ in rows])
    return _counts(root, len(names), len(names) * per_class, len(names) * per_class, len(names) * per_class)


def write_dtd(root, per_class, seed, splits=2):
    """ROOT/images/<class>/<class>_NNNN.jpg and labels/{train,val,test}<k>.txt ("<class>/<file>") for splits
    k = 1..`splits` (DTD has 10), each drawing its own train, val and test images of every class."""
    names = TRANSFER_CLASSES['dtd']
    files = {c: [f'{c}/{c}_{4 * i + 2:04d}.jpg' for i in range(3 * per_class)] for c in names}
    for k, c in enumerate(names):
        for rel in files[c]:
            _save(_transfer_image('dtd', k, rel, seed), os.path.join(root, 'images', rel))
    for s in range(1, splits + 1):
        lists = {'train': [], 'val': [], 'test': []}
        for c in names:
            order = list(files[c])
            random.Random(f'{seed}/transfer/dtd/{s}/{c}').shuffle(order)
            for j, split in enumerate(lists):
                lists[split] += order[j * per_class:(j + 1) * per_class]
        for split, rows in lists.items():
            _write_lines(os.path.join(root, 'labels', f'{split}{s}.txt'), rows)
    n = len(names) * per_class
    return _counts(root, len(names), n, n, n)


def write_pets(root, per_class, seed):
    """ROOT/images/<Breed>_<n>.jpg and annotations/{trainval,test,list}.txt ("<image> <class id> <species 1 cat,
    2 dog> <breed id within the species>"; list.txt opens with '#' comment lines)."""
    names = TRANSFER_CLASSES['pets']
    species = [1 if n[0].isupper() else 2 for n in names]  # the release: cat breeds are capitalised
    lists = {'trainval': [], 'test': []}
    for k, breed in enumerate(names):
        order = list(range(1, 2 * per_class + 1))
        random.Random(f'{seed}/transfer/pets/{breed}').shuffle(order)
        for j, n in enumerate(order):
            image = f'{breed}_{n}'
            _save(_transfer_image('pets', k, image, seed), os.path.join(root, 'images', f'{image}.jpg'))
            line = f'{image} {k + 1} {species[k]} {species[:k + 1].count(species[k])}'
            lists['trainval' if j < per_class else 'test'].append((k, n, line))
    for split, rows in lists.items():
        _write_lines(os.path.join(root, 'annotations', f'{split}.txt'), [line for *_, line in sorted(rows)])
    _write_lines(os.path.join(root, 'annotations', 'list.txt'), [
        '#Image CLASS-ID SPECIES BREED ID', '#ID: 1:37 Class ids', '#SPECIES: 1:Cat 2:Dog',
        '#BREED ID: 1-25:Cat 1:12:Dog', '#All images with 1st letter as captial are cat images',
        '#images with small first letter are dog images'] + [line for *_, line in sorted(lists['trainval'] + lists['test'])])
    n = len(names) * per_class
    return _counts(root, len(names), n, 0, n)


def write_caltech101(root, seed):
    """ROOT/101_ObjectCategories/<class>/image_NNNN.jpg, BACKGROUND_Google among the class folders;
    CALTECH_TOY_IMAGES images of each class."""
    names = TRANSFER_CLASSES['caltech101']
    for k, (c, n) in enumerate(zip(names, CALTECH_TOY_IMAGES)):
        for i in range(1, n + 1):
            rel = f'{c}/image_{i:04d}.jpg'
            _save(_transfer_image('caltech101', k, rel, seed, size=32), os.path.join(root, '101_ObjectCategories', rel))
    return _counts(root, len(names), 30 * len(names), 0, sum(CALTECH_TOY_IMAGES) - 30 * len(names))


def write_flowers102(root, per_class, seed):
    """ROOT/jpg/image_NNNNN.jpg, imagelabels.mat ('labels': 1 x N doubles, the class 1..K of image n) and
    setid.mat ('trnid', 'valid', 'tstid': 1 x n image numbers)."""
    names = TRANSFER_CLASSES['flowers102']
    order = [(k, split) for k in range(len(names)) for split in ('trnid', 'valid', 'tstid') for _ in range(per_class)]
    random.Random(f'{seed}/transfer/flowers102').shuffle(order)  # image numbers mix the classes, as the release's
    labels, ids = [], {'trnid': [], 'valid': [], 'tstid': []}
    for n, (k, split) in enumerate(order, 1):
        _save(_transfer_image('flowers102', k, n, seed), os.path.join(root, 'jpg', f'image_{n:05d}.jpg'))
        labels.append(k + 1)
        ids[split].append(n)
    _savemat(os.path.join(root, 'imagelabels.mat'), {'labels': np.array([labels], np.float64)})
    _savemat(os.path.join(root, 'setid.mat'), {k: np.array([v], np.uint16) for k, v in ids.items()})
    n = len(names) * per_class
    return _counts(root, len(names), n, n, n)


def write_transfer_sets(out, seed, per_class=6):
    """The toy transfer sets under OUT/transfer/<name>/ (`per_class` images of each class in each split; Caltech-101
    CALTECH_TOY_IMAGES). sun397 and voc07-cls are the toy SUN397 and VOC 2007 (OUT/SUN397, OUT/VOCdevkit), written
    apart, and listed when present. Returns {name: {'root', 'classes', 'train', 'val', 'test', ...}}; counts are
    None where they come from another writer."""
    root = os.path.join(out, 'transfer')
    sets = {'food101': write_food101(os.path.join(root, 'food101'), per_class, seed)}
    for name in ('cifar10', 'cifar100'):
        sets[name] = write_cifar(os.path.join(root, name), per_class, seed, name)
    for name, writer in (('birdsnap', write_birdsnap), ('cars', write_cars), ('aircraft', write_aircraft),
                         ('dtd', write_dtd), ('pets', write_pets), ('flowers102', write_flowers102)):
        sets[name] = writer(os.path.join(root, name), per_class, seed)
    sets['caltech101'] = write_caltech101(os.path.join(root, 'caltech101'), seed)
    if os.path.isfile(os.path.join(out, 'SUN397', 'ClassName.txt')):
        sets['sun397'] = _counts(os.path.join(out, 'SUN397'), len(SCENES), None, 0, None)
    if os.path.isfile(os.path.join(out, 'VOCdevkit', 'VOC2007', 'ImageSets', 'Main', 'test.txt')):
        sets['voc07-cls'] = _counts(os.path.join(out, 'VOCdevkit'), len(VOC_CLASSES), None, None, None)
    return sets


def get_args_parser():
    p = argparse.ArgumentParser(description='Write the toy data set in the ILSVRC-2012 folder layout.')
    p.add_argument('--out', default='data/toy', help='output root; gets train/ and val/')
    p.add_argument('--train-per-class', type=ranged(int, 1), default=60)
    p.add_argument('--val-per-class', type=ranged(int, 1), default=20)
    p.add_argument('--sun-per-class', type=ranged(int, 0), default=50, help='toy SUN397 images per category (0: no toy SUN397)')
    p.add_argument('--sun-train', type=ranged(int, 1), default=20, help='training images per category in each split')
    p.add_argument('--sun-test', type=ranged(int, 1), default=20, help='test images per category in each split')
    p.add_argument('--sun-splits', type=ranged(int, 1), default=2, help='number of train/test splits (SUN397 has 10)')
    p.add_argument('--places-train', type=ranged(int, 0), default=30, help='toy Places images per category in the training list (0: no toy Places)')
    p.add_argument('--places-val', type=ranged(int, 0), default=10, help='toy Places images per category in the val list')
    p.add_argument('--voc07-trainval', type=ranged(int, 0), default=200, help='toy VOC 2007 trainval images (0 with --voc07-test 0: no toy VOC 2007)')
    p.add_argument('--voc07-test', type=ranged(int, 0), default=200, help='toy VOC 2007 test images')
    p.add_argument('--voc12-per-action', type=ranged(int, 0), default=20,
                   help='toy VOC 2012 persons of each action in train and in val (0: no toy VOC 2012)')
    p.add_argument('--coco-train', type=ranged(int, 0), default=120, help='toy COCO train2017 images (0 with --coco-val 0: no toy COCO)')
    p.add_argument('--coco-val', type=ranged(int, 0), default=40, help='toy COCO val2017 images')
    p.add_argument('--transfer-per-class', type=ranged(int, 0), default=6,
                   help='toy transfer-set images per class in each split, under OUT/transfer/ (0: none)')
    p.add_argument('--seed', type=ranged(int, 0), default=0)
    return p


def main(args):
    if args.train_per_class < 1 or args.val_per_class < 1:
        sys.exit(f'error: --train-per-class and --val-per-class must be >= 1, got {args.train_per_class}, {args.val_per_class}')
    if min(args.voc07_trainval, args.voc07_test, args.voc12_per_action) < 0:
        sys.exit('error: --voc07-trainval, --voc07-test and --voc12-per-action must be >= 0')
    if args.sun_per_class and args.sun_train + args.sun_test > args.sun_per_class:
        sys.exit(f'error: --sun-train + --sun-test ({args.sun_train + args.sun_test}) exceed --sun-per-class {args.sun_per_class}')
    if min(args.places_train, args.places_val) < 0:
        sys.exit('error: --places-train and --places-val must be >= 0')
    for split in ('train', 'val', 'SUN397', 'VOCdevkit', 'Places365', 'COCO', 'transfer'):
        if os.path.isdir(os.path.join(args.out, split)) and os.listdir(os.path.join(args.out, split)):
            sys.exit(f'error: {os.path.join(args.out, split)} already holds files; remove it or pick another --out')
    with open(os.path.join(HERE, 'meta', 'ilsvrc2012_classes.tsv')) as f:
        known = {line.split('\t')[0] for line in f}
    classes = toy_classes()
    assert all(c[0] in known for c in classes), 'toy wnids must be real ILSVRC-2012 classes'
    n_train = write_split(args.out, 'train', args.train_per_class, args.seed, classes)
    n_val = write_split(args.out, 'val', args.val_per_class, args.seed, classes)
    print(f'wrote {n_train} train + {n_val} val images of {len(classes)} classes to {args.out}')
    if args.sun_per_class:
        n = write_sun397(args.out, args.sun_per_class, args.sun_train, args.sun_test, args.sun_splits, args.seed)
        print(f'wrote a toy SUN397 of {n} images in {len(SCENES)} categories, {args.sun_splits} splits, to {args.out}/SUN397')
    if args.places_train:
        n_train, n_val = write_places(args.out, args.places_train, args.places_val, args.seed)
        print(f'wrote a toy Places of {n_train} train + {n_val} val images in {len(SCENES)} categories to {args.out}/Places365')
    if args.voc07_trainval or args.voc07_test:
        n = write_voc07(args.out, args.voc07_trainval, args.voc07_test, args.seed)
        print(f'wrote a toy VOC 2007 of {n.get("trainval", 0)} trainval ({n.get("train", 0)} train + {n.get("val", 0)} val) '
              f'and {n.get("test", 0)} test images of {len(VOC07_OBJECTS)} classes to {args.out}/VOCdevkit/VOC2007')
    if args.voc12_per_action:
        n, persons = write_voc12(args.out, args.voc12_per_action, args.seed)
        print(f'wrote a toy VOC 2012 action set of {n["train"]} train + {n["val"]} val images, {persons} persons '
              f'({args.voc12_per_action} of each action in each set), to {args.out}/VOCdevkit/VOC2012')
    if args.coco_train or args.coco_val:
        n = write_coco(args.out, args.coco_train, args.coco_val, args.seed)
        print(f'wrote a toy COCO of {n["train2017"][0]} train2017 + {n["val2017"][0]} val2017 images '
              f'({n["train2017"][1]} + {n["val2017"][1]} objects, {len(COCO_CATEGORIES)} categories) to {args.out}/COCO')
    if args.transfer_per_class:
        sets = write_transfer_sets(args.out, args.seed, args.transfer_per_class)
        print(f'wrote toy transfer sets ({args.transfer_per_class} images per class and split) to {args.out}/transfer: '
              + ' '.join(k for k in TRANSFER_CLASSES) + ''.join(f'; {k} is {v["root"]}' for k, v in sets.items()
                                                               if k not in TRANSFER_CLASSES))


if __name__ == '__main__':
    run_main(main, get_args_parser().parse_args())
