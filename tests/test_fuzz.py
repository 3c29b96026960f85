"""Property-based fuzzing of the readers of untrusted text files: manifests, SUN397 partitions, the index and
class lists. Whatever the bytes, a reader returns rows or raises a one-line UserError naming the file;
never another exception, never a hang."""
import os
import tempfile

from hypothesis import HealthCheck, given, settings, strategies as st

import subsets
from datasets import read_manifest, read_sun397
from engine import UserError

# Text built from the characters these formats are made of, plus anything else now and then.
ALPHABET = st.sampled_from(list('n0123456789 \t\n/._-abcJPEG#') + ['..', '\r', '\x00', 'é', '\\'])
TEXT = st.one_of(st.lists(ALPHABET, max_size=200).map(''.join), st.text(max_size=200))
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


def check(reader, path, content):
    with open(path, 'w', encoding='utf-8', errors='surrogatepass') as f:
        f.write(content)
    try:
        return reader(path)
    except UserError as e:
        message = str(e)
        assert '\n' not in message and os.path.basename(path) in message or 'lists no' in message, message
        return None


@SETTINGS
@given(TEXT)
def test_fuzz_manifest(content):
    with tempfile.TemporaryDirectory() as d:
        rows = check(read_manifest, os.path.join(d, 'train.txt'), content)
        for path, label in rows or []:
            assert label >= 0 and not path.startswith('/') and '..' not in path.split('/')


@SETTINGS
@given(TEXT, TEXT)
def test_fuzz_sun397_partition(names, partition):
    with tempfile.TemporaryDirectory() as root:
        os.makedirs(os.path.join(root, 'Partitions'))
        os.makedirs(os.path.join(root, 'a', 'abbey'))
        open(os.path.join(root, 'a', 'abbey', 'sun_a.jpg'), 'w').close()
        with open(os.path.join(root, 'ClassName.txt'), 'w', encoding='utf-8', errors='surrogatepass') as f:
            f.write(names)
        open(os.path.join(root, 'Partitions', 'Testing_01.txt'), 'w').write('/a/abbey/sun_a.jpg\n')
        path = os.path.join(root, 'Partitions', 'Training_01.txt')
        result = check(lambda p: read_sun397(root, 1), path, partition)
        if result is not None:
            cats, train, test = result
            assert all(0 <= label < len(cats) for _, label in train + test)


@SETTINGS
@given(TEXT)
def test_fuzz_index(content):
    with tempfile.TemporaryDirectory() as d:
        for text in (content, f'# root\t{d}\n' + content):
            result = check(subsets.read_index, os.path.join(d, 'index.tsv'), text)
            if result is not None:
                root, rows = result
                assert all(len(r) == 3 and r[0] in ('train', 'val') for r in rows)


@SETTINGS
@given(TEXT)
def test_fuzz_class_list(content):
    with tempfile.TemporaryDirectory() as d:
        mapping = check(subsets.read_class_list, os.path.join(d, 'classes.txt'), content)
        assert mapping is None or all(subsets.WNID.match(k) for k in mapping)


XML_PARTS = st.sampled_from(['<annotation>', '</annotation>', '<object>', '</object>', '<name>', '</name>', 'dog',
                             '<bndbox>', '</bndbox>', '<xmin>', '</xmin>', '3', '-1', '2.5', 'x', '<size>', '</size>',
                             '<width>', '</width>', '<filename>', '</filename>', '<actions>', '</actions>', '<!DOCTYPE a>',
                             '&amp;', '&lol;', '<', '>', '\x00', 'é'])


@SETTINGS
@given(st.one_of(st.lists(XML_PARTS, max_size=60).map(''.join), st.text(max_size=200)))
def test_fuzz_voc_annotation(content):
    from datasets import read_voc_annotation
    with tempfile.TemporaryDirectory() as d:
        result = check(read_voc_annotation, os.path.join(d, '000001.xml'), content)
        if result is not None:
            assert all(len(o['bbox']) == 4 for o in result['objects'])
