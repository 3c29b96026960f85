"""eval/metrics.py against brute-force references on random inputs."""
import torch

from eval.metrics import knn, mean_class_accuracy, per_class_counts, topk_hits


def test_topk_hits():
    g = torch.Generator().manual_seed(0)
    logits, labels = torch.randn(500, 13, generator=g), torch.randint(0, 13, (500,), generator=g)
    order = logits.argsort(1, descending=True).tolist()
    for k, got in zip((1, 5), topk_hits(logits, labels, (1, 5))):
        assert got.item() == sum(labels[i].item() in order[i][:k] for i in range(500))
    assert topk_hits(logits[:, :3], labels.clamp(max=2), (5,))[0].item() == 500  # k capped at the class count


def test_mean_class_accuracy():
    g = torch.Generator().manual_seed(1)
    labels = torch.cat([torch.randint(0, 7, (300,), generator=g), torch.full((50,), 9)])  # class 8 has no images
    preds = torch.where(torch.rand(350, generator=g) < 0.6, labels, torch.randint(0, 10, (350,), generator=g))
    correct, total = per_class_counts(preds, labels, 10)
    per_class = [sum(1 for p, y in zip(preds, labels) if y == c and p == y) / sum(1 for y in labels if y == c)
                 for c in range(10) if (labels == c).any()]
    assert abs(mean_class_accuracy(correct, total) - 100 * sum(per_class) / len(per_class)) < 1e-9
    assert total.sum() == 350 and total[8] == 0


def test_knn_matches_brute_force():
    g = torch.Generator().manual_seed(2)
    q, db = torch.randn(37, 16, generator=g, dtype=torch.float64), torch.randn(1000, 16, generator=g, dtype=torch.float64)
    for metric in ('l2', 'cosine'):
        if metric == 'l2':
            ref = torch.cdist(q, db)
        else:
            ref = -(torch.nn.functional.normalize(q, dim=1) @ torch.nn.functional.normalize(db, dim=1).T)
        want_d, want_i = ref.topk(5, dim=1, largest=False)
        for chunk in (7, 100, 4096):  # chunks smaller than k, uneven, and one chunk for everything
            d, i = knn(q, db, 5, metric, chunk=chunk)
            assert torch.equal(i, want_i), (metric, chunk)
            assert torch.allclose(d, want_d, atol=1e-6)
    assert knn(q, db[:3], 5)[1].shape == (37, 3)  # fewer database rows than k
