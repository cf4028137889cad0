"""The OpenCC-compatible HTTP service's manifests (fleet/kubernetes/opencc-http): rendered
offline with ``kubectl kustomize``, every object valid for the Kubernetes versions we support
(strict), and wired to what really runs: the container's arguments parse with the service's
own parser, its pipeline YAML loads strictly, it dials the Triton headless Service, its probes
hit routes the app has, and its image installs the command and pins every dependency."""
from __future__ import annotations

import subprocess
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml

from fleet_support import FLEET, KUBECTL, ROOT, container, one
from test_fleet_images import copies, instructions, pins, pip_installs, project, requirement_name
from test_fleet_manifests import KUBERNETES_VERSIONS, POD_MONITOR_SCHEMA

KUSTOMIZATION = FLEET / "kubernetes" / "opencc-http"


@pytest.fixture(scope="module")
def objects() -> list[dict]:
    done = subprocess.run([KUBECTL, "kustomize", str(KUSTOMIZATION)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


@pytest.fixture(scope="module")
def triton_objects() -> list[dict]:
    done = subprocess.run([KUBECTL, "kustomize", str(FLEET / "kubernetes" / "overlays" / "cpu")],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return [doc for doc in yaml.safe_load_all(done.stdout) if doc]


def arguments(objects, tmp_path: Path):
    """The container and its arguments parsed by the service's parser; the CA file the parser
    opens is made under ``tmp_path`` and its path mapped back to the pod's."""
    from opencc_cm_http.cli import build_parser

    c = container(one(objects, "Deployment"), "opencc-http")
    assert c["command"] == ["opencc-cm", "serve-http"]
    flag = "--root-certificates="
    [pod_ca] = [a[len(flag):] for a in c["args"] if a.startswith(flag)]
    local_ca = tmp_path / "ca.crt"
    local_ca.write_text("PEM")
    args = build_parser().parse_args([flag + str(local_ca) if a.startswith(flag) else a for a in c["args"]])
    assert args.root_certificates == str(local_ca)
    args.root_certificates = pod_ca
    return c, args


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates(objects, version):
    kinds = sorted(o["kind"] for o in objects)
    assert kinds == sorted(["ConfigMap", "Deployment", "Service", "PodDisruptionBudget", "PodMonitor", "NetworkPolicy"])
    for obj in objects:
        if obj["kind"] == "PodMonitor":
            jsonschema.validate(obj, POD_MONITOR_SCHEMA)
        else:
            kubernetes_validate.validate(obj, version, strict=True)


def test_the_container_runs_the_service_on_its_pipeline(objects, triton_objects, tmp_path):
    from opencc_cm_http import create_app, load_config

    c, args = arguments(objects, tmp_path)
    spec = one(objects, "Deployment")["spec"]["template"]["spec"]
    mounts = {m["mountPath"]: m for m in c["volumeMounts"]}
    volumes = {v["name"]: v for v in spec["volumes"]}
    # --config is the generated ConfigMap's file, and it loads strictly
    folder = str(Path(args.config).parent)
    config_map = one(objects, "ConfigMap")
    assert volumes[mounts[folder]["name"]]["configMap"]["name"] == config_map["metadata"]["name"]
    (tmp_path / "config.yaml").write_text(config_map["data"][Path(args.config).name])
    config = load_config(tmp_path / "config.yaml")
    # it dials every replica behind Triton's headless Service, over TLS with the fleet's CA
    headless = one(triton_objects, "Service", "opencc-cm-headless")
    grpc_port = next(p["port"] for p in headless["spec"]["ports"] if p["name"] == "grpc")
    assert args.url == f"dns:///{headless['metadata']['name']}:{grpc_port}"
    ca_folder = str(Path(args.root_certificates).parent)
    assert args.ssl and volumes[mounts[ca_folder]["name"]]["secret"]["secretName"] == "opencc-cm-tls"
    # listens on the declared port, which the Service targets; probes hit routes the app has
    assert args.host == "0.0.0.0" and {p["name"]: p["containerPort"] for p in c["ports"]} == {"http": args.port}
    service = one(objects, "Service")
    assert [(p["targetPort"], p["port"]) for p in service["spec"]["ports"]] == [("http", 8080)]
    labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    for selector in (service["spec"]["selector"], one(objects, "PodMonitor")["spec"]["selector"]["matchLabels"],
                     one(objects, "PodDisruptionBudget")["spec"]["selector"]["matchLabels"]):
        assert selector.items() <= labels.items()
    routes = create_app(config, "127.0.0.1:1").paths
    assert {c["readinessProbe"]["httpGet"]["path"], c["livenessProbe"]["httpGet"]["path"], "/check", "/metrics"} <= routes
    assert (c["readinessProbe"]["httpGet"]["path"], c["livenessProbe"]["httpGet"]["path"]) == ("/health", "/live")
    assert c["securityContext"]["readOnlyRootFilesystem"] is True and spec["securityContext"]["runAsNonRoot"] is True


def test_network_policies_let_the_service_reach_triton(objects, triton_objects, tmp_path):
    _, args = arguments(objects, tmp_path)
    mine = one(objects, "NetworkPolicy")
    triton_pods = one(triton_objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
    to_triton = [r for r in mine["spec"]["egress"] if "to" in r]
    assert any(peer["podSelector"]["matchLabels"].items() <= triton_pods.items() and
               [p["port"] for p in rule["ports"]] == [int(args.url.rsplit(":", 1)[1])]
               for rule in to_triton for peer in rule["to"])
    theirs = one(triton_objects, "NetworkPolicy")
    grpc_rule = next(r for r in theirs["spec"]["ingress"] if [p["port"] for p in r["ports"]] == ["grpc"])
    assert {"podSelector": {}} in grpc_rule["from"], "Triton admits the pods of its namespace"
    assert [[p["port"] for p in r["ports"]] for r in mine["spec"]["ingress"]] == [["http"]]


def test_the_image_installs_the_command_and_pins_every_dependency():
    steps = instructions(FLEET / "images" / "Dockerfile.http")
    assert [rest for word, rest in steps if word == "FROM"] == ["python:3.11-slim-bookworm"]
    copied = copies(steps)
    [argv] = pip_installs(steps)
    assert "--no-deps" not in argv
    assert sorted(copied[a] for a in argv if a.startswith("/opt/opencc/src/")) == ["client", "contract", "http_service"]
    constraints = pins(ROOT / copied[argv[argv.index("--constraint") + 1]])
    wanted = {requirement_name(r) for p in ("contract", "client", "http_service") for r in project(p)["dependencies"]}
    wanted -= {"opencc-cm-client", "opencc-cm-contract"}
    assert wanted <= set(constraints), wanted - set(constraints)
    lock = pins(ROOT / "requirements.lock")
    assert {n: (constraints[n], lock[n]) for n in set(lock) & set(constraints) if constraints[n] != lock[n]} == {}
    # `opencc-cm` is the client's console script, and serve-http is one of its commands
    assert project("client")["scripts"]["opencc-cm"] == "opencc_cm_client.cli:main"
    assert [rest for word, rest in steps if word == "USER"][-1].split(":")[0] == "1000"
