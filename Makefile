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
export HF_HUB_OFFLINE ?= 1

.PHONY: setup test checkpoint export deploy serve demo bench bench-export bench-overhead bench-memory bench-opencc-http clean proto gpu-wheels gpu-check

# torch: requirements.lock pins torch==2.13.0. On this project's machines pip finds the CPU wheel
# on disk; on an ordinary index that pin is the CUDA build. TORCH_INDEX_URL chooses where torch
# comes from (e.g. https://download.pytorch.org/whl/cpu for the CPU build); empty = pip's default.
TORCH_INDEX_URL ?=
PACKAGES := contract client serving export benchmarks http_service

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

# Fill model_repository/ (generated files are git-ignored) from the bundle, for TARGET.
deploy: $(BUNDLE)/classifier.json
	$(PY) -m opencc_cm_serving.deploy --bundle $(BUNDLE) --repository $(REPOSITORY) --target $(TARGET)

# Run the pip-bundled Triton server on loopback until Ctrl-C.
serve: deploy
	$(PY) -m opencc_cm_serving.launch --model-repository $(REPOSITORY) \
		--grpc-port $(GRPC_PORT) --http-port $(HTTP_PORT) --metrics-port $(METRICS_PORT)

# The main job: generated checkpoint -> ONNX (parity-checked) -> Triton -> gRPC client.
demo: deploy
	$(PY) -m opencc_cm_serving.demo --model-repository $(REPOSITORY) --tokenizer $(BUNDLE)/tokenizer.json \
		--server-log $(ARTIFACTS)/tritonserver-demo.log

# Reference path vs exported ONNX on ONNX Runtime (BENCHMARKS.md), on the real-shape checkpoint.
bench-export:
	$(MAKE) export SIZE=real-shape
	$(PY) -m opencc_cm_export bench --checkpoint $(ARTIFACTS)/checkpoints/real-shape/classifier \
		--base-model $(ARTIFACTS)/checkpoints/real-shape/base-model --bundle $(ARTIFACTS)/bundles/real-shape-fp32 \
		--json benchmarks/export/bench-export.json

# The serving path (gRPC through Triton) vs the reference path, side by side (BENCHMARKS.md):
# JSON, markdown and a PNG plot in benchmarks/serving/. About 10 minutes on 2 cores.
bench:
	$(MAKE) export SIZE=real-shape
	$(PY) -m opencc_cm_benchmarks.serving_benchmark --checkpoint $(ARTIFACTS)/checkpoints/real-shape/classifier \
		--base-model $(ARTIFACTS)/checkpoints/real-shape/base-model --bundle $(ARTIFACTS)/bundles/real-shape-fp32 \
		--out benchmarks/serving

# What Triton and our Python models cost around the encoder (issue 11): the tiny bundle's tokenizer
# and labels with a generated null encoder (zeros), deployed to a temporary repository; also an
# ensemble of EMPTY Python models (the floor) and the stub profile. benchmarks/overhead/. ~5 min.
OVERHEAD_ARGS ?= --profile
bench-overhead: export
	$(PY) -m opencc_cm_benchmarks.overhead --bundle $(BUNDLE) --out benchmarks/overhead $(OVERHEAD_ARGS)

# Memory per request (issue 14, BENCHMARKS.md): one row of 1k-8k tokens in a fresh process per
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

# The GPU proof (issue 10; README "GPU"). gpu-wheels runs here (needs the registry): fla-core and
# the pip Triton server + client for Python 3.12, ~63 MiB, carried to the GPU machine.
# gpu-check runs there with its own python3: scripts/gpu-check.sh (8-minute limit).
GPU_WHEELS := build/gpu-wheels
GPU_OUT ?= $(ARTIFACTS)/gpu-check
gpu-wheels: setup
	rm -rf $(GPU_WHEELS) && mkdir -p $(GPU_WHEELS)
	$(PY) -m pip download --quiet --no-deps --dest $(GPU_WHEELS) fla-core==0.6.0 einops==0.8.2 tritonclient==2.73.0
	$(PY) -m pip download --quiet --no-deps --dest $(GPU_WHEELS) --only-binary=:all: --python-version 3.12 \
		--platform manylinux_2_35_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
		nvidia-pytriton==0.7.0 grpcio==1.85.3 protobuf==6.33.6 python-rapidjson==1.20
	du -sh $(GPU_WHEELS)

gpu-check:
	bash scripts/gpu-check.sh $(GPU_OUT)

clean:
	rm -rf $(ARTIFACTS) build

# Typed results: proto/ -> client/opencc_cm_client/classification_pb2.py (checked fresh by a test).
PROTO_SRC := proto/opencc_cm/v1/classification.proto
proto: setup
	rm -rf build/proto && mkdir -p build/proto
	$(PY) -m grpc_tools.protoc -Iproto --python_out=build/proto --pyi_out=build/proto $(PROTO_SRC)
	cp build/proto/opencc_cm/v1/classification_pb2.py build/proto/opencc_cm/v1/classification_pb2.pyi client/opencc_cm_client/
