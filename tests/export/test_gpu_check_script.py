"""The GPU proof runs as the GPU machine runs it: ``scripts/gpu-check.sh`` under an interpreter that
has only that machine's packages (scripts/gpu-machine-packages.txt) and the carried wheels
(scripts/gpu-carried-packages.txt), none of this project's packages installed. Run here with the
CPU dry-run settings (tiny checkpoint): every phase that can run on a CPU runs and passes its
fidelity check, and JSON + markdown are written.

The look-alike interpreter is a fresh venv whose only site folder holds links to those
distributions as this project's venv has them (a distribution the venv lacks, such as fla-core,
is simply absent there too). The carried wheels are emulated by links in the folder the script
unpacks wheels into (GPU_SITE), with no wheel to install.
"""
from __future__ import annotations

import importlib.metadata as metadata
import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SCRIPTS = ROOT / "scripts"


def listed(path: Path) -> list[str]:
    return [line.split("#", 1)[0].strip().split("==")[0] for line in path.read_text().splitlines()
            if line.split("#", 1)[0].strip()]


def with_requirements(names: list[str]) -> list[str]:
    """``names`` and everything they require (extras left out), as far as installed here."""
    from packaging.requirements import Requirement

    seen, todo = [], list(names)
    while todo:
        name = todo.pop()
        key = name.lower().replace("_", "-")
        if key in seen:
            continue
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        seen.append(key)
        for line in dist.requires or ():
            req = Requirement(line)
            if req.marker is None or req.marker.evaluate({"extra": ""}):
                todo.append(req.name)
    return seen


def link_distributions(names: list[str], folder: Path, requirements: bool = True) -> list[str]:
    """Link every top-level file and folder of each installed distribution (and, with
    ``requirements``, of what it requires) into ``folder``; return the names linked (those not
    installed here are skipped)."""
    folder.mkdir(parents=True, exist_ok=True)
    found = []
    for name in with_requirements(names) if requirements else names:
        try:
            dist = metadata.distribution(name)
        except metadata.PackageNotFoundError:
            continue
        found.append(name)
        base = Path(dist.locate_file(""))
        for top in {Path(f).parts[0] for f in dist.files or () if not str(f).startswith("..")}:
            target = folder / top
            if top != "__pycache__" and not target.exists() and (base / top).exists():
                target.symlink_to(base / top)
    return found


@pytest.fixture(scope="module")
def gpu_machine_python(tmp_path_factory) -> tuple[Path, Path]:
    """(python, carried site): a venv with the GPU machine's packages only, and the carried ones."""
    tmp = tmp_path_factory.mktemp("gpu-machine")
    site = tmp / "site"
    machine = link_distributions(listed(SCRIPTS / "gpu-machine-packages.txt"), site)
    assert {"torch", "transformers", "peft", "safetensors", "tokenizers", "numpy", "onnx", "onnxruntime"} <= set(machine)
    carried = tmp / "carried"
    # carried wheels are installed without their requirements (pip --no-deps), so linked alone
    link_distributions(listed(SCRIPTS / "gpu-carried-packages.txt"), carried, requirements=False)
    venv = tmp / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", "--without-pip", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                             capture_output=True, text=True, check=True).stdout.strip()
    (Path(purelib) / "gpu_machine_packages.pth").write_text(f"{site}\n")
    return python, carried


def run_python(python: Path, code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run([str(python), "-c", code], capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": "", **env}, cwd=ROOT)


def test_look_alike_interpreter_has_only_the_gpu_machines_packages(gpu_machine_python):
    python, _ = gpu_machine_python
    assert run_python(python, "import torch, transformers, peft, safetensors, tokenizers, numpy, onnx, "
                              "onnxruntime").returncode == 0
    for absent in ("opencc_cm_contract", "opencc_cm_client", "opencc_cm_serving", "opencc_cm_export",
                   "opencc_cm_jobs", "tritonclient", "pytriton"):
        result = run_python(python, f"import {absent}")
        assert result.returncode != 0 and "ModuleNotFoundError" in result.stderr, absent
    assert sysconfig.get_paths()["purelib"] not in run_python(python, "import sys; print(sys.path)").stdout


def test_gpu_check_script_dry_run_on_cpu(gpu_machine_python, tmp_path):
    python, carried = gpu_machine_python
    out = tmp_path / "report"
    # the GPU run's time limits are for a GPU; a loaded CPU must not turn phases into "not run"
    env = {**os.environ, "GPU_PYTHON": str(python), "GPU_SITE": str(carried),
           "GPU_WHEELS": str(tmp_path / "no-wheels"), "PYTHONPATH": "", "GPU_CHECK_LIMIT_S": "3000"}
    run = subprocess.run(["bash", str(SCRIPTS / "gpu-check.sh"), str(out), "--size", "tiny", "--device", "cpu",
                          "--prompts", "8", "--throughput-s", "0.2", "--grpc-calls", "1", "--budget-s", "2500"],
                         cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    # The plan comes first, before any phase's work.
    plan_at, first_phase_at = run.stdout.index("[gpu-check] plan:"), run.stdout.index("[checkpoint]")
    assert plan_at < first_phase_at
    assert "ours_bf16_eager_fla: cannot run: fla-core needs a CUDA device" in run.stdout
    assert "triton_grpc: will run" in run.stdout

    report = json.loads((out / "gpu_check.json").read_text())
    assert "Dry run on the CPU" in (out / "gpu_check.md").read_text()
    assert report["torch_weights_fp32_parity"]["passed"]  # the bundle the Triton phase serves
    ref = report["reference_as_shipped_bf16"]
    assert ref["batch1"]["n"] == 8
    ref_distance = ref["fidelity_vs_fp32_oracle"]["max_abs_score_diff"]
    assert 0 < ref_distance < 0.05  # bf16 against the fp32 oracle: close, not exact
    for name in ("ours_bf16_eager_torch_rule", "ours_bf16_fla_cuda_graphs", "ours_fp16_fla_cuda_graphs"):
        ours = report[name]
        assert ours["batch1_all"]["p50_ms"] > 0
        f = ours["fidelity_vs_fp32_oracle"]
        assert 0 < f["max_abs_score_diff"] < 0.05 and f["decisions"] == 8 * 11
        assert f["reference_max_abs_score_diff"] == ref_distance
        assert f["within_reference_band"] == (f["no_further_than_reference"]
                                              and f["flips_only_within_reference_distance"])
        for flip in f["flips"]:  # each flip carries its distance to the threshold
            assert flip["oracle_distance_to_threshold"] >= 0
    assert report["ours_bf16_eager_fla"].startswith("not run: fla-core needs a CUDA device")
    graphs = report["ours_bf16_fla_cuda_graphs"]
    assert graphs["cuda_graphs_captured"] == 0  # CPU: bucket padding without graphs
    assert 1.0 < graphs["batch1_bucket_cells_per_real_token"] < 2.0  # the price of padding to powers of 2
    assert set(graphs["throughput_prompts_per_s"]) == {"1", "8", "16", "32", "64"}
    assert any("the project's torch rule" in line for line in graphs["log"])
    grpc = report["triton_grpc"]  # the carried pip server runs here, so the gRPC phase runs too
    assert grpc["grpc_batch1_client_tokenizes"]["n"] == 8 and not grpc["grpc_batch64_errors"]
    assert grpc["fidelity_vs_fp32_oracle"]["max_abs_score_diff"] <= 1e-5  # fp32 on CPU
    assert all(t["met"] is None for t in report["targets"].values())  # CPU figures judge nothing
    assert set(report["phase_seconds"]) >= {"checkpoint", "oracle_fp32", "torch_weights_fp32_parity",
                                            "reference_as_shipped_bf16", "triton_grpc"}
    assert report["complete"] is True

    # The rerun after a failure: --quick, same folder, the checkpoint reused, only the quick phases.
    rerun = subprocess.run(["bash", str(SCRIPTS / "gpu-check.sh"), str(out), "--quick", "--size", "tiny",
                            "--device", "cpu", "--prompts", "4", "--throughput-s", "0.2", "--grpc-calls", "1",
                            "--budget-s", "2500"],
                           cwd=ROOT, env=env, capture_output=True, text=True, timeout=900)
    assert rerun.returncode == 0, rerun.stdout[-3000:] + rerun.stderr[-3000:]
    assert "[checkpoint] tiny: reusing" in rerun.stdout
    quick = json.loads((out / "gpu_check.json").read_text())
    assert quick["quick"] and quick["ours_fp16_fla_cuda_graphs"] == "not run: --quick"
    assert quick["ours_bf16_fla_cuda_graphs"]["fidelity_vs_fp32_oracle"]["decisions"] == 4 * 11
    assert quick["triton_grpc"]["grpc_batch1_client_tokenizes"]["n"] == 4


def test_quick_mode_plans_only_the_quick_phases(gpu_machine_python):
    """--quick is what a rerun after a failure runs: the plan says which phases it skips."""
    python, carried = gpu_machine_python
    code = ("import json, torch; from opencc_cm_jobs.gpu_check import plan; "
            "print(json.dumps(plan(torch.device('cpu'), quick=True, triton='auto')))")
    result = run_python(python, code, PYTHONPATH=f"contract:client:serving:export:jobs:{carried}")
    assert result.returncode == 0, result.stderr
    steps = json.loads(result.stdout)
    assert steps["ours_fp16_fla_cuda_graphs"] == "--quick" and steps["ours_bf16_eager_torch_rule"] == "--quick"
    assert steps["ours_bf16_fla_cuda_graphs"] is None and steps["triton_grpc"] is None


def test_carried_wheels_are_for_python_312():
    sys.path.insert(0, str(SCRIPTS))
    try:
        from gpu_wheels import carried_requirements, wheel_fits_python312
    finally:
        sys.path.pop(0)
    assert all("==" in r for r in carried_requirements())  # pinned: the same bytes every time
    assert wheel_fits_python312("nvidia_pytriton-0.7.0-py3-none-manylinux_2_35_x86_64.whl")
    assert wheel_fits_python312("protobuf-6.33.6-cp39-abi3-manylinux2014_x86_64.whl")
    assert wheel_fits_python312("grpcio-1.85.3-cp312-cp312-manylinux2014_x86_64.manylinux_2_17_x86_64.whl")
    assert not wheel_fits_python312("grpcio-1.85.3-cp311-cp311-manylinux_2_17_x86_64.whl")
    assert not wheel_fits_python312("tokenizers-0.23.3-cp39-abi3-macosx_11_0_arm64.whl")
