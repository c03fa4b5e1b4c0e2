"""Checkpoint rules on the hub (docs/consumer-groups.md): owner check, forceSuccess, never rewound by a
stale forced commit, clear errors for bad checkpoints."""

from __future__ import annotations

import pytest

from sluice.client import Client
from sluice.testing import HubProcess
from sluice.wire import errors as E


def test_checkpoint_ownership_and_no_accidental_rewind(hub: HubProcess) -> None:
    """Owner commits either way; a non-owner cannot move an owned shard's checkpoint, forced or not."""
    with Client(hub.url, hub.access_key_id, hub.access_key_secret) as c:
        c.create_project("cp-rules")
        c.create_logstore("cp-rules", "app", shard_count=1)
        for i in range(5):
            c.put_logs("cp-rules", "app", [{"i": str(i)}])
        c.create_consumer_group("cp-rules", "app", "grp", 30)
        assert c.heartbeat("cp-rules", "app", "grp", "owner", []) == [0]
        begin = c.get_cursor("cp-rules", "app", 0, "begin")
        three = c.pull_logs("cp-rules", "app", 0, begin, count=3).next_cursor
        one = c.pull_logs("cp-rules", "app", 0, begin, count=1).next_cursor

        def stored() -> str:
            return str(c.get_checkpoints("cp-rules", "app", "grp", 0)[0]["checkpoint"])

        c.update_checkpoint("cp-rules", "app", "grp", 0, three, consumer="owner")
        assert stored() == three
        with pytest.raises(E.SLSError) as exc:
            c.update_checkpoint("cp-rules", "app", "grp", 0, one, consumer="stranger")
        assert exc.value.error_code == "ConsumerNotMatch"
        # #17 item 5: while "owner" owns the shard, nobody else moves its checkpoint, forced or not (docs/security.md)
        with pytest.raises(E.SLSError) as exc:
            c.update_checkpoint("cp-rules", "app", "grp", 0, one, consumer="stranger", force=True)
        assert exc.value.error_code == "ConsumerNotMatch"
        assert stored() == three, "a stale forced commit must not rewind the owner's progress"
        end = c.get_cursor("cp-rules", "app", 0, "end")
        with pytest.raises(E.SLSError) as exc:
            c.update_checkpoint("cp-rules", "app", "grp", 0, end, consumer="stranger", force=True)
        assert exc.value.error_code == "ConsumerNotMatch"
        assert stored() == three, "only the owner moves the checkpoint, forward too"
        c.update_checkpoint("cp-rules", "app", "grp", 0, end, consumer="owner")
        assert stored() == end
        c.update_checkpoint("cp-rules", "app", "grp", 0, one, consumer="owner")
        assert stored() == one, "the owner may rewind on purpose"
        for bad in ("not-a-cursor", "OTk5OTk5"):
            with pytest.raises(E.SLSError) as exc:
                c.update_checkpoint("cp-rules", "app", "grp", 0, bad, consumer="owner")
            assert exc.value.error_code == "InvalidShardCheckPoint"
        with pytest.raises(E.SLSError) as exc:
            c.update_checkpoint("cp-rules", "app", "grp", 9, one, consumer="owner", force=True)
        assert (exc.value.error_code, exc.value.http_status) == ("ShardNotExist", 404)
        assert c.get_checkpoints("cp-rules", "app", "grp", 9) == []
