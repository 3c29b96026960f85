"""Property-based fuzzing of the readers of untrusted text files: manifests, SUN397 partitions, the index, class
lists, VOC annotations and VOCdevkit image sets. Whatever the bytes, a reader returns rows or raises a one-line
UserError naming the file; never another exception, never a hang."""
import os
import tempfile

from hypothesis import HealthCheck, example, given, settings, strategies as st

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
                             '<bndbox>', '</bndbox>', '<xmin>', '</xmin>', '3', '-1', '2.5', 'x', '1e999', '<size>',
                             '</size>', '<width>', '</width>', '<height>', '</height>', '<filename>', '</filename>',
                             '<actions>', '</actions>', '<!DOCTYPE a>', '&amp;', '&lol;', '<', '>', '\x00', 'é'])


XML = st.one_of(st.lists(XML_PARTS, max_size=60).map(''.join), st.text(max_size=200))


@SETTINGS
@given(XML)
@example('<annotation><filename>a</filename><size><width>1e999</width><height>1</height></size></annotation>')  # inf
def test_fuzz_voc_annotation(content):
    from datasets import read_voc_annotation
    with tempfile.TemporaryDirectory() as d:
        result = check(read_voc_annotation, os.path.join(d, '000001.xml'), content)
        if result is not None:
            assert all(len(o['bbox']) == 4 for o in result['objects'])


@SETTINGS
@given(st.one_of(st.just('000001\n'), TEXT), XML)
@example('000001\n', '<annotation><filename>000001.jpg</filename><size><width>9</width><height>9</height></size>'
         '<object><name>dog</name><bndbox><xmin>3</xmin><ymin>1</ymin><xmax>3</xmax><ymax>9</ymax></bndbox></object>'
         '</annotation>')
def test_fuzz_voc_detection(image_set, annotation):
    """A VOCdevkit folder with a fuzzed ImageSets/Main/train.txt (half the time a valid one) and a fuzzed
    Annotations/000001.xml: rows, or a one-line UserError naming one of the two."""
    from datasets import read_voc_detection
    with tempfile.TemporaryDirectory() as root:
        for d in ('ImageSets/Main', 'Annotations', 'JPEGImages'):
            os.makedirs(os.path.join(root, d))
        open(os.path.join(root, 'JPEGImages', '000001.jpg'), 'w').close()
        with open(os.path.join(root, 'Annotations', '000001.xml'), 'w', encoding='utf-8', errors='surrogatepass') as f:
            f.write(annotation)
        with open(os.path.join(root, 'ImageSets', 'Main', 'train.txt'), 'w', encoding='utf-8', errors='surrogatepass') as f:
            f.write(image_set)
        try:
            rows = read_voc_detection(root, 'train')
        except UserError as e:
            message = str(e)
            assert '\n' not in message and ('train.txt' in message or '000001.xml' in message), message
            return
        for r in rows:
            w, h = r['size']
            assert r['boxes'].shape == (len(r['labels']), 4) and r['id'] == '000001'
            assert ((r['boxes'][:, :2] >= 1) & (r['boxes'][:, 2:] <= (w, h)) & (r['boxes'][:, :2] <= r['boxes'][:, 2:])).all()
