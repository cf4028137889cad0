"""Each of the project's packages declares every distribution it imports (directly, not through
another package's dependencies), and the client stays installable without torch."""
from __future__ import annotations

import ast
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest
from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[2]
PACKAGES = {"contract": "opencc_cm_contract", "client": "opencc_cm_client", "serving": "opencc_cm_serving",
            "export": "opencc_cm_export", "benchmarks": "opencc_cm_benchmarks", "jobs": "opencc_cm_jobs",
            "http_service": "opencc_cm_http"}
PROVIDED_BY_THE_SERVER = {"triton_python_backend_utils"}  # the Python backend injects it into model.py's stub
ALIASES = {"google": "protobuf",  # namespace package: google.protobuf comes from protobuf
           "fla": "fla_core"}  # fla-core (optional, CUDA only) is imported as fla


def imported_modules(folder: Path) -> set[str]:
    found = set()
    for path in folder.rglob("*.py"):
        if path.name.endswith("_pb2.py"):
            found.add("google")
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name.split(".")[0] for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                found.add(node.module.split(".")[0])
    return found - set(sys.stdlib_module_names) - {"__future__"}


def declared(project: str) -> set[str]:
    meta = tomllib.loads((ROOT / project / "pyproject.toml").read_text())["project"]
    requirements = list(meta.get("dependencies", []))
    for extra in meta.get("optional-dependencies", {}).values():
        requirements += extra
    return {metadata_name(Requirement(r).name) for r in requirements}


def metadata_name(name: str) -> str:
    return name.lower().replace("_", "-")


@pytest.mark.parametrize("project", sorted(PACKAGES))
def test_every_import_is_a_declared_dependency(project):
    distributions = metadata.packages_distributions()
    own = PACKAGES[project]
    wanted = {}
    for module in imported_modules(ROOT / project / own) - {own} - PROVIDED_BY_THE_SERVER:
        module = ALIASES.get(module, module)
        if module in PACKAGES.values():
            wanted[module] = metadata_name(module.replace("opencc_cm_", "opencc-cm-"))
        else:
            dists = distributions.get(module) or [module]
            wanted[module] = metadata_name(dists[0])
    missing = {m: d for m, d in wanted.items() if d not in declared(project)}
    assert not missing, f"{project}/pyproject.toml does not declare what {own} imports: {missing}"


def test_the_client_does_not_need_torch():
    def closure(project, seen):
        for dep in declared(project):
            local = dep.removeprefix("opencc-cm-")
            if dep.startswith("opencc-cm-") and local not in seen:
                seen.add(local)
                closure(local, seen)
        return seen
    projects = closure("client", {"client"})
    assert projects == {"client", "contract"}
    assert all("torch" not in declared(p) for p in projects)
