"""The ``sluice`` command line: the only place that wires the parts together."""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Callable

import click
import uvloop

from . import __version__
from .hub.config import HubConfig, cli_fields
from .logs import setup_logging
from .wire.errors import ConfigError

__all__ = ["main"]


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="sluice")
@click.option("--log-level", default="info", show_default=True, envvar="SLUICE_LOG_LEVEL",
              type=click.Choice(["debug", "info", "warning", "error"], case_sensitive=False))
@click.option("--log-format", default="text", show_default=True, envvar="SLUICE_LOG_FORMAT",
              type=click.Choice(["text", "json"]), help="json: one JSON object per line, for log shippers.")
def main(log_level: str, log_format: str) -> None:
    """sluice: an SLS-compatible log hub, a fast consumer-group library, and pipelines."""
    setup_logging(log_level, log_format)


_HUB_DEFAULTS = HubConfig(data_dir=Path("."), no_auth=True)  # the defaults of every HubConfig field, read below


def _hub_config_options(f: Callable[..., Any]) -> Callable[..., Any]:
    """``--<name>`` for every HubConfig field that declares CLI help (``hub/config.py:cli_fields``): the option
    names, types, defaults and help come from the config class, so the CLI restates none of them."""
    for name, default, help_text in reversed(cli_fields()):
        f = click.option(f"--{name.replace('_', '-')}", name, default=default, type=type(default),
                         show_default=True, help=help_text)(f)
    return f


@main.command()
@click.option("--data-dir", required=True, type=click.Path(file_okay=False, path_type=Path), envvar="SLUICE_DATA_DIR",
              help="Directory for the hub's database (created if missing).")
@click.option("--listen", default=f"{_HUB_DEFAULTS.host}:{_HUB_DEFAULTS.port}", show_default=True,
              envvar="SLUICE_LISTEN",
              help="HOST:PORT to serve on. Port 80 on a bare IPv4 lets the SDK use endpoint '<ip>' directly.")
@click.option("--access-key", "access_keys", multiple=True, metavar="ID:SECRET[:PROJECT,...][:ro]",
              help="An access key the hub accepts (repeatable), optionally limited to some projects and/or "
                   "read-only. Required unless --keys-file or --no-auth.")
@click.option("--keys-file", type=click.Path(dir_okay=False, path_type=Path), envvar="SLUICE_KEYS_FILE",
              help="YAML file of access keys (projects, read_only, security_token, expires): docs/security.md.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, path_type=Path), envvar="SLUICE_TLS_CERT",
              help="PEM certificate chain: serve https (with --tls-key).")
@click.option("--tls-key", type=click.Path(dir_okay=False, path_type=Path), envvar="SLUICE_TLS_KEY",
              help="PEM private key of --tls-cert.")
@click.option("--no-auth", is_flag=True, help="Accept requests without checking signatures.")
@click.option("--sync", type=click.Choice(["normal", "full"]), default="normal", show_default=True,
              help="'full' fsyncs every commit: survives power loss, not only a crash of the hub.")
@click.option("--hostname", "hostnames", multiple=True, metavar="NAME",
              help="DNS name clients use for the hub (Host: <project>.NAME). 'localhost' is always known.")
@_hub_config_options  # --group-quota, --max-put-bytes, ... --idle-timeout: defaults and help from HubConfig
@click.option("--metrics-token", envvar="SLUICE_METRICS_TOKEN", default=None,
              help="Bearer token for GET /metrics (Prometheus); without it /metrics is open only with --no-auth.")
@click.option("--check", "check_only", is_flag=True,
              help="Verify the data directory (index against segment files, every stored group) without "
                   "changing anything, then exit: 0 if sound, 1 if damaged. Run it with the hub stopped.")
@click.option("--repair", "repair_only", is_flag=True,
              help="Make a damaged data directory start again, deleting nothing: keep the index as it is, move "
                   "every byte it does not account for into DATA_DIR/set-aside/, drop index rows whose bytes are "
                   "gone or damaged; then exit. Run it with the hub stopped (docs/storage.md).")
def hub(data_dir: Path, listen: str, access_keys: tuple[str, ...], keys_file: Path | None, tls_cert: Path | None,
        tls_key: Path | None, no_auth: bool, sync: str, hostnames: tuple[str, ...], metrics_token: str | None,
        check_only: bool = False, repair_only: bool = False, **tuning: Any) -> None:
    """Run the hub: an SLS-compatible log service on local disk."""
    if check_only:
        _check_data_dir(data_dir)
        return
    if repair_only:
        from .hub.store.check import repair_data_dir

        for line in repair_data_dir(data_dir):
            click.echo(line)
        _check_data_dir(data_dir)
        return
    from .hub.config import load_keys_file, parse_key_spec, parse_listen
    from .hub.server import run, tls_context

    try:
        host, port = parse_listen(listen)
        keys = tuple(parse_key_spec(k) for k in access_keys)
        if keys_file is not None:
            keys += load_keys_file(keys_file)
        config = HubConfig(data_dir=data_dir, host=host, port=port, keys=keys, no_auth=no_auth,
                           sync_full=(sync == "full"), hostnames=("localhost", *hostnames),
                           metrics_token=metrics_token, tls_cert=tls_cert, tls_key=tls_key, **tuning)
        tls_context(config)  # a bad certificate or key is a usage error, before anything starts
    except ConfigError as exc:
        raise click.UsageError(str(exc)) from None
    from .hub.store.check import StorageDamaged

    try:
        run(config)
    except StorageDamaged as exc:
        raise click.ClickException(str(exc)) from None
    except OSError as exc:
        raise click.ClickException(f"cannot serve on {listen}: {exc}") from None
    except KeyboardInterrupt:
        pass


def _check_data_dir(data_dir: Path) -> None:
    """``sluice hub --check``: problems on stderr and exit 1, notes (what a start would tidy) on stdout."""
    from .hub.store.check import check_data_dir

    problems, notes = check_data_dir(data_dir)
    for note in notes:
        click.echo(f"note: {note}")
    for problem in problems:
        click.echo(f"PROBLEM: {problem}", err=True)
    if problems:
        click.echo(f"{data_dir}: {len(problems)} problem(s); the hub will not start on it as it is", err=True)
        raise SystemExit(1)
    click.echo(f"{data_dir}: index and segment files agree")


@main.command()
@click.option("--logs", "count", default=1000, show_default=True, help="How many sample logs to write.")
def quickstart(count: int) -> None:
    """Start a hub in a temporary directory, write sample logs through the SLS API, read them back, stop."""
    import secrets
    import tempfile
    import time

    from .client import Client
    from .testing import HubProcess, free_port

    key = ("quickstart", secrets.token_hex(16))
    with tempfile.TemporaryDirectory(prefix="sluice-quickstart-") as tmp:
        hub_proc = HubProcess(Path(tmp) / "data", host="127.0.0.1", port=free_port(), access_key=key,
                              log_path=Path(tmp) / "hub.log")
        click.echo(f"1. starting a hub on {hub_proc.url} (data in {hub_proc.data_dir})")
        hub_proc.start()
        try:
            with Client(hub_proc.url, *key) as client:
                client.create_project("demo", "sluice quickstart")
                client.create_logstore("demo", "app", ttl=7, shard_count=2)
                shards = client.list_shards("demo", "app")
                click.echo(f"2. created project 'demo' and logstore 'app' with {len(shards)} shards")
                t0 = time.perf_counter()
                batch = 100
                for start in range(0, count, batch):
                    logs = [{"level": "ERROR" if i % 10 == 0 else "INFO", "msg": f"sample log {i}", "seq": str(i)}
                            for i in range(start, min(count, start + batch))]
                    client.put_logs("demo", "app", logs, topic="quickstart", source="127.0.0.1")
                click.echo(f"3. wrote {count} logs in {count // batch + (count % batch > 0)} PutLogs requests "
                           f"(signed, lz4) in {time.perf_counter() - t0:.2f}s")
                read: list[dict[str, str]] = []
                for shard in shards:
                    cursor = client.get_cursor("demo", "app", shard["shardID"], "begin")
                    while True:
                        result = client.pull_logs("demo", "app", shard["shardID"], cursor)
                        if result.count == 0:
                            break
                        read.extend(result.logs())
                        cursor = result.next_cursor
                errors = sum(1 for r in read if r.get("level") == "ERROR")
                click.echo(f"4. read back {len(read)} logs from {len(shards)} shards ({errors} at level ERROR); "
                           f"example: {read[0] if read else None}")
                if len(read) != count:
                    raise click.ClickException(f"expected {count} logs back, got {len(read)}")
                _quickstart_jobs(client, hub_proc, key, count, errors)
        finally:
            hub_proc.stop()
        click.echo("7. hub stopped. Run your own with: sluice hub --data-dir DIR --access-key ID:SECRET")


@main.command()
@click.argument("config_file", type=click.Path(dir_okay=False, path_type=Path))
def check(config_file: Path) -> None:
    """Validate a job file and explain any problem with its line number."""
    from .pipelines.config import load_job

    try:
        job = load_job(config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    kind = next(k for k in ("dispatch", "monitor", "forward") if getattr(job, k) is not None)
    n = sum(len(s.logstores) for s in job.sources)
    click.echo(f"{config_file}: OK: a {kind} job, group {job.group!r}, {n} logstore(s) on "
               f"{len({s.endpoint for s in job.sources})} endpoint(s)")


@main.command()
@click.argument("config_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--quiet", is_flag=True, help="No live status line.")
@click.option("--metrics-port", type=int, default=None, help="Serve Prometheus metrics on 127.0.0.1:PORT/metrics.")
def run(config_file: Path, quiet: bool, metrics_port: int | None) -> None:
    """Run a dispatch, monitor or forward job (YAML); SIGTERM/SIGINT stop it gracefully."""

    from rich.console import Console

    from .consumer import tune_allocator
    from .pipelines.config import load_job
    from .pipelines.runner import run_job

    try:
        job = load_job(config_file)
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    console = Console(stderr=True)

    def status(s: dict[str, object]) -> None:
        if not quiet:
            console.print(
                f"[bold]{config_file.name}[/]: {s['consumers']} consumer(s), {s['shards']} shard(s), "
                f"{s.get('groups_in', 0)} groups in ({s['mb_per_s']:.1f} MB/s), {s.get('groups_out', 0)} out, "
                f"{s.get('alerts', 0)} alert(s)", end="\r", highlight=False)

    tune_allocator()  # large buffers reused, not faulted in again: 8-12% less CPU per MB (consumer/memory.py)
    try:
        uvloop.run(run_job(job, status=status, metrics_port=metrics_port))  # as the hub: less CPU per request
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if not quiet:
        console.print()


def _quickstart_jobs(client, hub_proc, key, count: int, errors: int) -> None:  # type: ignore[no-untyped-def]
    """Steps 5 and 6 of the quickstart: a dispatch job and a monitor job, in this process."""
    import asyncio
    import time

    from .pipelines.config import JobConfig
    from .pipelines.runner import Job

    source = {"endpoint": hub_proc.url, "access_key_id": key[0], "access_key_secret": key[1], "project": "demo",
              "logstores": ["app"]}
    client.create_logstore("demo", "errors", ttl=7, shard_count=1)
    dispatch = JobConfig.model_validate({
        "sources": [source], "group": "quickstart-dispatch", "start": "begin", "heartbeat_interval": 1,
        "dispatch": {"routes": [{"match": {"field": {"level": "^ERROR$"}}, "to": {"logstore": "errors"}}]}})
    monitor = JobConfig.model_validate({
        "sources": [source], "group": "quickstart-monitor", "start": "begin", "heartbeat_interval": 1,
        "monitor": {"rules": [{"name": "errors", "keyword": "ERROR", "threshold": 10, "window": "60s"}],
                    "alerters": [{"log": {}}], "dedup": "5m"}})

    def pulled(logstore: str) -> int:
        cursor = client.get_cursor("demo", logstore, 0, "begin")
        n = 0
        while True:
            r = client.pull_logs("demo", logstore, 0, cursor)
            if not r.count:
                return n
            n += len(r.logs())
            cursor = r.next_cursor

    async def run(config: JobConfig, done) -> dict[str, int]:  # type: ignore[no-untyped-def]
        job = Job(config)
        await job.check()
        await job.start()
        deadline = time.monotonic() + 30
        try:
            while not await asyncio.to_thread(done, job) and time.monotonic() < deadline:
                await asyncio.sleep(0.2)
        finally:
            await job.stop()
        return job.counters

    t0 = time.perf_counter()
    asyncio.run(run(dispatch, lambda job: pulled("errors") >= errors))
    click.echo(f"5. dispatch job: routed the {pulled('errors')} ERROR logs of 'app' into logstore 'errors' "
               f"in {time.perf_counter() - t0:.2f}s (sluice run FILE does this from a YAML file)")
    counters = asyncio.run(run(monitor, lambda job: job.counters.get("groups_in", 0) >= count // 100 and  # #18:
                               job.counters.get("alerts", 0) >= 1))  # alerts are evaluated after the scan
    click.echo(f"6. monitor job: scanned {counters.get('groups_in', 0)} log groups, rule 'errors' "
               f"(>= 10 ERROR logs in 60s) raised {counters.get('alerts', 0)} alert (deduplicated; see the log above)")


@main.command()
@click.option("--endpoint", required=True, envvar="SLUICE_ENDPOINT", help="Hub or SLS endpoint.")
@click.option("--access-key-id", envvar=["SLS_AK_ID", "ALIBABA_CLOUD_ACCESS_KEY_ID"], default="",
              help="Or SLS_AK_ID / ALIBABA_CLOUD_ACCESS_KEY_ID.")
@click.option("--access-key-secret", envvar=["SLS_AK_KEY", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"], default="",
              help="Or SLS_AK_KEY / ALIBABA_CLOUD_ACCESS_KEY_SECRET.")
@click.option("--project", required=True)
@click.option("--logstore", "logstores", multiple=True, help="Repeatable; default: every logstore.")
@click.option("--group", "groups", multiple=True, help="Repeatable; default: every consumer group.")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
def status(endpoint: str, access_key_id: str, access_key_secret: str, project: str, logstores: tuple[str, ...],
           groups: tuple[str, ...], as_json: bool) -> None:
    """Consumer-group status per shard: checkpoint, its time, end of shard, lag (hub or SLS)."""
    import json as _json
    import time

    from rich.console import Console
    from rich.table import Table

    from .client import Client
    from .wire.cursor import decode_cursor
    from .wire.errors import SluiceError

    rows: list[dict[str, object]] = []
    try:
        with Client(endpoint, access_key_id, access_key_secret, security_token=_env_token()) as c:
            for ls in logstores or tuple(c.list_logstores(project)):
                shards = c.list_shards(project, ls)
                ends = {s["shardID"]: c.get_cursor(project, ls, s["shardID"], "end") for s in shards}
                end_times = {sid: c.get_cursor_time(project, ls, sid, cur) for sid, cur in ends.items()}
                for g in groups or tuple(x["name"] for x in c.list_consumer_groups(project, ls)):
                    cps = {e["shard"]: e for e in c.get_checkpoints(project, ls, g)}
                    for s in shards:
                        sid = s["shardID"]
                        cp = cps.get(sid, {})
                        cursor = str(cp.get("checkpoint") or "")
                        cp_time = c.get_cursor_time(project, ls, sid, cursor) if cursor else None
                        try:
                            lag_groups = decode_cursor(ends[sid]) - decode_cursor(cursor) if cursor else None
                        except SluiceError:
                            lag_groups = None
                        rows.append({
                            "logstore": ls, "group": g, "shard": sid, "status": s.get("status", ""),
                            "consumer": cp.get("consumer", ""), "checkpoint": cursor,
                            "checkpoint_time": cp_time, "end": ends[sid], "end_time": end_times[sid],
                            "lag_log_groups": lag_groups,
                            "lag_seconds": (end_times[sid] - cp_time) if cp_time is not None else None,
                            "updated": (time.time() - int(cp["updateTime"]) / 1e6) if cp.get("updateTime") else None,
                        })
    except SluiceError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(_json.dumps(rows, indent=2))
        return
    table = Table(title=f"{project}: consumer groups")
    for col in ("logstore", "group", "shard", "status", "consumer", "checkpoint", "lag (groups)", "lag (s)",
                "written ago (s)"):
        table.add_column(col)
    for r in rows:
        table.add_row(str(r["logstore"]), str(r["group"]), str(r["shard"]), str(r["status"]), str(r["consumer"]),
                      str(r["checkpoint"] or "-"), "-" if r["lag_log_groups"] is None else str(r["lag_log_groups"]),
                      "-" if r["lag_seconds"] is None else str(r["lag_seconds"]),
                      "-" if r["updated"] is None else f"{r['updated']:.0f}")
    Console(width=None if sys.stdout.isatty() else 200).print(table)


def _env_token() -> str | None:
    """An STS security token from the environment (the Alibaba Cloud tools' variable, or SLS_SECURITY_TOKEN)."""
    return os.environ.get("SLS_SECURITY_TOKEN") or os.environ.get("ALIBABA_CLOUD_SECURITY_TOKEN") or None


def _client_options(f):  # type: ignore[no-untyped-def]
    f = click.option("--access-key-secret", envvar=["SLS_AK_KEY", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"], default="",
                     help="Or SLS_AK_KEY / ALIBABA_CLOUD_ACCESS_KEY_SECRET.")(f)
    f = click.option("--access-key-id", envvar=["SLS_AK_ID", "ALIBABA_CLOUD_ACCESS_KEY_ID"], default="",
                     help="Or SLS_AK_ID / ALIBABA_CLOUD_ACCESS_KEY_ID.")(f)
    f = click.option("--endpoint", required=True, envvar="SLUICE_ENDPOINT", help="Hub or SLS endpoint.")(f)
    return f


@main.command()
@_client_options
@click.option("--project", required=True)
@click.option("--logstore", required=True)
@click.option("--topic", default="")
@click.option("--source", default="")
@click.option("--batch", "batch_size", default=1000, show_default=True, help="Logs per PutLogs request.")
def put(endpoint: str, access_key_id: str, access_key_secret: str, project: str, logstore: str, topic: str,
        source: str, batch_size: int) -> None:
    """Write stdin into a logstore: JSON objects one per line become fields, other lines become `content`.
    On a terminal, a progress bar (bytes of a file on stdin, else logs written) runs on stderr."""
    import json as _json
    import os
    import stat

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from .client import Client
    from .wire.errors import SluiceError

    total = 0
    st = os.fstat(sys.stdin.fileno())
    size = st.st_size if stat.S_ISREG(st.st_mode) else None
    progress = Progress(TextColumn("{task.description}"), BarColumn(), TimeRemainingColumn(),
                        console=Console(stderr=True), transient=True, disable=not sys.stderr.isatty())
    try:
        with progress, Client(endpoint, access_key_id, access_key_secret, security_token=_env_token()) as c:
            task = progress.add_task("0 logs", total=size)
            pending: list[dict[str, object]] = []
            read = 0
            for line in sys.stdin:
                read += len(line)
                line = line.rstrip("\n")
                if not line:
                    continue
                try:
                    obj = _json.loads(line)
                    item = obj if isinstance(obj, dict) else {"content": line}
                except ValueError:
                    item = {"content": line}
                pending.append(item)
                if len(pending) >= batch_size:
                    c.put_logs(project, logstore, pending, topic=topic, source=source)
                    total += len(pending)
                    pending = []
                    progress.update(task, completed=read, description=f"{total} logs")
            if pending:
                c.put_logs(project, logstore, pending, topic=topic, source=source)
                total += len(pending)
    except SluiceError as exc:
        raise click.ClickException(f"{exc} (after {total} logs written)") from None
    click.echo(f"wrote {total} logs to {project}/{logstore}", err=True)


@main.command()
@_client_options
@click.option("--project", required=True)
@click.option("--logstore", required=True)
@click.option("--from", "start", default="end", show_default=True, help="begin | end | unix seconds | a date.")
@click.option("--grep", "pattern", default=None, help="Only logs where some field matches this regex.")
@click.option("--json", "as_json", is_flag=True, help="JSON lines instead of text.")
@click.option("--follow/--no-follow", default=True, show_default=True, help="Keep waiting for new logs.")
def tail(endpoint: str, access_key_id: str, access_key_secret: str, project: str, logstore: str, start: str,
         pattern: str | None, as_json: bool, follow: bool) -> None:
    """Print a logstore's logs from a position (no consumer group, no checkpoints)."""
    import asyncio
    import json as _json
    import re

    from .client import AsyncClient
    from .consumer.config import parse_start
    from .wire.errors import SluiceError

    regex = re.compile(pattern) if pattern else None
    where = parse_start(start)

    def emit(log: dict[str, object]) -> None:
        if regex and not any(regex.search(str(v)) for v in log.values()):
            return
        if as_json:
            click.echo(_json.dumps(log, ensure_ascii=False))
        else:
            fields = " ".join(f"{k}={v}" for k, v in log.items() if not k.startswith("__"))
            click.echo(f"{log.get('__time__')} [{log.get('__topic__') or '-'}] {fields}")

    async def follow_shard(client: AsyncClient, shard: int) -> None:
        cursor = await client.get_cursor(project, logstore, shard, where)
        while True:
            r = await client.pull_logs(project, logstore, shard, cursor, wait=20 if follow else None)
            if r.count:
                for log in r.logs():
                    emit(log)
            elif not follow:
                return
            cursor = r.next_cursor

    async def main_async() -> None:
        async with AsyncClient(endpoint, access_key_id, access_key_secret,
                               security_token=_env_token()) as client:
            shards = await client.list_shards(project, logstore)
            await asyncio.gather(*(follow_shard(client, s["shardID"]) for s in shards))

    try:
        asyncio.run(main_async())
    except SluiceError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        pass


@main.group()
def admin() -> None:
    """Projects, logstores, shards and consumer groups (hub or SLS)."""


def _register_checkpoint_command() -> None:  # `sluice admin checkpoint show|reset` (admin.py, #18)
    from .admin import checkpoint
    admin.add_command(checkpoint)


_register_checkpoint_command()


def _admin_call(endpoint: str, key_id: str, secret: str, fn, as_json: bool = True) -> None:  # type: ignore[no-untyped-def]
    import json as _json

    from .client import Client
    from .wire.errors import SluiceError

    try:
        with Client(endpoint, key_id, secret, security_token=_env_token()) as c:
            result = fn(c)
    except SluiceError as exc:
        raise click.ClickException(str(exc)) from None
    if result is not None:
        click.echo(_json.dumps(result, indent=2, ensure_ascii=False) if as_json else str(result))


@admin.command("projects")
@_client_options
def admin_projects(endpoint: str, access_key_id: str, access_key_secret: str) -> None:
    """List projects."""
    _admin_call(endpoint, access_key_id, access_key_secret, lambda c: c.list_projects())


@admin.command("create-project")
@_client_options
@click.argument("project")
@click.option("--description", default="")
def admin_create_project(endpoint: str, access_key_id: str, access_key_secret: str, project: str,
                         description: str) -> None:
    """Create a project."""
    _admin_call(endpoint, access_key_id, access_key_secret, lambda c: c.create_project(project, description))
    click.echo(f"created project {project}", err=True)


@admin.command("logstores")
@_client_options
@click.argument("project")
def admin_logstores(endpoint: str, access_key_id: str, access_key_secret: str, project: str) -> None:
    """List the logstores of a project."""
    _admin_call(endpoint, access_key_id, access_key_secret, lambda c: c.list_logstores(project))


@admin.command("create-logstore")
@_client_options
@click.argument("project")
@click.argument("logstore")
@click.option("--shards", default=2, show_default=True)
@click.option("--ttl", default=30, show_default=True, help="Days to keep data.")
def admin_create_logstore(endpoint: str, access_key_id: str, access_key_secret: str, project: str, logstore: str,
                          shards: int, ttl: int) -> None:
    """Create a logstore."""
    _admin_call(endpoint, access_key_id, access_key_secret,
                lambda c: c.create_logstore(project, logstore, ttl=ttl, shard_count=shards))
    click.echo(f"created logstore {project}/{logstore} ({shards} shards, ttl {ttl} days)", err=True)


@admin.command("delete-logstore")
@_client_options
@click.argument("project")
@click.argument("logstore")
@click.confirmation_option(prompt="Delete the logstore and all its data?")
def admin_delete_logstore(endpoint: str, access_key_id: str, access_key_secret: str, project: str,
                          logstore: str) -> None:
    """Delete a logstore and its data."""
    _admin_call(endpoint, access_key_id, access_key_secret, lambda c: c.delete_logstore(project, logstore))
    click.echo(f"deleted logstore {project}/{logstore}", err=True)


@admin.command("shards")
@_client_options
@click.argument("project")
@click.argument("logstore")
def admin_shards(endpoint: str, access_key_id: str, access_key_secret: str, project: str, logstore: str) -> None:
    """List shards with status and key ranges."""
    _admin_call(endpoint, access_key_id, access_key_secret, lambda c: c.list_shards(project, logstore))


@admin.command("split-shard")
@_client_options
@click.argument("project")
@click.argument("logstore")
@click.argument("shard", type=int)
@click.option("--key", default=None, help="32 hex digits; default: the middle of the shard's range.")
def admin_split_shard(endpoint: str, access_key_id: str, access_key_secret: str, project: str, logstore: str,
                      shard: int, key: str | None) -> None:
    """Split a shard (the parent becomes read-only)."""
    def split(c):  # type: ignore[no-untyped-def]
        split_key = key
        if split_key is None:
            info = next((s for s in c.list_shards(project, logstore) if s["shardID"] == shard), None)
            if info is None:
                raise click.ClickException(f"shard {shard} does not exist")
            lo, hi = int(info["inclusiveBeginKey"], 16), int(info["exclusiveEndKey"], 16)
            split_key = f"{(lo + hi) // 2:032x}"
        return c.split_shard(project, logstore, shard, split_key)
    _admin_call(endpoint, access_key_id, access_key_secret, split)


@admin.command("merge-shard")
@_client_options
@click.argument("project")
@click.argument("logstore")
@click.argument("shard", type=int)
def admin_merge_shard(endpoint: str, access_key_id: str, access_key_secret: str, project: str, logstore: str,
                      shard: int) -> None:
    """Merge a shard with its right neighbour."""
    _admin_call(endpoint, access_key_id, access_key_secret, lambda c: c.merge_shard(project, logstore, shard))


@admin.command("groups")
@_client_options
@click.argument("project")
@click.argument("logstore")
def admin_groups(endpoint: str, access_key_id: str, access_key_secret: str, project: str, logstore: str) -> None:
    """List consumer groups."""
    _admin_call(endpoint, access_key_id, access_key_secret, lambda c: c.list_consumer_groups(project, logstore))


@admin.command("delete-group")
@_client_options
@click.argument("project")
@click.argument("logstore")
@click.argument("group")
def admin_delete_group(endpoint: str, access_key_id: str, access_key_secret: str, project: str, logstore: str,
                       group: str) -> None:
    """Delete a consumer group and its checkpoints."""
    _admin_call(endpoint, access_key_id, access_key_secret,
                lambda c: c.delete_consumer_group(project, logstore, group))
    click.echo(f"deleted consumer group {group} of {project}/{logstore}", err=True)
