"""What the benchmarks share: a description of the machine, and writing a result block into BENCHMARKS.md."""
import os
import subprocess

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
BENCHMARKS = os.path.join(ROOT, 'BENCHMARKS.md')
HEADER = ('# Benchmarks\n\nBenchmarks. Each section gives the command that reproduces it, the machine, the date, and the '
          'figures, measured in one run; ratios are what to compare across machines.\n')


def cpu_description():
    """'N cores (nproc M), <model> (AVX2, AVX-512)' from /proc/cpuinfo."""
    cpu = flags = '?'
    for line in open('/proc/cpuinfo'):
        if line.startswith('model name') and cpu == '?':
            cpu = line.split(':', 1)[1].strip()
        if line.startswith('flags') and flags == '?':
            flags = line.split()
    simd = ', '.join(s for s, f in (('AVX2', 'avx2'), ('AVX-512', 'avx512f')) if f in flags)
    return f'{os.cpu_count()} cores (nproc {len(os.sched_getaffinity(0))}), {cpu}' + (f' ({simd})' if simd else '')


def git_sha():
    """The short commit of the code that runs: $WMIG_GIT_SHA when set (a copy of the tree whose .git is not the
    code's, as on a GPU machine), else git's, else '?'."""
    if os.environ.get('WMIG_GIT_SHA'):
        return os.environ['WMIG_GIT_SHA']
    try:
        sha = subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], cwd=ROOT, capture_output=True, text=True,
                             timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        sha = ''
    return sha or '?'


def gpu_description(index=0):
    """'<name> (<GiB> GiB), driver <version>, CUDA <torch's CUDA>' of a CUDA device (the driver from nvidia-smi)."""
    import torch
    p = torch.cuda.get_device_properties(index)
    try:
        driver = subprocess.run(['nvidia-smi', '--query-gpu=driver_version', '--format=csv,noheader', f'--id={index}'],
                                capture_output=True, text=True, timeout=30).stdout.strip() or '?'
    except (OSError, subprocess.TimeoutExpired):
        driver = '?'
    return f'{p.name} ({p.total_memory / 2**30:.0f} GiB), driver {driver}, CUDA {torch.version.cuda}'


def gpu_memory_used(index=0):
    """MiB in use on the whole device (every allocator: torch's, DALI's, the CUDA contexts), as nvidia-smi counts."""
    import torch
    free, total = torch.cuda.mem_get_info(index)
    return (total - free) / 2**20


def record(section, intro, block_title, block, path=BENCHMARKS):
    """Replace (or append) the `### block_title` block inside `section` of BENCHMARKS.md, creating the section
    with its `intro` paragraph when missing; the rest of the file, hand-written notes included, is left alone."""
    text = open(path).read() if os.path.exists(path) else HEADER
    # the heading as a whole line: '## Detection' must not match inside '## Detection ops'
    if f'\n{section}\n' not in text:
        text = text.rstrip('\n') + f'\n\n{section}\n\n{intro}\n'
    start = text.index(f'\n{section}\n') + 1
    nxt = text.find('\n## ', start + len(section))
    end = len(text) if nxt < 0 else nxt + 1
    part = text[start:end]
    heading = f'### {block_title}'
    if heading in part:
        b0 = part.index(heading)
        b1 = part.find('\n### ', b0 + len(heading))
        b1 = len(part) if b1 < 0 else b1 + 1
        part = part[:b0] + block.rstrip('\n') + '\n\n' + part[b1:]
    else:
        part = part.rstrip('\n') + '\n\n' + block
    part = part.rstrip('\n') + '\n' + ('\n' if nxt >= 0 else '')
    with open(path + '.tmp', 'w') as f:
        f.write(text[:start] + part + text[end:])
    os.replace(path + '.tmp', path)
    print(f'recorded in {path}')
