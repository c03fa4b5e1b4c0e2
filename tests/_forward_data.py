"""Data for the forward tests: log groups whose every field, topic, source, tag and timestamp the events
at the sink must carry."""

from __future__ import annotations

import time
from typing import Any, Callable

from sluice.client import Client
from sluice.wire.loggroup import LogGroup
from tests._consumers import hash_key_for

__all__ = ["BASE_TIME", "put_logs"]

BASE_TIME = int(time.time()) - 3600  # an hour ago: the event's time must win over the send time


def put_logs(client: Client, project: str, logstore: str, *, groups: int, per_group: int, shards: int,
             start: int = 0, extra: Callable[[int], dict[str, str]] | None = None) -> dict[str, dict[str, Any]]:
    """Write groups of logs with three topics, five sources, a tag, and nanoseconds on odd logs; returns
    id -> what each log's event must carry (fields, topic, source, tags, seconds, nanoseconds)."""
    expected: dict[str, dict[str, Any]] = {}
    for j in range(start, start + groups):
        g = LogGroup()
        g.Topic, g.Source = f"topic{j % 3}", f"10.0.0.{j % 5}"
        tag = g.LogTags.add()
        tag.Key, tag.Value = "env", "prod" if j % 2 else "dev"
        for k in range(per_group):
            i = j * per_group + k
            entry = g.Logs.add()
            entry.Time = BASE_TIME + i
            if i % 2:
                entry.Time_ns = (i % 1000) * 1000 + 123000
            fields = {"id": f"e{i}", "status": ["200", "500", "404"][i % 3], "msg": f"request {i} ünïcode \"q\""}
            if extra:
                fields.update(extra(i))
            for key, value in fields.items():
                c = entry.Contents.add()
                c.Key, c.Value = key, value
            expected[fields["id"]] = {"fields": {**fields, "__topic__": g.Topic, "__source__": g.Source,
                                                 "__tag__:env": tag.Value},
                                      "sec": entry.Time, "ns": entry.Time_ns}
        client.put_log_group(project, logstore, g.SerializeToString(), hash_key=hash_key_for(j % shards, shards))
    return expected
