"""deploy/cron/armillary-backup, the /etc/cron.d file of the scheduled backups without
Kubernetes: its pgBackRest jobs read the configuration the way the archive_command does, and
its Armillary job is a command the CLI has."""

from __future__ import annotations

import shlex
from pathlib import Path

from typer.testing import CliRunner

from armillary.cli.main import app
from armillary.kit.pitr import config_option
from tests.deploy.conftest import DEPLOY

CRON = DEPLOY / "cron" / "armillary-backup"


def jobs() -> list[tuple[str, str, list[str]]]:
    found = []
    for line in CRON.read_text().splitlines():
        if not line.strip() or line.startswith("#") or "=" in line.split()[0]:
            continue
        fields = line.split(None, 6)
        found.append((" ".join(fields[:5]), fields[5], shlex.split(fields[6])))
    return found


def test_pgbackrest_runs_full_weekly_and_diff_daily_as_postgres() -> None:
    pgbackrest = {cmd[-1]: (when, user, cmd) for when, user, cmd in jobs() if "pgbackrest" in cmd}
    assert set(pgbackrest) == {"--type=full", "--type=diff"}
    assert pgbackrest["--type=full"][0] == "0 1 * * 0"
    assert pgbackrest["--type=diff"][0] == "0 1 * * 1-6"
    for _, user, command in pgbackrest.values():
        assert user == "postgres"
        # As archive_command reads it: conf.d/secrets.conf (the cipher pass) included.
        assert config_option(Path("/etc/pgbackrest/pgbackrest.conf")) in command


def test_the_object_copy_is_a_command_the_cli_has() -> None:
    (command,) = [cmd for _, user, cmd in jobs() if user == "armillary"]
    armillary = command[command.index("armillary") + 1 :]
    assert armillary == ["backup", "objects-sync"]
    result = CliRunner().invoke(app, [*armillary, "--help"])
    assert result.exit_code == 0, result.output
