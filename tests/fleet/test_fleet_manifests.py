"""Every overlay renders offline and every object validates against the Kubernetes schemas
(kubernetes-validate, strict: unknown fields are errors) for the oldest and newest Kubernetes
versions we support; the PodMonitor (a CRD, not in those schemas) is checked structurally
against the fields of the Prometheus Operator's CRD that we use. Then what the issue asks of
the objects, read from the rendered output."""
from __future__ import annotations

import copy
import re

import jsonschema
import kubernetes_validate
import pytest

from fleet_support import container, one

KUBERNETES_VERSIONS = ("1.30.0", "1.37.0")  # 1.30: first with the preStop `sleep` action on by default
CRD_KINDS = {"PodMonitor"}
EXPECTED_KINDS = {"ServiceAccount", "ConfigMap", "Service", "Deployment", "HorizontalPodAutoscaler",
                  "PodDisruptionBudget", "PodMonitor", "NetworkPolicy"}
DURATION = r"^(0|(([0-9]+)y)?(([0-9]+)w)?(([0-9]+)d)?(([0-9]+)h)?(([0-9]+)m)?(([0-9]+)s)?(([0-9]+)ms)?)$"
# The PodMonitor fields we use, with the types and patterns of monitoring.coreos.com/v1 (strict).
POD_MONITOR_SCHEMA = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PodMonitor"},
        "metadata": {"type": "object", "required": ["name"],
                     "properties": {"name": {"type": "string"}, "labels": {"type": "object"}}},
        "spec": {
            "type": "object", "required": ["selector", "podMetricsEndpoints"], "additionalProperties": False,
            "properties": {
                "selector": {"type": "object", "additionalProperties": False, "required": ["matchLabels"],
                             "properties": {"matchLabels": {"type": "object", "minProperties": 1,
                                                            "additionalProperties": {"type": "string"}}}},
                "podMetricsEndpoints": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "required": ["port"], "additionalProperties": False,
                    "properties": {"port": {"type": "string"}, "path": {"type": "string", "pattern": "^/"},
                                   "scheme": {"enum": ["http", "https"]},
                                   "interval": {"type": "string", "pattern": DURATION},
                                   "scrapeTimeout": {"type": "string", "pattern": DURATION}}}},
            },
        },
    },
}


def test_every_overlay_renders_the_expected_objects(rendered):
    for overlay, objects in rendered.items():
        kinds = {o["kind"] for o in objects}
        assert kinds == EXPECTED_KINDS, (overlay, kinds ^ EXPECTED_KINDS)
        assert len([o for o in objects if o["kind"] == "Service"]) == 2


@pytest.mark.parametrize("version", KUBERNETES_VERSIONS)
def test_every_object_validates_against_the_kubernetes_schemas(rendered, version):
    checked = 0
    for overlay, objects in rendered.items():
        for obj in objects:
            if obj["kind"] in CRD_KINDS:
                with pytest.raises(kubernetes_validate.SchemaNotFoundError):  # so we check it ourselves
                    kubernetes_validate.validate(obj, version, strict=True)
                jsonschema.validate(obj, POD_MONITOR_SCHEMA)
            else:
                kubernetes_validate.validate(obj, version, strict=True)
            checked += 1
    assert checked == sum(len(objects) for objects in rendered.values()) == 18  # 9 objects per overlay


def test_the_validators_reject_broken_objects(rendered):
    """The checks above can fail: a misspelt field, a wrong type, a broken PodMonitor."""
    deployment = one(rendered["h100"], "Deployment")
    typo = copy.deepcopy(deployment)
    typo["spec"]["template"]["spec"]["containers"][0]["readinessProbes"] = {}
    wrong_type = copy.deepcopy(deployment)
    wrong_type["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] = "sixty"
    for bad in (typo, wrong_type):
        with pytest.raises(kubernetes_validate.ValidationError):
            kubernetes_validate.validate(bad, KUBERNETES_VERSIONS[-1], strict=True)
    monitor = copy.deepcopy(one(rendered["h100"], "PodMonitor"))
    monitor["spec"]["podMetricsEndpoints"][0]["interval"] = "15 seconds"
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(monitor, POD_MONITOR_SCHEMA)


def _pod_spec(objects):
    return one(objects, "Deployment")["spec"]["template"]["spec"]


def test_deployment_pod_spec(rendered):
    for overlay, objects in rendered.items():
        deployment = one(objects, "Deployment")
        spec = _pod_spec(objects)
        triton = container(deployment, "triton")
        labels = deployment["spec"]["template"]["metadata"]["labels"]
        assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert "replicas" not in deployment["spec"], "the HPA owns the replica count"
        # named ports 8000/8001/8002
        assert {p["name"]: p["containerPort"] for p in triton["ports"]} == {"http": 8000, "grpc": 8001, "metrics": 8002}
        # non-root, read-only root filesystem, nothing extra
        assert spec["securityContext"]["runAsNonRoot"] is True and spec["securityContext"]["runAsUser"] != 0
        for c in spec["containers"] + spec["initContainers"]:
            sc = c["securityContext"]
            assert sc["readOnlyRootFilesystem"] is True and sc["allowPrivilegeEscalation"] is False
            assert sc["capabilities"]["drop"] == ["ALL"]
            assert c["resources"]["requests"]["memory"] and c["resources"]["limits"]["memory"]
            assert c["image"].startswith("registry.") and ":" in c["image"], c["image"]
        # /dev/shm is a memory emptyDir; every writable path is an emptyDir; the repository is read-only
        volumes = {v["name"]: v for v in spec["volumes"]}
        mounts = {m["mountPath"]: m for m in triton["volumeMounts"]}
        assert volumes[mounts["/dev/shm"]["name"]]["emptyDir"]["medium"] == "Memory"
        assert "emptyDir" in volumes[mounts["/tmp"]["name"]]
        assert mounts["/models"]["readOnly"] is True
        for path in ("/etc/opencc-cm/tls", "/etc/opencc-cm/admin"):
            assert mounts[path]["readOnly"] is True and "secret" in volumes[mounts[path]["name"]]
        # the launcher runs the production configuration
        args = triton["args"]
        assert "--production" in args and "--address=0.0.0.0" in args
        assert not any(a.startswith("--allow-http") for a in args)
        assert any(a.startswith("--canary-interval=") and float(a.split("=")[1]) > 0 for a in args)
        # GPU only on h100
        gpu = triton["resources"]["limits"].get("nvidia.com/gpu")
        assert (gpu == 1) if overlay == "h100" else (gpu is None), (overlay, gpu)
        if overlay == "h100":
            assert triton["resources"]["requests"]["nvidia.com/gpu"] == 1
            assert any(t["key"] == "nvidia.com/gpu" for t in spec["tolerations"])


def test_probes_run_the_tls_canary_on_loopback(rendered):
    for overlay, objects in rendered.items():
        triton = container(one(objects, "Deployment"), "triton")
        for kind in ("startupProbe", "readinessProbe", "livenessProbe"):
            probe = triton[kind]
            argv = probe["exec"]["command"]
            assert argv[:5] == ["python3", "-m", "opencc_cm_serving.production", "canary", "--url"], argv
            assert argv[5] == "127.0.0.1:8001" and "--ca" in argv, argv
            assert argv[argv.index("--ca") + 1].startswith("/etc/opencc-cm/tls/")
            timeout = float(argv[argv.index("--timeout") + 1])
            assert timeout < probe["timeoutSeconds"], f"{kind}: canary timeout must end before the probe's"
        assert triton["startupProbe"]["periodSeconds"] * triton["startupProbe"]["failureThreshold"] >= 600


def test_graceful_termination_budget(rendered):
    """preStop sleep + the launcher's stop (SIGTERM, tritonserver's --exit-timeout-secs=10, then
    SIGKILL after 20 s: opencc_cm_serving.launch) must fit in terminationGracePeriodSeconds."""
    import inspect

    from opencc_cm_serving import launch

    source = inspect.getsource(launch)
    exit_timeout = int(re.search(r'"--exit-timeout-secs=(\d+)"', source).group(1))
    kill_after = float(re.search(r"def stop\(self, timeout: float = ([0-9.]+)\)", source).group(1))
    assert exit_timeout < kill_after
    for overlay, objects in rendered.items():
        spec = _pod_spec(objects)
        triton = container(one(objects, "Deployment"), "triton")
        pre_stop = triton["lifecycle"]["preStop"]["sleep"]["seconds"]
        assert pre_stop >= 5, "time for the endpoints to drop the pod before SIGTERM"
        assert pre_stop + kill_after + 5 <= spec["terminationGracePeriodSeconds"], overlay
        assert triton["command"][:2] == ["/usr/bin/tini", "--"], "PID 1 forwards SIGTERM and reaps stubs"


def test_services_select_the_pods(rendered):
    for overlay, objects in rendered.items():
        labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
        services = {s["metadata"]["name"]: s for s in objects if s["kind"] == "Service"}
        assert services["opencc-cm-headless"]["spec"]["clusterIP"] == "None"
        assert services["opencc-cm"]["spec"].get("clusterIP") != "None"
        for service in services.values():
            assert service["spec"]["selector"].items() <= labels.items()
            assert [(p["name"], p["port"], p["targetPort"]) for p in service["spec"]["ports"]] == [("grpc", 8001, "grpc")]
        pdb = one(objects, "PodDisruptionBudget")
        assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items() and pdb["spec"]["maxUnavailable"] == 1
        monitor = one(objects, "PodMonitor")
        assert monitor["spec"]["selector"]["matchLabels"].items() <= labels.items()
        assert [e["port"] for e in monitor["spec"]["podMetricsEndpoints"]] == ["metrics"]


def test_hpa_targets_the_deployment_on_pod_metrics(rendered):
    for overlay, objects in rendered.items():
        hpa = one(objects, "HorizontalPodAutoscaler")
        deployment = one(objects, "Deployment")
        assert hpa["spec"]["scaleTargetRef"] == {"apiVersion": "apps/v1", "kind": "Deployment",
                                                 "name": deployment["metadata"]["name"]}
        assert 2 <= hpa["spec"]["minReplicas"] < hpa["spec"]["maxReplicas"]
        assert [m["type"] for m in hpa["spec"]["metrics"]] == ["Pods", "Pods"]
        assert hpa["spec"]["behavior"]["scaleDown"]["stabilizationWindowSeconds"] >= 60
    cpu, h100 = (one(rendered[o], "HorizontalPodAutoscaler") for o in ("cpu", "h100"))
    assert cpu["spec"]["metrics"] != h100["spec"]["metrics"], "overlays set their own targets"


def test_network_policy(rendered):
    for overlay, objects in rendered.items():
        policy = one(objects, "NetworkPolicy")
        labels = one(objects, "Deployment")["spec"]["template"]["metadata"]["labels"]
        assert policy["spec"]["podSelector"]["matchLabels"].items() <= labels.items()
        rules = {tuple(p["port"] for p in rule["ports"]): rule["from"] for rule in policy["spec"]["ingress"]}
        assert set(rules) == {("grpc",), ("metrics",)}, "nothing else (HTTP 8000) is open"
        assert rules[("metrics",)] == [{"namespaceSelector": {"matchLabels": {
            "kubernetes.io/metadata.name": "monitoring"}}}]
        assert all("namespaceSelector" in peer or peer == {"podSelector": {}} for peer in rules[("grpc",)])


def test_model_repository_comes_from_a_versioned_config_map(rendered):
    """The init container reads URL + sha256 from a ConfigMap whose name carries a content hash:
    a new checkpoint (new URL/sha256) renames it and so rolls the Deployment."""
    names = {}
    for overlay, objects in rendered.items():
        init = container(one(objects, "Deployment"), "fetch-model-repository", init=True)
        name = init["envFrom"][0]["configMapRef"]["name"]
        config_map = one(objects, "ConfigMap", name)
        assert re.fullmatch(r"opencc-cm-model-repository-[a-z0-9]{10}", name), name
        assert config_map["data"]["MODEL_REPOSITORY_URL"].startswith("https://")
        names[overlay] = name
    assert names["cpu"] != names["h100"], "each overlay names its own repository (python-ort / onnxruntime)"


def test_a_new_checkpoint_rolls_the_deployment(tmp_path):
    """Rollout mechanics, rendered: changing the overlay's archive URL + sha256 (what a new
    checkpoint is) renames the ConfigMap, and the Deployment's pod template follows it, so
    `kubectl apply -k` starts a rolling update; the rest of the pod template is unchanged."""
    import shutil

    from fleet_support import FLEET, render

    copy_root = tmp_path / "fleet"
    shutil.copytree(FLEET / "kubernetes", copy_root / "kubernetes")
    kustomization = copy_root / "kubernetes" / "overlays" / "h100" / "kustomization.yaml"
    text = kustomization.read_text()
    old_url = re.search(r"MODEL_REPOSITORY_URL=(\S+)", text).group(1)
    text = text.replace(old_url, old_url.replace("-v1-", "-v2-"))
    text = re.sub(r"MODEL_REPOSITORY_SHA256=\w+", "MODEL_REPOSITORY_SHA256=" + "ab" * 32, text)
    kustomization.write_text(text)

    before = render("h100")
    after = render("h100", root=copy_root)
    old_dep, new_dep = one(before, "Deployment"), one(after, "Deployment")
    old_ref = container(old_dep, "fetch-model-repository", init=True)["envFrom"][0]["configMapRef"]["name"]
    new_ref = container(new_dep, "fetch-model-repository", init=True)["envFrom"][0]["configMapRef"]["name"]
    assert old_ref != new_ref and one(after, "ConfigMap", new_ref)["data"]["MODEL_REPOSITORY_SHA256"] == "ab" * 32
    old_dep["spec"]["template"]["spec"]["initContainers"][0]["envFrom"][0]["configMapRef"]["name"] = new_ref
    assert old_dep == new_dep, "only the repository reference changed"
