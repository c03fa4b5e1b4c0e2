"""``sluice hub``'s tuning options come from HubConfig: one source for names, types, defaults and help."""

from __future__ import annotations

from dataclasses import fields
from pathlib import Path

from click.testing import CliRunner

from sluice.cli import hub, main
from sluice.hub.config import HubConfig, cli_fields


def test_every_cli_field_is_an_option_with_the_config_default() -> None:
    defaults = {f.name: f.default for f in fields(HubConfig)}
    options = {p.name: p for p in hub.params}
    assert cli_fields(), "HubConfig declares no CLI fields"
    for name, default, help_text in cli_fields():
        opt = options[name]
        assert opt.opts == [f"--{name.replace('_', '-')}"]
        assert opt.default == defaults[name] == default and help_text in (opt.help or "")
    assert options["listen"].default == f"{defaults['host']}:{defaults['port']}"


def test_options_reach_the_config(tmp_path: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """What the CLI passes is what HubConfig gets (the server is replaced by a recorder)."""
    seen: list[HubConfig] = []
    monkeypatch.setattr("sluice.hub.server.run", seen.append)
    result = CliRunner().invoke(main, ["hub", "--data-dir", str(tmp_path), "--no-auth", "--group-quota", "7",
                                       "--idle-timeout", "2.5", "--max-skew", "60"])
    assert result.exit_code == 0, result.output
    (config,) = seen
    assert (config.group_quota, config.idle_timeout, config.max_skew) == (7, 2.5, 60.0)
    assert config.max_put_logs == HubConfig(data_dir=tmp_path, no_auth=True).max_put_logs
