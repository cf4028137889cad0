# opencc-cm-escalation on Triton. `make demo` is the main job, `make test` runs the tests.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
ARTIFACTS ?= artifacts
SIZE ?= tiny
CKPT := $(ARTIFACTS)/checkpoints/$(SIZE)
BUNDLE := $(ARTIFACTS)/bundles/$(SIZE)-fp32
REPOSITORY ?= model_repository
# What deploy writes and the server loads: only the models TARGET's ensembles route through.
DEPLOYED ?= $(ARTIFACTS)/model_repository
TARGET ?= python-ort
GRPC_PORT ?= 8001
METRICS_PORT ?= 8002
# extra `make serve` flags, e.g. --allow-http --http-port 8000 (HTTP is off by default)
LAUNCH_ARGS ?=
export TRANSFORMERS_VERBOSITY ?= error
export TOKENIZERS_PARALLELISM ?= false
export HF_HUB_OFFLINE ?= 1

.PHONY: setup test checkpoint export deploy serve demo bench bench-export bench-overhead bench-memory bench-opencc-http clean proto gpu-wheels gpu-check

# torch: requirements.lock pins torch==2.13.0. On this project's machines pip finds the CPU wheel
# on disk; on an ordinary index that pin is the CUDA build. TORCH_INDEX_URL chooses where torch
# comes from (e.g. https://download.pytorch.org/whl/cpu for the CPU build); empty = pip's default.
TORCH_INDEX_URL ?=
PACKAGES := contract client serving export benchmarks jobs http_service

setup: $(VENV)/.installed
$(VENV)/.installed: requirements.lock $(addsuffix /pyproject.toml,$(PACKAGES))
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX_URL),$(PY) -m pip install --quiet --index-url $(TORCH_INDEX_URL) torch==2.13.0)
	$(PY) -m pip install --quiet -r requirements.lock
	$(PY) -m pip install --quiet $(foreach p,$(PACKAGES),-e $(p))
	touch $@

test: setup
	$(PY) -m ruff check .
	$(PY) -m pytest -q tests

checkpoint: $(CKPT)/classifier/weight_frame.json
$(CKPT)/classifier/weight_frame.json: | setup
	$(PY) -m opencc_cm_export checkpoint --size $(SIZE) --out $(CKPT)

export: $(BUNDLE)/classifier.json
$(BUNDLE)/classifier.json: $(CKPT)/classifier/weight_frame.json
	$(PY) -m opencc_cm_export export --checkpoint $(CKPT)/classifier --base-model $(CKPT)/base-model --out $(BUNDLE)

# A model repository for TARGET in $(DEPLOYED), from the templates in model_repository/ and the bundle.
deploy: $(BUNDLE)/classifier.json
	$(PY) -m opencc_cm_serving.deploy --bundle $(BUNDLE) --repository $(REPOSITORY) --output $(DEPLOYED) --target $(TARGET)

# Run the pip-bundled Triton server on loopback until Ctrl-C (gRPC and metrics; no HTTP).
serve: deploy
	$(PY) -m opencc_cm_serving.launch --model-repository $(DEPLOYED) \
		--grpc-port $(GRPC_PORT) --metrics-port $(METRICS_PORT) $(LAUNCH_ARGS)

# The main job: the demo checkpoint (trained here, ~2 min) -> ONNX (parity-checked) -> Triton -> gRPC client.
demo: deploy
	$(PY) -m opencc_cm_jobs.demo --model-repository $(DEPLOYED) --tokenizer $(BUNDLE)/tokenizer.json \
		--server-log $(ARTIFACTS)/tritonserver-demo.log

# Reference path vs exported ONNX on ONNX Runtime (BENCHMARKS.md), on the real-shape checkpoint.
bench-export:
	$(MAKE) export SIZE=real-shape
	$(PY) -m opencc_cm_export bench --checkpoint $(ARTIFACTS)/checkpoints/real-shape/classifier \
		--base-model $(ARTIFACTS)/checkpoints/real-shape/base-model --bundle $(ARTIFACTS)/bundles/real-shape-fp32 \
		--json benchmarks/export/bench-export.json

# The serving path (gRPC through Triton) vs the reference path, side by side (BENCHMARKS.md):
# the reference (fp32, and bf16 as shipped), fp32, bf16 (python-torch) and int8 (python-ort) on
# the real-shape checkpoint; JSON, markdown and a PNG plot in benchmarks/serving/. The int8
# export exits 1 when its bundle fails the fidelity gate; the benchmark measures it all the
# same and its report says so. On 2 cores: the benchmark 15 minutes, each real-shape export 7.
INT8_BUNDLE := $(ARTIFACTS)/bundles/real-shape-int8
$(INT8_BUNDLE)/classifier.json: $(ARTIFACTS)/checkpoints/real-shape/classifier/weight_frame.json
	$(PY) -m opencc_cm_export export --precision int8 --checkpoint $(ARTIFACTS)/checkpoints/real-shape/classifier \
		--base-model $(ARTIFACTS)/checkpoints/real-shape/base-model --out $(INT8_BUNDLE) || test -f $@

bench:
	$(MAKE) export SIZE=real-shape
	$(MAKE) $(INT8_BUNDLE)/classifier.json
	$(PY) -m opencc_cm_benchmarks.serving_benchmark --checkpoint $(ARTIFACTS)/checkpoints/real-shape/classifier \
		--base-model $(ARTIFACTS)/checkpoints/real-shape/base-model --bundle $(ARTIFACTS)/bundles/real-shape-fp32 \
		--bf16 --int8-bundle $(INT8_BUNDLE) --out benchmarks/serving

# What Triton and our Python models cost around the encoder: the tiny bundle's tokenizer
# and labels with a generated null encoder (zeros), deployed to a temporary repository; also an
# ensemble of EMPTY Python models (the floor) and the stub profile. benchmarks/overhead/. ~5 min.
OVERHEAD_ARGS ?= --profile
bench-overhead: export
	$(PY) -m opencc_cm_benchmarks.overhead --bundle $(BUNDLE) --out benchmarks/overhead $(OVERHEAD_ARGS)

# Memory per request (BENCHMARKS.md): one row of 1k-8k tokens in a fresh process per
# point, the blocked-attention graph vs the graph with transformers' attention (--query-block 0),
# then one and two concurrent max-length requests through Triton. JSON + markdown in
# benchmarks/memory/. Needs ~14 GB free for the old graph at 8,192 tokens (skipped otherwise);
# about 30 minutes on 2 cores after the two real-shape exports.
OLD_BUNDLE := $(ARTIFACTS)/bundles/real-shape-fp32-full-attention
bench-memory:
	$(MAKE) export SIZE=real-shape
	test -f $(OLD_BUNDLE)/classifier.json || $(PY) -m opencc_cm_export export --query-block 0 \
		--checkpoint $(ARTIFACTS)/checkpoints/real-shape/classifier \
		--base-model $(ARTIFACTS)/checkpoints/real-shape/base-model --out $(OLD_BUNDLE)
	$(PY) benchmarks/memory/bench_memory.py --bundle $(ARTIFACTS)/bundles/real-shape-fp32 \
		--old-bundle $(OLD_BUNDLE) --out benchmarks/memory

# The OpenCC-compatible HTTP service next to the gRPC path (BENCHMARKS.md): tiny bundle, batch 1
# and 32 clients, wall and CPU time per request. benchmarks/opencc_http/. About 2 minutes.
bench-opencc-http: export
	$(PY) benchmarks/opencc_http/bench_opencc_http.py --bundle $(BUNDLE) --out benchmarks/opencc_http --requests 400 --rounds 5

# The GPU proof (README "GPU"). gpu-wheels runs here (needs the registry): the wheels the GPU machine
# lacks (scripts/gpu-carried-packages.txt) for CPython 3.12, checked to fit one device call with the
# tree. gpu-check runs there with its own python3: scripts/gpu-check.sh (8 minutes; GPU_ARGS=--quick: 4).
GPU_WHEELS := build/gpu-wheels
GPU_OUT ?= $(ARTIFACTS)/gpu-check
GPU_ARGS ?=
gpu-wheels: setup
	$(PY) scripts/gpu_wheels.py --dest $(GPU_WHEELS)

gpu-check:
	bash scripts/gpu-check.sh $(GPU_OUT) $(GPU_ARGS)

clean:
	rm -rf $(ARTIFACTS) build

# Typed results: proto/ -> client/opencc_cm_client/classification_pb2.py (checked fresh by a test).
PROTO_SRC := proto/opencc_cm/v1/classification.proto
proto: setup
	rm -rf build/proto && mkdir -p build/proto
	$(PY) -m grpc_tools.protoc -Iproto --python_out=build/proto --pyi_out=build/proto $(PROTO_SRC)
	cp build/proto/opencc_cm/v1/classification_pb2.py build/proto/opencc_cm/v1/classification_pb2.pyi client/opencc_cm_client/
