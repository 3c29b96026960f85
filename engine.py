"""What train.py and finetune.py truly share: distributed setup, the LR schedule, the run directory,
atomic checkpoints, logging, and the one-line error for a user's mistake. No Trainer class: the loops
stay in the scripts."""
import argparse
import errno
import fcntl
import hashlib
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import threading

import torch
import torch.distributed as dist
import torch.nn as nn

from eval.metrics import mean_class_accuracy, per_class_counts, topk_hits, transfer_metrics

HERE = os.path.dirname(os.path.abspath(__file__))


class UserError(Exception):
    """A mistake in the user's input. Scripts print it as one line and exit 2, with no traceback."""


# What the machine or the user's paths did, not a bug: --out that is a file, a read-only or full disk, a missing
# folder. They end in one line naming the path (errors the scripts foresee are UserErrors with more to say).
PATH_ERRNOS = {errno.ENOENT, errno.EACCES, errno.EPERM, errno.EROFS, errno.ENOSPC, errno.EFBIG, errno.EDQUOT,
               errno.ENOTDIR, errno.EISDIR, errno.EEXIST, errno.ENAMETOOLONG}


def path_error(e):
    """The one line for an OSError about a path (PATH_ERRNOS), naming it; None for any other error."""
    if not isinstance(e, OSError) or e.errno not in PATH_ERRNOS:
        return None
    return f'error: {e.filename}: {e.strerror}' if e.filename else f'error: {e.strerror or e}'


def run_main(main, args):
    """Call main(args); a UserError becomes `error: ...` on stderr and exit status 2, as does an OSError about a path
    (path_error); Ctrl-C is a one-line note."""
    try:
        return main(args)
    except UserError as e:
        print(f'error: {e}', file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        if path_error(e) is None:
            raise
        print(path_error(e), file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print('\ninterrupted: the same command resumes from the last checkpoint', file=sys.stderr)
        sys.exit(130)


def ranged(kind, lo=None, hi=None, lo_open=False, hi_open=False):
    """An argparse type: a `kind` (int or float) number within lo..hi (exclusive where *_open). Every numeric flag
    of every script declares its range with it, so a value out of range is refused at parse time, before anything
    is read or written, by argparse's own error (exit status 2)."""
    bounds = ' and '.join(f'{op} {b}' for op, b in (('>' if lo_open else '>=', lo), ('<' if hi_open else '<=', hi))
                          if b is not None)

    def parse(text):
        try:
            v = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f'{text!r} is not {"an integer" if kind is int else "a number"}') from None
        if not math.isfinite(v) or (lo is not None and (v <= lo if lo_open else v < lo)) or \
                (hi is not None and (v >= hi if hi_open else v > hi)):
            raise argparse.ArgumentTypeError(f'{text} is out of range: must be {bounds or "finite"}')
        return v
    parse.__name__ = kind.__name__  # argparse names the type in its messages
    return parse


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



def amp_setup(amp, device):
    """(precision name, autocast dtype, GradScaler) of --amp: auto is bf16 on a GPU and fp32 on the CPU; only fp16
    needs the loss scaled."""
    amp = {'auto': 'bf16' if device.type == 'cuda' else 'fp32'}.get(amp, amp)
    dtype = {'bf16': torch.bfloat16, 'fp16': torch.float16, 'fp32': torch.float32}[amp]
    return amp, dtype, torch.amp.GradScaler(device.type, enabled=dtype == torch.float16)

# What --wd-norm counts as normalisation parameters, in any architecture of models.py
NORM_LAYERS = (nn.modules.batchnorm._BatchNorm, nn.GroupNorm, nn.LayerNorm)


def sgd(model, lr, momentum, weight_decay, caffe_bias=False, head_lr_mult=1.0, wd_norm=True, bias_decay=False, nesterov=False):
    """SGD with momentum over the trainable parameters. Each param group carries 'lr_mult', which the loop
    multiplies into the scheduled LR.

    caffe_bias: Caffe's AlexNet rule (bvlc_alexnet/train_val.prototxt): biases learn at 2x with no decay;
      bias_decay keeps their decay (py-faster-rcnn's prototxts: lr_mult 2, decay_mult left at 1).
    head_lr_mult: the new last layer learns faster when fine-tuning (Caffe's fine-tuning example,
      finetune_flickr_style: lr_mult 10 on the new fc8).
    wd_norm: weight decay on normalisation parameters (BN/GN scale and shift); Kornblith et al. 2019 find that
      taking it off helps ImageNet accuracy but hurts transfer."""
    head = {id(p) for p in model.get_submodule(model.head_name).parameters()} if head_lr_mult != 1 else set()
    norm = {id(p) for m in model.modules() if isinstance(m, NORM_LAYERS) for p in m.parameters()}
    groups = {}
    for p in model.parameters():
        if not p.requires_grad:
            continue
        bias = caffe_bias and p.ndim == 1
        mult = (2.0 if bias else 1.0) * (head_lr_mult if id(p) in head else 1.0)
        wd = 0.0 if bias and not bias_decay or (id(p) in norm and not wd_norm) else weight_decay
        groups.setdefault((mult, wd), []).append(p)
    return torch.optim.SGD([{'params': ps, 'lr_mult': m, 'weight_decay': wd} for (m, wd), ps in groups.items()],
                           lr=lr, momentum=momentum, nesterov=nesterov)


def read_weights(path, arch=None):
    """(state_dict, args or None) of a wmig checkpoint (its 'model' and 'args'), of a plain state_dict file
    (torch or .safetensors, as torchvision and timm publish them), or of a library's published weights
    ('torchvision:DEFAULT', 'timm:DEFAULT', or another of their tags) for `arch`. Files are loaded safely
    (weights_only); any failure is a one-line UserError naming the file."""
    if path.startswith(('torchvision:', 'timm:')):
        from models import published_weights
        return published_weights(arch, path), None
    if not os.path.isfile(path):
        raise UserError(f'weights file not found: {path}')
    try:
        if path.endswith('.safetensors'):
            from safetensors.torch import load_file  # timm's format; safetensors comes with timm
            sd = load_file(path)
        else:
            sd = load_checkpoint(path)
    except Exception as e:  # not a torch file, truncated, or holding pickled objects weights_only refuses
        raise UserError(f'{path} is not a loadable weights file ({type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ""})') from None
    src_args = None
    if isinstance(sd, dict) and 'model' in sd and 'args' in sd:
        src_args, sd = sd['args'], sd['model']
    if not isinstance(sd, dict) or not sd or not all(isinstance(v, torch.Tensor) for v in sd.values()):
        raise UserError(f'{path} holds no state_dict')
    # DDP and torch.compile prefixes, should a file from elsewhere carry them
    return {k.removeprefix('module.').removeprefix('_orig_mod.'): v for k, v in sd.items()}, src_args


# The auxiliary classifiers of published Inception weights (torchvision's inception_v3, googlenet)
AUX_HEADS = ('AuxLogits.', 'aux1.', 'aux2.')


def load_init(model, sd, path):
    """Load the pre-trained state_dict `sd` (read from `path` by read_weights) into `model`, all but its last
    layer, which stays newly initialised.

    Loading is strict=False, and then the missing keys must be exactly the head's: anything else means the
    weights were made for another architecture. The auxiliary classifiers of published Inception weights
    (AuxLogits, aux1, aux2) are dropped: models.get_model builds the Inceptions without them."""
    head = model.head_name + '.'
    own = model.state_dict()
    sd = {k: v for k, v in sd.items() if not k.startswith(head) and not k.startswith(AUX_HEADS)}
    for k, v in sd.items():
        if k in own and own[k].shape != v.shape:
            raise UserError(f'{path}: {k} has shape {tuple(v.shape)}, this network {tuple(own[k].shape)} '
                            f'(weights of another --arch or --width?)')
    missing, unexpected = model.load_state_dict(sd, strict=False)
    head_keys = sorted(k for k in own if k.startswith(head))
    if sorted(missing) != head_keys or unexpected:
        extra = sorted(set(missing) - set(head_keys)) or unexpected
        raise UserError(f'{path} does not fit this network: {"missing" if sorted(missing) != head_keys else "unexpected"} '
                        f'key {extra[0]} (weights of another --arch?)')


def load_state(model, sd, path):
    """Load the whole state_dict `sd`, read from `path`, into `model`: a checkpoint of this run (resume) or a
    finished network (analyses). A file made for another network (another --arch, --width, number of classes,
    or a checkpoint copied in from another run) is one line naming the file and the first key that differs,
    not PyTorch's page of mismatches."""
    own = model.state_dict()
    differ = [f'{k} has shape {tuple(v.shape)}, this network {tuple(own[k].shape)}' for k, v in sd.items()
              if k in own and own[k].shape != v.shape]
    differ += [f'it has no {k}' for k in own if k not in sd] + [f'unexpected key {k}' for k in sd if k not in own]
    if differ:
        raise UserError(f'{path} does not fit this network: {differ[0]} (made for another --arch, --width or '
                        f'number of classes?)')
    model.load_state_dict(sd)


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


_LOCKS = {}  # run directory -> the open lock file this process holds until it exits


def lock_run_dir(out):
    """Make this process the only one working on the run directory OUT until it exits: an exclusive flock on a lock
    file named after OUT's resolved path in the temporary folder (nothing is written beside OUT, which may not exist
    yet: nothing goes there before the inputs are checked). The OS releases it on any exit, kill -9 included. A
    second process is refused in one line naming the holder's PID. Re-entrant within a process (finetune.py calls
    train.main on its own run); rank 0 only. One machine's processes: flock does not span hosts."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f'--out {out} is a file, not a run directory')
    key = os.path.realpath(out)
    if key in _LOCKS or int(os.environ.get('RANK', 0)) != 0:
        return
    folder = os.path.join(tempfile.gettempdir(), 'wmig-locks')
    path = os.path.join(folder, hashlib.sha1(key.encode()).hexdigest()[:20] + '.lock')
    try:
        os.makedirs(folder, exist_ok=True)
        f = open(path, 'a+')
    except OSError as e:
        raise UserError(f'cannot lock {out}: {e.strerror or e} ({path})') from None
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.seek(0)
        holder = f.read().strip() or 'another process'
        f.close()
        raise UserError(f'{out} is in use by process {holder}; wait for it to end or pick another --out') from None
    f.seek(0)
    f.truncate()
    f.write(str(os.getpid()))
    f.flush()
    _LOCKS[key] = f


PATH_ARGS = ('subset', 'out', 'data_root', 'init')  # compared resolved: a relative and an absolute spelling are one run
MANIFEST_KEY = 'train_sha256'  # the run's identity covers what it trains on, not only where that lives


def resolved(args_dict, keys=PATH_ARGS):
    """args_dict with the paths under `keys` absolute (not 'scratch' or a library's weight tag)."""
    out = dict(args_dict)
    for k in keys:
        v = out.get(k)
        if isinstance(v, str) and v != 'scratch' and not v.startswith(('torchvision:', 'timm:')):
            out[k] = os.path.abspath(v)
    return out


def check_run_dir(out, args_dict, ignore=(), added=None):
    """Refuse to reuse a run directory that holds a run made with other arguments (resume means *same*), or that
    another process is working on (lock_run_dir, held from here to the end of the process). Paths compare resolved;
    the sha256 of the training manifest (MANIFEST_KEY, when args_dict has it) is compared when the old run recorded
    one, so a rewritten train.txt is another run.
    added: {argument: value} of arguments added to the code later; an older args.json without one ran with it."""
    if os.path.exists(out) and not os.path.isdir(out):
        raise UserError(f'--out {out} is a file, not a run directory')
    lock_run_dir(out)
    path = os.path.join(out, 'args.json')
    if not os.path.exists(path):
        return
    old = resolved({**(added or {}), **read_json(path, fix='delete the run directory to start over, or pass another --out')})
    new = resolved(args_dict)
    if MANIFEST_KEY not in old:  # made before runs recorded it
        new.pop(MANIFEST_KEY, None)
    diff = {k: (old.get(k), v) for k, v in new.items() if k not in ignore and old.get(k) != v}
    if MANIFEST_KEY in diff:
        raise UserError(f'{out} was trained on another {args_dict.get("subset", "")}/train.txt (its sha256 differs); '
                        f'pass another --out, or restore the manifest it was made with')
    if diff:
        shown = ', '.join(f'--{k.replace("_", "-")} {a!r} -> {b!r}' for k, (a, b) in sorted(diff.items()))
        raise UserError(f'{out} holds a run made with other arguments ({shown}); pass another --out, or delete it to start over')


def start_run_dir(out, args_dict):
    """Create the run directory and record how the run was made. Call only after the inputs are validated,
    so a mistake never leaves a half-made run directory behind; a write that fails (read-only, full) is one line,
    and a directory this call created goes again."""
    created = not os.path.exists(out)
    sha, diff = git_state()
    args_dict = dict(args_dict, git_sha=sha)
    try:
        os.makedirs(out, exist_ok=True)
        write_atomic(os.path.join(out, 'args.json'), json.dumps(args_dict, indent=1, sort_keys=True) + '\n')
        if diff:
            write_atomic(os.path.join(out, 'git.diff'), diff + '\n')
    except OSError as e:
        if created:
            shutil.rmtree(out, ignore_errors=True)
        raise UserError(f'could not write the run directory {out}: {e.strerror or e}') from None
    return sha


def print_args(args_dict, sha):
    print(f'git {sha}')
    for k in sorted(args_dict):
        print(f'  {k}: {args_dict[k]}')


def read_json(path, keys=(), fix='remake it'):
    """The JSON record (an object) a wmig script wrote at `path`, with `keys`, or a one-line UserError naming the file
    and what to do (`fix`) when it is unreadable, damaged, or not such a record: never a traceback."""
    try:
        with open(path) as f:
            obj = json.load(f)
    except OSError as e:
        raise UserError(f'cannot read {path}: {e.strerror or e}') from None
    except ValueError as e:
        raise UserError(f'{path} is damaged (not JSON: {e}); {fix}') from None
    missing = [k for k in keys if k not in obj] if isinstance(obj, dict) else ['an object']
    if missing:
        raise UserError(f'{path} is damaged (no {missing[0]!r}); {fix}')
    return obj


def write_atomic(path, text):
    tmp = path + '.tmp'
    try:
        with open(tmp, 'w') as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:  # a full disk, Ctrl-C: no half-written temporary left behind
        if os.path.exists(tmp):
            os.remove(tmp)
        raise
    os.replace(tmp, path)


def trim_log(path, step):
    """On resume, drop log records past the checkpoint: the resumed run writes them again. A half-written last
    line (a crash or a full disk mid-write) is dropped with a warning; a damaged line before it is an error
    naming the file and line, since the records after it cannot be trusted either."""
    if not os.path.exists(path):
        return
    with open(path) as f:
        lines = f.readlines()
    keep = []
    for i, line in enumerate(lines, 1):
        try:
            rec = json.loads(line)
            if not isinstance(rec, dict):
                raise ValueError('not a record')
        except ValueError:
            if i == len(lines):
                print(f'warning: {path}:{i} is a half-written record (an interrupted write); dropped', file=sys.stderr)
                break
            raise UserError(f'{path}:{i} is not a JSON record; move the file aside to resume (its records are lost)') from None
        if rec.get('step', 0) <= step:
            keep.append(line)
    write_atomic(path, ''.join(keep))


# ----------------------------------------------------------------------------------------------------------
# Checkpoints: one dict, written atomically (tmp + fsync + os.replace), loaded with weights_only=True


def checkpoint_paths(path, keep):
    """The latest checkpoint and the older ones kept beside it, newest first:
    checkpoint.pth, checkpoint.1.pth, ..., checkpoint.{keep-1}.pth."""
    stem, ext = os.path.splitext(path)
    return [path] + [f'{stem}.{i}{ext}' for i in range(1, keep)]


def _fsync_dir(path):
    dirfd = os.open(os.path.dirname(os.path.abspath(path)), os.O_RDONLY)
    try:
        os.fsync(dirfd)  # make renames in the folder durable
    finally:
        os.close(dirfd)


def save_checkpoint(path, ckpt, keep=1):
    """Write `ckpt` to `path` atomically, keeping the `keep` - 1 previous checkpoints as path.1, path.2, ...

    The new file is written and fsynced under a temporary name first; only then are the older files shifted
    and the new one renamed into place. A failed write (full disk, I/O error) raises OSError and leaves every
    existing checkpoint as it was; at every instant the newest good checkpoint exists under one of the names.
    Ctrl-C waits for the whole save: torch.save's writer turns an interrupt in mid-write into a RuntimeError, and
    between the shift and the last rename the newest checkpoint is only the temporary file."""
    interrupted = []
    main = threading.current_thread() is threading.main_thread()
    old = signal.signal(signal.SIGINT, lambda *_: interrupted.append(1)) if main else None
    try:
        _save_checkpoint(path, ckpt, keep)
    finally:
        if main:
            signal.signal(signal.SIGINT, old)
    if interrupted:
        raise KeyboardInterrupt


def _save_checkpoint(path, ckpt, keep):
    tmp = path + '.tmp'
    try:
        with open(tmp, 'wb') as f:
            torch.save(ckpt, f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException as e:
        if os.path.exists(tmp):
            os.remove(tmp)
        # torch.save's zip writer turns a failed write into a RuntimeError while closing; the OSError it
        # handled (ENOSPC, EFBIG, EIO) is the one to report
        cause = e
        while cause is not None and not isinstance(cause, OSError):
            cause = cause.__context__
        if cause is not None and cause is not e:
            raise cause from None
        raise
    names = checkpoint_paths(path, keep)
    for older, newer in reversed(list(zip(names[1:], names[:-1]))):
        if os.path.exists(newer):
            os.replace(newer, older)
    os.replace(tmp, path)  # readers see the old file or the new one, never half of one
    _fsync_dir(path)


def load_checkpoint(path):
    # weights_only: a checkpoint is plain tensors, numbers and strings; never unpickle arbitrary objects.
    return torch.load(path, map_location='cpu', weights_only=True)


def load_latest_checkpoint(path, keep, required=('model', 'step')):
    """(checkpoint, the file it came from) of the newest readable checkpoint among checkpoint_paths(path,
    keep), or (None, None) when there is none. A corrupt or truncated one is skipped with a warning: the run
    falls back to the one before it rather than losing everything."""
    found = [p for p in checkpoint_paths(path, keep) if os.path.exists(p)]
    for p in found:
        try:
            ckpt = load_checkpoint(p)
            if not isinstance(ckpt, dict) or not all(k in ckpt for k in required):
                raise ValueError('not a wmig training checkpoint')
            return ckpt, p
        except Exception as e:
            print(f'warning: checkpoint {p} is unreadable ({type(e).__name__}: {str(e).splitlines()[0][:100] if str(e) else ""}); '
                  f'falling back to an older one', file=sys.stderr)
    if found:
        raise UserError(f'no readable checkpoint in {os.path.dirname(path) or "."} (tried {", ".join(found)}); '
                        f'delete them to start over')
    return None, None


def restore(ckpt, path, model, optimizer, scaler, rank):
    """Resume from a checkpoint of train.fit: the model, the optimizer, the loss scaler and this rank's RNG."""
    load_state(model, ckpt['model'], path)
    optimizer.load_state_dict(ckpt['optimizer'])
    scaler.load_state_dict(ckpt['scaler'])
    set_rng_state(ckpt['rng'][rank])


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
        try:
            self.jsonl.write(json.dumps({'step': step, **scalars}) + '\n')
            self.jsonl.flush()
            for k, v in scalars.items():
                if isinstance(v, (int, float)):
                    self.tb.add_scalar(k, v, step)
        except OSError as e:  # a full disk, a read-only remount: the checkpoints written so far are intact
            raise UserError(f'could not write the log of {os.path.dirname(self.jsonl.name)} at iteration {step}: '
                            f'{e.strerror or e}; every checkpoint is intact: free space and run the same command to '
                            'resume') from None

    def close(self):
        self.jsonl.close()
        self.tb.close()


# ----------------------------------------------------------------------------------------------------------
# Evaluation


def outputs(fn, loader, device, amp_dtype):
    """(fn(images), labels) for every batch of a loader, in eval mode and without gradients."""
    with torch.no_grad():
        for images, labels in loader:
            images, labels = images.to(device, non_blocking=True), labels.to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=amp_dtype, enabled=amp_dtype != torch.float32):
                out = fn(images)
            yield out.float(), labels


def evaluate(model, loader, device, amp_dtype, world):
    """Top-1, top-5 and mean class accuracy (%) over every image of the loader's shards, each counted once
    (summed across ranks)."""
    model.eval()
    n = model.get_submodule(model.head_name).out_features
    stats = torch.zeros(2 + 2 * n, dtype=torch.float64, device=device)  # hits@1, hits@5, correct/class, images/class
    for logits, labels in outputs(model, loader, device, amp_dtype):
        correct, total = per_class_counts(logits.argmax(1), labels, n)
        stats += torch.cat([torch.stack(topk_hits(logits, labels)).double(), correct, total])
    all_reduce_sum(stats, world)
    model.train()
    correct, total = stats[2:2 + n], stats[2 + n:]
    images = int(total.sum().item())
    return {'top1': 100 * stats[0].item() / images, 'top5': 100 * stats[1].item() / images,
            'mean_class_acc': mean_class_accuracy(correct, total), 'n': images}


def evaluate_multilabel(model, loader, targets, device, amp_dtype, world):
    """Mean 11-point AP (%) of a multi-label classification (VOC 2007, VOCevalcls.m) over every image of the loader's
    shards: the loader's labels are rows of `targets` [N, C] (1 / 0 / -1), gathered across ranks."""
    model.eval()
    scores, rows = extract(model, loader, device, amp_dtype)
    model.train()
    parts = all_gather_object((scores, rows), world)
    scores, rows = torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])
    return transfer_metrics(scores, targets[rows])  # {'mAP', 'n'}: the measure finetune.py tests with


def extract(fn, loader, device, amp_dtype):
    """(outputs, labels) of fn over the whole loader, concatenated on the CPU: features for kNN and linear
    probes, logits for analyses. The val pipeline (resize + centre crop) serves as the extractor."""
    outs, labs = [], []
    for out, labels in outputs(fn, loader, device, amp_dtype):
        outs.append(out.cpu())
        labs.append(labels.cpu())
    return torch.cat(outs), torch.cat(labs)
