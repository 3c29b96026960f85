"""Every figure and table at once: one plan, shared runs made once, one GPU-hour total.

    python experiments/paper.py --toy                                  # make paper-toy
    python experiments/paper.py --data-root /data --dry-run            # the whole paper: commands and GPU hours
    python experiments/paper.py --data-root /data --emit > plan.sh     # for a job array (see the README)
    python experiments/paper.py --toy --quick --only fig1_images_per_class table3_pascal_removed   # a part

Each figure script runs alone too; this one merges their plans, so that a run two figures need (the network
pre-trained on all classes) is declared once and made once.
"""
import sys

import common
import fig1_images_per_class
import fig2_num_classes
import fig4_induction
import fig5_nn_grid
import fig6_coarse_fine
import fig8_fig9_splits
import kornblith
import rethinking_scratch
import table1_topdown127
import table2_classes_vs_images
import table3_pascal_removed

SCRIPTS = [fig1_images_per_class, fig2_num_classes, table1_topdown127, table2_classes_vs_images, table3_pascal_removed,
           fig4_induction, fig5_nn_grid, fig6_coarse_fine, fig8_fig9_splits, rethinking_scratch, kornblith]
NAMES = [m.__name__ for m in SCRIPTS]

if __name__ == '__main__':
    argv = sys.argv[1:]
    only = NAMES
    if '--only' in argv:  # --only NAME ...: up to the next flag
        i = argv.index('--only')
        j = next((k for k in range(i + 1, len(argv)) if argv[k].startswith('--')), len(argv))
        only, argv = argv[i + 1:j], argv[:i] + argv[j:]
        unknown = sorted(set(only) - set(NAMES))
        if unknown:
            sys.exit(f'error: --only {unknown[0]}: not one of {", ".join(NAMES)}')
    common.main(*[fn for m in SCRIPTS if m.__name__ in only for fn in getattr(m, 'PLANS', (m.plan,))], doc=__doc__, argv=argv)
