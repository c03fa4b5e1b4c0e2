"""Access keys limited to projects, read-only keys, STS-style tokens and replayed requests, through the
official SDK against a real hub (docs/security.md states the rules tested here)."""

from __future__ import annotations

import email.utils
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import pytest
import requests
import yaml
from aliyun.log import LogClient, LogException, LogItem, PutLogsRequest
from aliyun.log.auth import AuthV1

from sluice.hub.config import AccessKey, load_keys_file, parse_key_spec
from sluice.testing import HubProcess
from sluice.wire.errors import ConfigError

PA, PB, MISSING = "acl-a", "acl-b", "acl-missing"
KEYS = {
    "team-a": "secret-team-a",
    "reader-a": "secret-reader-a",
    "reader-all": "secret-reader-all",
    "sts-a": "secret-sts-a",
    "sts-old": "secret-sts-old",
}
TOKEN = "sts-token-for-a"


@pytest.fixture(scope="module")
def acl_hub(tmp_path_factory: pytest.TempPathFactory) -> Iterator[HubProcess]:
    """A hub with an unrestricted admin key (--access-key) and scoped keys (--access-key spec + --keys-file)."""
    d = tmp_path_factory.mktemp("acl")
    keys_file = d / "keys.yaml"
    keys_file.write_text(yaml.safe_dump({"keys": [
        {"id": "team-a", "secret": KEYS["team-a"], "projects": [PA, MISSING]},
        {"id": "reader-all", "secret": KEYS["reader-all"], "read_only": True},
        {"id": "sts-a", "secret": KEYS["sts-a"], "projects": [PA], "security_token": TOKEN,
         "expires": "2999-01-01T00:00:00Z"},
        {"id": "sts-old", "secret": KEYS["sts-old"], "projects": [PA], "security_token": "old-token",
         "expires": "2000-01-01T00:00:00Z"},
    ]}))
    keys_file.chmod(0o600)
    hub = HubProcess(d / "data", keys_file=keys_file,
                     extra_args=["--access-key", f"reader-a:{KEYS['reader-a']}:{PA}:ro"])
    hub.start()
    admin = LogClient(hub.endpoint, hub.access_key_id, hub.access_key_secret)
    for project in (PA, PB):
        admin.create_project(project, f"{project} data")
        admin.create_logstore(project, "logs", ttl=1, shard_count=2)
        admin.put_logs(PutLogsRequest(project, "logs", "t", "", [LogItem(contents=[("owner", project)])]))
        admin.create_consumer_group(project, "logs", "cg", 60)
    yield hub
    crashed = hub.proc is not None and hub.proc.poll() is not None
    hub.close()
    assert not crashed, f"the hub died:\n{hub.log_tail()}"


def sdk(hub: HubProcess, key_id: str, token: str | None = None) -> LogClient:
    return LogClient(hub.endpoint, key_id, KEYS[key_id], securityToken=token)


def refused(call: Callable[[], Any]) -> LogException:
    with pytest.raises(LogException) as info:
        call()
    return info.value


def all_logs(client: LogClient, project: str) -> list[str]:
    out = []
    for shard in (0, 1):
        cursor = client.get_begin_cursor(project, "logs", shard).get_cursor()
        out += [x["owner"] for x in client.pull_logs(project, "logs", shard, cursor).get_flatten_logs_json()]
    return out


def test_list_project_shows_only_the_keys_projects(acl_hub: HubProcess) -> None:
    """ListProject is filtered: a scoped key never learns the names of other projects."""
    names = [p["projectName"] for p in sdk(acl_hub, "team-a").list_project().get_projects()]
    assert names == [PA]
    names = [p["projectName"] for p in sdk(acl_hub, "reader-all").list_project().get_projects()]
    assert PA in names and PB in names


def _reads_and_writes(c: LogClient, project: str) -> list[Callable[[], Any]]:
    return [
        lambda: c.get_project(project),
        lambda: c.list_logstore(project),
        lambda: c.get_logstore(project, "logs"),
        lambda: c.list_shards(project, "logs"),
        lambda: c.get_begin_cursor(project, "logs", 0),
        lambda: c.pull_logs(project, "logs", 0, "MA=="),
        lambda: c.list_consumer_group(project, "logs"),
        lambda: c.get_check_point(project, "logs", "cg"),
        lambda: c.heart_beat(project, "logs", "cg", "c1", []),
        lambda: c.put_logs(PutLogsRequest(project, "logs", "t", "", [LogItem(contents=[("owner", "intruder")])])),
        lambda: c.create_logstore(project, "new-logs", ttl=1, shard_count=1),
        lambda: c.delete_logstore(project, "logs"),
        lambda: c.delete_project(project),
    ]


def test_another_projects_data_and_existence_are_never_visible(acl_hub: HubProcess) -> None:
    """Every API on a project outside the key's set is 401 Unauthorized, word for word the same as for a
    project that does not exist: existence does not leak, and nothing is read or changed."""
    c = sdk(acl_hub, "team-a")
    other = [refused(call) for call in _reads_and_writes(c, PB)]
    missing = [refused(call) for call in _reads_and_writes(sdk(acl_hub, "reader-a"), "acl-nowhere")]
    for err in other:
        assert (err.get_error_code(), err.resp_status) == ("Unauthorized", 401), err
        assert "denied by sts or ram" in err.get_error_message()
    c_nowhere = [refused(call) for call in _reads_and_writes(c, "acl-nowhere")]
    assert [e.get_error_message().replace(PB, "X") for e in other] == \
           [e.get_error_message().replace("acl-nowhere", "X") for e in c_nowhere]
    assert all(e.get_error_code() == "Unauthorized" for e in missing)
    # a project in the key's set that does not exist is the key's own business: ProjectNotExist
    assert refused(lambda: c.get_project(MISSING)).get_error_code() == "ProjectNotExist"
    admin = LogClient(acl_hub.endpoint, acl_hub.access_key_id, acl_hub.access_key_secret)
    assert all_logs(admin, PB) == [PB]
    assert admin.get_logstore(PB, "logs").get_shard_count() == 2


def test_scoped_key_writes_its_own_project_only(acl_hub: HubProcess) -> None:
    c = sdk(acl_hub, "team-a")
    c.create_logstore(PA, "team-logs", ttl=1, shard_count=1)
    c.put_logs(PutLogsRequest(PA, "team-logs", "t", "", [LogItem(contents=[("owner", "team-a")])]))
    cursor = c.get_begin_cursor(PA, "team-logs", 0).get_cursor()
    assert [x["owner"] for x in c.pull_logs(PA, "team-logs", 0, cursor).get_flatten_logs_json()] == ["team-a"]
    c.delete_logstore(PA, "team-logs")


def test_read_only_key_reads_and_consumes_but_never_writes(acl_hub: HubProcess) -> None:
    """Read-only: every read, plus the consumer-group bookkeeping a consumer needs (create/update its group,
    heartbeat, checkpoints); PutLogs and every logstore, shard, group deletion or project change refused."""
    c = sdk(acl_hub, "reader-a")
    assert c.get_project(PA).get_description() == f"{PA} data"
    assert c.list_logstore(PA).get_logstores() == ["logs"]
    assert c.get_logstore(PA, "logs").get_ttl() == 1
    assert len(c.list_shards(PA, "logs").get_shards_info()) == 2
    assert all_logs(c, PA) == [PA]
    c.create_consumer_group(PA, "logs", "ro-group", 30)
    c.update_consumer_group(PA, "logs", "ro-group", timeout=40)
    assert set(c.heart_beat(PA, "logs", "ro-group", "c1", []).get_shards()) == {0, 1}
    end = c.get_end_cursor(PA, "logs", 0).get_cursor()
    c.update_check_point(PA, "logs", "ro-group", 0, end, "c1")
    assert c.get_check_point(PA, "logs", "ro-group", 0).get_consumer_group_check_points()[0]["checkpoint"] == end
    assert "ro-group" in [g.get_consumer_group_name() for g in c.list_consumer_group(PA, "logs").get_consumer_groups()]

    writes = [
        lambda: c.put_logs(PutLogsRequest(PA, "logs", "t", "", [LogItem(contents=[("owner", "reader")])])),
        lambda: c.create_logstore(PA, "ro-logs", ttl=1, shard_count=1),
        lambda: c.update_logstore(PA, "logs", ttl=7),
        lambda: c.delete_logstore(PA, "logs"),
        lambda: c.split_shard(PA, "logs", 0, "3f" + "0" * 30),
        lambda: c.merge_shard(PA, "logs", 0),
        lambda: c.delete_consumer_group(PA, "logs", "cg"),
        lambda: c.update_project(PA, "changed"),
        lambda: c.delete_project(PA),
    ]
    for call in writes:
        err = refused(call)
        assert (err.get_error_code(), err.resp_status) == ("Unauthorized", 401), err
        assert "read-only" in err.get_error_message()
    admin = LogClient(acl_hub.endpoint, acl_hub.access_key_id, acl_hub.access_key_secret)
    assert all_logs(admin, PA) == [PA]
    assert admin.get_logstore(PA, "logs").get_ttl() == 1
    assert len(admin.list_shards(PA, "logs").get_shards_info()) == 2
    assert admin.get_project(PA).get_description() == f"{PA} data"
    admin.delete_consumer_group(PA, "logs", "ro-group")


def test_creating_or_deleting_projects_needs_an_unrestricted_key(acl_hub: HubProcess) -> None:
    for key in ("team-a", "reader-all"):
        err = refused(lambda: sdk(acl_hub, key).create_project("acl-new", ""))
        assert err.get_error_code() == "Unauthorized" and "every project" in err.get_error_message()
    assert refused(lambda: sdk(acl_hub, "team-a").delete_project(PA)).get_error_code() == "Unauthorized"
    admin = LogClient(acl_hub.endpoint, acl_hub.access_key_id, acl_hub.access_key_secret)
    admin.create_project("acl-new", "")
    admin.delete_project("acl-new")


def test_sts_security_token_as_the_sdk_sends_it(acl_hub: HubProcess) -> None:
    """A key with a security token: the SDK's x-acs-security-token (signed) must match; an expired one is
    SecurityTokenExpired (the code the SDK's credential refresher reacts to); a plain key must not send one."""
    good = sdk(acl_hub, "sts-a", TOKEN)
    good.put_logs(PutLogsRequest(PA, "logs", "sts", "", [LogItem(contents=[("owner", "sts")])]))
    assert [p["projectName"] for p in good.list_project().get_projects()] == [PA]
    assert refused(lambda: sdk(acl_hub, "sts-a", "wrong").list_logstore(PA)).get_error_code() == "Unauthorized"
    assert refused(lambda: sdk(acl_hub, "sts-a").list_logstore(PA)).get_error_code() == "Unauthorized"
    err = refused(lambda: sdk(acl_hub, "sts-old", "old-token").list_logstore(PA))
    assert (err.get_error_code(), err.resp_status) == ("SecurityTokenExpired", 401)
    assert refused(lambda: sdk(acl_hub, "team-a", TOKEN).list_logstore(PA)).get_error_code() == "Unauthorized"


class _Recorder:
    """Wraps an SDK client's HTTP call to keep the exact request it sent (a captured request)."""

    def __init__(self, client: LogClient) -> None:
        self.sent: list[tuple[str, str, Any, Any, dict[str, str]]] = []
        original = client._getHttpResponse

        def record(method: str, url: str, params: Any, body: Any, headers: dict[str, str]) -> Any:
            self.sent.append((method, url, dict(params or {}), body, dict(headers)))
            return original(method, url, params, body, headers)
        client._getHttpResponse = record  # type: ignore[method-assign]


def _replay(request: tuple[str, str, Any, Any, dict[str, str]], **header_changes: str) -> requests.Response:
    method, url, params, body, headers = request
    return requests.request(method, url, params=params, data=body, headers={**headers, **header_changes},
                            timeout=30)


def test_replayed_old_signed_request_is_refused(acl_hub: HubProcess, monkeypatch: pytest.MonkeyPatch) -> None:
    """A captured PutLogs signed 20 minutes ago is refused (RequestTimeTooSkewed, 15 min as in SLS) and its
    Date cannot be refreshed without breaking the signature; within the window a replay is accepted, as SLS
    does (the skew bound is the only replay protection SLS's signature scheme offers)."""
    admin = LogClient(acl_hub.endpoint, acl_hub.access_key_id, acl_hub.access_key_secret)
    admin.create_logstore(PA, "replay", ttl=1, shard_count=1)
    rec = _Recorder(admin)
    put = PutLogsRequest(PA, "replay", "t", "", [LogItem(contents=[("owner", "replayed")])])
    admin.put_logs(put)
    fresh = rec.sent[-1]
    assert _replay(fresh).status_code == 200

    old = email.utils.formatdate(time.time() - 20 * 60, usegmt=True)
    monkeypatch.setattr(AuthV1, "_getGMT", staticmethod(lambda: old))
    err = refused(lambda: admin.put_logs(put))
    assert (err.get_error_code(), err.resp_status) == ("RequestTimeTooSkewed", 400)
    stale = rec.sent[-1]
    assert stale[4]["Date"] == old
    resp = _replay(stale)
    assert resp.status_code == 400 and resp.json()["errorCode"] == "RequestTimeTooSkewed"
    now = email.utils.formatdate(time.time(), usegmt=True)
    resp = _replay(stale, Date=now, **{"x-log-date": now})
    assert resp.status_code == 401 and resp.json()["errorCode"] == "SignatureNotMatch"
    monkeypatch.undo()

    cursor = admin.get_begin_cursor(PA, "replay", 0).get_cursor()
    assert [x["owner"] for x in admin.pull_logs(PA, "replay", 0, cursor).get_flatten_logs_json()] == \
           ["replayed", "replayed"]  # the original and the in-window replay; nothing from the stale ones
    admin.delete_logstore(PA, "replay")


def test_key_specs_and_keys_file_errors(tmp_path: Path) -> None:
    """--access-key ID:SECRET[:PROJECT,...][:ro] and keys-file mistakes are ConfigErrors naming the entry."""
    assert parse_key_spec("k:s") == AccessKey("k", "s")
    assert parse_key_spec("k:s:p-one,p-two:ro") == AccessKey("k", "s", frozenset({"p-one", "p-two"}), True)
    assert parse_key_spec("k:s::ro") == AccessKey("k", "s", None, True)
    for bad in ("k", "k:", ":s", "k:s:a:b:c"):
        with pytest.raises(ConfigError):
            parse_key_spec(bad)
    f = tmp_path / "keys.yaml"
    for text, needle in [("keys: []", "at least one key"),
                         ("keys: [{id: k}]", "keys[0]"),
                         ("keys: [{id: k, secret: s, projects: []}]", "keys[0].projects"),
                         ("keys: [{id: k, secret: s, role: admin}]", "unknown field"),
                         ("keys: [{id: k, secret: s, expires: soon}]", "keys[0].expires"),
                         ("keys: [{id: k, secret: s, read_only: maybe}]", "keys[0].read_only")]:
        f.write_text(text)
        with pytest.raises(ConfigError, match=needle.replace("[", r"\[").replace("]", r"\]")):
            load_keys_file(f)
