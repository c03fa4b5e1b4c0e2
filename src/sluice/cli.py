"""The ``sluice`` command line: the only place that wires the parts together."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from . import __version__
from .wire.errors import ConfigError

__all__ = ["main"]


def _setup_logging(level: str) -> None:
    logging.basicConfig(level=getattr(logging, level.upper(), logging.INFO),
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", stream=sys.stderr)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sluice")
@click.option("--log-level", default="info", show_default=True, envvar="SLUICE_LOG_LEVEL",
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
def main(log_level: str) -> None:
    """sluice: an SLS-compatible log hub, a fast consumer-group library, and pipelines."""
    _setup_logging(log_level)


@main.command()
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path), envvar="SLUICE_DATA_DIR",
              help="Directory for the hub's database (created if missing).")
@click.option("--listen", default="127.0.0.1:8080", show_default=True, envvar="SLUICE_LISTEN",
              help="HOST:PORT to serve on. Port 80 on a bare IPv4 lets the SDK use endpoint '<ip>' directly.")
@click.option("--access-key", "access_keys", multiple=True, metavar="ID:SECRET",
              help="An access key the hub accepts (repeatable). Required unless --no-auth.")
@click.option("--no-auth", is_flag=True, help="Accept requests without checking signatures.")
@click.option("--sync", type=click.Choice(["normal", "full"]), default="normal", show_default=True,
              help="'full' fsyncs every commit: survives power loss, not only a crash of the hub.")
@click.option("--hostname", "hostnames", multiple=True, metavar="NAME",
              help="DNS name clients use for the hub (Host: <project>.NAME). 'localhost' is always known.")
@click.option("--group-quota", default=30, show_default=True, help="Consumer groups allowed per logstore.")
@click.option("--max-put-bytes", default=10 << 20, show_default=True, help="Largest uncompressed PutLogs body.")
@click.option("--max-put-logs", default=40960, show_default=True, help="Most logs in one PutLogs request.")
@click.option("--ttl-interval", default=60.0, show_default=True, help="Seconds between retention passes.")
def hub(data_dir: Path, listen: str, access_keys: tuple[str, ...], no_auth: bool, sync: str,
        hostnames: tuple[str, ...], group_quota: int, max_put_bytes: int, max_put_logs: int,
        ttl_interval: float) -> None:
    """Run the hub: an SLS-compatible log service on local disk."""
    from .hub.config import HubConfig, parse_access_key, parse_listen
    from .hub.server import run

    try:
        host, port = parse_listen(listen)
        keys = dict(parse_access_key(k) for k in access_keys)
        config = HubConfig(data_dir=data_dir, host=host, port=port, access_keys=keys, no_auth=no_auth,
                           sync_full=(sync == "full"), hostnames=("localhost", *hostnames),
                           group_quota=group_quota, max_put_bytes=max_put_bytes, max_put_logs=max_put_logs,
                           ttl_interval=ttl_interval)
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    try:
        run(config)
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {listen}: {exc}") from None
    except KeyboardInterrupt:
        pass
