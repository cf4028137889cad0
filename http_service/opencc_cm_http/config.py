"""OpenCC's pipeline YAML, read strictly, mapped onto the classifiers one Triton server serves.

OpenCC's keys: ``jailbreak_detector``, ``rephraser``, ``content_moderation``, ``frontier_judge``
(a registry name each, null = stage off; a missing key takes OpenCC's default: both classifiers
and the rephraser on, the frontier judge off), ``default_action`` (``block`` | ``annotate``),
``jailbreak_threshold``, ``harm_threshold`` (overrides of the calibrated thresholds), ``host``,
``port``. One key of ours, which OpenCC ignores, so one file serves both:

    triton:
      jailbreak_detector: {model_prefix: jailbreak_, threshold_profile: default}
      content_moderation: {model_prefix: "", threshold_profile: default}

(each field optional; the prefix defaults to the one OpenCC's model name is deployed with,
``opencc_backend.OPENCC_CLASSIFIERS``). Where OpenCC is lenient this is strict: an unknown key,
a key given twice, a generative stage (rephraser, frontier judge: this service runs classifiers
only), a model name it cannot map, a value of the wrong type, or a configuration that runs no
classifier at all is a :class:`ConfigError` naming the file and the key.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from opencc_cm_client.opencc_backend import OPENCC_CLASSIFIERS
from opencc_cm_contract import DEFAULT_PROFILE, ThresholdMappingError, threshold_value
from opencc_cm_contract.names import MODEL_PREFIX

JAILBREAK_STAGE, REPHRASER_STAGE, CM_STAGE, JUDGE_STAGE = ("jailbreak_detector", "rephraser", "content_moderation",
                                                           "frontier_judge")
CLASSIFIER_STAGES = (JAILBREAK_STAGE, CM_STAGE)
GENERATIVE_STAGES = (REPHRASER_STAGE, JUDGE_STAGE)
# OpenCC's value of a stage key that is missing from the file.
OPENCC_STAGE_DEFAULTS = {JAILBREAK_STAGE: "jailbreak-detector", REPHRASER_STAGE: "rephraser",
                         CM_STAGE: "content-moderation", JUDGE_STAGE: None}
THRESHOLD_KEYS = {JAILBREAK_STAGE: "jailbreak_threshold", CM_STAGE: "harm_threshold"}
ACTIONS = ("block", "annotate")  # what a terminal flag does (and every failure)
TRITON_KEY = "triton"
TRITON_STAGE_KEYS = ("model_prefix", "threshold_profile")
KNOWN_KEYS = (*OPENCC_STAGE_DEFAULTS, "default_action", *THRESHOLD_KEYS.values(), "host", "port", TRITON_KEY)
DEFAULT_HOST, DEFAULT_PORT = "127.0.0.1", 8000


class ConfigError(ValueError):
    """A configuration this service refuses to run; the message names the file and the key."""


@dataclass(frozen=True)
class StageConfig:
    """One classifier stage: OpenCC's model name, which classifier of the server runs it, the
    threshold profile it asks for, and the global threshold override (None = the server's)."""

    stage: str
    model: str
    model_prefix: str
    threshold_profile: str = DEFAULT_PROFILE
    threshold: float | None = None


@dataclass(frozen=True)
class ServiceConfig:
    jailbreak_detector: StageConfig | None
    content_moderation: StageConfig | None
    default_action: str = "block"
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT

    @property
    def stages(self) -> tuple[StageConfig, ...]:
        return tuple(s for s in (self.jailbreak_detector, self.content_moderation) if s is not None)

    def opencc_view(self) -> dict:
        """What OpenCC's ``GET /config`` answers."""
        return {JAILBREAK_STAGE: self.jailbreak_detector.model if self.jailbreak_detector else None,
                REPHRASER_STAGE: None,
                CM_STAGE: self.content_moderation.model if self.content_moderation else None,
                JUDGE_STAGE: None,
                "default_action": self.default_action}


def _fail(source: str, key: str, problem: str):
    raise ConfigError(f"{source}: {key}: {problem}")


def _stage(source: str, data: dict, stage: str, triton: dict) -> StageConfig | None:
    model = data.get(stage, OPENCC_STAGE_DEFAULTS[stage])
    overrides = triton.get(stage)
    if model is None:
        if overrides is not None:
            _fail(source, f"{TRITON_KEY}.{stage}", "settings for a stage that is off (null)")
        if data.get(THRESHOLD_KEYS[stage]) is not None:
            _fail(source, THRESHOLD_KEYS[stage], f"a threshold for {stage}, which is off (null)")
        return None
    if not isinstance(model, str) or not model:
        _fail(source, stage, f"expected a model name or null, got {model!r}")
    overrides = {} if overrides is None else overrides
    if not isinstance(overrides, dict):
        _fail(source, f"{TRITON_KEY}.{stage}", f"expected a mapping with {', '.join(TRITON_STAGE_KEYS)}")
    for key in overrides:
        if key not in TRITON_STAGE_KEYS:
            _fail(source, f"{TRITON_KEY}.{stage}.{key}", f"unknown key (known: {', '.join(TRITON_STAGE_KEYS)})")
    if "model_prefix" in overrides:
        prefix = overrides["model_prefix"]
        if not isinstance(prefix, str) or not MODEL_PREFIX.fullmatch(prefix):
            _fail(source, f"{TRITON_KEY}.{stage}.model_prefix",
                  f"{prefix!r}: lowercase letters and digits ending with '_', or \"\" for the default classifier")
    elif model in OPENCC_CLASSIFIERS:
        prefix = OPENCC_CLASSIFIERS[model]
    else:
        _fail(source, stage, f"model {model!r} is not a classifier this service knows "
              f"({', '.join(sorted(OPENCC_CLASSIFIERS))}); name its classifier with {TRITON_KEY}.{stage}.model_prefix")
    profile = overrides.get("threshold_profile", DEFAULT_PROFILE)
    if not isinstance(profile, str) or not profile:
        _fail(source, f"{TRITON_KEY}.{stage}.threshold_profile", f"expected a profile name, got {profile!r}")
    threshold = data.get(THRESHOLD_KEYS[stage])
    if threshold is not None:
        try:
            threshold = threshold_value(threshold, THRESHOLD_KEYS[stage])
        except ThresholdMappingError as exc:
            raise ConfigError(f"{source}: {exc}") from None
    return StageConfig(stage, model, prefix, profile, threshold)


def parse_config(data, source: str = "config") -> ServiceConfig:
    """A :class:`ServiceConfig` from the parsed YAML ``data`` (``None`` = an empty file)."""
    data = {} if data is None else data
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of settings at the top level, got {type(data).__name__}")
    for key in data:
        if key not in KNOWN_KEYS:
            _fail(source, str(key), f"unknown key (known: {', '.join(KNOWN_KEYS)})")
    for stage in GENERATIVE_STAGES:
        model = data.get(stage, OPENCC_STAGE_DEFAULTS[stage])
        if model is not None:
            missing = "" if stage in data else " (OpenCC turns it on when the key is missing)"
            _fail(source, stage, f"{model!r} is a generative stage this service cannot run{missing}; set {stage}: null")
    triton = data.get(TRITON_KEY) or {}
    if not isinstance(triton, dict):
        _fail(source, TRITON_KEY, "expected a mapping of classifier stages")
    for key in triton:
        if key not in CLASSIFIER_STAGES:
            _fail(source, f"{TRITON_KEY}.{key}", f"unknown stage (known: {', '.join(CLASSIFIER_STAGES)})")
    jailbreak, cm = (_stage(source, data, stage, triton) for stage in CLASSIFIER_STAGES)
    if jailbreak is None and cm is None:
        raise ConfigError(f"{source}: {JAILBREAK_STAGE} and {CM_STAGE} are both null: no classifier would run "
                          "and every input would be allowed")
    action = data.get("default_action", "block")
    if action not in ACTIONS:
        _fail(source, "default_action", f"{action!r}: one of {', '.join(ACTIONS)}")
    host = data.get("host", DEFAULT_HOST)
    if not isinstance(host, str) or not host:
        _fail(source, "host", f"expected an address, got {host!r}")
    port = data.get("port", DEFAULT_PORT)
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        _fail(source, "port", f"expected a port number 1-65535, got {port!r}")
    return ServiceConfig(jailbreak, cm, action, host, port)


def load_config(path: str | Path) -> ServiceConfig:
    """Read and check an OpenCC YAML file; every problem is a :class:`ConfigError` naming it."""
    import yaml

    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"{path}: not UTF-8 text (invalid byte at offset {exc.start})") from None
    class StrictLoader(yaml.SafeLoader):
        """A key given twice is an error (PyYAML would keep the last one silently)."""

        def construct_mapping(self, node, deep=False):
            seen = set()
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=deep)
                if key in seen:
                    raise ConfigError(f"{path}: {key}: given twice (line {key_node.start_mark.line + 1})")
                seen.add(key)
            return super().construct_mapping(node, deep)

    try:
        data = yaml.load(text, Loader=StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {' '.join(str(exc).split())}") from None
    return parse_config(data, str(path))
