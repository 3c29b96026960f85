"""A tree of runs -> report/report.md and its PNG figures: each figure and table of the paper in its layout,
the paper's published numbers beside ours, mean +- std over seeds, and a TensorBoard HParams summary.

    python eval/report.py runs/paper-toy                     # -> report/report.md, report/*.png, report/hparams/
    python eval/report.py runs/paper --out report-paper      # the real runs
    tensorboard --logdir report/hparams                      # the whole grid in TensorBoard's HParams tab

It reads the plans the experiment scripts write (TREE/plans/<name>.json: which run holds which number of which
figure) and each run's own files (metrics.json, transfer.json, args.json, neighbours.tsv, coarse_fine.tsv).
A run that is planned but not finished shows as pending; a measure left out of the plan (VOC detection in
a --quick plan) shows the paper's number and "not run". Every run directory of the tree is listed at the
end, with the arguments that differ between runs, so an ablation run by hand shows up too.
"""
import argparse
import datetime
import glob
import json
import math
import os
import random
import shutil
import sys

import matplotlib

matplotlib.use('Agg')
import matplotlib.pyplot as plt  # noqa: E402
from PIL import Image, ImageDraw, ImageFont, ImageOps  # noqa: E402

# The paper's order; other plans (your ablations) follow by name.
ORDER = ['fig1_images_per_class', 'fig2_num_classes', 'table1_topdown127', 'table2_classes_vs_images',
         'table3_pascal_removed', 'fig4_induction', 'fig5_nn_grid', 'fig6_coarse_fine', 'fig8_fig9_splits',
         'rethinking_scratch', 'rethinking_coco', 'rethinking_voc', 'kornblith']
COLOURS = {'fine': (40, 170, 60), 'coarse': (245, 150, 20), 'wrong': (215, 40, 40), 'query': (60, 60, 60)}
# args.json keys shown in the HParams summary and the run table (the rest is bookkeeping)
HPARAMS = ('arch', 'subset', 'seed', 'iters', 'epochs', 'batch_size', 'lr', 'width', 'dropout', 'norm',
           'label_smoothing', 'wd_norm', 'style', 'crop', 'init', 'train_layers')


def get_args_parser():
    p = argparse.ArgumentParser(description='Turn a tree of runs into report.md, PNG figures and an HParams summary.')
    p.add_argument('tree', help='the --out folder of the experiment scripts (holds plans/ and the run directories)')
    p.add_argument('--out', default='report', help='report folder')
    p.add_argument('--no-hparams', action='store_true', help='skip the TensorBoard HParams summary (saves importing torch)')
    p.add_argument('--strict', action='store_true', help='exit with status 1 when a result, plan or args file is damaged')
    return p


# ----------------------------------------------------------------------------------------------------------
# Reading results


DAMAGED = {}  # path -> why, of every file the report found but could not read as the record it should be


def read_json(path, keys=()):
    """The JSON object at `path`; None when there is none. A file that is there but unreadable, not JSON, not an
    object or without one of `keys` is recorded in DAMAGED (the report lists them, and --strict fails on them) and
    also reads as None."""
    if not os.path.exists(path):
        return None
    try:
        with open(path) as f:
            obj = json.load(f)
    except (OSError, ValueError) as e:
        DAMAGED[path] = f'{type(e).__name__}: {e}'
        return None
    if not isinstance(obj, dict):
        DAMAGED[path] = 'not a JSON object'
        return None
    missing = [k for k in keys if k not in obj]
    if missing:
        DAMAGED[path] = f'no {missing[0]!r}'
        return None
    return obj


PLAN_KEYS = ('name', 'title', 'layout', 'rows', 'columns')  # what experiments/common.py Plan.to_json writes


def load_plans(tree):
    plans = [p for p in (read_json(f, PLAN_KEYS) for f in glob.glob(os.path.join(tree, 'plans', '*.json'))) if p]
    return sorted(plans, key=lambda p: (ORDER.index(p['name']) if p['name'] in ORDER else len(ORDER), p['name'],
                                        p.get('arch') != 'alexnet', p.get('arch', '')))


def value(tree, run, col):
    """The column's metric of one run directory, None when it has not finished, or 'damaged' when its result file
    is there but damaged (or lacks the metric)."""
    path = os.path.join(tree, run, col['file']) if run else None
    r = read_json(path) if run else None
    if path in DAMAGED:
        return 'damaged'
    v = r.get(col['metric']) if r else None
    if r is not None and not (isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)):
        DAMAGED[path] = f'no number {col["metric"]!r}'
        return 'damaged'
    return v


def labels_in_order(plan):
    """Row labels in plan order, then labels the paper has and no row stands for (e.g. Places in Table 3)."""
    out = []
    for r in plan['rows']:
        if r['label'] not in out:
            out.append(r['label'])
    covered = {r['paper_as'] or r['label'] for r in plan['rows']}
    for col in plan['columns']:
        for lab in col['paper']:
            if lab not in covered and lab not in out:
                out.append(lab)
    return out


def collect(tree, plan):
    """{label: {col key: {'values': [...], 'planned': n, 'paper': v or None}}} and {label: x}."""
    table, xs = {}, {}
    for label in labels_in_order(plan):
        rows = [r for r in plan['rows'] if r['label'] == label]
        xs[label] = rows[0]['x'] if rows else None
        paper_label = (rows[0]['paper_as'] or label) if rows else label
        table[label] = {}
        for col in plan['columns']:
            runs = [r['runs'].get(col['key']) for r in rows]
            planned = [run for run in runs if run]
            got = [value(tree, run, col) for run in planned]
            vals = [v for v in got if v is not None and v != 'damaged']
            table[label][col['key']] = {'values': vals, 'planned': len(planned), 'paper': col['paper'].get(paper_label),
                                        'paper_label': paper_label, 'damaged': got.count('damaged')}
    return table, xs


def mean_std(vals):
    m = sum(vals) / len(vals)
    s = math.sqrt(sum((v - m) ** 2 for v in vals) / (len(vals) - 1)) if len(vals) > 1 else None
    return m, s


def fmt_number(v):
    return f'{v:.0f}' if float(v).is_integer() and abs(v) >= 1 else f'{v:.1f}'


def fmt_cell(cell):
    vals = cell['values']
    if not cell['planned']:
        return 'not run'
    bad = f', {cell["damaged"]} damaged' if cell.get('damaged') else ''
    if not vals:
        return f'pending (0/{cell["planned"]}){bad}'
    m, s = mean_std(vals)
    if s is not None:
        text = f'{m:.1f} ± {s:.1f}'
    else:  # one seed: a count stays a count
        text = str(vals[0]) if isinstance(vals[0], int) else f'{m:.1f}'
    if len(vals) > 1:
        text += f' (n={len(vals)})'
    if len(vals) < cell['planned']:
        text += f', {len(vals)}/{cell["planned"]} done'
    return text + bad


# ----------------------------------------------------------------------------------------------------------
# Tables and figures


def md_table(header, rows):
    esc = lambda s: str(s).replace('|', '\\|')  # noqa: E731
    lines = ['| ' + ' | '.join(map(esc, header)) + ' |', '|' + '---|' * len(header)]
    lines += ['| ' + ' | '.join(map(esc, r)) + ' |' for r in rows]
    return '\n'.join(lines)


def plan_table(plan, table):
    header, cols = [{'curve': plan['xlabel'] or '', 'det_curves': 'setting'}.get(plan['layout'], 'pre-training')], []
    for col in plan['columns']:
        header.append(f'{col["title"]}: ours')  # "not run" where we cannot run it yet: the gap stays visible
        cols.append((col, 'ours'))
        if col['paper']:
            header.append(f'{col["title"]}: paper')
            cols.append((col, 'paper'))
    rows = []
    for lab, cells in table.items():
        paper_label = next(iter(cells.values()))['paper_label'] if cells else lab
        name = lab if paper_label == lab or not any(col['paper'] for col in plan['columns']) else f'{lab} (paper: {paper_label})'
        row = [name]
        for col, kind in cols:
            cell = cells[col['key']]
            if kind == 'ours':
                row.append(fmt_cell(cell))
            else:
                row.append('—' if cell['paper'] is None else f'{cell["paper"]:.1f}')
        rows.append(row)
    notes = [f'{col["title"]}: {col["note"]}' for col in plan['columns'] if col.get('note')]
    return md_table(header, rows), notes


def plot_curves(plan, table, xs, path):
    """One panel per measure we ran (mean +- std over seeds against x), one per measure the paper gives."""
    panels = []
    for col in plan['columns']:
        pts = [(xs[lab], *mean_std(c['values'])) for lab, cells in table.items() for c in [cells[col['key']]]
               if c['values'] and xs.get(lab) is not None]
        if pts:
            panels.append(('ours', col, sorted(pts)))
        paper = []
        for lab, v in col['paper'].items():
            try:
                paper.append((float(lab), v, None))
            except ValueError:
                pass
        if paper:
            panels.append(('paper', col, sorted(paper)))
    if not panels:
        return False
    if plan.get('overlay'):  # the measures share a unit: one panel, a line each
        ours = [(col, pts) for kind, col, pts in panels if kind == 'ours']
        panels = [('ours', {'title': 'mean ± std over seeds'}, ours)] + [p for p in panels if p[0] == 'paper']
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6.0, 4.2 * len(panels)), 3.6), squeeze=False)
    for ax, (kind, col, pts) in zip(axes[0], panels):
        lines = pts if isinstance(pts[0][0], dict) else [(None, pts)]
        for i, (line_col, line) in enumerate(lines):
            x = [p[0] for p in line]
            y = [p[1] for p in line]
            err = [p[2] or 0 for p in line]
            style = dict(marker='o', color=f'C{i}') if kind == 'ours' else dict(marker='s', color='tab:gray', linestyle='--')
            ax.errorbar(x, y, yerr=err if any(err) else None, capsize=3, label=line_col and line_col['title'], **style)
        if len(lines) > 1:
            ax.legend(fontsize=8)
        x = sorted({p[0] for _, line in lines for p in line})
        ax.set_title(('ours: ' if kind == 'ours' else 'paper: ') + col['title'], fontsize=9)
        ax.set_xlabel((plan['xlabel'] or '') if kind == 'ours' else 'the paper\'s ' + (plan['xlabel'] or ''), fontsize=9)
        if min(x) > 0 and max(x) / min(x) >= 10:
            ax.set_xscale('log')
        ax.set_xticks(x, [fmt_number(v) for v in x])
        ax.minorticks_off()
        ax.grid(alpha=0.3)
    fig.suptitle(plan['title'], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


def read_curve(tree, run, key):
    """[(iteration, value)] of one measure a run logged at each test (its log.jsonl, 'val/<key>')."""
    out = []
    try:
        with open(os.path.join(tree, run, 'log.jsonl')) as f:
            for line in f:
                try:
                    rec = json.loads(line)
                except ValueError:
                    continue  # a line cut by a kill: the rest stands
                if isinstance(rec, dict) and isinstance(rec.get(f'val/{key}'), (int, float)):
                    out.append((rec.get('step'), rec[f'val/{key}']))
    except OSError:
        return []
    return sorted((s, v) for s, v in out if isinstance(s, int))


def plot_det_curves(tree, plan, path):
    """He et al. 2019's Fig. 1 and 5 for each row of a det_curves plan (its first seed): box AP (solid) and mask AP
    (dashed) against iterations, from scratch and pre-trained; the paper's final box AP as dotted lines."""
    panels = []
    for label in labels_in_order(plan):
        rows = [r for r in plan['rows'] if r['label'] == label]
        if not rows:
            continue
        lines = []
        for col in plan['columns']:
            run = rows[0]['runs'].get(col['key'])
            metric = col['metric'].removeprefix('test_')
            pts = read_curve(tree, run, metric) if run else []
            if pts:
                lines.append((col, pts))
        if lines:
            panels.append((label, rows[0]['paper_as'] or label, lines))
    if not panels:
        return False
    fig, axes = plt.subplots(1, len(panels), figsize=(max(6.0, 3.6 * len(panels)), 3.4), squeeze=False)
    for ax, (label, paper_label, lines) in zip(axes[0], panels):
        for col, pts in lines:
            init = col['key'].split('/')[0]
            colour = 'C0' if init == 'scratch' else 'C1'
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker='o', markersize=3, color=colour,
                    linestyle='-' if col['key'].endswith('/box') else '--', label=col['title'])
            paper = col['paper'].get(paper_label)
            if paper is not None and col['key'].endswith('/box'):
                ax.axhline(paper, color=colour, linestyle=':', linewidth=1)
        ax.set_title(label + ('' if paper_label == label else f' (paper: {paper_label}, dotted)'), fontsize=9)
        ax.set_xlabel(plan.get('xlabel') or 'iterations', fontsize=9)
        ax.set_ylabel('AP', fontsize=9)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(plan['title'], fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return True


# ----------------------------------------------------------------------------------------------------------
# Kornblith et al. 2019: transfer (log odds) against ImageNet top-1, per data set and protocol

LOGIT_CLIP = 0.001  # a toy score of 0% or 100% has infinite log odds: clipped to 0.1% / 99.9%


def logit(percent):
    q = min(max(percent / 100, LOGIT_CLIP), 1 - LOGIT_CLIP)
    return math.log(q / (1 - q))


def pearson(a, b):
    """Pearson's r; None with fewer than 3 points or no spread."""
    if len(a) < 3:
        return None
    ma, mb = sum(a) / len(a), sum(b) / len(b)
    cov = sum((x - ma) * (y - mb) for x, y in zip(a, b))
    var = math.sqrt(sum((x - ma) ** 2 for x in a) * sum((y - mb) ** 2 for y in b))
    return cov / var if var > 1e-12 * (1 + abs(ma) + abs(mb)) ** 2 else None  # equal values: rounding, not spread


def bootstrap_r(a, b, samples=2000, seed=0):
    """95% percentile interval of Pearson's r over `samples` resamplings of the points (networks) with replacement;
    resamples without spread are skipped. None when r itself is undefined."""
    if pearson(a, b) is None:
        return None
    rng, rs = random.Random(seed), []
    for _ in range(samples):
        idx = [rng.randrange(len(a)) for _ in a]
        r = pearson([a[i] for i in idx], [b[i] for i in idx])
        if r is not None:
            rs.append(r)
    rs.sort()
    return (rs[int(0.025 * len(rs))], rs[min(len(rs) - 1, int(0.975 * len(rs)))]) if rs else None


def fmt_r(a, b):
    r, ci = pearson(a, b), bootstrap_r(a, b)
    return '—' if r is None else f'{r:+.2f} [{ci[0]:+.2f}, {ci[1]:+.2f}]' if ci else f'{r:+.2f}'


def kornblith_points(plan, table, xs):
    """{(data set, protocol): [(network, ImageNet top-1, test score %)]} over the networks with both numbers; a
    published network's top-1 is its row's x, a pre-trained one's its own validation."""
    out = {}
    for lab, cells in table.items():
        x = xs.get(lab)
        if x is None and cells['imagenet']['values']:
            x = mean_std(cells['imagenet']['values'])[0]
        for key, cell in cells.items():
            if key != 'imagenet' and x is not None and cell['values']:
                out.setdefault(tuple(key.split('/')), []).append((lab, x, mean_std(cell['values'])[0]))
    return out


def kornblith_section(plan, table, xs, path):
    """Markdown lines of the study: per protocol, a table of networks x data sets with the mean log odds and r per
    data set; the regulariser comparison; and the figure (a panel per data set and protocol, and their average)."""
    ds, protos, paper_r = plan['extras']['datasets'], plan['extras']['protocols'], plan['extras'].get('paper_r', {})
    pts = kornblith_points(plan, table, xs)
    lines, panels = [], []
    for proto in protos:
        # each network's mean log odds over the data sets it has finished (all of them, once the grid is done)
        nets = {}
        for d in ds:
            for lab, x, y in pts.get((d, proto), []):
                nets.setdefault(lab, [x, {}])[1][d] = y
        avg = [(lab, x, sum(logit(v) for v in by.values()) / len(by)) for lab, (x, by) in nets.items() if len(by) == len(ds)]
        header = ['network', 'ImageNet top-1'] + ds + ['mean log odds']
        rows = [[lab, f'{x:.1f}'] + [f'{by[d]:.1f}' if d in by else 'pending' for d in ds] +
                [next((f'{v:+.2f}' for lab2, _, v in avg if lab2 == lab), 'pending')] for lab, (x, by) in nets.items()]
        rs = [fmt_r([x for _, x, _ in pts.get((d, proto), [])], [logit(y) for _, _, y in pts.get((d, proto), [])]) for d in ds]
        r_avg = fmt_r([x for _, x, _ in avg], [v for _, _, v in avg])
        rows.append(['r (log odds vs top-1)', ''] + rs + [r_avg])
        rows.append(['r, paper', ''] + ['—'] * len(ds) + [f'{paper_r[proto]:+.2f}' if proto in paper_r else '—'])
        lines += [f'### {proto}', '', md_table(header, rows), '']
        for d in ds:
            panels.append((proto, d, [(x, logit(y)) for _, x, y in pts.get((d, proto), [])], None))
        panels.append((proto, 'average', [(x, v) for _, x, v in avg], paper_r.get(proto)))
    regs = plan['extras'].get('regularisers') or []
    if regs:
        header, rows = ['network', 'ImageNet top-1'] + [f'{p}: mean transfer (%)' for p in protos if p != 'scratch'], []
        for lab in regs:
            row = [lab, fmt_cell(table[lab]['imagenet']) if lab in table else 'pending']
            for p in protos:
                if p == 'scratch':
                    continue
                ys = [q[2] for d in ds for q in pts.get((d, p), []) if q[0] == lab]
                # the mean in log odds, shown back as a percentage (the paper averages after the logit transform)
                row.append(f'{100 / (1 + math.exp(-sum(map(logit, ys)) / len(ys))):.1f} ({len(ys)}/{len(ds)} sets)' if ys else 'pending')
            rows.append(row)
        lines += ['### Regularisers (the paper\'s Table 2: they help ImageNet and hurt fixed-feature transfer)', '',
                  md_table(header, rows), '']
    drawn = any(p[2] for p in panels)
    if drawn:
        cols = len(ds) + 1
        fig, axes = plt.subplots(len(protos), cols, figsize=(2.3 * cols, 2.2 * len(protos)), squeeze=False)
        for ax, (proto, d, xy, pr) in zip(axes.flat, panels):
            ax.scatter([p[0] for p in xy], [p[1] for p in xy], s=12, color='tab:blue' if d != 'average' else 'tab:red')
            r = pearson([p[0] for p in xy], [p[1] for p in xy])
            ax.set_title(f'{d} {proto}\nr={r:+.2f}' if r is not None else f'{d} {proto}\nr: <3 nets', fontsize=7)
            if pr is not None:
                ax.set_title(ax.get_title() + f' (paper {pr:+.2f})', fontsize=7)
            ax.tick_params(labelsize=6)
            ax.margins(0.15)
            ax.grid(alpha=0.3)
        for ax in axes[:, 0]:
            ax.set_ylabel('transfer (log odds)', fontsize=7)
        for ax in axes[-1]:
            ax.set_xlabel('ImageNet top-1 (%)', fontsize=7)
        fig.suptitle(plan['title'], fontsize=9)
        fig.tight_layout()
        fig.savefig(path, dpi=80)
        plt.close(fig)
    return lines, drawn


def thumb(path, size, border=0, colour=(0, 0, 0)):
    """A square thumbnail (centre crop) with a coloured frame; a grey square when the image cannot be read."""
    try:
        im = ImageOps.fit(Image.open(path).convert('RGB'), (size - 2 * border,) * 2)
    except OSError:
        im = Image.new('RGB', (size - 2 * border,) * 2, (200, 200, 200))
    return ImageOps.expand(im, border=border, fill=colour) if border else im


def nn_grid(tree, run, title, path, size=96, pad=6):
    """Paper Fig. 5: a row per query (framed grey) and its neighbours, framed by verdict. None if not finished."""
    tsv = os.path.join(tree, run, 'neighbours.tsv')
    if not os.path.exists(tsv):
        return None
    with open(tsv) as f:
        root = f.readline().rstrip('\n').split('\t')[1]
        rows = [line.rstrip('\n').split('\t') for line in f][1:]
    queries = []
    for q, _, rank, p, _, verdict in rows:
        if rank == '0':
            queries.append([])
        queries[-1].append((p, verdict))
    k = max(len(q) for q in queries)
    head, font = 44, ImageFont.load_default(size=13)
    lines = [f'network trained on {title}', 'query (grey), then its nearest neighbours: green = same fine class, '
             'orange = same coarse class, red = neither']
    width = max(pad + k * (size + pad) + 30, max(int(font.getlength(t)) for t in lines) + 2 * pad)
    canvas = Image.new('RGB', (width, head + len(queries) * (size + pad) + pad), 'white')
    d = ImageDraw.Draw(canvas)
    for i, t in enumerate(lines):
        d.text((pad, 4 + 18 * i), t, fill='black', font=font)
    for i, row in enumerate(queries):
        for j, (p, verdict) in enumerate(row):
            x = pad + j * (size + pad) + (30 if j else 0)
            canvas.paste(thumb(os.path.join(root, p), size, 6, COLOURS[verdict]), (x, head + i * (size + pad)))
    canvas.save(path)
    return path


def collage(tree, sides, path, per_row=8, size=80, pad=4):
    """Paper Fig. 8: sample train images of each side of the splits, one row a side, distinct classes."""
    rows = []
    for label, subset in sides:
        manifest, meta = os.path.join(tree, subset, 'train.txt'), read_json(os.path.join(tree, subset, 'meta.json'))
        if not (os.path.exists(manifest) and meta):
            continue
        by_class = {}
        with open(manifest) as f:
            for line in f:
                p, lab = line.rsplit(' ', 1)
                by_class.setdefault(int(lab), []).append(p)
        classes = sorted(by_class)
        picked = [classes[round(i * (len(classes) - 1) / max(1, per_row - 1))] for i in range(min(per_row, len(classes)))]
        rng = random.Random(label)
        rows.append((label, [os.path.join(meta['root'], rng.choice(by_class[c])) for c in picked]))
    if not rows:
        return None
    left, font = 160, ImageFont.load_default(size=13)
    canvas = Image.new('RGB', (left + per_row * (size + pad), len(rows) * (size + pad) + pad), 'white')
    d = ImageDraw.Draw(canvas)
    for i, (label, paths) in enumerate(rows):
        y = pad + i * (size + pad)
        d.text((pad, y + size // 2 - 8), label, fill='black', font=font)
        for j, p in enumerate(paths):
            canvas.paste(thumb(p, size), (left + j * (size + pad), y))
    canvas.save(path)
    return path


def coarse_fine_figure(tree, runs, path, top=8):
    """Paper Fig. 6 from coarse_fine.tsv (the first finished seed): the largest and smallest differences."""
    for run in runs:
        tsv = os.path.join(tree, run, 'coarse_fine.tsv')
        if os.path.exists(tsv):
            break
    else:
        return None, []
    with open(tsv) as f:
        next(f)
        rows = [line.rstrip('\n').split('\t') for line in f]
    shown = rows[:top] + rows[max(top, len(rows) - top):]
    fig, ax = plt.subplots(figsize=(7, 0.3 * len(shown) + 1.2))
    diffs = [float(r[5]) for r in shown]
    ax.barh(range(len(shown)), diffs, color=['tab:blue' if v >= 0 else 'tab:red' for v in diffs])
    ax.set_yticks(range(len(shown)), [f'{r[1].split(",")[0]} ({r[2]})' for r in shown], fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel('coarse accuracy - mean fine accuracy (points)')
    ax.set_title('Fig. 6: coarse against fine (classes with their number of fine classes)', fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path, shown


# ----------------------------------------------------------------------------------------------------------
# Every run of the tree, and the HParams summary


def find_runs(tree):
    """[(relative dir, args, kind, result, status)] of every run directory (one holding args.json)."""
    out = []
    for d, dirs, files in os.walk(tree):
        dirs[:] = sorted(x for x in dirs if x not in ('tb', 'data', 'plans', 'logs'))
        if 'args.json' not in files:
            continue
        args = read_json(os.path.join(d, 'args.json')) or {}
        metrics, transfer = read_json(os.path.join(d, 'metrics.json')), read_json(os.path.join(d, 'transfer.json'))
        if transfer:
            kind = transfer.get('task', 'transfer') + (f' {transfer["mode"]}' if transfer.get('mode') else '')
            keys = ('test_mean_class_acc', 'test_mAP', 'knn_top1', 'fine_correct', 'mean_difference')
            result = next((f'{k} {transfer[k]:.2f}' for k in keys if isinstance(transfer.get(k), (int, float))), '')
            status = 'finished'
        elif 'task' in args or os.path.exists(os.path.join(d, 'data')):
            kind, result, status = 'transfer', '', progress(d, args)
        else:
            kind = 'pre-training'
            top1 = metrics.get('val_top1') if metrics else None
            result = f'val top-1 {top1:.2f}' if isinstance(top1, (int, float)) else ''
            status = 'finished' if metrics else progress(d, args)
        bad = [f for f in ('args.json', 'metrics.json', 'transfer.json') if os.path.join(d, f) in DAMAGED]
        if bad:
            status = f'damaged ({", ".join(bad)})'
        out.append((os.path.relpath(d, tree), args, kind, result, status))
    return out


def progress(d, args):
    last = 0
    try:
        with open(os.path.join(d, 'log.jsonl')) as f:
            for line in f:
                last = max(last, json.loads(line).get('step', 0))
    except (OSError, ValueError):
        pass
    return f'stopped at iteration {last} of {args.get("iters", "?")}' if last else 'not started'


def hparam_value(v):
    if isinstance(v, (bool, int, float, str)):
        return os.path.basename(os.path.normpath(v)) if isinstance(v, str) and '/' in v else v
    return None if v is None else str(v)


def write_hparams(tree, plans, out):
    """One HParams entry per figure row and seed: the pre-training's arguments and the row's measures."""
    from torch.utils.tensorboard import SummaryWriter
    log_dir = os.path.join(out, 'hparams')
    shutil.rmtree(log_dir, ignore_errors=True)
    n = 0
    with SummaryWriter(log_dir) as w:
        for plan in plans:
            for r in plan['rows']:
                metrics = {f'{plan["name"]}/{col["key"]}': v for col in plan['columns']
                           for v in [value(tree, r['runs'].get(col['key']), col)] if v is not None}
                if not metrics:
                    continue
                run = next(v for v in r['runs'].values() if v)
                pre = run if os.path.exists(os.path.join(tree, run, 'metrics.json')) else os.path.dirname(run)
                args = read_json(os.path.join(tree, pre, 'args.json')) or {}
                hp = {'figure': plan['name'], 'row': r['label'], 'seed': r['seed'],
                      **{k: hv for k in HPARAMS if k in args and k != 'seed' for hv in [hparam_value(args[k])] if hv is not None}}
                w.add_hparams(hp, metrics, run_name=f'{plan["name"]}-{plan.get("arch")}/{r["label"]}/s{r["seed"]}'.replace(' ', '_'))
                n += 1
    return n


# ----------------------------------------------------------------------------------------------------------


def report(tree, out, hparams=True):
    DAMAGED.clear()
    plans = load_plans(tree)
    if not plans:
        damaged = f' ({len(DAMAGED)} damaged: {next(iter(DAMAGED))})' if DAMAGED else ''
        raise SystemExit(f'error: no plans in {os.path.join(tree, "plans")}{damaged}: run an experiment script with '
                         f'--out {tree} first')
    os.makedirs(out, exist_ok=True)  # once there is something to report: a refused report leaves no folder
    md = [f'# wmig report: {tree}', '',
          f'Made by `python eval/report.py {tree}` on {datetime.date.today()}. Ours: mean ± sample std over seeds '
          f'(n = seeds; one seed shows the value alone). "pending": planned, not finished; "not run": not in this plan '
          f'(a --quick plan, or a row only the paper has); "—": the paper gives no number.', '']
    if any(p.get('toy') for p in plans):
        md += ['**Toy data.** These runs test the whole pipeline on the 20-class toy set; they are not evidence for '
               'or against the paper. The paper\'s numbers are for real ImageNet and PASCAL VOC 2007; each toy row '
               'names the paper row it stands for.', '']
    for plan in plans:
        table, xs = collect(tree, plan)
        planned = {r['runs'][k] for r in plan['rows'] for k in r['runs'] if r['runs'][k]}
        done = sum(1 for run in planned if any(os.path.exists(os.path.join(tree, run, f)) for f in ('metrics.json', 'transfer.json')))
        arch = plan.get('arch', 'alexnet')
        stem = plan['name'] + ('' if arch == 'alexnet' else f'-{arch}')  # file names of its figures
        png = f'{stem}.png'
        md += [f'## {plan["title"]}' + ('' if arch == 'alexnet' else f' ({arch})'), '',
               f'`{plan["name"]}` ({arch}): {done} of {len(planned)} runs finished.', '']
        if plan['layout'] == 'kornblith':  # a table per protocol instead of one of 37 columns
            notes = [plan['note']] if plan.get('note') else []
            lines, drawn = kornblith_section(plan, table, xs, os.path.join(out, f'{stem}.png'))
            md += [f'- {n}' for n in notes] + [''] + lines + ([f'![{plan["title"]}]({stem}.png)', ''] if drawn else [])
            continue
        text, notes = plan_table(plan, table)
        md += [text, '']
        md += [f'- {n}' for n in notes + ([plan['note']] if plan.get('note') else [])] + ([''] if notes or plan.get('note') else [])
        if plan['layout'] == 'curve' and plot_curves(plan, table, xs, os.path.join(out, png)):
            md += [f'![{plan["title"]}]({png})', '']
        if plan['layout'] == 'det_curves' and plot_det_curves(tree, plan, os.path.join(out, png)):
            md += [f'![{plan["title"]}]({png})', '']
        ex = plan.get('extras', {})
        for i, (label, run) in enumerate(ex.get('nn_grid', [])):
            name = f'{stem}_{i}.png'
            if nn_grid(tree, run, label, os.path.join(out, name)):
                md += [f'Network trained on {label}:', '', f'![nearest neighbours, {label}]({name})', '']
            else:
                md += [f'Network trained on {label}: neighbours pending.', '']
        if 'coarse_fine' in ex:
            fig, shown = coarse_fine_figure(tree, ex['coarse_fine'], os.path.join(out, png))
            if fig:
                md += [md_table(['coarse class', 'fine classes', 'coarse acc.', 'mean fine acc.', 'difference'],
                                [[r[1].split(',')[0], r[2], r[3], r[4], r[5]] for r in shown]), '',
                       f'![coarse vs fine]({png})', '']
        if ex.get('collage'):
            name = f'{stem}_collage.png'
            if collage(tree, ex['collage'], os.path.join(out, name)):
                md += ['Fig. 8: sample training images of each side (one class each):', '', f'![splits]({name})', '']

    runs = find_runs(tree)
    pre = [a for _, a, kind, _, _ in runs if kind == 'pre-training']
    varying = [k for k in HPARAMS if len({json.dumps(a.get(k)) for a in pre}) > 1 and k not in ('subset', 'seed')]
    md += ['## Every run', '', f'{len(runs)} run directories under `{tree}`. Pre-training arguments that differ between '
           f'runs: {", ".join(varying) or "none"}.', '']
    md += [md_table(['run', 'kind', 'status', 'result', 'differing args'],
                    [[d, kind, status, result, ' '.join(f'{k}={hparam_value(a.get(k))}' for k in varying if k in a)
                      if kind == 'pre-training' else ''] for d, a, kind, result, status in runs]), '']
    if hparams:
        n = write_hparams(tree, plans, out)
        md += ['## TensorBoard', '', f'{n} rows with results are in the HParams summary: '
               f'`tensorboard --logdir {os.path.join(out, "hparams")}` (HParams tab); the training curves of each '
               f'run are in its own `tb/`: `tensorboard --logdir {tree}`.', '']
    if DAMAGED:
        md += ['## Damaged files', '', 'Present but unreadable as the record they should be; their runs count as '
               '"damaged", not as results. Remake them (the run\'s own command) or move them away.', '']
        md += [f'- `{os.path.relpath(p, tree)}`: {why}' for p, why in sorted(DAMAGED.items())] + ['']
    with open(os.path.join(out, 'report.md'), 'w') as f:
        f.write('\n'.join(md))
    print(f'{os.path.join(out, "report.md")}: {len(plans)} figures and tables, {len(runs)} runs')
    for p, why in sorted(DAMAGED.items()):
        print(f'warning: damaged: {p}: {why}', file=sys.stderr)
    return os.path.join(out, 'report.md')


if __name__ == '__main__':
    a = get_args_parser().parse_args()
    if not os.path.isdir(a.tree):
        sys.exit(f'error: no such folder: {a.tree}')
    try:
        report(a.tree, a.out, not a.no_hparams)
    except OSError as e:  # --out a file, read-only or full: one line (engine.path_error)
        sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        from engine import path_error
        if path_error(e) is None:
            raise
        sys.exit(path_error(e))
    if a.strict and DAMAGED:
        sys.exit(f'error: {len(DAMAGED)} damaged files (listed above and in the report); --strict')
