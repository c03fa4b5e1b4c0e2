"""TLS: ``sluice hub --tls-cert --tls-key`` serves https; clients verify the certificate by default.

The certificates come from a throwaway test CA (trustme). The official SDK reaches an https hub through a
DNS name (it connects to ``<project>.<endpoint host>`` and sends SNI for it); the name ``hub.test`` and its
wildcard are made to resolve to loopback inside the test process, as a wildcard DNS record would.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Iterator

import pytest
import trustme
from aliyun.log import LogClient, LogException, LogItem, PutLogsRequest

from sluice.client import AsyncClient, Client
from sluice.testing import HubProcess, free_port
from sluice.wire.errors import ConfigError

HUB_NAME = "hub.test"


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("tls")
    ca, other_ca = trustme.CA(), trustme.CA()
    leaf = ca.issue_cert("127.0.0.1", HUB_NAME, f"*.{HUB_NAME}")
    paths = {"ca": d / "ca.pem", "other_ca": d / "other-ca.pem", "cert": d / "hub.crt", "key": d / "hub.key"}
    ca.cert_pem.write_to_path(str(paths["ca"]))
    other_ca.cert_pem.write_to_path(str(paths["other_ca"]))
    leaf.private_key_pem.write_to_path(str(paths["key"]))
    leaf.cert_chain_pems[0].write_to_path(str(paths["cert"]))
    for blob in leaf.cert_chain_pems[1:]:
        blob.write_to_path(str(paths["cert"]), append=True)
    return paths


@pytest.fixture(scope="module")
def tls_hub(tmp_path_factory: pytest.TempPathFactory, certs: dict[str, Path]) -> Iterator[HubProcess]:
    hub = HubProcess(tmp_path_factory.mktemp("tls-hub") / "data", host="127.0.0.1", port=free_port(),
                     tls=(certs["cert"], certs["key"]), extra_args=["--hostname", HUB_NAME])
    hub.start()
    yield hub
    crashed = hub.proc is not None and hub.proc.poll() is not None
    hub.close()
    assert not crashed, f"the TLS hub died:\n{hub.log_tail()}"


@pytest.fixture
def hub_dns(monkeypatch: pytest.MonkeyPatch) -> None:
    """``hub.test`` and ``*.hub.test`` resolve to 127.0.0.1 (a wildcard DNS record, in this process only);
    no proxy from the environment gets in the way."""
    real = socket.getaddrinfo

    def getaddrinfo(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and (host == HUB_NAME or host.endswith("." + HUB_NAME)):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    for name in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(name, raising=False)


def test_official_sdk_over_https_verifies_against_the_ca(tls_hub: HubProcess, certs: dict[str, Path],
                                                         hub_dns: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The SDK (requests underneath, REQUESTS_CA_BUNDLE = our CA) writes and reads through https."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs["ca"]))
    sdk = LogClient(f"https://{HUB_NAME}:{tls_hub.port}", tls_hub.access_key_id, tls_hub.access_key_secret)
    sdk.create_project("tls-sdk", "over https")
    sdk.create_logstore("tls-sdk", "logs", ttl=1, shard_count=1)
    sdk.put_logs(PutLogsRequest("tls-sdk", "logs", "t", "", [LogItem(contents=[("k", "secret-over-tls")])]))
    cursor = sdk.get_begin_cursor("tls-sdk", "logs", 0).get_cursor()
    logs = sdk.pull_logs("tls-sdk", "logs", 0, cursor).get_flatten_logs_json()
    assert [x["k"] for x in logs] == ["secret-over-tls"]
    assert "tls-sdk" in [p["projectName"] for p in sdk.list_project().get_projects()]


def test_official_sdk_refuses_a_hub_signed_by_another_ca(tls_hub: HubProcess, certs: dict[str, Path],
                                                         hub_dns: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """Verification is on: trusting another CA, the SDK fails at once with a certificate error."""
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(certs["other_ca"]))
    sdk = LogClient(f"https://{HUB_NAME}:{tls_hub.port}", tls_hub.access_key_id, tls_hub.access_key_secret)
    with pytest.raises(LogException) as info:
        sdk.list_project()
    assert info.value.get_error_code() == "LogRequestError"
    assert "CERTIFICATE_VERIFY_FAILED" in info.value.get_error_message()


def test_sluice_client_with_a_ca_bundle(tls_hub: HubProcess, certs: dict[str, Path]) -> None:
    """sluice's client against https://IP:port with ca_bundle: a full write and read."""
    assert tls_hub.url.startswith("https://")
    with Client(tls_hub.url, tls_hub.access_key_id, tls_hub.access_key_secret, ca_bundle=str(certs["ca"])) as c:
        c.create_project("tls-client", "")
        c.create_logstore("tls-client", "logs", ttl=1, shard_count=1)
        c.put_logs("tls-client", "logs", [{"k": "v1"}, {"k": "v2"}])
        cursor = c.get_cursor("tls-client", "logs", 0, "begin")
        assert [x["k"] for x in c.pull_logs("tls-client", "logs", 0, cursor).logs()] == ["v1", "v2"]


def test_sluice_client_honours_ssl_cert_file(tls_hub: HubProcess, certs: dict[str, Path],
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    """Without ca_bundle the system store is used, and SSL_CERT_FILE points it at our CA."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certs["ca"]))
    with Client(tls_hub.url, tls_hub.access_key_id, tls_hub.access_key_secret) as c:
        assert isinstance(c.list_projects(), list)


@pytest.mark.parametrize("which", ["other_ca", "system store"])
def test_sluice_client_wrong_ca_is_a_clear_error_not_a_retry_loop(tls_hub: HubProcess, certs: dict[str, Path],
                                                                  monkeypatch: pytest.MonkeyPatch,
                                                                  which: str) -> None:
    """A certificate that does not verify raises ConfigError on the first attempt, naming the fix."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    bundle = str(certs["other_ca"]) if which == "other_ca" else None
    with Client(tls_hub.url, tls_hub.access_key_id, tls_hub.access_key_secret, ca_bundle=bundle,
                timeout=10) as c:
        with pytest.raises(ConfigError) as info:
            c.list_projects()
    assert "certificate" in str(info.value) and "ca_bundle" in str(info.value)


def test_sluice_client_tls_verify_off(tls_hub: HubProcess) -> None:
    """tls_verify=False (testing only) connects without checking the certificate."""
    with Client(tls_hub.url, tls_hub.access_key_id, tls_hub.access_key_secret, tls_verify=False) as c:
        assert isinstance(c.list_projects(), list)


def test_missing_ca_bundle_file_is_a_config_error(tls_hub: HubProcess, tmp_path: Path) -> None:
    """A ca_bundle that does not exist is reported when the client is made, not at the first request."""
    with pytest.raises(ConfigError, match="no such file"):
        AsyncClient(tls_hub.url, "id", "secret", ca_bundle=str(tmp_path / "missing.pem"))


def test_hub_refuses_to_start_with_an_unusable_certificate(tmp_path: Path, certs: dict[str, Path]) -> None:
    """A key that is not the certificate's (or a missing file) stops the hub with a usage error."""
    other = trustme.CA().issue_cert("127.0.0.1")
    other.private_key_pem.write_to_path(str(tmp_path / "other.key"))
    for cert, key, needle in [(certs["cert"], tmp_path / "other.key", "cannot be used"),
                              (tmp_path / "nope.crt", certs["key"], "no such file")]:
        hub = HubProcess(tmp_path / "data", host="127.0.0.1", port=free_port(), tls=(cert, key),
                         log_path=tmp_path / f"hub-{needle[:2]}.log")
        with pytest.raises(RuntimeError, match="hub exited"):
            hub.start(timeout=30)
        assert needle in hub.log_tail()
        hub.close()


DISPATCH_OVER_TLS = """
sources:
  - endpoint: {url}
    access_key_id: {key_id}
    access_key_secret: {secret}
    project: tls-job
    logstores: [src]
    ca_bundle: {ca}
group: over-tls
start: begin
end: end
dispatch:
  routes:
    - match: {{topic: t}}
      to: {{logstore: dst}}
"""


@pytest.mark.parametrize("bundle", ["ca", "other_ca"])
def test_sluice_run_with_a_ca_bundle(tls_hub: HubProcess, certs: dict[str, Path], tmp_path: Path,
                                     bundle: str) -> None:
    """A job file's ca_bundle reaches its clients (source and dispatch target): with the right CA the job
    dispatches over https; with another CA it stops at once with a certificate error, exit code non-zero."""
    with Client(tls_hub.url, tls_hub.access_key_id, tls_hub.access_key_secret, ca_bundle=str(certs["ca"])) as c:
        if "tls-job" not in c.list_projects():
            c.create_project("tls-job", "")
            c.create_logstore("tls-job", "src", ttl=1, shard_count=1)
            c.create_logstore("tls-job", "dst", ttl=1, shard_count=1)
            c.put_logs("tls-job", "src", [{"k": str(i)} for i in range(5)], topic="t")
        job = tmp_path / "job.yaml"
        job.write_text(DISPATCH_OVER_TLS.format(url=tls_hub.url, key_id=tls_hub.access_key_id,
                                                secret=tls_hub.access_key_secret, ca=certs[bundle]))
        env = {k: v for k, v in os.environ.items() if k not in ("SSL_CERT_FILE", "SSL_CERT_DIR")}
        p = subprocess.run([sys.executable, "-m", "sluice", "run", str(job), "--quiet"], capture_output=True,
                           text=True, env=env, timeout=60)
        if bundle == "other_ca":
            assert p.returncode != 0 and "certificate" in p.stdout + p.stderr, p.stdout + p.stderr
            assert "Traceback" not in p.stdout + p.stderr
            return
        assert p.returncode == 0, p.stdout + p.stderr
        cursor = c.get_cursor("tls-job", "dst", 0, "begin")
        assert sorted(x["k"] for x in c.pull_logs("tls-job", "dst", 0, cursor).logs()) == [str(i) for i in range(5)]
