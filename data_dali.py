"""Every DALI input pipeline of the project. Classification for now; detection and actions join later.

    from data_dali import classification_loader
    train = classification_loader('data/toy', 'subsets/toy-full/train.txt', batch_size=64, train=True, crop=96, resize=108)
    for images, labels in train: ...   # images: float NCHW view in channels_last memory, normalised

One code path serves GPU and CPU: decoding is `decoders.image(device='mixed')` (nvJPEG / hardware decoder)
when CUDA is available and `device='cpu'` otherwise, and everything after the decoder runs where the decoder
put the images. CI runs this same pipeline on CPU (`device_id=None`).
"""
import contextlib
import os

import torch
from engine import UserError
from nvidia.dali import fn, pipeline_def, types
from nvidia.dali import math as dmath
from nvidia.dali.plugin.pytorch import DALIGenericIterator, LastBatchPolicy

# ImageNet RGB mean/std on the 0-255 scale (torchvision's values). Caffe subtracted the mean only; we also
# divide by the std so that torchvision-format weights see the input they were trained on. For a net
# trained from scratch this is a fixed rescaling of the first layer's input.
MEAN = [0.485 * 255, 0.456 * 255, 0.406 * 255]
STD = [0.229 * 255, 0.224 * 255, 0.225 * 255]
STYLES = ('caffe', 'inception')


def _crop_window(jpegs, train, crop, resize):
    """Resize arguments that make resizing only the crop window equal to "resize the shorter side to `resize`,
    then take a crop x crop window" (random, or the centre for validation), at lower cost.

    A full resize to r pixels keeps the exact scale s = resize / shorter side and maps the r / s source pixels
    centred on the image onto them (DALI's subpixel_scale), so output pixel c comes from source coordinate
    origin + c / s. The crop window [c, c + crop) is therefore the resize, with the same scale and filter, of
    the source region [origin + c / s, origin + (c + crop) / s]. On 500x375 JPEGs this skips 42% of the resize
    work (BENCHMARKS.md, Loader: 3.85 -> about 3 CPU ms per image); the output differs by a grey level at most."""
    shape = fn.peek_image_shape(jpegs, dtype=types.FLOAT)  # (H, W, C) from the JPEG header, no decoding
    h, w = shape[0], shape[1]
    scale = resize / dmath.min(h, w)
    start, end = [], []
    for n in (h, w):
        r = dmath.floor(n * scale + 0.5)  # the size `resize_shorter` would give this side
        pos = fn.random.uniform(range=[0.0, 1.0]) if train else 0.5
        c = dmath.floor(pos * (r - crop) + 0.5)  # crop_mirror_normalize's rule for a crop position
        # resize keeps the exact scale and centres the r / scale source pixels it maps onto r (subpixel_scale)
        origin = (n - r / scale) * 0.5
        start.append(origin + c / scale)
        end.append(origin + (c + crop) / scale)
    return {'roi_start': fn.stack(*start), 'roi_end': fn.stack(*end)}


@pipeline_def
def _classification_pipeline(root, file_list, train, style, crop, resize, shard_id, num_shards, decoder_device):
    # A manifest line is "relative/path label": exactly the file reader's file_list format.
    # Train: shuffle_after_epoch draws one permutation of the whole list per epoch, identical on every shard
    # (so shards stay disjoint); a shuffle buffer (random_shuffle) would see class-sorted manifests as
    # class-sorted batches. Val: pad_last_batch plus the iterator's PARTIAL policy count every image once.
    jpegs, labels = fn.readers.file(file_root=root, file_list=file_list, shard_id=shard_id, num_shards=num_shards,
                                    shuffle_after_epoch=train, pad_last_batch=not train, name='Reader')
    dev = 'gpu' if decoder_device == 'mixed' else 'cpu'
    mirror = 0
    if train and style == 'inception':
        # Random-resized crop (Szegedy et al. 2015; torchvision defaults); decoding only the crop window.
        images = fn.decoders.image_random_crop(jpegs, device=decoder_device, output_type=types.RGB,
                                               random_area=[0.08, 1.0], random_aspect_ratio=[3 / 4, 4 / 3])
        images = fn.resize(images, device=dev, size=[crop, crop], antialias=True)
        crop_args = {}
        mirror = fn.random.coin_flip(probability=0.5)
    else:
        # Caffe (Krizhevsky et al. 2012): shorter side to `resize` (256), then a random `crop` (227) and a
        # mirror for training, the centre crop for validation.
        images = fn.decoders.image(jpegs, device=decoder_device, output_type=types.RGB)
        images = fn.resize(images, device=dev, size=[crop, crop], antialias=True,
                           **_crop_window(jpegs, train, crop, resize))
        crop_args = {}
        if train:
            mirror = fn.random.coin_flip(probability=0.5)
    # HWC float output: torch sees NHWC memory, which permute(0, 3, 1, 2) turns into an NCHW view in
    # channels_last layout with no copy.
    images = fn.crop_mirror_normalize(images, device=dev, dtype=types.FLOAT, output_layout='HWC',
                                      mean=MEAN, std=STD, mirror=mirror, **crop_args)
    return images, labels


@contextlib.contextmanager
def dali_errors(file_list):
    """DALI stops the whole pipeline on a file it cannot decode, with a many-line message that does not name
    the file. Turn it into one line that names the manifest."""
    try:
        yield
    except RuntimeError as e:
        if 'pipeline' not in str(e):
            raise
        reason = '; '.join(line.strip() for line in str(e).splitlines() if 'failure' in line or line.startswith('Error in'))
        raise UserError(f'DALI could not read or decode an image listed in {file_list}: {reason[:300]}') from None


class ClassificationLoader:
    """Iterates (images NCHW channels_last float32, labels int64) over one shard of a manifest.

    A thin wrapper over DALIGenericIterator: it fixes the layout, and exposes `state()` so a checkpoint can
    hold the reader position and augmentation RNG (DALI checkpointing) for an exact resume.
    """

    def __init__(self, pipe, train, file_list):
        self.pipe, self.train, self.file_list = pipe, train, file_list
        # Train drops the ragged last batch (fixed batch size for the step); val keeps it and drops padding.
        policy = LastBatchPolicy.DROP if train else LastBatchPolicy.PARTIAL
        with dali_errors(file_list):  # the iterator runs the pipeline once at construction
            self.it = DALIGenericIterator(pipe, ['images', 'labels'], reader_name='Reader', last_batch_policy=policy,
                                          auto_reset=True)

    def __len__(self):
        return len(self.it)  # batches per epoch on this shard

    def __iter__(self):
        with dali_errors(self.file_list):
            for batch in self.it:
                b = batch[0]
                yield b['images'].permute(0, 3, 1, 2), b['labels'].squeeze(-1).long()

    def state(self):
        return self.it.checkpoints()[0]


def classification_loader(root, file_list, batch_size, train, crop, resize, style='caffe', num_threads=4,
                          device_id=None, shard_id=0, num_shards=1, seed=0, checkpoint=None):
    """A loader over `file_list` (a manifest; its paths are relative to `root`).

    device_id: a CUDA device index to decode on the GPU ('mixed'), or None for the CPU pipeline.
    checkpoint: a string from a previous loader's state(), to continue exactly where it stopped.
    """
    for path, what in ((root, 'image root'), (file_list, 'manifest')):
        if not os.path.exists(path):
            raise FileNotFoundError(f'{what} not found: {path}')
    if style not in STYLES:
        raise ValueError(f'unknown augmentation style {style!r}; choose from {STYLES}')
    pipe = _classification_pipeline(root=root, file_list=file_list, train=train, style=style, crop=crop, resize=resize,
                                    shard_id=shard_id, num_shards=num_shards,
                                    decoder_device='cpu' if device_id is None else 'mixed',
                                    batch_size=batch_size, num_threads=num_threads, device_id=device_id,
                                    seed=seed + 1000 * shard_id,  # augmentation differs across ranks
                                    enable_checkpointing=train, checkpoint=checkpoint)
    return ClassificationLoader(pipe, train, file_list)


def device_id():
    """The CUDA device this process decodes on, or None for the CPU pipeline."""
    return torch.cuda.current_device() if torch.cuda.is_available() else None
