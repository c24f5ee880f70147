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
export TF_CPP_MIN_LOG_LEVEL := 2
export PYTHONPATH := $(CURDIR)

.PHONY: setup data model demo test constraints clean

setup: $(STAMP)

$(STAMP): requirements.txt requirements-test.txt constraints.txt setup.py
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt -r requirements-test.txt -c constraints.txt
	$(PY) -m pip install --quiet --no-deps -e .
	touch $(STAMP)

data: setup
	$(PY) -m models.demo_data

model: data
	$(PY) -m models.train_demo --export_dir $(MODEL)

demo: model
	rm -rf out/predictions*
	$(PY) -m pipelines.batch_predict --input '$(DEMO_INPUT)' \
	  --feature_map reviews=text --model_dir $(MODEL) --output out/predictions

test: model
	$(PY) -m pytest -q tests

# Re-pin the transitive dependencies after changing requirements.txt.
constraints: setup
	{ echo "# Transitive pins of the runtime set (pip freeze of a clean install of requirements.txt)."; \
	  echo "# Regenerate with: make constraints"; \
	  $(PY) -m pip freeze --exclude-editable | grep -v -i -E \
	  "^($$(sed -n -e 's/\[[^]]*\]//' -e 's/==.*//p' requirements.txt requirements-test.txt | tr '\n' '|' | sed 's/|$$//'))=="; } > constraints.txt

clean:
	rm -rf out .pytest_cache
