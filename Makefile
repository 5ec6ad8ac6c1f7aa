# Knowledge-distillation course: one-command entry points.
#   make course   set up, run every notebook (quick profile), write build/ (report, HTML, decks)
#   make test     set up, run the unit tests and every notebook under nbval
#   make lab      set up what notebook 01 needs (minutes), open JupyterLab on the repository (notebooks/
#                 first) with the course kernel; 06 and 08 build their runs when first opened
#   make slides   set up, build offline reveal.js decks into build/slides/
SHELL := /bin/bash
.SHELLFLAGS := -euo pipefail -c
.DEFAULT_GOAL := help

VENV   ?= .venv
PY     := $(VENV)/bin/python
PYTHON ?= python3
STAMP  := $(VENV)/.kd-course-setup.stamp

# every recipe: no OpenMP spin-waiting (2 cores shared with a kernel), no GUI backend
export OMP_WAIT_POLICY := PASSIVE
export MPLBACKEND := Agg

LAB_ARGS ?=
PYTEST_NB_ARGS := --nbval-lax --nbval-current-env --nbval-cell-timeout=900 -p no:cacheprovider

.PHONY: help setup lab-setup course test lint lab slides benchmark publish-results clean

help:
	@echo "make course   run every notebook (quick profile), write build/ (results, report, HTML, decks)"
	@echo "make test     ruff + unit tests + every notebook under nbval"
	@echo "make lint     ruff over course_lib, scripts, tests and notebook sources"
	@echo "make lab      JupyterLab on the repository, opened on notebooks/ (kernel 'KD course (.venv)'); sets up"
	@echo "              only what notebook 01 needs: 06 and 08 build their runs when first run"
	@echo "make slides   offline reveal.js decks in build/slides/"
	@echo "make benchmark  engine speed figures -> build/benchmark.json"
	@echo "make publish-results  (maintainers) copy the results table of build/results.json into README.md"
	@echo "make setup    venv + pinned packages + offline assets + quick-profile teachers + LLM and DistilBERT runs (idempotent)"

$(PY):
	$(PYTHON) -m venv $(VENV)

# Reinstall only when the dependency files change; assets and teacher are idempotent and fast
# when already present.
$(STAMP): pyproject.toml constraints/ci.txt | $(PY)
	$(PY) -m pip install -q -c constraints/ci.txt -e '.[dev,lab,llm]'
	touch $@

# What the lab needs before it opens: packages, offline data and models, the image teacher (minutes).
lab-setup: $(STAMP)
	PY=$(PY) bash scripts/install_assets.sh
	$(PY) -m course_lib.teachers --profile quick --augmentation shift_flip

# Everything, for make course / make test: also notebook 06's and 08's cached runs (about 35 CPU minutes).
setup: lab-setup
	$(PY) -m course_lib.llm.experiment
	$(PY) -m course_lib.llm.speculative_experiment
	$(PY) -m course_lib.encoder.experiment

course: setup
	$(PY) scripts/run_course.py
	$(PY) scripts/benchmark.py --repeats 8
	$(PY) -m course_lib.results report
	$(PY) -m course_lib.results drift

# maintainers: copy build/results.json's table into README.md (a user's `make course` never touches
# tracked files, so a clone stays clean)
publish-results:
	$(PY) -m course_lib.results publish

# speed figures only (build/benchmark.json and the "benchmark" entry of build/results.json)
benchmark: setup
	$(PY) scripts/benchmark.py

# pytest exits 5 when it collects nothing: make fails on any non-zero status, so that fails too.
test: setup lint
	$(PY) -m pytest $(PYTEST_NB_ARGS) --durations=30 notebooks tests

# ruff (configured in pyproject.toml) over the package, scripts, tests and notebook sources
lint: setup
	$(PY) -m ruff check course_lib scripts tests notebooks/src

lab: lab-setup
	$(PY) scripts/lab.py $(LAB_ARGS)

slides: setup
	$(PY) scripts/run_course.py --slides-only

clean:
	rm -rf build
