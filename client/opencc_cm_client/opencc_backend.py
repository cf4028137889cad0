"""A classifier backend for OpenCC's pipeline, served by Triton (no dependency on OpenCC).

OpenCC's stages call a backend with ``classify(texts, model) -> list[ClassScores]`` (one
``labels``/``scores`` pair per text, post-activation probabilities), read ``backend_name``, and
ask ``get_thresholds(model)`` for the calibrated thresholds (without them every label falls
back to 0.5). :class:`TritonClassifierBackend` answers all three from a Triton server, so

    router.set_model_override("content-moderation", classifier=TritonClassifierBackend("127.0.0.1:8001"))

moves an OpenCC pipeline onto the fleet. OpenCC's registry names map to the classifiers of the
server (``deploy --model-prefix``) through ``models``; the thresholds are the server's
calibration (or a published threshold profile), under every name OpenCC may look a label up by
(the model card's name of the 7th label as well as the column name).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Mapping, Sequence

from opencc_cm_contract import DEFAULT_PROFILE, LABEL_ALIASES
from opencc_cm_contract.names import JAILBREAK_MODEL_PREFIX, MODEL_PREFIX

from .options import ConnectionOptions
from .results import Classification

# OpenCC's registry names of its two classifiers -> the model prefix they are deployed with.
OPENCC_CLASSIFIERS: dict[str, str] = {"content-moderation": "", "jailbreak-detector": JAILBREAK_MODEL_PREFIX}
BACKEND_NAME = "triton"
# ``classify`` keyword arguments OpenCC's own backend takes that mean nothing here: the client
# splits a list into the server's batch size itself.
IGNORED_CLASSIFY_KWARGS = ("batch_size",)


@dataclass
class OpenCCScores:
    """Shaped like OpenCC's ``ClassScores``: aligned ``labels`` and ``scores`` of one text."""

    labels: list[str]
    scores: list[float]

    def as_dict(self) -> dict[str, float]:
        return dict(zip(self.labels, self.scores))

    def top(self) -> tuple[str, float]:
        best = max(range(len(self.scores)), key=self.scores.__getitem__)
        return self.labels[best], self.scores[best]


def opencc_scores(result: Classification) -> OpenCCScores:
    return OpenCCScores([r.label for r in result.labels], [float(r.score) for r in result.labels])


def opencc_thresholds(labels: Sequence[str], thresholds: Sequence[float]) -> dict[str, float]:
    """``{label: threshold}`` with each label also under every alias of it (LABEL_ALIASES), so a
    lookup by either name of the 7th label finds the calibrated value, never OpenCC's 0.5."""
    mapping = {label: float(t) for label, t in zip(labels, thresholds)}
    for alias, label in LABEL_ALIASES.items():
        if label in mapping:
            mapping[alias] = mapping[label]
    return mapping


def model_prefix_for(model: str, models: Mapping[str, str]) -> str:
    """The model prefix OpenCC's ``model`` name is served under; a name not in ``models`` is an error."""
    try:
        return models[model]
    except KeyError:
        raise ValueError(f"model {model!r} is not served by this backend (known: {', '.join(sorted(models))})") from None


class TritonClassifierBackend:
    """OpenCC's ``ClassifierBackend`` interface over :class:`ClassifierClient` (one per served model,
    created on first use; safe to share between threads, as OpenCC's server does)."""

    def __init__(self, url: str | Sequence[str] = "127.0.0.1:8001", *, models: Mapping[str, str] | None = None,
                 threshold_profile: str = DEFAULT_PROFILE, options: ConnectionOptions | None = None):
        self.url = url
        self.models = dict(OPENCC_CLASSIFIERS if models is None else models)
        for name, prefix in self.models.items():
            if not isinstance(prefix, str) or not MODEL_PREFIX.fullmatch(prefix):
                raise ValueError(f"models[{name!r}] = {prefix!r}: a model prefix is lowercase letters and digits "
                                 "ending with '_', or empty")
        self.threshold_profile = threshold_profile
        self.options = options
        self._clients: dict[str, object] = {}
        self._lock = threading.Lock()

    @property
    def backend_name(self) -> str:
        return BACKEND_NAME

    def client(self, model: str):
        """The gRPC client of OpenCC's ``model`` (a :class:`ClassifierClient`)."""
        prefix = model_prefix_for(model, self.models)
        with self._lock:
            if model not in self._clients:
                from .client import ClassifierClient

                self._clients[model] = ClassifierClient(self.url, threshold_profile=self.threshold_profile,
                                                        options=self.options, model_prefix=prefix)
            return self._clients[model]

    def classify(self, texts: list[str], model: str, **kwargs) -> list[OpenCCScores]:
        unknown = sorted(set(kwargs) - set(IGNORED_CLASSIFY_KWARGS))
        if unknown:
            raise TypeError(f"classify() got unsupported keyword argument(s): {', '.join(unknown)}")
        return [opencc_scores(r) for r in self.client(model).classify(list(texts))]

    def get_thresholds(self, model: str) -> dict[str, float]:
        """The server's thresholds of the chosen profile, under OpenCC's label names."""
        info = self.client(model).server_info()
        return opencc_thresholds(info.labels, info.thresholds(self.threshold_profile))

    def close(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
