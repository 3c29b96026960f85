"""The embedded default data set: small synthetic images in the real ILSVRC-2012 folder layout.

    python toydata.py --out data/toy                      # 20 classes, 60 train + 20 val images each; toy SUN397
    python toydata.py --out data/toy --train-per-class 200 --seed 1

It writes `OUT/train/<wnid>/<wnid>_<n>.JPEG` and `OUT/val/<wnid>/ILSVRC2012_val_<n>.JPEG`, the layout
`subsets.py index` reads for real ImageNet, so every later step runs unchanged on toy and real data. It also
writes `OUT/SUN397/` in the official SUN397 layout: 8 scene categories made of the toy objects.

Appearance follows the WordNet hierarchy, so that learning, coarse-versus-fine effects and transfer are
measurable: the coarse group (dog, bird, fish, car, fruit) sets the shape family, and the fine class sets
the colour and the texture. Sizes vary, images are not square, a few are grayscale, and the output is
byte-identical for a given seed.
"""
import argparse
import colorsys
import math
import os
import random
import sys

from PIL import Image, ImageDraw

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


def _paste_object(img, cls, r, rng):
    """Draw one object of class `cls` with radius r at a random place: shape family from the coarse group,
    colour and texture from the fine class."""
    wnid, group, shape, texture, hue = cls
    w, h = img.size
    cx, cy = rng.uniform(r, w - r), rng.uniform(r, h - r)
    fg = tuple(int(255 * v) for v in colorsys.hsv_to_rgb((hue + rng.uniform(-0.03, 0.03)) % 1, rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0)))
    dark = tuple(int(v * 0.35) for v in fg)
    mask = Image.new('L', (w, h), 0)
    md = ImageDraw.Draw(mask)
    if shape == 'ellipse':
        ry = r * rng.uniform(0.6, 1.0)
        md.ellipse([cx - r, cy - ry, cx + r, cy + ry], fill=255)
    else:
        md.polygon(_polygon(shape, cx, cy, r, rng.uniform(0, 2 * math.pi)), fill=255)
    img.paste(_texture((w, h), texture, fg, dark, rng), (0, 0), mask)


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


def get_args_parser():
    p = argparse.ArgumentParser(description='Write the toy data set in the ILSVRC-2012 folder layout.')
    p.add_argument('--out', default='data/toy', help='output root; gets train/ and val/')
    p.add_argument('--train-per-class', type=int, default=60)
    p.add_argument('--val-per-class', type=int, default=20)
    p.add_argument('--sun-per-class', type=int, default=50, help='toy SUN397 images per category (0: no toy SUN397)')
    p.add_argument('--sun-train', type=int, default=20, help='training images per category in each split')
    p.add_argument('--sun-test', type=int, default=20, help='test images per category in each split')
    p.add_argument('--sun-splits', type=int, default=2, help='number of train/test splits (SUN397 has 10)')
    p.add_argument('--seed', type=int, default=0)
    return p


def main(args):
    if args.train_per_class < 1 or args.val_per_class < 1:
        sys.exit(f'error: --train-per-class and --val-per-class must be >= 1, got {args.train_per_class}, {args.val_per_class}')
    if args.sun_per_class and args.sun_train + args.sun_test > args.sun_per_class:
        sys.exit(f'error: --sun-train + --sun-test ({args.sun_train + args.sun_test}) exceed --sun-per-class {args.sun_per_class}')
    for split in ('train', 'val', 'SUN397'):
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


if __name__ == '__main__':
    main(get_args_parser().parse_args())
