# opencc-cm-escalation on Triton. `make demo` is the main job, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARTIFACTS ?= artifacts
SIZE ?= tiny
CKPT := $(ARTIFACTS)/checkpoints/$(SIZE)
BUNDLE := $(ARTIFACTS)/bundles/$(SIZE)-fp32
REPOSITORY ?= model_repository
TARGET ?= python-ort
GRPC_PORT ?= 8001
HTTP_PORT ?= 8000
METRICS_PORT ?= 8002
export TRANSFORMERS_VERBOSITY ?= error
export TOKENIZERS_PARALLELISM ?= false

.PHONY: setup test checkpoint export deploy serve demo bench-export clean

setup: $(VENV)/.installed
$(VENV)/.installed: requirements.lock client/pyproject.toml serving/pyproject.toml export/pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet --no-deps -e client -e serving -e export
	touch $@

test: setup
	$(PY) -m pytest -q tests

checkpoint: $(CKPT)/classifier/weight_frame.json
$(CKPT)/classifier/weight_frame.json: | setup
	$(PY) -m opencc_cm_export checkpoint --size $(SIZE) --out $(CKPT)

export: $(BUNDLE)/classifier.json
$(BUNDLE)/classifier.json: $(CKPT)/classifier/weight_frame.json
	$(PY) -m opencc_cm_export export --checkpoint $(CKPT)/classifier --base-model $(CKPT)/base-model --out $(BUNDLE)

clean:
	rm -rf $(ARTIFACTS) build
