# The README's commands. Each works on a fresh machine: `setup` creates the
# virtual environment at .venv on first use; data and models are built once
# and cached under data/ (gitignored).
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
MODEL := data/models/sentiment/1
DEMO_INPUT := data/demo/inputs/jsonl/*.jsonl
# The same reviews replayed over 4 weeks from 2026-01-01, the last one
# shifted (models/demo_data.py --history_weeks).
HISTORY_WEEKS := 4
DEMO_HISTORY := data/demo/history/jsonl/*.jsonl
HISTORY_END := 2026-01-29T00:00:00+00:00
export TF_CPP_MIN_LOG_LEVEL := 2

TWO_PHASE := data/models/two_phase
# The local Google Cloud stand-ins (BigQuery, Cloud Storage) live in a venv of
# their own: their pins (DuckDB 1.5.5, ...) need not agree with the project's.
STANDINS := .venv-standins/.installed

.PHONY: setup standins data model demo test faults bench serve two-phase-models \
	two-phase-report two-phase-demo constraints wheel clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt constraints.txt constraints-test.txt \
		pyproject.toml setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-test.txt \
	  -c constraints.txt -c constraints-test.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

standins: $(STANDINS)

$(STANDINS): requirements-standins.txt scripts/setup_standins.sh
	PYTHON=$(PYTHON) scripts/setup_standins.sh

data: setup
	$(PY) -m models.demo_data --history_weeks $(HISTORY_WEEKS)

model: data
	$(PY) -m models.train_demo --export_dir $(MODEL)

# The main job on the demo's replayed history (every review, logged at its
# replayed time), then the continuous evaluation of its prediction log
# against the held-out (test split) labels, with drift from the model's
# baseline statistics per day: the last week's shift fires the drift alert.
demo: model
	rm -rf out/predictions* out/prediction_log* out/evaluation
	$(PY) -m pipelines.batch_predict --input '$(DEMO_HISTORY)' \
	  --feature_map reviews=text --model_dir $(MODEL) --output out/predictions \
	  --prediction_log out/prediction_log --log_sample_rate 1.0 \
	  --log_time_field time
	$(PY) -m pipelines.evaluate --predictions 'out/prediction_log-*.jsonl' \
	  --ground_truth data/demo/ground_truth_test.jsonl \
	  --prediction_field positive_review_probability --output out/evaluation \
	  --baseline $(MODEL)/baseline_stats.json --window 1d --drift 'psi>0.2' \
	  --as_of $(HISTORY_END)

# Benchmarks (never in CI; ~40 minutes, plus ~7 to train the two-phase models
# once): each script prints a table and a last-line JSON; results land in
# benchmarks/RESULTS.md.
bench: model two-phase-models
	$(PY) -m benchmarks.run_all

# The online endpoint over the demo model (Ctrl-C to stop).
serve: model
	$(PY) -m serving --model_dir $(MODEL) --model_name sentiment

two-phase-models: data
	$(PY) -m models.train_two_phase --output_dir $(TWO_PHASE)

two-phase-report: two-phase-models
	$(PY) -m models.two_phase_report --models_dir $(TWO_PHASE) --output out/two_phase_report.json

two-phase-demo: two-phase-models
	rm -rf out/two_phase
	$(PY) -m pipelines.two_phase --input '$(DEMO_INPUT)' \
	  --phase1_model $(TWO_PHASE)/phase1.tflite \
	  --phase2_model_dir $(TWO_PHASE)/phase2/1 --output out/two_phase/decisions \
	  --forward $$($(PY) -c "import json;print(json.load(open('$(TWO_PHASE)/two_phase.json'))['forward'])")

# The Pub/Sub emulator ships with the machine's Google Cloud CLI; pytest
# fixtures start and stop every stand-in (harness/).
test: model standins
	$(PY) -m pytest -q --timeout 900 tests

# The fault suite's longer runs (~30 min, never in CI): every kill point,
# longer outages, restarts, the parsers' fuzz tests with 20x the examples,
# then the online endpoint at 10x its sustained rate. Figures: the table in
# out/faults/report.md (docs/reliability.md shows them).
FAULTS := out/faults
faults: model standins
	rm -rf $(FAULTS) && mkdir -p $(FAULTS)
	RUN_FAULTS=1 HYPOTHESIS_PROFILE=faults FAULT_FIGURES=$(FAULTS)/figures.jsonl \
	  $(PY) -m pytest -q --timeout 3600 tests/test_faults_*.py tests/test_fuzz_*.py
	$(PY) -m harness.fault_figures $(FAULTS)/figures.jsonl | tee $(FAULTS)/report.md
	$(PY) -m benchmarks.serving_overload | tee $(FAULTS)/serving_overload.md

# Re-pin what requirements.txt (constraints.txt) and requirements-test.txt
# (constraints-test.txt) pull in, after changing either; current pins are
# kept unless UPGRADE=1. Resolves with pip, installs nothing (needs PyPI).
constraints: setup
	$(PY) scripts/pin_constraints.py $(if $(UPGRADE),--upgrade)

# The project as the wheel workers and images install (dist/); install it
# with: pip install -c constraints.txt dist/resilient_serving-*.whl
wheel: setup
	rm -rf dist
	$(PY) -m pip wheel --quiet --no-deps --no-build-isolation --wheel-dir dist .

clean:
	rm -rf out .pytest_cache build dist *.egg-info
