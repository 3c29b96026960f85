"""The GPU path of the loader (decoders.image(device='mixed'), then resize/crop/normalise on the GPU). Skipped
without CUDA, so CI (CPU only) never runs it; run on a GPU machine: `python -m pytest -q tests/test_gpu.py`."""
import pytest
import torch

from bench.loader import make_synthetic
from data_dali import classification_loader

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason='needs CUDA')


@pytest.fixture(scope='module')
def jpegs(tmp_path_factory):
    root = str(tmp_path_factory.mktemp('jpegs'))
    return root, make_synthetic(root, 64)


@pytest.mark.parametrize('hw_decoder_load', [0.0, 1.0])  # nvJPEG's CUDA decoder, and the hardware decoder
def test_mixed_pipeline_matches_cpu(jpegs, hw_decoder_load):
    """Validation batches (centre crop, no randomness) decoded on the GPU equal the CPU pipeline's up to the
    decoders' rounding (IDCT), in the same layout, thanks to jpeg_fancy_upsampling (data_dali's default):
    without it, nvJPEG's plain chroma upsampling is measurably further from libjpeg-turbo's images."""
    root, manifest = jpegs

    def batches(**kw):
        return list(classification_loader(root, manifest, 16, False, crop=224, resize=256, **kw))

    cpu = batches()
    gpu = batches(device_id=0, hw_decoder_load=hw_decoder_load)
    plain = batches(device_id=0, hw_decoder_load=hw_decoder_load, fancy_upsampling=False)
    assert len(cpu) == len(gpu) == len(plain) == 4
    err, err_plain = [], []
    for (xc, yc), (xg, yg), (xp, _) in zip(cpu, gpu, plain):
        assert xg.is_cuda and xg.dtype == torch.float32 and xg.shape == (16, 3, 224, 224)
        assert xg.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(yc, yg.cpu())
        err.append((xg.cpu() - xc).abs() * 58)  # normalised units back to grey levels (std ~58)
        err_plain.append((xp.cpu() - xc).abs() * 58)
    err, err_plain = torch.cat(err), torch.cat(err_plain)
    print(f'hw_decoder_load {hw_decoder_load}: mean |GPU - CPU| {err.mean():.3f} grey levels (max {err.max():.1f}); '
          f'without fancy upsampling {err_plain.mean():.3f} (max {err_plain.max():.1f})')
    assert err.mean() < 1.0 and err.mean() < err_plain.mean(), (err.mean(), err_plain.mean())


def test_train_loader_on_gpu_memory_is_flat(jpegs):
    """Three epochs of the train loader on the GPU: DALI's device memory stops growing after the first."""
    root, manifest = jpegs
    loader = classification_loader(root, manifest, 16, True, crop=224, resize=256, device_id=0)
    used = []
    for _ in range(4):
        n = sum(x.shape[0] for x, _ in loader)
        assert n == 64
        torch.cuda.synchronize()
        free, total = torch.cuda.mem_get_info()
        used.append(total - free)
    assert max(used[1:]) - used[1] < 64 * 2**20, [u / 2**20 for u in used]  # under 64 MiB of drift after epoch 1


def test_uint8_hand_over_on_gpu(jpegs):
    """train.py --hand-over uint8 on the GPU: the mixed pipeline's uint8 images, normalised by torch on the device,
    equal its float hand-over's (DALI's GPU kernel may fuse the product differently from the CPU's: 1e-5 allowed)."""
    root, manifest = jpegs

    def loader(hand_over):
        return classification_loader(root, manifest, 16, False, crop=224, resize=256, device_id=0, hand_over=hand_over)

    u8 = loader('uint8')
    norm = u8.normalizer().cuda()
    for (a, la), (b, lb) in zip(loader('float'), u8):
        assert b.is_cuda and b.dtype == torch.uint8 and b.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(la, lb) and (norm(b) - a).abs().max().item() < 1e-5


def test_nms_on_gpu_is_torchvision_and_keeps_the_cpu_boxes():
    """detection.nms on CUDA runs torchvision's kernel (tv_nms) and keeps the boxes our CPU NMS keeps, at
    py-faster-rcnn's RPN sizes (bench/detection_ops.py's proposals: 12000 -> 2000 at IoU 0.7)."""
    from bench.detection_ops import proposals
    from detection import batched_nms, nms
    boxes, scores = proposals(12000, 0)
    cpu = nms(boxes, scores, 0.7, max_keep=2000)
    gpu = nms(boxes.cuda(), scores.cuda(), 0.7, max_keep=2000)
    assert gpu.is_cuda and torch.equal(gpu.cpu(), cpu)
    labels = torch.arange(12000) % 21
    cpu_b = batched_nms(boxes, scores, labels, 0.3)
    gpu_b = batched_nms(boxes.cuda(), scores.cuda(), labels.cuda(), 0.3)
    assert sorted(gpu_b.tolist()) == sorted(cpu_b.tolist())
