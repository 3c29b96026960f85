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
    decoders' rounding (nvJPEG vs libjpeg-turbo IDCT and chroma upsampling), in the same layout."""
    root, manifest = jpegs
    cpu = list(classification_loader(root, manifest, 16, False, crop=224, resize=256))
    gpu = list(classification_loader(root, manifest, 16, False, crop=224, resize=256, device_id=0,
                                     hw_decoder_load=hw_decoder_load))
    assert len(cpu) == len(gpu) == 4
    for (xc, yc), (xg, yg) in zip(cpu, gpu):
        assert xg.is_cuda and xg.dtype == torch.float32 and xg.shape == (16, 3, 224, 224)
        assert xg.is_contiguous(memory_format=torch.channels_last)
        assert torch.equal(yc, yg.cpu())
        diff = (xg.cpu() - xc).abs() * 58  # normalised units back to grey levels (std ~58)
        print(f'hw_decoder_load {hw_decoder_load}: mean |GPU - CPU| {diff.mean():.3f}, max {diff.max():.1f} grey levels')
        assert diff.mean() < 2.0, diff.mean()


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
