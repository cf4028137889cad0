"""What the serving path costs around the encoder: Triton, the ensembles and our Python models,
with the encoder's graph replaced by one that returns zeros.

    python -m opencc_cm_benchmarks.overhead --bundle BUNDLE --out benchmarks/overhead [--duration-s 8]

Modes, each its own server on 127.0.0.1, one after the other:

- ``null``: the bundle's tokenizer.json and classifier.json with a *null encoder*
  (``null_encoder_graph``: ``input_ids``/``attention_mask`` INT64 [batch, seq] -> ``logits``
  FP32 [batch, num_labels], all zeros) generated into a temporary bundle, deployed with the
  normal ``python -m opencc_cm_serving.deploy --target python-ort`` into a temporary repository
  (never into ``model_repository/``), with the onnxruntime target's ``ids_preprocess`` and
  ``calibration`` beside it (``--models``: no ensemble routes through them here; the floor's
  one-hop model takes their configs). Every model.py is the real one.
- ``floor``: the same repository, the same configs (tensors, batching, queues, instances), but
  every Python model's ``model.py`` replaced by an EMPTY one that answers correctly shaped
  zeros: the floor of Triton's Python backend for this graph on this machine. It also holds
  ``classify_ids_1hop``, an ensemble with ONE empty Python model taking the ids ensemble's
  inputs and answering its outputs: the cost of a hop is the difference.
- ``stub-timing`` (with ``--profile``): the ``null`` repository with each Python model wrapped
  so that the wall time of its ``execute()`` is recorded inside the stub; Triton's
  ``compute_infer`` minus that is the cost of the hop itself (IPC, tensors in and out of shm).
- ``cprofile`` (with ``--profile``): the same wrapper running ``cProfile`` around ``execute()``;
  the top functions per model go to the report (cProfile slows small calls: shares, not times).

Each ensemble (``classify_ids``, ``classify_text``; ``classify_ids_1hop`` in ``floor``) at each
concurrency level (default 1, 16, 64 closed-loop clients; level 1 = batch 1 sequential) for
``--duration-s`` seconds, after a warm-up. Clients: stock ``tritonclient.grpc.aio``, one
``InferenceServerClient`` (own channel) per simulated client, all in this process, one prompt
(batch 1) per request, inputs built once per prompt. Prompts: ``workload.bells_o_prompts``
without the long tail (8-36 tokens). Per level: p50/p99/mean latency, requests/s, Triton's
per-model statistics (queue, compute input / infer / output, executions vs inferences), CPU
seconds per request of the server tree (tritonserver + each stub, psutil) and of this client
process, the machine's CPU used by other processes, and the load average.

Writes ``overhead.json`` and ``overhead.md`` under ``--out``.
"""
from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from opencc_cm_contract.latency import latency_summary

from .measurement import (STATS_SETTLE_S, CpuAccounting, ProcessCpu, TreeMemory, inference_stats, machine_info,
                          stats_delta)
from .runners import TEMPLATES

print = functools.partial(print, flush=True)  # noqa: A001 - progress lines as they happen

REPORT_JSON, REPORT_MD = "overhead.json", "overhead.md"
ENSEMBLES = ("classify_ids", "classify_text")
ONE_HOP_ENSEMBLE, ONE_HOP_MODEL = "classify_ids_1hop", "floor_1hop"
PYTHON_MODELS = ("tokenizer", "ids_preprocess", "encoder", "calibration")
MODES = ("null", "floor")
PROFILE_MODES = ("stub-timing", "cprofile")
NULL_NOTE = "null encoder for the overhead benchmark (opencc_cm_benchmarks.overhead): returns zeros, no parity"


# --------------------------------------------------------------------------------------------
# Generated artifacts: the null encoder, the empty models, the profiling wrapper
# --------------------------------------------------------------------------------------------
def null_encoder_graph(num_labels: int):
    """ONNX graph: input_ids, attention_mask INT64 [batch, seq] -> logits FP32 [batch, num_labels] = 0."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    from opencc_cm_contract import ATTENTION_MASK, INPUT_IDS, LOGITS

    nodes = [
        helper.make_node("Shape", [INPUT_IDS], ["ids_shape"]),
        helper.make_node("Shape", [ATTENTION_MASK], ["mask_shape"]),
        helper.make_node("Slice", ["ids_shape", "zero", "one"], ["batch"]),
        helper.make_node("Slice", ["mask_shape", "zero", "one"], ["mask_batch"]),
        helper.make_node("Max", ["batch", "mask_batch"], ["rows"]),  # uses both inputs; equal in practice
        helper.make_node("Concat", ["rows", "labels"], ["out_shape"], axis=0),
        helper.make_node("ConstantOfShape", ["out_shape"], [LOGITS],
                         value=numpy_helper.from_array(np.zeros(1, np.float32))),
    ]
    inits = [numpy_helper.from_array(np.array([0], np.int64), "zero"),
             numpy_helper.from_array(np.array([1], np.int64), "one"),
             numpy_helper.from_array(np.array([num_labels], np.int64), "labels")]
    graph = helper.make_graph(
        nodes, "null_encoder",
        [helper.make_tensor_value_info(INPUT_IDS, TensorProto.INT64, ["batch", "seq"]),
         helper.make_tensor_value_info(ATTENTION_MASK, TensorProto.INT64, ["batch", "seq"])],
        [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["batch", num_labels])], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)], ir_version=9)
    onnx.checker.check_model(model)
    return model


def make_null_bundle(source_bundle: Path, dest: Path) -> Path:
    """A bundle with the source's tokenizer.json and classifier.json and the null graph. Its
    parity record says it was never checked (deploy needs --allow-unverified-bundle)."""
    import onnx

    from opencc_cm_contract.bundle_format import CLASSIFIER_FILE, FIELD_PARITY, ONNX_FILE, TOKENIZER_FILE

    dest.mkdir(parents=True, exist_ok=True)
    shutil.copy2(source_bundle / TOKENIZER_FILE, dest / TOKENIZER_FILE)
    spec = json.loads((source_bundle / CLASSIFIER_FILE).read_text(encoding="utf-8"))
    spec[FIELD_PARITY] = {"passed": False, "reason": NULL_NOTE}
    spec["checkpoint"] = f"null encoder ({spec.get('checkpoint', '?')} tokenizer and labels)"
    (dest / CLASSIFIER_FILE).write_text(json.dumps(spec, indent=2, ensure_ascii=False), encoding="utf-8")
    onnx.save(null_encoder_graph(len(spec["labels"])), str(dest / ONNX_FILE))
    return dest


def tree_python(tree: Path | None) -> str:
    """The interpreter that runs deploy and the server: this one, or ``tree``'s ``.venv`` (another
    checkout of the project, e.g. an older commit, whose own packages its model.py files import)."""
    if tree is None:
        return sys.executable
    python = Path(tree) / ".venv" / "bin" / "python"
    if not python.is_file():
        raise FileNotFoundError(f"{python} is missing: run `make setup` in {tree}")
    return str(python)


def deploy_null(bundle: Path, repo: Path, templates: Path = TEMPLATES, max_batch_size: int | None = None,
                tree: Path | None = None) -> Path:
    """The normal deploy command (a child process, as a user runs it) into ``repo``, the python-ort
    target; with ``tree``, that checkout's deploy (its venv) and, unless ``templates`` says
    otherwise, its templates. Where that deploy writes only the models python-ort routes through,
    the onnxruntime target's ids_preprocess and calibration are added beside them, so that every
    checkout's server holds the same four Python models."""
    common = [tree_python(tree), "-m", "opencc_cm_serving.deploy", "--bundle", str(bundle), "--repository",
              str(templates), "--output", str(repo), "--allow-unverified-bundle"]
    if max_batch_size:
        common += ["--max-batch-size", str(max_batch_size)]
    steps = [["--target", "python-ort"], ["--target", "onnxruntime", "--models", "ids_preprocess,calibration"]]
    for i, target in enumerate(steps):
        if i and (repo / "ids_preprocess" / "config.pbtxt").is_file():
            break
        done = subprocess.run(common + target, capture_output=True, text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"deploy failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    return repo


_EMPTY_MODEL = '''"""EMPTY Python model generated by opencc_cm_benchmarks.overhead (floor mode): correctly
shaped zeros (ones for a variable-length axis: 8 columns) for every output its config declares and
the request asks for, no validation, no work; the floor of Triton's Python backend for this step."""
import json
import os
import sys

# The backend stub ignores PYTHONPATH (as in the real model.py files).
sys.path[:0] = [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p and p not in sys.path]

import numpy as np  # noqa: E402
import triton_python_backend_utils as pb_utils  # noqa: E402

DTYPES = {{"TYPE_FP32": np.float32, "TYPE_INT64": np.int64, "TYPE_BOOL": np.bool_}}


class TritonPythonModel:
    def initialize(self, args):
        config = json.loads(args["model_config"])
        self.first_input = config["input"][0]["name"]
        self.outputs = {{o["name"]: (DTYPES[o["data_type"]], [8 if d == -1 else int(d) for d in o["dims"]])
                        for o in config["output"]}}

    def execute(self, requests):
        out = []
        for request in requests:
            n = pb_utils.get_input_tensor_by_name(request, self.first_input).as_numpy().shape[0]
            names = request.requested_output_names() or list(self.outputs)
            tensors = []
            for name in names:
                dtype, dims = self.outputs[name]
                tensors.append(pb_utils.Tensor(name, np.ones((n, *dims), dtype) if dims == [8] else
                                               np.zeros((n, *dims), dtype)))
            out.append(pb_utils.InferenceResponse(output_tensors=tensors))
        return out
'''


def empty_model_py(model: str, num_labels: int) -> str:
    """The same generic empty model for every step (``model`` and ``num_labels`` kept for callers)."""
    return _EMPTY_MODEL.format()


def _one_hop_configs(repo: Path) -> tuple[str, str]:
    """Config of ``floor_1hop`` (ids_preprocess's inputs, batching and queue; calibration's
    outputs) and of the ``classify_ids_1hop`` ensemble (classify_ids with one step)."""
    ids = (repo / "ids_preprocess" / "config.pbtxt").read_text(encoding="utf-8")
    cal = (repo / "calibration" / "config.pbtxt").read_text(encoding="utf-8")
    ens = (repo / "classify_ids" / "config.pbtxt").read_text(encoding="utf-8")

    def block(text: str, key: str) -> str:
        start = text.index(f"\n{key} [") + 1
        return text[start:text.index("\n]", start) + 2]

    body = ids[ids.index('name: "ids_preprocess"'):]
    body = body.replace('name: "ids_preprocess"', f'name: "{ONE_HOP_MODEL}"').replace(block(ids, "output"), block(cal, "output"))
    head = ens[:ens.index("ensemble_scheduling")].replace('name: "classify_ids"', f'name: "{ONE_HOP_ENSEMBLE}"')
    maps = "".join(f'      input_map {{ key: "{t}" value: "{t}" }}\n' for t in ("input_ids", "attention_mask"))
    maps += "".join(f'      output_map {{ key: "{t}" value: "{t}" }}\n' for t in ("scores", "label_flags", "flagged", "token_count"))
    ensemble = head + (f'ensemble_scheduling {{\n  step [\n    {{\n      model_name: "{ONE_HOP_MODEL}"\n'
                       f'      model_version: 1\n{maps}    }}\n  ]\n}}\n')
    return body, ensemble


def make_floor_repository(null_repo: Path, dest: Path, num_labels: int) -> Path:
    """Copy of the deployed repository with every Python model.py replaced by an empty one,
    plus the one-hop ensemble. Configs are checked against Triton's ModelConfig schema."""
    from opencc_cm_serving.deploy import check_model_config

    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(null_repo, dest)
    for model in PYTHON_MODELS:
        (dest / model / "1" / "model.py").write_text(empty_model_py(model, num_labels), encoding="utf-8")
    model_cfg, ensemble_cfg = _one_hop_configs(dest)
    for name, cfg, py in ((ONE_HOP_MODEL, model_cfg, True), (ONE_HOP_ENSEMBLE, ensemble_cfg, False)):
        check_model_config(cfg, name, f"generated {name} config")
        (dest / name / "1").mkdir(parents=True)  # an ensemble needs its (empty) version folder too
        (dest / name / "config.pbtxt").write_text(cfg, encoding="utf-8")
        if py:
            (dest / name / "1" / "model.py").write_text(empty_model_py(ONE_HOP_MODEL, num_labels), encoding="utf-8")
    return dest


_WRAPPER = '''"""Profiling wrapper generated by opencc_cm_benchmarks.overhead: the real model (renamed
_profiled_model.py) with the wall time of each execute() recorded{cprofile_note}."""
import importlib.util
import json
import os
import threading
import time

_HERE = os.path.dirname(os.path.abspath(__file__))
_SPEC = importlib.util.spec_from_file_location("_profiled_model", os.path.join(_HERE, "_profiled_model.py"))
_MOD = importlib.util.module_from_spec(_SPEC)
_SPEC.loader.exec_module(_MOD)
_OUT = {out!r}
_CPROFILE = {cprofile!r}


class TritonPythonModel(_MOD.TritonPythonModel):
    def initialize(self, args):
        super().initialize(args)
        self._calls = 0
        self._requests = 0
        self._ns = 0
        self._lock = threading.Lock()
        self._prof = None
        if _CPROFILE:
            import cProfile
            self._prof = cProfile.Profile()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._dump_loop, daemon=True)
        self._thread.start()

    def execute(self, requests):
        t0 = time.perf_counter_ns()
        if self._prof is not None:
            self._prof.enable()
        try:
            return super().execute(requests)
        finally:
            if self._prof is not None:
                self._prof.disable()
            dt = time.perf_counter_ns() - t0
            with self._lock:
                self._calls += 1
                self._requests += len(requests)
                self._ns += dt

    def _dump(self):
        with self._lock:
            data = {{"execute_calls": self._calls, "requests": self._requests, "execute_ns": self._ns}}
        tmp = _OUT + ".json.tmp"
        with open(tmp, "w") as f:
            json.dump(data, f)
        os.replace(tmp, _OUT + ".json")

    def _dump_loop(self):
        while not self._stop.wait(0.1):
            self._dump()

    def finalize(self):
        self._stop.set()
        self._dump()
        if self._prof is not None:
            self._prof.dump_stats(_OUT + ".prof")
        parent = getattr(super(), "finalize", None)
        if parent is not None:
            parent()
'''


def make_profiled_repository(null_repo: Path, dest: Path, out_dir: Path, cprofile: bool) -> Path:
    """Copy of the deployed repository with each Python model wrapped (see _WRAPPER)."""
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(null_repo, dest)
    out_dir.mkdir(parents=True, exist_ok=True)
    for model in PYTHON_MODELS:
        version = dest / model / "1"
        (version / "model.py").rename(version / "_profiled_model.py")
        (version / "model.py").write_text(_WRAPPER.format(
            out=str(out_dir / model), cprofile=cprofile,
            cprofile_note=" and cProfile around it" if cprofile else ""), encoding="utf-8")
    return dest


def read_stub_timing(out_dir: Path) -> dict[str, dict]:
    out = {}
    for model in PYTHON_MODELS:
        path = out_dir / f"{model}.json"
        if path.is_file():
            out[model] = json.loads(path.read_text())
    return out


def stub_timing_delta(before: dict, after: dict) -> dict:
    out = {}
    for model, a in after.items():
        b = before.get(model, {})
        d = {k: a[k] - b.get(k, 0) for k in a}
        d["execute_ms_per_call"] = d["execute_ns"] / d["execute_calls"] / 1e6 if d["execute_calls"] else None
        d["execute_ms_per_request"] = d["execute_ns"] / d["requests"] / 1e6 if d["requests"] else None
        out[model] = d
    return out


def cprofile_top(prof_path: Path, n: int = 12) -> list[dict]:
    """Top functions by own time (tottime) of a cProfile dump, with cumulative time."""
    import pstats

    try:
        st = pstats.Stats(str(prof_path))
    except TypeError:  # an empty dump: the model never executed (e.g. ids_preprocess, not a step of a folded ensemble)
        return []
    total = st.total_tt or 1e-12
    rows = []
    for (file, line, func), (cc, nc, tt, ct, _callers) in st.stats.items():
        rows.append({"function": f"{Path(file).name}:{line}({func})" if line else func, "calls": nc,
                     "tottime_s": tt, "cumtime_s": ct, "share_of_total": tt / total})
    rows.sort(key=lambda r: r["tottime_s"], reverse=True)
    return rows[:n]


# --------------------------------------------------------------------------------------------
# Clients: stock tritonclient.grpc.aio
# --------------------------------------------------------------------------------------------
def build_requests(ensemble: str, texts: list[str], tokenizer_path: str) -> list[list]:
    """One list of InferInputs per prompt (batch 1), built once."""
    import tritonclient.grpc.aio as aio

    from opencc_cm_client.local_tokenizer import LocalTokenizer

    out = []
    if ensemble == "classify_text":
        for text in texts:
            x = aio.InferInput("text", [1, 1], "BYTES")
            x.set_data_from_numpy(np.array([[text.encode("utf-8")]], dtype=np.object_))
            out.append([x])
        return out
    tok = LocalTokenizer(tokenizer_path)
    for text in texts:
        ids = np.asarray(tok.encode([text])[0], dtype=np.int64).reshape(1, -1)
        a = aio.InferInput("input_ids", list(ids.shape), "INT64")
        a.set_data_from_numpy(ids)
        m = aio.InferInput("attention_mask", list(ids.shape), "INT64")
        m.set_data_from_numpy(np.ones_like(ids))
        out.append([a, m])
    return out


def run_level(url: str, ensemble: str, requests: list[list], clients: int, duration_s: float, warmup_s: float,
              server_cpu: ProcessCpu, client_cpu: ProcessCpu, stub_dir: Path | None = None,
              channels: str = "per-client") -> dict:
    """N closed-loop clients for warmup_s (not recorded) then duration_s (recorded); statistics,
    CPU and stub-timing snapshots at the edges of the recorded window. ``channels``:
    ``per-client`` (each client its own InferenceServerClient, i.e. its own gRPC channel and
    connection, as N separate callers) or ``shared`` (one for all, as one service multiplexing
    its callers' requests on one connection)."""
    async def main() -> dict:
        import tritonclient.grpc.aio as aio
        from tritonclient.utils import InferenceServerException

        pool = ([aio.InferenceServerClient(url) for _ in range(clients)] if channels == "per-client"
                else [aio.InferenceServerClient(url)] * clients)
        lat: list[float] = []
        errors: list[str] = []
        state = {"record": False, "stop": False}

        async def loop(i: int, c) -> None:
            k = i
            while not state["stop"]:
                inputs = requests[k % len(requests)]
                k += clients
                record = state["record"]  # a request belongs to the window it starts in
                t0 = time.perf_counter()
                try:
                    res = await c.infer(ensemble, inputs)
                    scores = res.as_numpy("scores")
                    if scores is None or scores.shape[0] != 1:
                        raise RuntimeError(f"scores: {None if scores is None else scores.shape}, expected one row")
                except (InferenceServerException, RuntimeError) as exc:
                    if record:
                        errors.append(str(exc)[:300])
                    continue
                if record:
                    lat.append((time.perf_counter() - t0) * 1000.0)

        try:
            tasks = [asyncio.create_task(loop(i, c)) for i, c in enumerate(pool)]
            await asyncio.sleep(warmup_s)
            # the window opens: snapshots (synchronous calls: the client loops pause for these few
            # milliseconds; the statistics call is not an inference and is not counted as one)
            s_before, c_before, k_before = server_cpu.snapshot(), client_cpu.snapshot(), time.perf_counter()
            t_before = inference_stats(url)
            st_before = read_stub_timing(stub_dir) if stub_dir else {}
            state["record"] = True
            await asyncio.sleep(duration_s)
            state["record"] = False
            state["stop"] = True
            wall = time.perf_counter() - k_before
            await asyncio.gather(*tasks)  # the window's last requests complete
            s_after, c_after = server_cpu.snapshot(), client_cpu.snapshot()
        finally:
            for c in {id(c): c for c in pool}.values():
                await c.close()
        return {"lat": lat, "errors": errors, "wall_s": wall, "server_cpu": ProcessCpu.delta(s_before, s_after),
                "client_cpu": ProcessCpu.delta(c_before, c_after), "stats_before": t_before, "stub_before": st_before}

    load = os.getloadavg()
    r = asyncio.run(main())
    # statistics are cumulative: the delta is taken once the window's requests completed, so it
    # holds them plus at most `clients` requests that were in flight when the window opened
    time.sleep(STATS_SETTLE_S)
    triton = stats_delta(r["stats_before"], inference_stats(url))
    n = len(r["lat"])
    ens = triton.get(ensemble, {})
    counted = max(ens.get("success_count", 0), 1)
    level = {
        "ensemble": ensemble, "clients": clients, "channels": channels, "duration_s": r["wall_s"], "requests": n,
        "errors": len(r["errors"]), "error_examples": r["errors"][:3],
        "requests_per_s": n / r["wall_s"] if r["wall_s"] > 0 else 0.0,
        "latency": latency_summary(r["lat"]),
        "server_cpu_s": r["server_cpu"], "client_cpu_s": r["client_cpu"],
        "server_cpu_ms_per_request": r["server_cpu"]["total"] / max(n, 1) * 1000.0,
        "client_cpu_ms_per_request": r["client_cpu"]["total"] / max(n, 1) * 1000.0,
        "triton": {k: v for k, v in triton.items() if v.get("inference_count", 0) > 0 or v.get("success_count", 0) > 0},
        "triton_requests_counted": counted, "loadavg_at_start": load,
    }
    if stub_dir:
        level["stub_timing"] = stub_timing_delta(r["stub_before"], read_stub_timing(stub_dir))
    return level


# --------------------------------------------------------------------------------------------
# Orchestration
# --------------------------------------------------------------------------------------------
class TreeServer:
    """The server of another checkout (``tree``): its own launcher (``python -m
    opencc_cm_serving.launch``) run by its own venv, so its model.py files import its own
    packages; ``grpc_url`` and ``process`` (the launcher, parent of tritonserver and the stubs)
    as :class:`opencc_cm_serving.launch.TritonServer` has them."""

    def __init__(self, tree: Path, repo: Path, log: Path, ready_timeout: float = 600.0):
        from opencc_cm_serving.launch import free_port

        self.tree, self.repo, self.log, self.ready_timeout = Path(tree), repo, log, ready_timeout
        self.ports = {"grpc": free_port(), "http": free_port(), "metrics": free_port()}
        self.grpc_url = f"127.0.0.1:{self.ports['grpc']}"
        self.process = None

    def __enter__(self) -> TreeServer:
        import tritonclient.grpc as grpcclient

        cmd = [tree_python(self.tree), "-m", "opencc_cm_serving.launch", "--model-repository", str(self.repo),
               "--address", "127.0.0.1", "--log-file", str(self.log),
               *(f"--{k}-port={v}" for k, v in self.ports.items())]
        self.process = subprocess.Popen(cmd, cwd=self.tree, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.tree} server exited {self.process.returncode}: "
                                   f"{self.process.stderr.read().decode(errors='replace')[-2000:]}")
            try:
                with grpcclient.InferenceServerClient(self.grpc_url) as client:
                    if client.is_server_ready():
                        return self
            except Exception:  # noqa: BLE001 - not listening yet
                pass
            time.sleep(0.5)
        self.__exit__(None, None, None)
        raise TimeoutError(f"{self.tree} server not ready after {self.ready_timeout} s")

    def __exit__(self, *exc) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()


def measure_server(repo: Path, mode: str, ensembles: tuple[str, ...], levels: tuple[int, ...], requests_by: dict,
                   duration_s: float, warmup_s: float, log: Path, stub_dir: Path | None = None,
                   tree: Path | None = None, channels: str = "per-client") -> dict:
    from opencc_cm_serving.launch import ServerSettings, TritonServer

    out: dict = {"mode": mode, "levels": []}
    t0 = time.perf_counter()
    server_cm = (TreeServer(tree, repo, log) if tree
                 else TritonServer(repo, ServerSettings(log_path=log, ready_timeout=600)))
    with server_cm as server:
        out["ready_s"] = time.perf_counter() - t0
        url = server.grpc_url
        server_cpu = ProcessCpu(server.process.pid)
        client_cpu = ProcessCpu(tree=False)
        print(f"[{mode}] server ready on {url} in {out['ready_s']:.1f} s")
        with TreeMemory(server.process.pid) as mem:
            for ensemble in ensembles:
                for n in levels:
                    lv = run_level(url, ensemble, requests_by[ensemble], n, duration_s, warmup_s, server_cpu,
                                   client_cpu, stub_dir, channels)
                    out["levels"].append(lv)
                    lat = lv["latency"]
                    print(f"[{mode}] {ensemble:<17} {n:>3} clients: {lv['requests']:>6} req, "
                          f"{lv['requests_per_s']:8.1f} req/s, p50 {lat.get('p50_ms', float('nan')):7.2f} ms, "
                          f"p99 {lat.get('p99_ms', float('nan')):7.2f} ms, server CPU {lv['server_cpu_ms_per_request']:.2f} "
                          f"ms/req, client CPU {lv['client_cpu_ms_per_request']:.2f} ms/req, errors {lv['errors']}")
            mem.sample()
        out["memory_peak_mib"] = mem.peak_mib
    return out


def run(args) -> dict:
    from opencc_cm_client.local_tokenizer import LocalTokenizer
    from opencc_cm_contract.bundle_format import CLASSIFIER_FILE, TOKENIZER_FILE

    from .workload import bells_o_prompts

    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    levels = tuple(int(x) for x in args.clients.split(","))
    modes = tuple(x for x in args.modes.split(",") if x) + (PROFILE_MODES if args.profile else ())
    source = Path(args.bundle)
    num_labels = len(json.loads((source / CLASSIFIER_FILE).read_text(encoding="utf-8"))["labels"])
    cpu = CpuAccounting()
    report: dict = {
        "command": " ".join(["python -m opencc_cm_benchmarks.overhead", *args.argv]),
        "machine": machine_info(), "loadavg_at_start": os.getloadavg(), "started_unix": started,
        "serving_tree": str(Path(args.serving_tree).resolve()) if args.serving_tree else None,
        "plan": {"duration_s": args.duration_s, "warmup_s": args.warmup_s, "clients": list(levels), "modes": list(modes),
                 "prompts": args.prompts, "channels": args.channels, "bundle": str(source), "max_batch_size": args.max_batch_size},
        "notes": [],
    }
    tok = LocalTokenizer(str(source / TOKENIZER_FILE))
    count = lambda text: len(tok.encode([text])[0]) if text else 0  # noqa: E731
    texts = bells_o_prompts(count, args.prompts, seed=0, tail_share=0.0, short_tokens=(8, 36))
    tokens = [count(t) for t in texts]
    report["workload"] = {"prompts": len(texts), "tokens_mean": float(np.mean(tokens)), "tokens_max": int(max(tokens)),
                          "generator": "bells_o_prompts(tail_share=0, short=(8, 36), seed=0)"}
    scratch = Path(tempfile.mkdtemp(prefix="opencc-cm-overhead-"))
    try:
        null_bundle = make_null_bundle(source, scratch / "null-bundle")
        tree = Path(args.serving_tree).resolve() if args.serving_tree else None
        templates = Path(args.repository) if args.repository else tree / "model_repository" if tree else TEMPLATES
        null_repo = deploy_null(null_bundle, scratch / "repo-null", templates, args.max_batch_size, tree)
        requests_by = {e: build_requests(e, texts, str(null_bundle / TOKENIZER_FILE))
                       for e in ENSEMBLES + (ONE_HOP_ENSEMBLE,)}
        report["modes"] = {}
        for mode in modes:
            stub_dir = None
            ensembles, lv = ENSEMBLES, levels
            if mode == "null":
                repo = null_repo
            elif mode == "floor":
                repo = make_floor_repository(null_repo, scratch / "repo-floor", num_labels)
                ensembles = ENSEMBLES + (ONE_HOP_ENSEMBLE,)
            elif mode in PROFILE_MODES:
                stub_dir = scratch / f"stub-{mode}"
                repo = make_profiled_repository(null_repo, scratch / f"repo-{mode}", stub_dir, mode == "cprofile")
                lv = tuple(x for x in levels if x in (1, max(levels)))
            else:
                raise ValueError(f"unknown mode {mode!r}")
            log = (Path(args.server_log_dir) if args.server_log_dir else scratch) / f"tritonserver-{mode}.log"
            log.parent.mkdir(parents=True, exist_ok=True)
            report["modes"][mode] = measure_server(repo, mode, ensembles, lv, requests_by, args.duration_s,
                                                   args.warmup_s, log, stub_dir, tree, args.channels)
            cpu.mark(mode)
            if mode == "cprofile":
                report["modes"][mode]["cprofile_top"] = {
                    m: cprofile_top(stub_dir / f"{m}.prof") for m in PYTHON_MODELS if (stub_dir / f"{m}.prof").is_file()}
                missing = [m for m in PYTHON_MODELS if not (stub_dir / f"{m}.prof").is_file()]
                if missing:
                    report["notes"].append(f"cProfile: no dump from {missing} (finalize not called?)")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    close_report(report, cpu, started)
    report["attribution"] = attribution(report)
    for phase, acc in report["cpu_accounting"]["phases"].items():
        if acc["others_share_of_capacity"] > 0.05 and acc["wall_s"] > 1:
            report["notes"].append(f"other processes used {acc['others_share_of_capacity']:.0%} of the CPU capacity "
                                   f"during the {phase} mode: its timings are disturbed")
    (out / REPORT_JSON).write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (out / REPORT_MD).write_text(markdown(report), encoding="utf-8")
    print(f"wrote {out / REPORT_JSON} and {out / REPORT_MD} ({report['duration_s']:.0f} s)")
    return report


# --------------------------------------------------------------------------------------------
# Attribution and report
# --------------------------------------------------------------------------------------------
def _level(report: dict, mode: str, ensemble: str, clients: int) -> dict | None:
    for lv in report.get("modes", {}).get(mode, {}).get("levels", []):
        if lv["ensemble"] == ensemble and lv["clients"] == clients:
            return lv
    return None


def _step_ms(stats: dict) -> dict:
    ok = max(stats.get("success_count", 0), 1)
    return {"queue": stats.get("queue_ns", 0) / ok / 1e6, "compute_input": stats.get("compute_input_ns", 0) / ok / 1e6,
            "compute_infer": stats.get("compute_infer_ns", 0) / ok / 1e6,
            "compute_output": stats.get("compute_output_ns", 0) / ok / 1e6,
            "total": stats.get("success_ns", 0) / ok / 1e6,
            "executions": stats.get("execution_count", 0), "inferences": stats.get("inference_count", 0)}


def attribution(report: dict) -> dict:
    """Per request at batch 1 (1 client): client latency = gRPC + client (client mean minus the
    ensemble's own time) + ensemble scheduling (ensemble time minus its steps) + per step queue,
    compute input, compute infer, compute output. With stub timing: compute infer = execute()
    body + the hop (compute infer minus execute())."""
    out: dict = {}
    for mode in report.get("modes", {}):
        for ensemble in (*ENSEMBLES, ONE_HOP_ENSEMBLE):
            lv = _level(report, mode, ensemble, 1)
            if not lv or not lv["latency"].get("n"):
                continue
            ens = lv["triton"].get(ensemble, {})
            ens_ms = _step_ms(ens)["total"]
            steps = {m: _step_ms(s) for m, s in lv["triton"].items() if m != ensemble}
            steps_sum = sum(s["queue"] + s["compute_input"] + s["compute_infer"] + s["compute_output"] for s in steps.values())
            row = {"client_mean_ms": lv["latency"]["mean_ms"], "client_p50_ms": lv["latency"]["p50_ms"],
                   "grpc_and_client_ms": lv["latency"]["mean_ms"] - ens_ms, "ensemble_ms": ens_ms,
                   "ensemble_scheduling_ms": ens_ms - steps_sum, "steps": steps,
                   "server_cpu_ms_per_request": lv["server_cpu_ms_per_request"],
                   "client_cpu_ms_per_request": lv["client_cpu_ms_per_request"]}
            enc = steps.get("encoder")
            if enc:
                row["server_ms_excluding_encoder_compute"] = ens_ms - enc["compute_infer"]
            if "stub_timing" in lv:
                for m, t in lv["stub_timing"].items():
                    if m in steps and t.get("execute_ms_per_request") is not None:
                        steps[m]["execute_body"] = t["execute_ms_per_request"]
                        steps[m]["hop"] = steps[m]["compute_infer"] - t["execute_ms_per_request"]
            out[f"{mode} {ensemble}"] = row
    return out


def _f(x, digits: int = 2) -> str:
    return "n/a" if x is None else f"{x:,.{digits}f}"


def markdown(report: dict) -> str:
    m = report["machine"]
    lines = [
        "# Serving overhead around a null encoder", "",
        f"Command: `{report['command']}`  ",
        f"Machine: {m['nproc']} CPU ({m['cpu_model']}), {m['memory_gib']} GiB; load average at start "
        f"{', '.join(f'{x:.2f}' for x in report['loadavg_at_start'])}, at end "
        f"{', '.join(f'{x:.2f}' for x in report['loadavg_at_end'])}; {report['duration_s']:.0f} s.  ",
        f"Workload: {report['workload']['prompts']} prompts, {report['workload']['tokens_mean']:.1f} tokens on average "
        f"(max {report['workload']['tokens_max']}), batch 1 per request; {report['plan']['duration_s']:g} s per level after "
        f"{report['plan']['warmup_s']:g} s warm-up; stock `tritonclient.grpc.aio`, "
        f"{'one channel per client' if report['plan'].get('channels', 'per-client') == 'per-client' else 'one channel shared by all clients'}.  ",
        f"Serving code: {report.get('serving_tree') or 'this checkout'}.", "",
        "| mode | ensemble | clients | requests | req/s | p50 ms | p99 ms | mean ms | server CPU ms/req | client CPU ms/req "
        "| errors | load avg (1 min) |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for mode, res in report["modes"].items():
        for lv in res["levels"]:
            lat = lv["latency"]
            lines.append(f"| {mode} | {lv['ensemble']} | {lv['clients']} | {lv['requests']:,} | {lv['requests_per_s']:,.0f} "
                         f"| {_f(lat.get('p50_ms'))} | {_f(lat.get('p99_ms'))} | {_f(lat.get('mean_ms'))} "
                         f"| {_f(lv['server_cpu_ms_per_request'])} | {_f(lv['client_cpu_ms_per_request'])} | {lv['errors']} "
                         f"| {lv['loadavg_at_start'][0]:.2f} |")
    lines += ["", "## Triton's per-model statistics (ms per request; executions vs inferences)", "",
              "| mode | ensemble | clients | model | queue | compute input | compute infer | compute output | total "
              "| executions | inferences | rows/execution |",
              "|---|---|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for mode, res in report["modes"].items():
        for lv in res["levels"]:
            for model, s in lv["triton"].items():
                d = _step_ms(s)
                rows = d["inferences"] / d["executions"] if d["executions"] else 0.0
                lines.append(f"| {mode} | {lv['ensemble']} | {lv['clients']} | {model} | {_f(d['queue'], 3)} "
                             f"| {_f(d['compute_input'], 3)} | {_f(d['compute_infer'], 3)} | {_f(d['compute_output'], 3)} "
                             f"| {_f(d['total'], 3)} | {d['executions']:,} | {d['inferences']:,} | {rows:.2f} |")
    procs = sorted({k for res in report["modes"].values() for lv in res["levels"] for k, v in lv["server_cpu_s"].items()
                    if k != "total" and v > 0}, key=lambda k: (k != "tritonserver", k))
    cores = report["machine"]["nproc"] or 1
    lines += ["", "## CPU per request by process (ms of CPU per request, psutil; noise-robust: CPU is only counted while running)",
              "", f"Capacity bound = {cores} cores x 1000 / (server + client CPU ms per request): the requests/s this machine could "
              "sustain if nothing else ran and the CPU were the only limit.", "",
              "| mode | ensemble | clients | " + " | ".join(procs) + " | server total | client | capacity bound req/s |",
              "|---|---|---:|" + "---:|" * (len(procs) + 3)]
    for mode, res in report["modes"].items():
        for lv in res["levels"]:
            n = max(lv["requests"], 1)
            per = {k: v / n * 1000.0 for k, v in lv["server_cpu_s"].items()}
            total = per["total"] + lv["client_cpu_ms_per_request"]
            lines.append(f"| {mode} | {lv['ensemble']} | {lv['clients']} | " + " | ".join(_f(per.get(k, 0.0), 3) for k in procs)
                         + f" | {_f(per['total'], 3)} | {_f(lv['client_cpu_ms_per_request'], 3)} "
                         f"| {cores * 1000.0 / total if total > 0 else float('nan'):,.0f} |")
    lines += ["", "## Where the time goes per request at batch 1 (1 client, means, ms)", "",
              "Means over the window (Triton's statistics only give sums): a few scheduler stalls on a busy machine move "
              "them; compare with the p50 column above.", "",
              "| run | client latency | gRPC + client | ensemble (Triton) | ensemble scheduling | steps: queue + compute "
              "(execute() body / hop) | server excl. encoder compute | server CPU / client CPU per request |",
              "|---|---:|---:|---:|---:|---|---:|---:|"]
    for name, a in report["attribution"].items():
        steps = "; ".join(
            f"{m} {s['queue'] + s['compute_input'] + s['compute_infer'] + s['compute_output']:.3f}"
            + (f" ({s['execute_body']:.3f} / {s['hop']:.3f})" if "execute_body" in s else "")
            for m, s in a["steps"].items())
        lines.append(f"| {name} | {_f(a['client_mean_ms'], 3)} | {_f(a['grpc_and_client_ms'], 3)} | {_f(a['ensemble_ms'], 3)} "
                     f"| {_f(a['ensemble_scheduling_ms'], 3)} | {steps} | {_f(a.get('server_ms_excluding_encoder_compute'), 3)} "
                     f"| {_f(a['server_cpu_ms_per_request'])} / {_f(a['client_cpu_ms_per_request'])} |")
    timed = [(mode, lv) for mode, res in report["modes"].items() for lv in res["levels"] if lv.get("stub_timing")]
    if timed:
        lines += ["", "## execute() inside the stubs (wall time measured in the stub; the rest of compute infer is the hop)", "",
                  "| mode | ensemble | clients | model | execute() calls | requests | requests/call | ms per call "
                  "| ms per request | compute infer ms per request (Triton) |",
                  "|---|---|---:|---|---:|---:|---:|---:|---:|---:|"]
        for mode, lv in timed:
            for model, t in lv["stub_timing"].items():
                if not t["execute_calls"]:
                    continue
                infer = _step_ms(lv["triton"].get(model, {}))["compute_infer"]
                lines.append(f"| {mode} | {lv['ensemble']} | {lv['clients']} | {model} | {t['execute_calls']:,} "
                             f"| {t['requests']:,} | {t['requests'] / t['execute_calls']:.2f} | {_f(t['execute_ms_per_call'], 3)} "
                             f"| {_f(t['execute_ms_per_request'], 3)} | {_f(infer, 3)} |")
    prof = report["modes"].get("cprofile", {}).get("cprofile_top")
    if prof:
        lines += ["", "## cProfile inside the stubs (whole cprofile mode; own time, top functions)", ""]
        for model, rows in prof.items():
            lines += [f"**{model}**", "", "| function | calls | own s | cumulative s | share of own time |", "|---|---:|---:|---:|---:|"]
            lines += [f"| `{r['function']}` | {r['calls']:,} | {r['tottime_s']:.3f} | {r['cumtime_s']:.3f} "
                      f"| {r['share_of_total']:.1%} |" for r in rows]
            lines.append("")
    acc = report["cpu_accounting"]
    lines += ["", "## Disturbance", "",
              f"Other processes used {acc['others_share_of_capacity']:.0%} of the machine's CPU capacity over the run "
              + "(" + ", ".join(f"{k} {v['others_share_of_capacity']:.0%}" for k, v in acc["phases"].items()) + ")."]
    lines += [f"- {n}" for n in report["notes"]]
    return "\n".join(lines) + "\n"


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m opencc_cm_benchmarks.overhead", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--bundle", required=True, help="bundle whose tokenizer.json and classifier.json are used")
    p.add_argument("--out", default="benchmarks/overhead", help="folder for overhead.json and overhead.md")
    p.add_argument("--repository", help="model repository holding the templates (default: this checkout's, or "
                   "--serving-tree's)")
    p.add_argument("--serving-tree", help="another checkout of the project (e.g. an older commit, with its own "
                   "`make setup` venv): deploy, launcher, model.py files and packages all come from it; the clients, "
                   "prompts and measurement stay this module's, so two trees are compared on the same probe")
    p.add_argument("--duration-s", type=float, default=8.0, help="recorded seconds per (ensemble, clients) level")
    p.add_argument("--warmup-s", type=float, default=2.0, help="unrecorded seconds before each level")
    p.add_argument("--clients", default="1,16,64", help="concurrency levels (closed-loop clients)")
    p.add_argument("--pair-with", help="another checkout (with its `make setup` venv): run its serving code and this "
                   "checkout's side by side, both servers up, levels interleaved (null mode; pair.json, pair.md)")
    p.add_argument("--repeats", type=int, default=2, help="with --pair-with: runs of each level per side")
    p.add_argument("--channels", choices=("per-client", "shared"), default="per-client",
                   help="one gRPC channel per simulated client, or one shared by all")
    p.add_argument("--modes", default=",".join(MODES), help="comma list of null, floor")
    p.add_argument("--profile", action="store_true", help="also run the stub-timing and cprofile modes")
    p.add_argument("--prompts", type=int, default=40, help="distinct prompts (8-36 tokens) the clients cycle through")
    p.add_argument("--max-batch-size", type=int, default=0, help="deploy --max-batch-size (0: deploy's default)")
    p.add_argument("--server-log-dir", help="keep the server logs here (default: a temporary folder)")
    return p


def close_report(report: dict, cpu: CpuAccounting, started: float) -> None:
    """What every run's report ends with: the CPU accounting, the load at the end, the duration."""
    report["cpu_accounting"] = cpu.result()
    report["loadavg_at_end"] = os.getloadavg()
    report["duration_s"] = time.time() - started


def run_pair(args) -> dict:
    """``--pair-with TREE``: this checkout's serving code and TREE's (e.g. an older commit), both
    deployed from the same null bundle and both servers up at once; each (ensemble, clients)
    level runs on one then the other, ``--repeats`` times, the order alternating, so the two
    sides see the same machine load level by level. Null mode only. Writes ``pair.json`` and
    ``pair.md`` (per level and side: median req/s over the repeats, p50, CPU ms per request,
    errors; and the ratio this / TREE)."""
    from opencc_cm_client.local_tokenizer import LocalTokenizer
    from opencc_cm_contract.bundle_format import TOKENIZER_FILE

    from opencc_cm_serving.launch import ServerSettings, TritonServer

    from .workload import bells_o_prompts

    started = time.time()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    levels = tuple(int(x) for x in args.clients.split(","))
    other = Path(args.pair_with).resolve()
    sides = ("this", "other")
    tok = LocalTokenizer(str(Path(args.bundle) / TOKENIZER_FILE))
    count = lambda text: len(tok.encode([text])[0]) if text else 0  # noqa: E731
    texts = bells_o_prompts(count, args.prompts, seed=0, tail_share=0.0, short_tokens=(8, 36))
    cpu = CpuAccounting()
    report: dict = {"command": " ".join(["python -m opencc_cm_benchmarks.overhead", *args.argv]),
                    "machine": machine_info(), "loadavg_at_start": os.getloadavg(), "other_tree": str(other),
                    "plan": {"duration_s": args.duration_s, "warmup_s": args.warmup_s, "clients": list(levels),
                             "repeats": args.repeats, "channels": args.channels, "prompts": len(texts)},
                    "levels": []}
    scratch = Path(tempfile.mkdtemp(prefix="opencc-cm-overhead-pair-"))
    try:
        from .runners import TEMPLATES as this_templates

        null_bundle = make_null_bundle(Path(args.bundle), scratch / "null-bundle")
        repos = {"this": deploy_null(null_bundle, scratch / "repo-this", this_templates, args.max_batch_size),
                 "other": deploy_null(null_bundle, scratch / "repo-other", other / "model_repository",
                                      args.max_batch_size, other)}
        requests_by = {e: build_requests(e, texts, str(null_bundle / TOKENIZER_FILE)) for e in ENSEMBLES}
        with TritonServer(repos["this"], ServerSettings(log_path=scratch / "this.log", ready_timeout=600)) as this_server, \
                TreeServer(other, repos["other"], scratch / "other.log") as other_server:
            servers = {"this": this_server, "other": other_server}
            server_cpu = {k: ProcessCpu(v.process.pid) for k, v in servers.items()}
            client_cpu = ProcessCpu(tree=False)
            for ensemble in ENSEMBLES:
                for n in levels:
                    for rep in range(args.repeats):
                        for side in (sides if rep % 2 == 0 else sides[::-1]):
                            lv = run_level(servers[side].grpc_url, ensemble, requests_by[ensemble], n, args.duration_s,
                                           args.warmup_s, server_cpu[side], client_cpu, None, args.channels)
                            lv.update(side=side, repeat=rep, loadavg_at_end=os.getloadavg())
                            report["levels"].append(lv)
                            print(f"[{side:<5}] {ensemble:<13} {n:>3} clients #{rep}: {lv['requests_per_s']:8.1f} req/s, "
                                  f"p50 {lv['latency'].get('p50_ms', float('nan')):6.2f} ms, server CPU "
                                  f"{lv['server_cpu_ms_per_request']:.2f} ms/req, errors {lv['errors']}")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    close_report(report, cpu, started)
    report["summary"] = pair_summary(report)
    (out / "pair.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    (out / "pair.md").write_text(pair_markdown(report), encoding="utf-8")
    print(f"wrote {out / 'pair.json'} and {out / 'pair.md'} ({report['duration_s']:.0f} s)")
    return report


def pair_summary(report: dict) -> list[dict]:
    """Per (ensemble, clients): medians over the repeats of each side, and this / other."""
    out = []
    keys = sorted({(lv["ensemble"], lv["clients"]) for lv in report["levels"]}, key=lambda k: (ENSEMBLES.index(k[0]), k[1]))
    for ensemble, clients in keys:
        row: dict = {"ensemble": ensemble, "clients": clients}
        for side in ("this", "other"):
            lvs = [lv for lv in report["levels"] if lv["ensemble"] == ensemble and lv["clients"] == clients
                   and lv["side"] == side]
            row[side] = {"requests_per_s": float(np.median([lv["requests_per_s"] for lv in lvs])),
                         "requests_per_s_each": [round(lv["requests_per_s"], 1) for lv in lvs],
                         "p50_ms": float(np.median([lv["latency"].get("p50_ms", np.nan) for lv in lvs])),
                         "server_cpu_ms_per_request": float(np.median([lv["server_cpu_ms_per_request"] for lv in lvs])),
                         "client_cpu_ms_per_request": float(np.median([lv["client_cpu_ms_per_request"] for lv in lvs])),
                         "errors": sum(lv["errors"] for lv in lvs),
                         "loadavg": [round(lv["loadavg_at_start"][0], 1) for lv in lvs]}
        row["ratio_requests_per_s"] = row["this"]["requests_per_s"] / max(row["other"]["requests_per_s"], 1e-9)
        out.append(row)
    return out


def pair_markdown(report: dict) -> str:
    m, plan = report["machine"], report["plan"]
    lines = ["# Serving path, this checkout vs another, levels interleaved", "",
             f"Command: `{report['command']}`  ",
             f"Other: {report['other_tree']}. Machine: {m['nproc']} CPU ({m['cpu_model']}); load average at start "
             f"{report['loadavg_at_start'][0]:.2f}, at end {report['loadavg_at_end'][0]:.2f}; "
             f"{report['duration_s']:.0f} s; other processes used "
             f"{report['cpu_accounting']['others_share_of_capacity']:.0%} of the CPU capacity.  ",
             f"Each level {plan['duration_s']:g} s after {plan['warmup_s']:g} s warm-up, {plan['repeats']} repeats per side "
             f"(order alternating), {plan['prompts']} prompts, batch 1 per request, channels: {plan['channels']}. "
             "Medians over the repeats.", "",
             "| ensemble | clients | req/s this | req/s other | this / other | each (this; other) | p50 ms this / other "
             "| server + client CPU ms/req this / other | errors this / other | load avg at each |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|---|"]
    for r in report["summary"]:
        t, o = r["this"], r["other"]
        lines.append(f"| {r['ensemble']} | {r['clients']} | {t['requests_per_s']:,.0f} | {o['requests_per_s']:,.0f} "
                     f"| {r['ratio_requests_per_s']:.2f}x | {t['requests_per_s_each']}; {o['requests_per_s_each']} "
                     f"| {t['p50_ms']:.2f} / {o['p50_ms']:.2f} "
                     f"| {t['server_cpu_ms_per_request']:.2f}+{t['client_cpu_ms_per_request']:.2f} / "
                     f"{o['server_cpu_ms_per_request']:.2f}+{o['client_cpu_ms_per_request']:.2f} "
                     f"| {t['errors']} / {o['errors']} | {t['loadavg']}; {o['loadavg']} |")
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser().parse_args(argv)
    args.argv = argv
    if args.pair_with:
        run_pair(args)
    else:
        run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
