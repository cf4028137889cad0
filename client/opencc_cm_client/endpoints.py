"""Where the client connects: one server, several replicas, or a DNS name with many addresses.

gRPC does the balancing (no hand-written balancer): the client opens one channel whose target
lists every replica and whose service config picks the ``round_robin`` policy. Each replica
gets its own subchannel; a replica that goes away leaves the rotation when its connection
fails (calls that were in flight on it fail UNAVAILABLE and the client's retry sends them to
another replica), and rejoins once it accepts connections again.

- ``"host:port"``: one server (``round_robin`` over its addresses, as ``pick_first`` would).
- ``"dns:///name:port"``: every address the name resolves to (a Kubernetes headless Service);
  gRPC re-resolves when a connection drops.
- ``["127.0.0.1:8001", "10.0.0.7:8001"]``: a static list of IP literals, as gRPC's
  ``ipv4:``/``ipv6:`` target (gRPC has no static resolver for a list of host names: use DNS).
"""
from __future__ import annotations

import ipaddress
import json
from typing import Sequence

LOAD_BALANCING_POLICIES = ("round_robin", "pick_first")


class EndpointError(ValueError):
    """A target the client cannot turn into a gRPC channel."""


def _split_host_port(endpoint: str) -> tuple[str, str]:
    host, sep, port = endpoint.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise EndpointError(f"endpoint {endpoint!r}: expected HOST:PORT")
    return host.strip("[]"), port


def grpc_target(endpoints: str | Sequence[str]) -> str:
    """The gRPC channel target for one endpoint, a ``dns:///`` name, or a list of IP endpoints."""
    if isinstance(endpoints, str):
        if not endpoints or "," in endpoints and not endpoints.startswith(("ipv4:", "ipv6:")):
            raise EndpointError(f"endpoint {endpoints!r}: pass several endpoints as a list, not a comma string")
        return endpoints
    endpoints = list(endpoints)
    if not endpoints:
        raise EndpointError("no endpoint given")
    if len(endpoints) == 1:
        return grpc_target(endpoints[0])
    families, parts = set(), []
    for endpoint in endpoints:
        host, port = _split_host_port(endpoint)
        try:
            address = ipaddress.ip_address(host)
        except ValueError:
            raise EndpointError(f"endpoint {endpoint!r}: a list of endpoints must use IP addresses; for host names "
                                "use one 'dns:///NAME:PORT' target (every address of the name is balanced)") from None
        families.add(address.version)
        parts.append(f"[{host}]:{port}" if address.version == 6 else f"{host}:{port}")
    if len(families) > 1:
        raise EndpointError("endpoints mix IPv4 and IPv6 addresses; use one family or a dns:/// target")
    return f"ipv{families.pop()}:" + ",".join(parts)


def service_config(policy: str) -> str:
    """gRPC service config choosing the load-balancing policy."""
    if policy not in LOAD_BALANCING_POLICIES:
        raise EndpointError(f"load balancing {policy!r}: one of {LOAD_BALANCING_POLICIES}")
    return json.dumps({"loadBalancingConfig": [{policy: {}}]})
