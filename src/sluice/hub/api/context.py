"""The parts of the hub a handler may use, passed in explicitly (no handler sees the ``Hub`` assembly)."""

from __future__ import annotations

import itertools
from typing import Any
from concurrent.futures import Executor
from dataclasses import dataclass, field

from ..config import HubConfig
from ..coordinators import Coordinators
from ..longpoll import LongPolls
from ..metrics import HubMetrics
from ..store.base import Store
from ..waits import ShardWaits

__all__ = ["ApiContext"]


@dataclass
class ApiContext:
    config: HubConfig
    store: Store
    coordinators: Coordinators
    polls: LongPolls
    metrics: HubMetrics
    executor: Executor  # the reader threads: disk reads and compression, off the event loop
    rr: "itertools.count[int]" = field(default_factory=itertools.count)  # round-robin of load-balanced puts
    query: Any = None  # search/SQL/index configs: the hub's query.handlers.QueryService (#21)
    waits: ShardWaits | None = None  # many-shard wait sessions (POST /sluice/wait, hub/waits.py)
