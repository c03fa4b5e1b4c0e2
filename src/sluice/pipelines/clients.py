"""One ``AsyncClient`` per client configuration for a whole job, shared by sources and targets.

Keyed on the whole ``ClientConfig`` (endpoint, keys, security token, TLS settings, timeouts, credentials
provider): two places that differ in anything a request depends on never share a client, and a target
whose token differs from its source's is sent with its own token.

Keys that rotate (STS tokens, RAM roles): a source or target may name a ``credentials_file`` instead of (or as
well as) keys; its keys are read when the client is made and again whenever a request fails authentication
(``FileCredentials``, the client's credentials provider), so a long-running job outlives its tokens."""

from __future__ import annotations

from typing import Any

from ..client import AsyncClient, ClientConfig
from ..wire.errors import ConfigError

__all__ = ["ClientPool", "FileCredentials"]


class FileCredentials:
    """A credentials provider reading a file that something else keeps current (a RAM-role agent, a cron job
    running ``aliyun sts AssumeRole``): JSON or YAML with ``AccessKeyId``, ``AccessKeySecret`` and
    ``SecurityToken`` (STS's ``Credentials`` shape, top level or under ``Credentials``), or the same in
    snake_case. Equal for equal paths, so the pool keys on it."""

    def __init__(self, path: str) -> None:
        self.path = str(path)

    def __call__(self) -> tuple[str, str, str | None]:
        import yaml  # noqa: PLC0415 - JSON is YAML; only jobs that name a file pay for the import

        try:
            with open(self.path, encoding="utf-8") as f:
                data = yaml.safe_load(f) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"credentials file {self.path}: {exc}") from None
        if isinstance(data, dict) and isinstance(data.get("Credentials"), dict):
            data = data["Credentials"]
        if not isinstance(data, dict):
            data = {}

        def pick(*names: str) -> str:
            return next((str(data[n]) for n in names if data.get(n)), "")
        key_id = pick("AccessKeyId", "access_key_id")
        secret = pick("AccessKeySecret", "access_key_secret")
        if not key_id or not secret:
            raise ConfigError(f"credentials file {self.path}: needs AccessKeyId and AccessKeySecret")
        return key_id, secret, pick("SecurityToken", "security_token") or None

    def __eq__(self, other: object) -> bool:
        return isinstance(other, FileCredentials) and other.path == self.path

    def __hash__(self) -> int:
        return hash(("FileCredentials", self.path))

    def __repr__(self) -> str:
        return f"FileCredentials({self.path!r})"


class ClientPool:
    def __init__(self, **defaults: Any) -> None:
        """``defaults``: ClientConfig fields every client of the job gets unless a call gives them."""
        self._clients: dict[ClientConfig, AsyncClient] = {}
        self._defaults = defaults
        self._files: dict[str, tuple[FileCredentials, tuple[str, str, str | None]]] = {}

    def get(self, endpoint: str, access_key_id: str = "", access_key_secret: str = "",
            security_token: str | None = None, *, credentials_file: str | None = None,
            **options: Any) -> AsyncClient:
        """The client for these settings (any other ``ClientConfig`` field as a keyword). With
        ``credentials_file``, the keys are the file's (read once here, again on an authentication failure)."""
        if credentials_file:
            entry = self._files.get(credentials_file)
            if entry is None:
                provider = FileCredentials(credentials_file)
                entry = self._files[credentials_file] = (provider, provider())
            options["credentials_provider"] = entry[0]
            access_key_id, access_key_secret, security_token = entry[1]
        return self.get_config(ClientConfig(endpoint, access_key_id, access_key_secret, security_token,
                                            **{**self._defaults, **options}))

    def get_config(self, config: ClientConfig) -> AsyncClient:
        client = self._clients.get(config)
        if client is None:
            client = self._clients[config] = AsyncClient.from_config(config)
        return client

    async def aclose(self) -> None:
        for c in self._clients.values():
            await c.aclose()
        self._clients.clear()
