"""Which project a request is for, from its ``Host`` header (pure).

The SDK sends ``Host: <project>.<endpoint host>`` (never a port) and ``Host: <endpoint host>`` for calls
without a project (ListProject). So: strip any port; if what remains is an IPv4 literal or one of the hub's
configured hostnames, there is no project; if it ends with ``.<IPv4>`` or ``.<hostname>``, the project is
what comes before; otherwise SLS project names have no dots, so the first label is the project.
"""

from __future__ import annotations

import re

__all__ = ["project_from_host"]

_IPV4 = re.compile(r"(?:(?P<project>.+)\.)?(?P<ip>\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3})")


def project_from_host(host: str | None, hostnames: tuple[str, ...] = ("localhost",)) -> str | None:
    if not host:
        return None
    host = host.strip().lower()
    if host.startswith("["):  # IPv6 literal: no project possible
        return None
    host = host.rsplit(":", 1)[0] if ":" in host else host
    host = host.rstrip(".")
    m = _IPV4.fullmatch(host)
    if m:
        return m.group("project")
    for name in hostnames:
        name = name.lower()
        if host == name:
            return None
        if host.endswith("." + name):
            return host[: -len(name) - 1]
    if "." not in host:
        return None
    return host.split(".", 1)[0]
