"""The project comes from the Host header (hub/addressing.py)."""

from sluice.hub.addressing import project_from_host


def test_project_from_host() -> None:
    """proj.<ip> and proj.<hostname> name a project; a bare IP or hostname is a call without project."""
    assert project_from_host("proj.127.0.0.1") == "proj"
    assert project_from_host("proj.127.0.0.1:8080") == "proj"
    assert project_from_host("127.0.0.1") is None
    assert project_from_host("127.0.0.1:80") is None
    assert project_from_host("localhost") is None
    assert project_from_host("proj.localhost") == "proj"
    assert project_from_host("my-hub.corp", ("localhost", "my-hub.corp")) is None
    assert project_from_host("proj.my-hub.corp", ("localhost", "my-hub.corp")) == "proj"
    assert project_from_host("proj.cn-hangzhou.log.aliyuncs.com") == "proj"
    assert project_from_host("") is None and project_from_host(None) is None
    assert project_from_host("[::1]:80") is None
