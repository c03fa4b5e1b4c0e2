"""PullLogs answered with lz4 made from the stored records (hub/store/_lz4stitch.c, #19.6), against a real hub:
the same LogGroupList as a deflate answer, whatever the groups were sent as (lz4, zstd, uncompressed), and what
the official SDK reads back."""

from __future__ import annotations

import asyncio

from sluice.client._transport import Credentials, Transport
from sluice.testing import HubProcess
from sluice.wire.compress import compress, decompress
from sluice.wire.loggroup import LogGroup, split_groups


def _group(i: int, n: int) -> bytes:
    g = LogGroup()
    g.Topic = f"t{i}"
    for j in range(n):
        log = g.Logs.add()
        log.Time = 1700000000 + j
        for k, v in (("i", str(i)), ("j", str(j)), ("msg", "GET /api/v1/orders/%d 200 %d" % (j * 7, j % 13))):
            c = log.Contents.add()
            c.Key, c.Value = k, v
    return g.SerializeToString()


def test_lz4_pull_is_the_stored_groups(hub: HubProcess, sdk, project: str) -> None:  # type: ignore[no-untyped-def]
    sdk.create_logstore(project, "stitch", ttl=1, shard_count=1)
    groups = [_group(i, n) for i, n in enumerate([1, 40, 900, 3, 2500, 60, 1, 700])]
    kinds = ["lz4", "zstd", "", "lz4", "lz4", "zstd", "", "lz4"]  # zstd records: the general path

    async def run() -> tuple[list[bytes], list[bytes], list[str], list[str]]:
        t = Transport(hub.url, Credentials(hub.access_key_id, hub.access_key_secret), timeout=30)
        try:
            for raw, kind in zip(groups, kinds):
                headers = {"Content-Type": "application/x-protobuf", "x-log-bodyrawsize": str(len(raw))}
                if kind:
                    headers["x-log-compresstype"] = kind
                await t.request("POST", "/logstores/stitch/shards/lb", project=project, headers=headers,
                                body=compress(raw, kind) if kind else raw, retry=False)
            resp = await t.request("GET", "/logstores/stitch/shards/0", project=project,
                                   params=[("type", "cursor"), ("from", "begin")])
            begin = resp.json()["cursor"]
            bodies: list[list[bytes]] = []
            answered: list[str] = []
            cursors: list[str] = []
            for encoding in ("lz4", "deflate"):
                got: list[bytes] = []
                cursor = begin
                for count in (3, 2, 1000):  # answers of several sizes, lz4 and zstd records mixed in some
                    resp = await t.request("GET", "/logstores/stitch/shards/0", project=project,
                                           params=[("type", "log"), ("cursor", cursor), ("count", str(count))],
                                           headers={"Accept-Encoding": encoding, "Accept": "application/x-protobuf"})
                    ctype = resp.headers.get("x-log-compresstype")
                    answered.append(ctype or "")
                    body = decompress(resp.body, ctype, int(resp.headers["x-log-bodyrawsize"]), limit=1 << 30)
                    got += [bytes(b) for b in split_groups(body)]
                    cursor = resp.headers["x-log-cursor"]
                    cursors.append(cursor)
                bodies.append(got)
            return bodies[0], bodies[1], answered, cursors
        finally:
            await t.aclose()

    lz4_groups, deflate_groups, answered, cursors = asyncio.run(run())
    assert answered == ["lz4"] * 3 + ["deflate"] * 3
    assert lz4_groups == deflate_groups == groups
    cursor = sdk.get_cursor(project, "stitch", 0, "begin").get_cursor()
    res = sdk.pull_logs(project, "stitch", 0, cursor, count=1000)  # the SDK asks for lz4
    assert res.get_loggroup_count() == len(groups)
    assert [g.SerializeToString() for g in res.get_loggroup_list().LogGroups] == groups
    res = sdk.pull_logs(project, "stitch", 0, cursors[0], count=2)  # groups 3 and 4: lz4 only, stitched
    assert [g.SerializeToString() for g in res.get_loggroup_list().LogGroups] == groups[3:5]
