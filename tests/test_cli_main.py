"""The `atzoo` entry point itself (not click's test runner): exit statuses as a shell sees them."""

import subprocess
import sys

import pytest

from atzoo.cli.main import main


def test_a_command_that_exits_with_a_status_keeps_it(tmp_path):
    registry = tmp_path / "leaderboard"
    (registry / "entries").mkdir(parents=True)
    bad = tmp_path / "bad.json"
    bad.write_text('{"schema_version": 1}')
    with pytest.raises(SystemExit) as exited:
        main(["leaderboard", "check", "--dir", str(registry), str(bad)])
    assert exited.value.code == 2


def test_success_user_errors_and_usage_errors_from_a_shell(tmp_path):
    def atzoo(*args):
        return subprocess.run([sys.executable, "-m", "atzoo", *args], capture_output=True, text=True, timeout=600)

    assert atzoo("leaderboard", "schema", "--out", "-").returncode == 0
    missing = atzoo("leaderboard", "check", str(tmp_path / "missing.json"))
    assert missing.returncode == 2 and "missing.json" in missing.stdout + missing.stderr
    assert atzoo("no-such-command").returncode == 2
