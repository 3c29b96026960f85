"""Make WordNet 3.0 available to nltk, once; a second run returns at once. subsets.py needs it.

    python setup_wordnet.py                       # -> .venv/nltk_data/corpora/wordnet/ (git-ignored, per venv)
    python setup_wordnet.py --check               # only say whether WordNet loads; exit 1 if not

WordNet 3.0 is the version whose noun offsets are the ImageNet wnids (`n01440764` = noun offset 1440764).
Two routes, tried in order:
  1. `nltk.download('wordnet')`, with a short timeout, where the network allows it;
  2. Debian's `wordnet-base` and `wordnet-sense-index` (WordNet 3.0; installed with apt-get when missing and
     we are root), copied into an NLTK data directory. Two snags of that route are handled here: NLTK >= 3.10
     refuses to open files outside its data roots (so the files are copied, not symlinked, into a folder
     that subsets.py adds to nltk.data.path), and Debian ships no `lexnames` file, which nltk reads first.
"""
import argparse
import os
import shutil
import socket
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
DATA_DIR = os.path.join(HERE, '.venv', 'nltk_data')  # subsets.py adds this folder to nltk.data.path
DEBIAN_DIR = '/usr/share/wordnet'
DEBIAN_PACKAGES = ('wordnet-base', 'wordnet-sense-index')  # index.sense is in the second one
# The files nltk's WordNetCorpusReader opens (nltk/corpus/reader/wordnet.py); index.sense and cntlist.rev
# serve lemma keys and counts only, but are cheap and make the copy complete.
FILES = [f'{kind}.{pos}' for kind in ('data', 'index') for pos in ('noun', 'verb', 'adj', 'adv')] + \
    [f'{pos}.exc' for pos in ('noun', 'verb', 'adj', 'adv')] + ['index.sense', 'cntlist.rev']

# WordNet 3.0's fixed list of its 45 lexicographer files: number, name, syntactic category
# (1 noun, 2 verb, 3 adjective, 4 adverb). Source: the lexnames(5WN) manual page of WordNet 3.0
# (/usr/share/man/man5/lexnames.5WN.gz in Debian's wordnet-base), which ships the table but not the file.
LEXNAMES = ['adj.all', 'adj.pert', 'adv.all', 'noun.Tops', 'noun.act', 'noun.animal', 'noun.artifact',
            'noun.attribute', 'noun.body', 'noun.cognition', 'noun.communication', 'noun.event', 'noun.feeling',
            'noun.food', 'noun.group', 'noun.location', 'noun.motive', 'noun.object', 'noun.person',
            'noun.phenomenon', 'noun.plant', 'noun.possession', 'noun.process', 'noun.quantity', 'noun.relation',
            'noun.shape', 'noun.state', 'noun.substance', 'noun.time', 'verb.body', 'verb.change',
            'verb.cognition', 'verb.communication', 'verb.competition', 'verb.consumption', 'verb.contact',
            'verb.creation', 'verb.emotion', 'verb.motion', 'verb.perception', 'verb.possession', 'verb.social',
            'verb.stative', 'verb.weather', 'adj.ppl']
CATEGORY = {'noun': 1, 'verb': 2, 'adj': 3, 'adv': 4}


def lexnames_text():
    assert len(LEXNAMES) == 45
    return ''.join(f'{i:02d}\t{name}\t{CATEGORY[name.split(".")[0]]}\n' for i, name in enumerate(LEXNAMES))


def wordnet_ok(data_dir):
    """'' when nltk loads WordNet 3.0 with `data_dir` among its roots, else why not. Checks one known offset:
    the ImageNet class n01440764 must be tench.n.01."""
    import nltk
    if data_dir not in nltk.data.path:
        nltk.data.path.append(data_dir)
    try:
        from nltk.corpus import wordnet as wn
        if wn.get_version() != '3.0':
            return f'nltk found WordNet {wn.get_version()}, not 3.0'
        name = wn.synset_from_pos_and_offset('n', 1440764).name()
        return '' if name == 'tench.n.01' else f'n01440764 is {name}, not tench.n.01'
    except (LookupError, OSError, ValueError, PermissionError) as e:
        return f'{type(e).__name__}: {str(e).strip().splitlines()[0] if str(e).strip() else ""}'


def already_there(data_dir):
    """Where a finished earlier run left WordNet (ours, or an nltk download anywhere nltk looks), found without
    loading it; None when there is none."""
    ours = os.path.join(data_dir, 'corpora', 'wordnet')
    if os.path.exists(os.path.join(ours, 'lexnames')):  # written last, in a folder renamed into place
        return ours
    import nltk
    if data_dir not in nltk.data.path:
        nltk.data.path.append(data_dir)
    try:
        return str(nltk.data.find('corpora/wordnet'))  # a folder or wordnet.zip
    except LookupError:
        return None


def try_download(data_dir, timeout):
    import nltk
    old = socket.getdefaulttimeout()
    socket.setdefaulttimeout(timeout)  # nltk.download has no timeout of its own; a blocked network can hang
    try:
        ok = bool(nltk.download('wordnet', download_dir=data_dir, quiet=True, raise_on_error=False))
    except Exception as e:  # any failure only means: use the Debian route
        print(f'nltk.download: {type(e).__name__}: {e}')
        ok = False
    finally:
        socket.setdefaulttimeout(old)
    if not ok:
        print("nltk.download('wordnet') did not succeed; using Debian's packages")
    return ok


def install_debian():
    if os.path.exists(os.path.join(DEBIAN_DIR, 'data.noun')) and os.path.exists(os.path.join(DEBIAN_DIR, 'index.sense')):
        return
    cmd = ['apt-get', 'install', '-y', '-q', '--no-install-recommends', *DEBIAN_PACKAGES]
    if os.geteuid() != 0 or not shutil.which('apt-get'):
        sys.exit(f'error: WordNet 3.0 not found; run as root: apt-get update && {" ".join(cmd)}')
    print('installing', ' '.join(DEBIAN_PACKAGES), 'with apt-get')
    env = dict(os.environ, DEBIAN_FRONTEND='noninteractive')
    subprocess.run(['apt-get', 'update', '-q'], check=True, env=env)
    subprocess.run(cmd, check=True, env=env)


def layout_debian(data_dir):
    """Copy Debian's WordNet files into DATA_DIR/corpora/wordnet, add lexnames, and rename into place."""
    dest = os.path.join(data_dir, 'corpora', 'wordnet')
    tmp = dest + '.tmp'
    shutil.rmtree(tmp, ignore_errors=True)
    os.makedirs(tmp)
    for name in FILES:
        # Copies, not symlinks: nltk >= 3.10 resolves links and refuses targets outside its data roots.
        shutil.copyfile(os.path.join(DEBIAN_DIR, name), os.path.join(tmp, name))
    with open(os.path.join(tmp, 'lexnames'), 'w') as f:
        f.write(lexnames_text())
    shutil.rmtree(dest, ignore_errors=True)
    os.replace(tmp, dest)


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument('--dir', default=DATA_DIR, help='NLTK data directory to fill')
    p.add_argument('--timeout', type=float, default=10, help='seconds for nltk.download before the Debian route')
    p.add_argument('--no-download', action='store_true', help='skip nltk.download, use the Debian packages')
    p.add_argument('--check', action='store_true', help='only check that WordNet 3.0 loads')
    args = p.parse_args()
    data_dir = os.path.abspath(args.dir)
    if args.check:
        why = wordnet_ok(data_dir)
        print('WordNet 3.0: ' + (why or 'ok'))
        sys.exit(1 if why else 0)
    found = already_there(data_dir)
    if found:
        print(f'WordNet already set up: {found}')
        return
    os.makedirs(data_dir, exist_ok=True)
    if args.no_download or not try_download(data_dir, args.timeout):
        install_debian()
        layout_debian(data_dir)
    why = wordnet_ok(data_dir)
    if why:
        sys.exit(f'error: WordNet set up in {data_dir} but does not load: {why}')
    print(f'WordNet 3.0 ready in {data_dir}')


if __name__ == '__main__':
    main()
