"""OpenCC's HTTP API (``POST /check``, ``/health``, ``/config``) served from the opencc-cm
classifiers on Triton: ``opencc-cm serve-http`` (see :mod:`.cli`), or :func:`create_app` for an
ASGI app of your own server."""
from .app import create_app
from .config import ConfigError, ServiceConfig, load_config, parse_config

__all__ = ["create_app", "ConfigError", "ServiceConfig", "load_config", "parse_config"]
