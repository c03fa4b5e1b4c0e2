"""What the console reads: the parts of the hub it is built from, passed in (never the ``Hub`` assembly).

The console shows the store's metadata, the coordinators' members and the metrics' counters, checks
sign-ins with the authenticator and bounds its tail reads with the request limits. It gets exactly those.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ..auth import Authenticator
from ..config import HubConfig
from ..coordinators import Coordinators
from ..limits import RequestLimits
from ..metrics import HubMetrics
from ..store.base import Store

__all__ = ["ConsoleParts"]


@dataclass(frozen=True)
class ConsoleParts:
    config: HubConfig
    auth: Authenticator
    limits: RequestLimits
    store: Store
    coordinators: Coordinators
    metrics: HubMetrics
    query: Any = None  # hub/query/handlers.QueryService: the search page (#21)
