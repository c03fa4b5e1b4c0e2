"""The hub's consumer-group coordinators, one per (project, logstore, group), created on first use.

Memory only: consumers re-heartbeat after a restart. Groups that existed before this start get coordinators
built with ``recovering=True`` (their consumers are still running and will report what they hold; unreported
shards are handed out only after one timeout, so nothing is read twice). Metrics and the console read the
registry; the consumer-group handlers create and forget entries.
"""

from __future__ import annotations

from collections.abc import Iterable

from .groups import GroupCoordinator
from .store.base import GroupMeta

__all__ = ["Coordinators"]

GroupKey = tuple[str, str, str]


class Coordinators:
    def __init__(self, existing: Iterable[GroupKey] = ()) -> None:
        self._by_key: dict[GroupKey, GroupCoordinator] = {}
        self._recovering = set(existing)

    def get(self, key: GroupKey) -> GroupCoordinator | None:
        """The coordinator of ``(project, logstore, group)`` if one is running (for status displays)."""
        return self._by_key.get(key)

    def of(self, project: str, logstore: str, group: GroupMeta) -> GroupCoordinator:
        """The coordinator of a group, created on first use; its timeout follows the group's current one."""
        key = (project, logstore, group.name)
        coord = self._by_key.get(key)
        if coord is None:
            coord = self._by_key[key] = GroupCoordinator(float(group.timeout), recovering=key in self._recovering)
        coord.timeout = float(group.timeout)
        return coord

    def member_counts(self, now: float) -> dict[GroupKey, int]:
        """Live consumers of every running coordinator (event loop only: coordinators are not thread-safe)."""
        return {key: len(coord.members(now)) for key, coord in self._by_key.items()}

    def forget(self, project: str, logstore: str | None = None, group: str | None = None) -> None:
        """Drop the coordinators of a deleted project, logstore or group."""
        for key in [k for k in self._by_key if k[0] == project and logstore in (None, k[1])
                    and group in (None, k[2])]:
            del self._by_key[key]
