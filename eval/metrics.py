"""Metrics, each a small torch function tested against a brute-force reference (tests/test_metrics.py).

    from eval.metrics import topk_hits, per_class_counts, mean_class_accuracy, knn
"""
import torch


def topk_hits(logits, labels, ks=(1, 5)):
    """Number of rows whose label is among the top-k logits, for each k (k is capped at the class count)."""
    top = logits.topk(min(max(ks), logits.shape[1]), dim=1).indices
    hit = top == labels[:, None]
    return [hit[:, :k].any(1).sum() for k in ks]


def per_class_counts(preds, labels, num_classes):
    """(correct, total) per class as float64 tensors: what mean class accuracy needs, and what sums across
    batches and ranks."""
    total = torch.zeros(num_classes, dtype=torch.float64, device=labels.device)
    correct = torch.zeros_like(total)
    ones = torch.ones_like(labels, dtype=torch.float64)
    total.index_add_(0, labels, ones)
    correct.index_add_(0, labels, (preds == labels).double())
    return correct, total


def mean_class_accuracy(correct, total):
    """Mean over the classes that have images of each class's accuracy, in %: SUN397's measure (Xiao et al.
    2010), which weighs every category equally whatever its test count."""
    seen = total > 0
    return 100 * (correct[seen] / total[seen]).mean().item()


@torch.no_grad()
def knn(queries, database, k, metric='l2', chunk=8192):
    """(distances or negative similarities, indices) of the k nearest database rows of every query, best first.

    The database is walked in chunks and the running k best are merged, so memory is
    O(len(queries) * (chunk + k)): a 1.28M x 4096 database never needs all pairwise distances at once.
    chunk 8192 took 0.77x the time of 65536 on 2 CPU cores, with 8x less memory (BENCHMARKS.md, kNN).
    Call it with batches of queries (and tensors on the GPU to run there).
    metric: 'l2' (Euclidean) or 'cosine' (rows are L2-normalised; the score is -cosine similarity)."""
    if metric == 'cosine':
        queries = torch.nn.functional.normalize(queries, dim=1)
    k = min(k, len(database))
    best_d = torch.full((len(queries), 0), float('inf'), device=queries.device)
    best_i = torch.zeros((len(queries), 0), dtype=torch.long, device=queries.device)
    q2 = (queries * queries).sum(1, keepdim=True)
    for start in range(0, len(database), chunk):
        db = database[start:start + chunk].to(queries.device, queries.dtype)
        if metric == 'cosine':
            d = -(queries @ torch.nn.functional.normalize(db, dim=1).T)
        else:  # |q - x|^2 = |q|^2 - 2 q.x + |x|^2, without the N x M x D difference tensor
            d = q2 - 2 * queries @ db.T + (db * db).sum(1)[None]
        d, i = torch.cat([best_d, d], 1), torch.cat([best_i, torch.arange(start, start + len(db), device=d.device).expand(len(d), -1)], 1)
        best_d, pos = d.topk(k, dim=1, largest=False)
        best_i = i.gather(1, pos)
    if metric == 'l2':
        best_d = best_d.clamp_min(0).sqrt()
    return best_d, best_i
