"""Every DALI input pipeline of the project: classification, and detection / actions (boxes flipped with the image).

    from data_dali import classification_loader
    train = classification_loader('data/toy', 'subsets/toy-full/train.txt', batch_size=64, train=True, crop=96, resize=108)
    for images, labels in train: ...   # images: float NCHW view in channels_last memory, normalised
    # hand_over='uint8': uint8 images, normalised on the device by train.loader.normalizer() (a quarter of the bytes)

    python data_dali.py scan subsets/toy    # decode every image of an index once; exclude.txt lists the broken
    python data_dali.py prepare subsets/toy --out data/toy-256    # every image warped to 256 x 256 once (Caffe)

One code path serves GPU and CPU: decoding is `decoders.image(device='mixed')` (nvJPEG / hardware decoder)
when CUDA is available and `device='cpu'` otherwise, and everything after the decoder runs where the decoder
put the images. CI runs this same pipeline on CPU (`device_id=None`).
"""
import argparse
import contextlib
import functools
import json
import multiprocessing
import os
import random
import re
import signal
import sys
import time
from collections import Counter

import numpy as np
import torch
from datasets import read_manifest, scan_imagenet
from engine import UserError, lock_run_dir, ranged, read_json, run_main, write_atomic
from nvidia import nvimgcodec
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali import math as dmath
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy, feed_ndarray
from PIL import Image, UnidentifiedImageError
from tqdm import tqdm

# ImageNet RGB mean/std on the 0-255 scale (torchvision's values). Caffe subtracted the mean only; we also
# divide by the std so that torchvision-format weights see the input they were trained on. For a net
# trained from scratch this is a fixed rescaling of the first layer's input.
MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]
STYLES = ('caffe', 'inception')
RESIZE_MODES = ('shorter', 'warp')
# What the classification pipeline hands to torch: 'float', normalised by DALI, or 'uint8', cropped and mirrored
# only, for Normalize to finish on the device (inside the compiled model): a quarter of the bytes to write and copy.
HAND_OVERS = ('float', 'uint8')


def _crop_window(jpegs, train, crop, resize, warp=False):
    """Resize arguments that make resizing only the crop window equal to "resize the shorter side to `resize`
    (warp: both sides, ignoring the aspect ratio, as Caffe's ImageNet recipe), then take a crop x crop window"
    (random, or the centre for validation), at lower cost.

    A full resize to r pixels keeps the exact scale s = resize / shorter side and maps the r / s source pixels
    centred on the image onto them (DALI's subpixel_scale), so output pixel c comes from source coordinate
    origin + c / s. The crop window [c, c + crop) is therefore the resize, with the same scale and filter, of
    the source region [origin + c / s, origin + (c + crop) / s]. On 500x375 JPEGs this skips 42% of the resize
    work (BENCHMARKS.md, Loader: 3.85 -> about 3 CPU ms per image); the output differs by a grey level at most."""
    shape = fn.peek_image_shape(jpegs, dtype=types.FLOAT)  # (H, W, C) from the JPEG header, no decoding
    h, w = shape[0], shape[1]
    start, end = [], []
    for n in (h, w):
        scale = resize / n if warp else resize / dmath.min(h, w)
        r = dmath.floor(n * scale + 0.5)  # the size the full resize would give this side (`resize` when warping)
        pos = fn.random.uniform(range=[0.0, 1.0]) if train else 0.5
        c = dmath.floor(pos * (r - crop) + 0.5)  # crop_mirror_normalize's rule for a crop position
        # resize keeps the exact scale and centres the r / scale source pixels it maps onto r (subpixel_scale)
        origin = (n - r / scale) * 0.5
        start.append(origin + c / scale)
        end.append(origin + (c + crop) / scale)
    return {'roi_start': fn.stack(*start), 'roi_end': fn.stack(*end)}


@pipeline_def
def _classification_pipeline(root, file_list, train, style, crop, resize, shard_id, num_shards, decoder_device, hw_decoder_load,
                             fancy_upsampling, mean, std, warp, uint8):
    # A manifest line is "relative/path label": exactly the file reader's file_list format.
    # Train: shuffle_after_epoch draws one permutation of the whole list per epoch, identical on every shard
    # (so shards stay disjoint); a shuffle buffer (random_shuffle) would see class-sorted manifests as
    # class-sorted batches. Val: pad_last_batch plus the iterator's PARTIAL policy count every image once.
    jpegs, labels = fn.readers.file(file_root=root, file_list=file_list, shard_id=shard_id, num_shards=num_shards,
                                    shuffle_after_epoch=train, pad_last_batch=not train, name='Reader')
    dev = 'gpu' if decoder_device == 'mixed' else 'cpu'
    # The share of JPEGs the GPU's hardware decoder (NVJPG) takes; the rest go to nvJPEG's CUDA decoder with the
    # Huffman stage on the CPU threads. None: DALI's default (0.65). bench/end_to_end.py --sweep measures it.
    # jpeg_fancy_upsampling: upsample chroma as libjpeg-turbo (the CPU decoder) does, so that the GPU sees the images
    # CI's CPU runs see; without it nvJPEG differs by 2.7 grey levels on average, up to 58 at colour edges
    # (tests/test_gpu.py, H100).
    decode = {}
    if decoder_device == 'mixed':
        decode = {'jpeg_fancy_upsampling': fancy_upsampling,
                  **({'hw_decoder_load': hw_decoder_load} if hw_decoder_load is not None else {})}
    mirror = 0
    if train and style == 'inception':
        # Random-resized crop (Szegedy et al. 2015; torchvision defaults); decoding only the crop window.
        images = fn.decoders.image_random_crop(jpegs, device=decoder_device, output_type=types.RGB, **decode,
                                               random_area=[0.08, 1.0], random_aspect_ratio=[3 / 4, 4 / 3])
        images = fn.resize(images, device=dev, size=[crop, crop], antialias=True)
        crop_args = {}
        mirror = fn.random.coin_flip(probability=0.5)
    else:
        # Caffe (Krizhevsky et al. 2012; examples/imagenet: every image warped to 256 x 256, then a random 227
        # crop and a mirror for training, the centre crop for validation), or the shorter side to `resize`.
        images = fn.decoders.image(jpegs, device=decoder_device, output_type=types.RGB, **decode)
        images = fn.resize(images, device=dev, size=[crop, crop], antialias=True,
                           **_crop_window(jpegs, train, crop, resize, warp))
        crop_args = {}
        if train:
            mirror = fn.random.coin_flip(probability=0.5)
    # HWC output: torch sees NHWC memory, which permute(0, 3, 1, 2) turns into an NCHW view in channels_last
    # layout with no copy. uint8: the same operator with no mean and std only mirrors (and casts nothing).
    norm = {} if uint8 else {'mean': mean, 'std': std}
    images = fn.crop_mirror_normalize(images, device=dev, dtype=types.UINT8 if uint8 else types.FLOAT,
                                      output_layout='HWC', mirror=mirror, **norm, **crop_args)
    return images, labels


class Normalize(torch.nn.Module):
    """DALI's normalisation, done by torch: uint8 images [N, 3, H, W] -> (x - mean) * (1 / std) in float32, the
    arithmetic of crop_mirror_normalize (a float32 reciprocal, then a product: bit-identical to the float
    hand-over, tests/test_pipeline.py; torchvision's Normalize divides by std, 1 ulp off in a quarter of the
    values). Its buffers are not saved, so a checkpoint holds the network alone."""

    def __init__(self, mean, std):
        super().__init__()
        self.register_buffer('mean', torch.tensor(mean, dtype=torch.float32).view(1, -1, 1, 1), persistent=False)
        self.register_buffer('inv_std', torch.tensor(std, dtype=torch.float32).view(1, -1, 1, 1).reciprocal(),
                             persistent=False)

    def forward(self, x):
        return (x.float() - self.mean) * self.inv_std


@contextlib.contextmanager
def dali_errors(file_list, candidates=None):
    """DALI stops the whole pipeline on a file it cannot read or decode, with a many-line message. Turn it into one
    line that names the file: DALI's reader puts the path in its message (a missing or empty file); a decoder's
    message has none, and then the `candidates` (paths, or a function giving them: the batches in flight, or a
    small manifest's files) are probed with DALI's own decoder (probe) to find it. Otherwise the line names the
    manifest."""
    try:
        yield
    except RuntimeError as e:
        if 'pipeline' not in str(e):
            raise
        lines = [line.strip() for line in str(e).splitlines()]
        after = [line for i, line in enumerate(lines) if line and 'encountered:' in lines[:i]]
        reason = (after[0] if after else '; '.join(l for l in lines if 'failure' in l or l.startswith('Error in')))[:300]
        named = re.search(r'(/\S+\.(?:jpe?g|png|bmp|tiff?|webp|jp2|ppm|pgm))\b', str(e), re.IGNORECASE)
        path = named.group(1) if named else None
        if path is None and callable(candidates):
            candidates = candidates()
        for c in (candidates or []) if path is None else []:
            why = probe(c, Image.MAX_IMAGE_PIXELS or 2 ** 62)[5] if os.path.isfile(c) else 'missing'
            if why:
                path, reason = c, why
                break
        where = f'{path} (listed in {file_list})' if path else f'an image listed in {file_list}'
        raise UserError(f'DALI could not read or decode {where}: {reason} '
                        f'(`python data_dali.py scan` finds such files; subsets.py then leaves them out)') from None


class ClassificationLoader:
    """Iterates (images NCHW channels_last, float32 or for a uint8 hand-over uint8; labels int64) over one shard
    of a manifest.

    A thin wrapper over DALIGenericIterator: it fixes the layout, and exposes `state()` so a checkpoint can
    hold the reader position and augmentation RNG (DALI checkpointing) for an exact resume.
    """

    def __init__(self, pipe, train, file_list, root, mean, std, uint8):
        self.pipe, self.train, self.file_list, self.root = pipe, train, file_list, root
        self.mean, self.std, self.uint8 = mean, std, uint8
        # Train drops the ragged last batch (fixed batch size for the step); val keeps it and drops padding.
        policy = LastBatchPolicy.DROP if train else LastBatchPolicy.PARTIAL
        with dali_errors(file_list, self.suspects):  # the iterator runs the pipeline once at construction
            self.it = DALIGenericIterator(pipe, ['images', 'labels'], reader_name='Reader', last_batch_policy=policy,
                                          auto_reset=True)

    def __len__(self):
        return len(self.it)  # batches per epoch on this shard

    def suspects(self, limit=5000):
        """The manifest's files, where a decode error is looked for; the reader's shuffled order is not known, so
        a manifest of more than `limit` files is not probed (the data scan is the tool for those)."""
        root = self.root
        with open(self.file_list) as f:
            rels = [line.rsplit(' ', 1)[0] for line in f if line.strip()]
        return [] if len(rels) > limit else [os.path.join(root, r) for r in rels]

    def __iter__(self):
        with dali_errors(self.file_list, self.suspects):
            for batch in self.it:
                b = batch[0]
                yield b['images'].permute(0, 3, 1, 2), b['labels'].squeeze(-1).long()

    def state(self):
        return self.it.checkpoints()[0]

    def normalizer(self):
        """The module that finishes this loader's images: Normalize for a uint8 hand-over, else the identity."""
        return Normalize(self.mean, self.std) if self.uint8 else torch.nn.Identity()


def classification_loader(root, file_list, batch_size, train, crop, resize, style='caffe', num_threads=4,
                          device_id=None, shard_id=0, num_shards=1, seed=0, checkpoint=None, hw_decoder_load=None,
                          prefetch=None, fancy_upsampling=True, mean=None, std=None, resize_mode='shorter',
                          hand_over='float'):
    """A loader over `file_list` (a manifest; its paths are relative to `root`).

    device_id: a CUDA device index to decode on the GPU ('mixed'), or None for the CPU pipeline.
    hw_decoder_load: the hardware JPEG decoder's share on a GPU; prefetch: batches DALI prepares ahead
    (prefetch_queue_depth). None: DALI's defaults (0.65, 2). fancy_upsampling: GPU decoding matches the CPU's. A flag added later defaults to None, so that the
    args.json of older runs still matches (engine.check_run_dir).
    checkpoint: a string from a previous loader's state(), to continue exactly where it stopped.
    mean, std: the network's RGB normalisation on the 0-1 scale (models.input_spec); None: ImageNet's.
    resize_mode: 'shorter' (the shorter side to `resize`) or 'warp' (both sides, Caffe's ImageNet recipe).
    hand_over: 'float' (normalised images) or 'uint8' (HAND_OVERS; apply loader.normalizer() on the device).
    """
    for path, what in ((root, 'image root'), (file_list, 'manifest')):
        if not os.path.exists(path):
            raise FileNotFoundError(f'{what} not found: {path}')
    if style not in STYLES:
        raise ValueError(f'unknown augmentation style {style!r}; choose from {STYLES}')
    if resize_mode not in RESIZE_MODES:
        raise ValueError(f'unknown resize mode {resize_mode!r}; choose from {RESIZE_MODES}')
    if hand_over not in HAND_OVERS:
        raise ValueError(f'unknown hand-over {hand_over!r}; choose from {HAND_OVERS}')
    mean = MEAN if mean is None else [255 * m for m in mean]
    std = STD if std is None else [255 * v for v in std]
    uint8 = hand_over == 'uint8'
    pipe = _classification_pipeline(root=root, file_list=file_list, train=train, style=style, crop=crop, resize=resize,
                                    shard_id=shard_id, num_shards=num_shards,
                                    decoder_device='cpu' if device_id is None else 'mixed', hw_decoder_load=hw_decoder_load,
                                    fancy_upsampling=fancy_upsampling, mean=mean, std=std, warp=resize_mode == 'warp',
                                    uint8=uint8,
                                    batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                                    prefetch_queue_depth=prefetch or 2,
                                    seed=seed + 1000 * shard_id,  # augmentation differs across ranks
                                    enable_checkpointing=train, checkpoint=checkpoint)
    return ClassificationLoader(pipe, train, file_list, root, mean, std, uint8)


# ----------------------------------------------------------------------------------------------------------
# Detection and actions: encoded images and their boxes through an external source (the boxes must be flipped
# with the image, and the order of images is ours to control for an exact resume)


@pipeline_def
def _detection_pipeline(source, decoder_device, max_size, mean, std):
    # scale: each image's shorter side, from the source (one value, or a draw per image for multi-scale training)
    jpegs, boxes, flip, scale = fn.external_source(source=source, num_outputs=4, batch=True, batch_info=True,
                                                   dtype=[types.UINT8, types.FLOAT, types.INT32, types.FLOAT])
    dev = 'gpu' if decoder_device == 'mixed' else 'cpu'
    shape = fn.peek_image_shape(jpegs, dtype=types.FLOAT)  # (H, W, C) from the header
    h, w = shape[0], shape[1]
    # py-faster-rcnn (lib/utils/blob.py prep_im_for_blob): shorter side to 600 unless the longer then exceeds 1000.
    s = dmath.min(scale / dmath.min(h, w), max_size / dmath.max(h, w))
    # The annotation's pixel frame is the stored one, so no EXIF rotation (VOC's JPEGs have none anyway).
    images = fn.decoders.image(jpegs, device=decoder_device, output_type=types.RGB, adjust_orientation=False)
    images = fn.resize(images, device=dev, size=fn.stack(dmath.floor(h * s + 0.5), dmath.floor(w * s + 0.5)))
    images = fn.crop_mirror_normalize(images, device=dev, dtype=types.FLOAT, output_layout='HWC', mean=mean, std=std,
                                      mirror=flip)
    # Boxes come in continuous pixel coordinates and are flipped in relative ones, where bb_flip's x -> 1 - x is
    # exactly the image's mirror.
    boxes = fn.bb_flip(boxes / fn.stack(w, h, w, h), ltrb=True, horizontal=flip)
    images = fn.pad(images, device=dev, axes=(0, 1))  # several images: zero (= mean) padding to the largest, as py-faster-rcnn
    return images, boxes, fn.stack(h, w, s)


class DetectionLoader:
    """Iterates over one epoch of (images, boxes, im_info, indices, flips):
    images float NCHW (a channels_last view, zero-padded to the batch's largest), boxes a list of [M, 4] float
    tensors in py-faster-rcnn's convention (0-based inclusive pixels of the resized, maybe flipped image),
    im_info [B, 3] (height, width, scale) of each resized image before padding, indices the records' positions, flips
    whether each was mirrored (1) or not (0): what a target drawn apart from the boxes, a mask, needs.

    The order is a pure function of (seed, epoch): a permutation of all records per epoch, this shard taking
    every num_shards-th, a mirror coin per image, and with several training scales (Detectron's multi-scale
    training) a draw of one per image. So state() is just the number of batches consumed, and a
    resumed run sees the same batches as an uninterrupted one."""

    def __init__(self, root, records, batch_size, train, scale, max_size, num_threads, device_id, seed, shard_id,
                 num_shards, consumed=0, mean=None, std=None):
        self.root, self.records, self.batch_size, self.train, self.seed = root, records, batch_size, train, seed
        self.scales = tuple(scale) if isinstance(scale, (tuple, list)) else (scale,)
        if not train and len(self.scales) > 1:
            raise ValueError('testing takes one scale')
        self.shard_id, self.num_shards = shard_id, num_shards
        n = len(records) // num_shards if train else len(range(shard_id, len(records), num_shards))
        # training drops the ragged last batch (fixed batch size for the step); testing sees every image once
        self.batches = n // batch_size if train else -(-n // batch_size)
        if self.batches < 1:
            raise UserError(f'{len(records)} images in {root} are too few for a batch of {batch_size} on {num_shards} process(es)')
        # The source never ends: DALI's prefetch runs on into the next epoch, which is just the next batches of
        # the stream. Batch k of the stream is start + the pipeline's iteration count.
        self.start = self.consumed = consumed
        self.device = torch.device('cuda', device_id) if device_id is not None else None
        self.pipe = _detection_pipeline(source=self._source, decoder_device='cpu' if device_id is None else 'mixed',
                                        max_size=max_size, batch_size=batch_size, num_threads=num_threads,
                                        mean=MEAN if mean is None else [255 * m for m in mean],
                                        std=STD if std is None else [255 * v for v in std],
                                        device_id=device_id, seed=seed, prefetch_queue_depth=2)
        self.pipe.build()

    def _order(self, epoch):
        """(record indices of this shard, mirror flags, shorter sides) for one epoch."""
        idx = list(range(len(self.records)))
        flips, scales = [0] * len(idx), [self.scales[0]] * len(idx)
        if self.train:  # py-faster-rcnn trains on every image and its mirror (TRAIN.USE_FLIPPED): a coin per image
            rng = random.Random(f'{self.seed}/{epoch}')
            rng.shuffle(idx)
            flips = [rng.randint(0, 1) for _ in idx]
            if len(self.scales) > 1:  # drawn after the coins, so one scale keeps the order it always had
                scales = [rng.choice(self.scales) for _ in idx]
        sl = slice(self.shard_id, None, self.num_shards)
        return idx[sl], flips[sl], scales[sl]

    def _batch(self, k):
        epoch, b = divmod(k, self.batches)
        sl = slice(b * self.batch_size, (b + 1) * self.batch_size)
        return tuple(x[sl] for x in self._order(epoch))

    def _source(self, info):
        idx, flips, scales = self._batch(self.start + info.iteration)
        jpegs, boxes = [], []
        for i in idx:
            r = self.records[i]
            path = os.path.join(self.root, r['path'])
            try:
                jpegs.append(np.fromfile(path, dtype=np.uint8))
            except OSError as e:
                raise UserError(f'cannot read {path}: {e.strerror}') from None
            b = np.asarray(r['boxes'], dtype=np.float32).reshape(-1, 4)
            # VOC's 1-based inclusive pixels -> continuous coordinates [x1 - 1, x2) that scale and mirror exactly
            boxes.append(np.concatenate([b[:, :2] - 1, b[:, 2:]], 1))
        return jpegs, boxes, [np.array(f, dtype=np.int32) for f in flips], [np.array(s, dtype=np.float32) for s in scales]

    def __len__(self):
        return self.batches

    def __iter__(self):
        for _ in range(self.batches):
            idx, flips, _ = self._batch(self.consumed)
            # on a decode error, its file is looked for among the batches in flight (this one and the prefetched);
            # a function, so the hot loop does not list them
            with dali_errors(self.root, lambda k=self.consumed: [os.path.join(self.root, self.records[i]['path'])
                                                                 for j in range(3) for i in self._batch(k + j)[0]]):
                images, rel, info = self.pipe.run()
            self.consumed += 1
            if self.device is None:
                images = torch.from_numpy(np.array(images.as_tensor()))
            else:
                out = torch.empty(images.as_tensor().shape(), dtype=torch.float32, device=self.device)
                images = feed_ndarray(images.as_tensor(), out, torch.cuda.current_stream(self.device))
            orig = torch.from_numpy(np.stack([np.array(info[i]) for i in range(len(info))]))  # (h, w, scale)
            boxes = []
            for i in range(len(rel)):
                b = torch.from_numpy(np.array(rel[i])).reshape(-1, 4) * orig[i, :2].flip(0).repeat(2)  # * (w, h, w, h)
                # continuous -> py-faster-rcnn's inclusive pixels, then the resize scale (prep_im_for_blob's order)
                boxes.append(torch.cat([b[:, :2], b[:, 2:] - 1], 1) * orig[i, 2])
            # im_info as py-faster-rcnn's: the resized image's size (the pipeline's rounding) and its scale
            info = torch.cat([torch.floor(orig[:, :2] * orig[:, 2:] + 0.5), orig[:, 2:]], 1)
            yield images.permute(0, 3, 1, 2), boxes, info, idx, flips

    def state(self):
        return self.consumed


def detection_loader(root, records, batch_size, train, scale=600, max_size=1000, num_threads=4, device_id=None,
                     seed=0, shard_id=0, num_shards=1, checkpoint=None, mean=None, std=None):
    """A loader over `records` (rows of datasets.read_voc_detection or read_voc_actions: 'path' relative to
    `root`, 'boxes' in VOC's 1-based inclusive pixels). scale: the shorter side, or for training a tuple of them, one
    drawn per image. checkpoint: a previous loader's state(). mean, std: the network's normalisation on the 0-1 scale
    (None: ImageNet's), so a detector sees what its backbone trained on."""
    if not records:
        raise UserError(f'no images to load from {root}')
    return DetectionLoader(root, records, batch_size, train, scale, max_size, num_threads, device_id, seed, shard_id,
                           num_shards, consumed=checkpoint or 0, mean=mean, std=std)


def device_id():
    """The CUDA device this process decodes on, or None for the CPU pipeline."""
    return torch.cuda.current_device() if torch.cuda.is_available() else None


# ----------------------------------------------------------------------------------------------------------
# The data scan: decode every file once, before training, and list the files the pipeline cannot decode.
# DALI stops the whole pipeline on such a file, and its reader cannot skip a sample (issue 8), so they are
# found here and subsets.py leaves them out of every manifest.

SCAN_COLUMNS = ('path', 'bytes', 'format', 'mode', 'width', 'height', 'error')
# Pillow's names of the formats DALI's decoders.image lists (JPEG, JPEG 2000, TIFF, PNG, BMP, PNM, WebP);
# MPO is a camera's multi-picture JPEG, of which DALI decodes the first picture.
DALI_FORMATS = ('JPEG', 'MPO', 'JPEG2000', 'TIFF', 'PNG', 'BMP', 'PPM', 'WEBP')


def _scan_worker_init():
    # The parent stops the workers on Ctrl-C. nvImageCodec logs every failed decode on fd 2, which would scroll
    # the progress bar away; the report records each failure instead.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    os.dup2(os.open(os.devnull, os.O_WRONLY), 2)
    Image.MAX_IMAGE_PIXELS = None  # Pillow only reads headers here; the scan's own --max-pixels applies


@functools.cache
def _cpu_decoder():
    return nvimgcodec.Decoder(device_id=nvimgcodec.NVIMGCODEC_DEVICE_CPU_ONLY, max_num_cpu_threads=1,
                              backends=[nvimgcodec.Backend(nvimgcodec.BackendKind.CPU_ONLY)])


def _why(path, fmt):
    """Pillow's account of a file that DALI cannot decode."""
    if os.path.getsize(path) == 0:
        return 'empty file'
    try:
        with Image.open(path) as im:
            im.load()
    except UnidentifiedImageError:
        return 'not an image'
    except Exception as e:  # Pillow raises OSError, SyntaxError, ValueError... for broken data
        return f'{type(e).__name__}: {e}'
    if fmt not in DALI_FORMATS:
        return f'{fmt} is not a format DALI decodes'
    return f'a {fmt} that Pillow decodes but DALI does not (damaged, or a variant DALI lacks)'


def probe(path, max_pixels):
    """(bytes, format, mode, width, height, error) of one image file; error is '' when DALI decodes it.

    The decoder that decides is DALI's own: DALI's image decoders are nvImageCodec, and DALI loads the
    libnvimgcodec and codec extensions of the nvidia-nvimgcodec wheel, so a CPU decode with nvImageCodec fails
    exactly where the CPU pipeline would stop (GIF, truncated data, ...). Pillow only describes the file: format
    and mode (RGB, L, CMYK, P...) from the header, and width x height as stored, before any EXIF rotation."""
    try:
        size, fmt, mode, w, h = os.path.getsize(path), '', '', 0, 0
        with open(path, 'rb') as f:
            f.read(1)
    except OSError as e:  # missing, unreadable (permissions), a folder: broken for the pipeline too
        return 0, '', '', 0, 0, f'cannot read it: {e.strerror or e}'
    try:
        with Image.open(path) as im:  # the header only
            fmt, mode, (w, h) = im.format, im.mode, im.size
    except Exception:
        pass  # nvImageCodec below decides whether it is an image
    try:
        stream = nvimgcodec.CodeStream(path)  # parses the header
        fmt, w, h = fmt or stream.codec_name, w or stream.width, h or stream.height
        if w * h > max_pixels:
            # Decoding it would take w * h * 3 bytes and as long; Pillow refuses such "decompression bombs" too.
            return size, fmt, mode, w, h, f'over the pixel limit: {w} x {h} > {max_pixels} pixels'
        ok = _cpu_decoder().decode(stream, params=nvimgcodec.DecodeParams(apply_exif_orientation=True)) is not None
    except Exception:  # RuntimeError when there is no code stream (empty, not an image); one file never stops a scan
        ok = False
    error = '' if ok else 'DALI cannot decode it: ' + _why(path, fmt)
    return size, fmt, mode, w, h, ' '.join(error.split())  # one line, no tabs: it is a TSV field


def _probe_all(paths, root, max_pixels):
    return [(p, probe(os.path.join(root, p), max_pixels)) for p in paths]


def read_scan(path, root):
    """{relpath: (bytes, format, mode, width, height, error)} of a scan report, or {} when there is none. A last
    line cut short by a kill is cut from the file, so that its image is decoded again."""
    if not os.path.exists(path):
        return {}
    with open(path, 'rb+') as f:
        data = f.read()
        end = data.rfind(b'\n') + 1
        if end < len(data):
            f.truncate(end)
    lines = data[:end].decode().splitlines()
    if not lines or lines[0] != f'# root\t{root}':
        raise UserError(f'{path} is not a scan report of the image root {root}; '
                        f'pass another --out, or delete it to scan again')
    rows = {}
    for i, line in enumerate(lines, 1):
        if line.startswith('#'):
            continue
        r = line.split('\t')
        if len(r) != len(SCAN_COLUMNS):
            raise UserError(f'{path}:{i}: expected {len(SCAN_COLUMNS)} tab-separated fields, got {line[:80]!r}')
        rows[r[0]] = tuple(r[1:])
    return rows


def scan_inputs(target, root=None, out=None):
    """(image root, [relpath], output folder) of what `scan` was given.

    An index (its folder, or index.tsv): every file it lists; the report goes beside it.
    A manifest: its files, under --root or the root in the meta.json beside it; the report goes to the folder
      that holds index.tsv (the subset folder's parent, as subsets.py lays them out), else beside the manifest.
    An image root (holding train/): every image subsets.py would index; the report goes to --out, by default
      `subsets`, where `subsets.py index` puts index.tsv by default."""
    from subsets import read_index  # a data-prep script; training never needs it
    if os.path.isfile(os.path.join(target, 'index.tsv')):
        target = os.path.join(target, 'index.tsv')
    if os.path.isdir(target):
        return target, [r[1] for r in scan_imagenet(target)], out or 'subsets'
    if not os.path.isfile(target):
        raise UserError(f'not found: {target} (expected an index folder, index.tsv, a manifest or an image root)')
    with open(target) as f:
        is_index = f.readline().startswith('# root\t')
    if is_index:
        root, rows = read_index(target)
        return root, [r[1] for r in rows], out or os.path.dirname(os.path.abspath(target))
    paths = list(dict.fromkeys(p for p, _ in read_manifest(target)))  # a manifest may list a file twice
    folder = os.path.dirname(os.path.abspath(target))
    if root is None:
        meta = os.path.join(folder, 'meta.json')
        if not os.path.exists(meta):
            raise UserError(f'no meta.json beside {target} to say where its images are; pass --root')
        root = read_json(meta, ['root'])['root']
    up = os.path.dirname(folder)
    return root, paths, out or (up if os.path.exists(os.path.join(up, 'index.tsv')) else folder)


def _in_workers(fn, todo, total, workers, chunk, desc):
    """Yield fn(chunk of `todo`) from `workers` processes as each finishes, with a progress bar over `total` files
    (those before `todo` done earlier). The workers stop with the caller: Ctrl-C, an error, or the end."""
    # fork: workers start at once, without importing torch and DALI again (a spawned worker takes seconds)
    pool = multiprocessing.get_context('fork').Pool(workers, initializer=_scan_worker_init)
    try:
        jobs = [todo[i:i + chunk] for i in range(0, len(todo), chunk)]
        with tqdm(total=total, initial=total - len(todo), unit='img', desc=desc, smoothing=0.05) as bar:
            for rows in pool.imap_unordered(fn, jobs):
                yield rows
                bar.update(len(rows))
    finally:
        pool.terminate()
        pool.join()


def scan(root, paths, out, workers=None, max_pixels=Image.MAX_IMAGE_PIXELS, chunk=32):
    """Decode every file of `paths` (relative to `root`) that OUT/scan.tsv does not hold yet, in `workers`
    processes, appending a line per file to the report as it comes; then write OUT/exclude.txt, every file of
    the whole report with an error. Returns the report ({relpath: row}). Stopped (Ctrl-C, kill), it resumes:
    the lines written stay, and the next run decodes only the rest."""
    root, workers = os.path.abspath(root), workers or os.cpu_count()
    index = os.path.join(out, 'index.tsv')
    if os.path.exists(index):
        with open(index) as f:
            index_root = f.readline().rstrip('\n').partition('\t')[2]
        if index_root != root:
            raise UserError(f'{index} is an index of {index_root}, not of {root}; pass another --out')
    os.makedirs(out, exist_ok=True)
    report = os.path.join(out, 'scan.tsv')
    done = read_scan(report, root)
    todo = [p for p in paths if p not in done]
    print(f'{len(paths)} files: {len(paths) - len(todo)} already in {report}, {len(todo)} to decode ({workers} workers)')
    t0, stopped = time.time(), False
    with open(report, 'a') as f:
        if f.tell() == 0:
            f.write(f'# root\t{root}\n# ' + '\t'.join(SCAN_COLUMNS) + '\n')
        try:
            for rows in _in_workers(functools.partial(_probe_all, root=root, max_pixels=max_pixels), todo, len(paths),
                                    workers, chunk, 'scan'):
                f.write(''.join('\t'.join(map(str, (p, *r))) + '\n' for p, r in rows))
                f.flush()
                done.update((p, tuple(map(str, r))) for p, r in rows)
        except KeyboardInterrupt:
            stopped = True
    excluded = sorted((p, r[-1]) for p, r in done.items() if r[-1])
    n_done = sum(p in done for p in paths)
    write_atomic(os.path.join(out, 'exclude.txt'),
                 '# Files DALI cannot decode, or over the pixel limit: written by `python data_dali.py scan` from '
                 'scan.tsv.\n# subsets.py leaves them out of every subset of the index beside this file.\n'
                 f'# root\t{root}\n'
                 + (f'# stopped: {n_done} of the {len(paths)} files asked for were decoded; the same command finishes\n'
                    if stopped else '')
                 + ''.join(f'{p}\t{e}\n' for p, e in excluded))
    if stopped:
        print(f'scan stopped after {n_done} of {len(paths)} files; the same command goes on from there', file=sys.stderr)
        raise KeyboardInterrupt
    seconds = time.time() - t0
    rows = [done[p] for p in paths]
    formats, modes = (', '.join(f'{k or "?"} {n}' for k, n in Counter(r[i] for r in rows).most_common()) for i in (1, 2))
    print(f'decoded {len(todo)} files in {seconds:.1f} s ({len(todo) / max(seconds, 1e-9):.0f} files/s); '
          f'formats: {formats}; modes: {modes}')
    print(f'{len(excluded)} files excluded -> {os.path.join(out, "exclude.txt")} (report: {report})')
    for p, e in excluded[:20]:
        print(f'  {p}\t{e}')
    if len(excluded) > 20:
        print(f'  ... and {len(excluded) - 20} more')
    return done


# ----------------------------------------------------------------------------------------------------------
# The prepared copy: every image resized once, before training, as Caffe's ImageNet recipe does
# (examples/imagenet/create_imagenet.sh: convert_imageset --resize_height=256 --resize_width=256). ImageNet's
# JPEGs average about 500 x 375, so a 256 x 256 copy leaves 2.9x fewer pixels to decode every epoch. It stays a
# folder of JPEGs with the original layout, so every manifest works with --data-root pointed at it.

PREPARED = 'prepared.json'


def prepared_size(h, w, mode, size):
    """(height, width) of an image of h x w after `mode` ('warp': size x size; 'shorter': the shorter side to
    size, the other rounded as the pipeline's _crop_window rounds it)."""
    if mode == 'warp':
        return size, size
    scale = size / min(h, w)
    return int(h * scale + 0.5), int(w * scale + 0.5)


def _prepare_one(rel, root, out, mode, size, quality):
    """Write OUT/rel, the image ROOT/rel resized once; returns (rel, error or ''). The file appears whole or not at
    all (written as .part, then renamed), so a file that exists is done. A shorter side already at or under `size`
    is copied byte for byte: the pipeline resizes it as it would the original, with no second JPEG loss."""
    src, dst = os.path.join(root, rel), os.path.join(out, rel)
    try:
        image = _cpu_decoder().decode(nvimgcodec.CodeStream(src), params=nvimgcodec.DecodeParams(
            apply_exif_orientation=True, color_spec=nvimgcodec.ColorSpec.SRGB))  # DALI's decode: the same pixels
        if image is None:
            return rel, 'DALI cannot decode it: ' + _why(src, '')
        pixels = np.asarray(image.cpu())
        h, w = pixels.shape[:2]
        th, tw = prepared_size(h, w, mode, size)
        os.makedirs(os.path.dirname(dst), exist_ok=True)
        part = dst + '.part'  # a stopped run's leftover is written over when the file's turn comes again
        if mode == 'shorter' and min(h, w) <= size or (th, tw) == (h, w):
            with open(src, 'rb') as f, open(part, 'wb') as g:
                g.write(f.read())
        else:
            # Pillow's antialiased bilinear filter: the triangle filter of the pipeline's fn.resize(antialias=True);
            # Caffe used OpenCV's cv::resize (README fidelity table, "resize")
            im = Image.fromarray(pixels[..., :3] if pixels.shape[-1] >= 3 else pixels[..., 0]).convert('RGB')
            im.resize((tw, th), Image.BILINEAR).save(part, 'JPEG', quality=quality)
        os.replace(part, dst)
        return rel, ''
    except Exception as e:  # one bad file never stops the copy: it is reported, and left out
        return rel, ' '.join(f'{type(e).__name__}: {e}'.split())[:300]


def _prepare_all(rels, **kw):
    return [_prepare_one(r, **kw) for r in rels]


def prepare(root, paths, out, mode, size, quality, workers, chunk=32):
    """Write the prepared copy of `paths` (relative to `root`) into `out`, and OUT/prepared.json, which training
    checks against its resize flags. Stopped, the same command goes on with the files not yet written."""
    root, out = os.path.abspath(root), os.path.abspath(out)
    if os.path.realpath(out) == os.path.realpath(root) or os.path.realpath(out).startswith(os.path.realpath(root) + os.sep):
        raise UserError(f'--out {out} is inside the image root {root}; the copy goes beside it, not into it')
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f'--out {out} is a file, not a folder')
    lock_run_dir(out)  # one process writes a copy at a time
    recipe = {'source': root, 'resize_mode': mode, 'size': size, 'quality': quality}
    meta = os.path.join(out, PREPARED)
    if os.path.exists(meta):
        old = read_json(meta, list(recipe), fix='delete the copy and prepare it again')
        differ = [k for k in recipe if old[k] != recipe[k]]
        if differ:
            raise UserError(f'{out} is a copy with {differ[0]} {old[differ[0]]}, not {recipe[differ[0]]}; '
                            f'pass another --out')
    elif os.path.isdir(out) and os.listdir(out):
        raise UserError(f'--out {out} is a folder with other files in it; pass a new or empty one')
    os.makedirs(out, exist_ok=True)
    write_atomic(meta, json.dumps({**recipe, 'complete': False}, indent=1) + '\n')
    failed, t0 = {}, time.time()
    todo = [p for p in paths if not os.path.exists(os.path.join(out, p))]
    print(f'{len(paths)} files: {len(paths) - len(todo)} already in {out}, {len(todo)} to resize '
          f'({"warped to %d x %d" % (size, size) if mode == "warp" else "shorter side to %d" % size}, JPEG quality '
          f'{quality}, {workers} workers)')
    try:
        for rows in _in_workers(functools.partial(_prepare_all, root=root, out=out, mode=mode, size=size, quality=quality),
                                todo, len(paths), workers, chunk, 'prepare'):
            failed.update((p, e) for p, e in rows if e)
    except KeyboardInterrupt:
        print(f'prepare stopped; the same command goes on with the files not yet in {out}', file=sys.stderr)
        raise
    seconds = time.time() - t0
    write_atomic(meta, json.dumps({**recipe, 'complete': True, 'files': len(paths) - len(failed), 'failed': failed},
                                  indent=1) + '\n')
    print(f'resized {len(todo) - len(failed)} files in {seconds:.1f} s ({len(todo) / max(seconds, 1e-9):.0f} files/s) '
          f'-> {out}; train with --data-root {out} --resize-mode {mode} --resize {size}')
    if failed:
        print(f'{len(failed)} files could not be read or decoded and are not in the copy (listed in {meta}); '
              f'`python data_dali.py scan` leaves them out of the subsets:')
        for p, e in sorted(failed.items())[:20]:
            print(f'  {p}\t{e}')


def check_prepared(root, resize_mode, resize):
    """A run on a prepared copy resizes as the copy was made, so that no image is resized twice."""
    meta = os.path.join(root, PREPARED)
    if not os.path.exists(meta):
        return
    m = read_json(meta, ['resize_mode', 'size', 'complete'], fix='prepare the copy again')
    if not m['complete']:
        raise UserError(f'{root} is a prepared copy that is not finished ({meta}); run its `data_dali.py prepare` '
                        f'command again')
    if (m['resize_mode'], m['size']) != (resize_mode, resize):
        raise UserError(f'{root} holds images resized once with --resize-mode {m["resize_mode"]} --resize {m["size"]} '
                        f'({meta}); this run has --resize-mode {resize_mode} --resize {resize}, which would resize '
                        f'them twice: pass those flags, or the original images')


def get_args_parser():
    p = argparse.ArgumentParser(description='Tools around the DALI pipelines.')
    sub = p.add_subparsers(dest='cmd', required=True)
    s = sub.add_parser('scan', help='decode every image once; write scan.tsv and exclude.txt (subsets.py reads it)')
    s.add_argument('target', metavar='ROOT_OR_MANIFEST',
                   help='an index folder or index.tsv, a manifest (train.txt, val.txt), or an image root with train/')
    s.add_argument('--out', default=None, help='folder for scan.tsv and exclude.txt (default: beside the index; '
                                               'for an image root: subsets, where subsets.py index writes)')
    s.add_argument('--root', default=None, help="a manifest's image root (default: the root in the meta.json beside it)")
    s.add_argument('--workers', type=ranged(int, 1), default=os.cpu_count(), help='decoding processes')
    s.add_argument('--max-pixels', type=ranged(int, 1), default=Image.MAX_IMAGE_PIXELS,
                   help="an image with more pixels is excluded (default: Pillow's decompression-bomb limit)")
    s = sub.add_parser('prepare', help='a copy of the images resized once (Caffe: warped to 256 x 256), same layout')
    s.add_argument('target', metavar='ROOT_OR_MANIFEST', help='an index folder or index.tsv, a manifest, or an image root')
    s.add_argument('--out', required=True, help='the folder of the copy (train with --data-root OUT)')
    s.add_argument('--root', default=None, help="a manifest's image root (default: the root in the meta.json beside it)")
    size = s.add_mutually_exclusive_group()
    size.add_argument('--warp', type=ranged(int, 1), default=None, metavar='N',
                      help="both sides to N, aspect ratio ignored (Caffe's create_imagenet.sh: 256; the default)")
    size.add_argument('--shorter', type=ranged(int, 1), default=None, metavar='N',
                      help='the shorter side to N (smaller images are copied as they are)')
    s.add_argument('--quality', type=ranged(int, 1, 100), default=90,
                   help='JPEG quality of the resized files (Caffe stored raw pixels; README fidelity table)')
    s.add_argument('--workers', type=ranged(int, 1), default=os.cpu_count(), help='processes')
    return p


def main(args):
    if args.cmd == 'prepare':
        root, paths, _ = scan_inputs(args.target, args.root, None)
        if not os.path.isdir(root):
            raise UserError(f'image root not found: {root}')
        mode, size = ('shorter', args.shorter) if args.shorter else ('warp', args.warp or 256)
        try:
            prepare(root, paths, args.out, mode, size, args.quality, args.workers)
        except KeyboardInterrupt:
            sys.exit(130)
        return
    if args.cmd == 'scan':
        if args.workers < 1:
            raise UserError(f'--workers must be >= 1, got {args.workers}')
        root, paths, out = scan_inputs(args.target, args.root, args.out)
        if not os.path.isdir(root):
            raise UserError(f'image root not found: {root}')
        try:
            scan(root, paths, out, args.workers, args.max_pixels)
        except KeyboardInterrupt:
            sys.exit(130)  # scan() said how far it got and that the same command goes on
        if not os.path.exists(os.path.join(out, 'index.tsv')):
            print(f'note: no index.tsv in {out}; subsets.py reads the exclude list beside the index it is given')


if __name__ == '__main__':
    run_main(main, get_args_parser().parse_args())
