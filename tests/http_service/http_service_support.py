"""Helpers for the OpenCC-compatible service's tests (a plain module, not a conftest)."""
from __future__ import annotations

import json
import re
import threading
import time
import urllib.error
import urllib.request
from contextlib import contextmanager

import yaml

from opencc_cm_contract.names import JAILBREAK_MODEL_PREFIX as JAILBREAK  # noqa: F401 - for the tests
from opencc_cm_http import parse_config

NO_GENERATIVE = {"rephraser": None, "frontier_judge": None}
CM_ONLY = {"jailbreak_detector": None, "content_moderation": "content-moderation", **NO_GENERATIVE}
JB_ONLY = {"jailbreak_detector": "jailbreak-detector", "content_moderation": None, **NO_GENERATIVE}
LOCAL = {"jailbreak_detector": "jailbreak-detector", "content_moderation": "content-moderation", **NO_GENERATIVE}


def config(base: dict, jb_profile: str | None = None, cm_profile: str | None = None, **extra):
    """A ServiceConfig from OpenCC keys, with per-stage threshold profiles (our ``triton`` key)."""
    data = {**base, **extra}
    triton = {}
    if jb_profile:
        triton["jailbreak_detector"] = {"threshold_profile": jb_profile}
    if cm_profile:
        triton["content_moderation"] = {"threshold_profile": cm_profile}
    if triton:
        data["triton"] = triton
    return parse_config(yaml.safe_load(yaml.safe_dump(data)), "test.yaml")


@contextmanager
def serving(app, port: int):
    """The app on a real uvicorn server on 127.0.0.1:``port``, in a thread."""
    import uvicorn

    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", access_log=False,
                                           lifespan="on"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "uvicorn did not start"
        time.sleep(0.05)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(30)


def post_check(base_url: str, body: dict, timeout: float = 120) -> tuple[int, dict]:
    """POST /check as BELLS-O does (urllib; JSON body); the status and the parsed JSON answer."""
    request = urllib.request.Request(f"{base_url}/check", data=json.dumps(body).encode(),
                                     headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def metric(base_url: str, name: str) -> float:
    with urllib.request.urlopen(f"{base_url}/metrics", timeout=30) as page:
        text = page.read().decode()
    match = re.search(rf"^{name} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def wait_for(predicate, what: str, limit_s: float = 120.0):
    """Poll until ``predicate()`` holds (a bound against hanging, not a timing assertion)."""
    deadline = time.monotonic() + limit_s
    while not predicate():
        assert time.monotonic() < deadline, f"gave up waiting for {what}"
        time.sleep(0.05)
