"""The client installs on its own, as the README says: ``pip install ./contract ./client`` in a
fresh virtual environment gives the library and the ``opencc-cm`` command, without torch and
without any other package of this project."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_client_installs_alone_in_a_fresh_venv(tmp_path):
    # from copies: building a local project writes build/ folders next to its sources
    for project in ("contract", "client"):
        shutil.copytree(ROOT / project, tmp_path / project, ignore=shutil.ignore_patterns("build", "*.egg-info"))
    venv = tmp_path / "venv"
    base = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base, "-m", "venv", str(venv)], check=True)
    python, opencc_cm = venv / "bin" / "python", venv / "bin" / "opencc-cm"
    install = subprocess.run([str(python), "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
                              str(tmp_path / "contract"), str(tmp_path / "client")], capture_output=True, text=True,
                             timeout=900)
    assert install.returncode == 0, install.stderr[-3000:]
    probe = ("import importlib.util as u, opencc_cm_client as c; from opencc_cm_client import ClassifierClient, "
             "AsyncClassifierClient, results_table; "
             "print([m for m in ('torch', 'opencc_cm_serving', 'opencc_cm_export', 'transformers') if u.find_spec(m)])")
    run = subprocess.run([str(python), "-c", probe], capture_output=True, text=True, cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "[]"  # none of the heavy or server-side packages came along
    cli = subprocess.run([str(opencc_cm), "check", "--help"], capture_output=True, text=True)
    assert cli.returncode == 0 and "--tokenizer" in cli.stdout
