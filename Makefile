# The two commands of the README's quick start. Each sets itself up on a fresh machine (Python 3.11, no GPU):
# a venv with requirements.txt, and WordNet 3.0 for nltk (setup_wordnet.py: nltk.download, or Debian's packages).
PY := .venv/bin/python
# The reduced toy paper that `make demo` runs (experiments/paper.py --quick): Fig. 1 (15/30/60 images per class,
# with each pre-training's val top-1 beside its transfer), Table 3 with toy VOC07 detection, and the from-scratch
# comparison (1x, 2x), then report/report.md. Its pre-trainings are the narrow 96 px AlexNet of
# experiments/common.py TOY_PRETRAIN, 55 epochs of each subset. Fig. 2 (three more full-length pre-trainings) is in
# `make paper-toy`, which keeps `make demo` under 10 minutes on 2 cores.
DEMO_PAPER := fig1_images_per_class table3_pascal_removed rethinking_scratch
TOY_PLAN := experiments/paper.py --toy --index subsets/toy/index.tsv

.PHONY: demo paper-toy test clean

.venv/installed: requirements.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q -r requirements.txt
	$(PY) setup_wordnet.py
	touch $@

data/toy/.done: .venv/installed toydata.py
	rm -rf data/toy
	$(PY) toydata.py --out data/toy
	touch $@

demo: .venv/installed data/toy/.done
	$(PY) subsets.py index --imagenet data/toy --out subsets/toy
	$(PY) data_dali.py scan subsets/toy
	$(PY) subsets.py make full --index subsets/toy/index.tsv  # subsets/toy/full, for the README's toy commands
	$(PY) $(TOY_PLAN) --quick --only $(DEMO_PAPER)
	$(PY) eval/report.py runs/paper-toy --out report

# Every experiment script on toy data, Table 3's toy Places row included (runs already made by `make demo` are
# skipped), then the report.
paper-toy: .venv/installed data/toy/.done
	$(PY) subsets.py index --imagenet data/toy --out subsets/toy
	$(PY) data_dali.py scan subsets/toy
	$(PY) $(TOY_PLAN) --places data/toy/Places365
	$(PY) eval/report.py runs/paper-toy --out report

test: .venv/installed
	$(PY) -m pytest -q tests

clean:
	rm -rf data/toy subsets/toy runs/paper-toy report
