"""The image definitions, read statically (no Docker daemon here): base images pinned by tag,
our packages installed WITH their dependencies under a constraints file that pins them, and
every command a manifest runs in a container (probes, entrypoint, init container) installed
in the image that the overlay names."""
from __future__ import annotations

import re
import shlex
import subprocess
import sys
import tomllib

import pytest

from fleet_support import FLEET, OVERLAYS, ROOT, one

IMAGES = FLEET / "images"
DOCKERFILES = {"Dockerfile.ngc": "nvcr.io/nvidia/tritonserver:24.10-py3", "Dockerfile.cpu": "python:3.11-slim-bookworm"}


def instructions(path) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) with continuation lines joined and comments dropped."""
    out, pending = [], ""
    for line in path.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip()
        if pending.endswith("\\"):
            pending = pending[:-1] + " "
            continue
        word, _, rest = pending.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        pending = ""
    return out


def copies(steps) -> dict[str, str]:
    """destination in the image -> source in the build context (the repository root)."""
    out = {}
    for word, rest in steps:
        if word == "COPY":
            src, dest = shlex.split(rest)
            out[dest] = src
    return out


def pip_installs(steps) -> list[list[str]]:
    out = []
    for word, rest in steps:
        if word == "RUN":
            for part in rest.split("&&"):
                argv = shlex.split(part)
                if "pip" in argv and "install" in argv:
                    out.append(argv[argv.index("install") + 1:])
    return out


def requirement_name(spec: str) -> str:
    return re.split(r"[\[<>=!~; ]", spec, maxsplit=1)[0].lower().replace("_", "-")


def pins(path) -> dict[str, str]:
    out = {}
    for line in path.read_text().splitlines():
        line = line.split("#")[0].strip()
        if line:
            name, _, version = line.partition("==")
            assert version and not re.search(r"[<>!~*]", version), f"{path.name}: {line} is not an exact pin"
            out[requirement_name(name)] = version
    return out


def project(folder: str) -> dict:
    return tomllib.loads((ROOT / folder / "pyproject.toml").read_text())["project"]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_base_image_is_pinned_and_packages_install_with_dependencies(name):
    steps = instructions(IMAGES / name)
    froms = [rest for word, rest in steps if word == "FROM"]
    assert froms == [DOCKERFILES[name]], froms
    image, _, tag = froms[0].rpartition(":")
    assert image and tag and tag != "latest" and "$" not in froms[0]
    installs = pip_installs(steps)
    assert installs, "no pip install"
    copied = copies(steps)
    for argv in installs:
        assert "--no-deps" not in argv, "the issue: --no-deps left tritonclient out of the image"
        constraint = argv[argv.index("--constraint") + 1]
        assert (ROOT / copied[constraint]).is_file(), constraint
        targets = [a.split("[")[0] for a in argv if a.startswith("/opt/opencc/src/")]
        assert sorted(copied[t] for t in targets) == ["client", "contract", "serving"], targets
    users = [rest for word, rest in steps if word == "USER"]
    assert users and users[-1].split(":")[0] == "1000", users
    assert steps[-2:][0][0] == "ENTRYPOINT" and "tini" in steps[-2][1]


@pytest.mark.parametrize("name", sorted(DOCKERFILES))
def test_constraints_pin_every_dependency(name):
    """Every requirement of client and serving (and nvidia-pytriton on CPU) is pinned; the
    pins agree with requirements.lock except where the image's Python has no such wheel."""
    steps = instructions(IMAGES / name)
    argv = pip_installs(steps)[0]
    constraints = pins(ROOT / copies(steps)[argv[argv.index("--constraint") + 1]])
    wanted = {requirement_name(r) for p in ("contract", "client", "serving") for r in project(p)["dependencies"]}
    wanted -= {"opencc-cm-client", "opencc-cm-contract"}  # installed from the copied sources
    if any("[server]" in a for a in argv):
        wanted |= {requirement_name(r) for r in project("serving")["optional-dependencies"]["server"]}
    assert wanted <= set(constraints), wanted - set(constraints)
    lock = pins(ROOT / "requirements.lock")
    differ = {n: (constraints[n], lock[n]) for n in set(lock) & set(constraints) if constraints[n] != lock[n]}
    # onnxruntime 1.32.0 has no cp310 wheel; the NGC image (Python 3.10) uses 1.23.2 for the python-ort path only
    assert differ == ({"onnxruntime": ("1.23.2", lock["onnxruntime"])} if name == "Dockerfile.ngc" else {}), differ


def _commands(deployment):
    spec = deployment["spec"]["template"]["spec"]
    for c in spec["initContainers"] + spec["containers"]:
        yield f"{c['name']} command", c["command"]
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            if kind in c:
                yield f"{c['name']} {kind}", c[kind]["exec"]["command"]
        for hook in c.get("lifecycle", {}).values():
            assert set(hook) == {"sleep"}, "a lifecycle exec would need its binary checked too"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_command_a_manifest_runs_is_installed_in_its_image(rendered, overlay):
    deployment = one(rendered[overlay], "Deployment")
    dockerfile = ROOT / deployment["metadata"]["annotations"]["opencc-cm/image-definition"]
    assert dockerfile.name == {"cpu": "Dockerfile.cpu", "h100": "Dockerfile.ngc"}[overlay]
    steps = instructions(dockerfile)
    copied = copies(steps)
    apt = " ".join(rest for word, rest in steps if word == "RUN" and "apt-get install" in rest)
    installed_sources = [copied[a.split("[")[0]] for argv in pip_installs(steps) for a in argv
                         if a.split("[")[0] in copied and not a.endswith(".txt")]
    images = {c["image"] for c in deployment["spec"]["template"]["spec"]["containers"]
              + deployment["spec"]["template"]["spec"]["initContainers"]}
    assert len(images) == 1, "init container and server share the image"
    checked = []
    for where, argv in _commands(deployment):
        if argv[:2] == ["/usr/bin/tini", "--"]:
            assert re.search(r"\btini\b", apt), f"{where}: tini is not installed by {dockerfile.name}"
            argv = argv[2:]
        assert argv[0] == "python3", where
        if argv[1] == "-m":
            module = argv[2]
            package = module.split(".")[0]
            source = next((s for s in installed_sources if (ROOT / s / package).is_dir()), None)
            assert source, f"{where}: {module} is not in a package {dockerfile.name} pip-installs"
            assert (ROOT / source / (module.replace(".", "/") + ".py")).is_file(), module
            help_argv = [sys.executable, "-m", module] + argv[3:4] + ["--help"]
        else:
            script = argv[1]
            assert script in copied and (ROOT / copied[script]).is_file(), f"{where}: {script} is not copied"
            help_argv = [sys.executable, str(ROOT / copied[script]), argv[2], "--help"]
        # the module / script and its subcommand exist and parse (here, from the same sources)
        done = subprocess.run(help_argv, capture_output=True, text=True, timeout=60)
        assert done.returncode == 0 and "usage:" in done.stdout, (where, done.stderr)
        checked.append(where)
    assert len(checked) == 5, checked  # init command, server command, three probes
