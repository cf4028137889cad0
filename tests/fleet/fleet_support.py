"""Helpers shared by the fleet tests: rendering overlays, finding objects, mapping pod paths."""
from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
FLEET = ROOT / "fleet"
OVERLAYS = ("cpu", "h100")
KUBECTL = shutil.which("kubectl") or "/usr/bin/kubectl"

sys.path.insert(0, str(ROOT / "tests" / "serving"))  # toy_bundle, serving_calls
sys.path.insert(0, str(FLEET / "images"))             # model_repository_archive


def render(overlay: str, root: Path = FLEET) -> list[dict]:
    """``kubectl kustomize`` of an overlay (offline), as a list of objects."""
    done = subprocess.run([KUBECTL, "kustomize", str(root / "kubernetes" / "overlays" / overlay)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, f"kubectl kustomize {overlay}: {done.stderr}"
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def one(objects: list[dict], kind: str, name: str | None = None) -> dict:
    found = [o for o in objects if o["kind"] == kind and (name is None or o["metadata"]["name"] == name)]
    assert len(found) == 1, f"expected one {kind} {name or ''}, found {len(found)}"
    return found[0]


def container(deployment: dict, name: str, init: bool = False) -> dict:
    key = "initContainers" if init else "containers"
    return next(c for c in deployment["spec"]["template"]["spec"][key] if c["name"] == name)


class PathMap:
    """Maps the pod's paths and ports in a manifest's command line to this machine."""

    def __init__(self, paths: dict[str, Path], ports: dict[int, int]):
        self.paths, self.ports = paths, ports

    def arg(self, text: str) -> str:
        if text.startswith(str(Path(__file__).resolve().parents[2])):  # already a path of this checkout
            return text
        for pod_path, local in self.paths.items():  # one path per argument, mapped once
            if text == pod_path or text.startswith(pod_path + "/"):
                text = str(local) + text[len(pod_path):]
                break
            if "=" + pod_path + "/" in text or text.endswith("=" + pod_path):
                text = text.replace("=" + pod_path, "=" + str(local), 1)
                break
        for pod_port, port in self.ports.items():
            text = text.replace(f"127.0.0.1:{pod_port}", f"127.0.0.1:{port}")
            if text.endswith(f"-port={pod_port}"):
                text = text[: -len(str(pod_port))] + str(port)
        return text

    def command(self, argv: list[str]) -> list[str]:
        """``python3`` -> this interpreter; ``tini --`` dropped (the image's PID 1, not here)."""
        argv = list(argv)
        if argv[:2] == ["/usr/bin/tini", "--"]:
            argv = argv[2:]
        program = sys.executable if argv[0] in ("python3", "python") else self.arg(argv[0])
        return [program] + [self.arg(a) for a in argv[1:]]  # this interpreter's own path is never remapped
