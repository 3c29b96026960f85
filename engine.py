"""What train.py and finetune.py truly share: distributed setup, the LR schedule, the run directory,
atomic checkpoints, logging, and the one-line error for a user's mistake. No Trainer class: the loops
stay in the scripts."""
import json
import math
import os
import subprocess
import sys

import torch
import torch.distributed as dist

HERE = os.path.dirname(os.path.abspath(__file__))


class UserError(Exception):
    """A mistake in the user's input. Scripts print it as one line and exit 2, with no traceback."""


def run_main(main, args):
    """Call main(args); a UserError becomes `error: ...` on stderr and exit status 2, Ctrl-C a one-line note."""
    try:
        return main(args)
    except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print('\ninterrupted: the same command resumes from the last checkpoint', file=sys.stderr)
        sys.exit(130)


# ----------------------------------------------------------------------------------------------------------
# Distributed (torchrun sets RANK, WORLD_SIZE, LOCAL_RANK)


def init_distributed():
    """(rank, world_size, local_rank, device). NCCL on GPU, gloo on CPU; a plain `python` run is world 1."""
    rank, world = int(os.environ.get('RANK', 0)), int(os.environ.get('WORLD_SIZE', 1))
    local_rank = int(os.environ.get('LOCAL_RANK', 0))
    if torch.cuda.is_available():
        torch.cuda.set_device(local_rank)
        device = torch.device('cuda', local_rank)
    else:
        device = torch.device('cpu')
    if world > 1:
        dist.init_process_group('nccl' if device.type == 'cuda' else 'gloo')
    return rank, world, local_rank, device


def all_gather_object(obj, world):
    if world == 1:
        return [obj]
    out = [None] * world
    dist.all_gather_object(out, obj)
    return out


def all_reduce_sum(t, world):
    if world > 1:
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


# ----------------------------------------------------------------------------------------------------------
# Learning rate: a function of the iteration, nothing stateful (so resume needs only the step)


def lr_at(step, base_lr, total, schedule='step', milestones=(), gamma=0.1, warmup=0):
    """LR at iteration `step` (0-based). Milestones, warm-up and total are all in iterations.

    step: Caffe's "multistep" policy, x gamma at each milestone (bvlc_alexnet: x0.1 every 100K of 450K).
    cosine: half-cosine from base_lr to 0 over the iterations after warm-up (Loshchilov & Hutter 2017).
    constant: base_lr throughout. Linear warm-up (Goyal et al. 2017) applies before any of them."""
    if step < warmup:
        return base_lr * (step + 1) / warmup
    if schedule == 'step':
        return base_lr * gamma ** sum(step >= m for m in milestones)
    if schedule == 'cosine':
        return 0.5 * base_lr * (1 + math.cos(math.pi * (step - warmup) / max(1, total - warmup)))
    if schedule == 'constant':
        return base_lr
    raise ValueError(f'unknown schedule {schedule!r}')


def sgd(model, lr, momentum, weight_decay, caffe_bias=False):
    """SGD with momentum. Each param group carries 'lr_mult', which the loop multiplies into the scheduled LR.

    caffe_bias: Caffe's AlexNet rule (bvlc_alexnet/train_val.prototxt): biases learn at 2x the LR with no
    weight decay. Otherwise every trainable parameter gets the same LR and decay (torchvision's recipe)."""
    params = [p for p in model.parameters() if p.requires_grad]
    if caffe_bias:
        groups = [{'params': [p for p in params if p.ndim > 1], 'lr_mult': 1.0, 'weight_decay': weight_decay},
                  {'params': [p for p in params if p.ndim <= 1], 'lr_mult': 2.0, 'weight_decay': 0.0}]
    else:
        groups = [{'params': params, 'lr_mult': 1.0, 'weight_decay': weight_decay}]
    return torch.optim.SGD(groups, lr=lr, momentum=momentum)


# ----------------------------------------------------------------------------------------------------------
# The run directory: args.json, the git SHA (and diff when dirty), log.jsonl, tb/, checkpoint.pth


def git_state():
    """(sha, diff or '') of the code that runs, so a run explains itself later."""
    def git(*cmd):
        try:
            return subprocess.run(['git', *cmd], cwd=HERE, capture_output=True, text=True, timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ''
    return git('rev-parse', 'HEAD') or 'unknown', git('diff', 'HEAD')


def check_run_dir(out, args_dict, ignore=()):
    """Refuse to reuse a run directory that holds a run made with other arguments (resume means *same*)."""
    path = os.path.join(out, 'args.json')
    if not os.path.exists(path):
        return
    with open(path) as f:
        old = json.load(f)
    diff = {k: (old.get(k), v) for k, v in args_dict.items() if k not in ignore and old.get(k) != v}
    if diff:
        shown = ', '.join(f'--{k.replace("_", "-")} {a!r} -> {b!r}' for k, (a, b) in sorted(diff.items()))
        raise UserError(f'{out} holds a run made with other arguments ({shown}); pass another --out, or delete it to start over')


def start_run_dir(out, args_dict):
    """Create the run directory and record how the run was made. Call only after the inputs are validated,
    so a mistake never leaves a half-made run directory behind."""
    os.makedirs(out, exist_ok=True)
    sha, diff = git_state()
    args_dict = dict(args_dict, git_sha=sha)
    write_atomic(os.path.join(out, 'args.json'), json.dumps(args_dict, indent=1, sort_keys=True) + '\n')
    if diff:
        write_atomic(os.path.join(out, 'git.diff'), diff + '\n')
    return sha


def print_args(args_dict, sha):
    print(f'git {sha}')
    for k in sorted(args_dict):
        print(f'  {k}: {args_dict[k]}')


def write_atomic(path, text):
    tmp = path + '.tmp'
    with open(tmp, 'w') as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def trim_log(path, step):
    """On resume, drop log records past the checkpoint: the resumed run writes them again."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        keep = [line for line in f if json.loads(line).get('step', 0) <= step]
    write_atomic(path, ''.join(keep))


# ----------------------------------------------------------------------------------------------------------
# Checkpoints: one dict, written atomically (tmp + fsync + os.replace), loaded with weights_only=True


def save_checkpoint(path, ckpt):
    tmp = path + '.tmp'
    with open(tmp, 'wb') as f:
        torch.save(ckpt, f)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    dirfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dirfd)  # make the rename itself durable
    finally:
        os.close(dirfd)


def load_checkpoint(path):
    # weights_only: a checkpoint is plain tensors, numbers and strings; never unpickle arbitrary objects.
    return torch.load(path, map_location='cpu', weights_only=True)


def rng_state():
    return {'torch': torch.get_rng_state(), 'cuda': torch.cuda.get_rng_state() if torch.cuda.is_available() else None}


def set_rng_state(state):
    torch.set_rng_state(state['torch'])
    if state['cuda'] is not None and torch.cuda.is_available():
        torch.cuda.set_rng_state(state['cuda'])


# ----------------------------------------------------------------------------------------------------------
# Logging: stdout (tqdm), log.jsonl and TensorBoard, written by rank 0 only


class RunLog:
    def __init__(self, out, purge_step=None):
        from torch.utils.tensorboard import SummaryWriter  # imported here: only rank 0 pays for it
        self.jsonl = open(os.path.join(out, 'log.jsonl'), 'a')
        # purge_step drops events past the checkpoint, so a resumed run's curves do not double back.
        self.tb = SummaryWriter(os.path.join(out, 'tb'), purge_step=purge_step)

    def log(self, step, **scalars):
        self.jsonl.write(json.dumps({'step': step, **scalars}) + '\n')
        self.jsonl.flush()
        for k, v in scalars.items():
            if isinstance(v, (int, float)):
                self.tb.add_scalar(k, v, step)

    def close(self):
        self.jsonl.close()
        self.tb.close()


# ----------------------------------------------------------------------------------------------------------
# Evaluation


@torch.no_grad()
def evaluate(model, loader, device, amp_dtype, world):
    """Top-1 / top-5 over every image of the loader's shards, each counted once (summed across ranks)."""
    model.eval()
    stats = torch.zeros(3, dtype=torch.float64, device=device)  # correct@1, correct@5, images
    for images, labels in loader:
        images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
        with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
            logits = model(images)
        top5 = logits.topk(min(5, logits.shape[1]), dim=1).indices
        hit = top5 == labels[:, None]
        stats += torch.stack([hit[:, 0].sum(), hit.any(1).sum(), torch.tensor(len(labels), device=device)]).double()
    all_reduce_sum(stats, world)
    model.train()
    c1, c5, n = stats.tolist()
    return {'top1': 100 * c1 / n, 'top5': 100 * c5 / n, 'n': int(n)}
