"""Long commands show a progress bar on a terminal only, and print the elapsed time at the end."""

from __future__ import annotations

import fcntl
import os
import pty
import struct
import subprocess
import sys
import termios

import pytest
from click.testing import CliRunner

from atzoo.cli.output import format_elapsed

BAR = "img/s"
"""What tqdm prints in a bar with unit img (rate) and nowhere else."""


def test_elapsed_times_read_naturally():
    assert format_elapsed(0.04) == "0.0 s"
    assert format_elapsed(12.34) == "12.3 s"
    assert format_elapsed(125) == "2 min 05 s"
    assert format_elapsed(3725) == "1 h 02 min"


def _synth_command(root) -> list[str]:
    return [sys.executable, "-m", "atzoo", "synth", str(root), "--preset", "tiny"]


def test_piped_output_has_no_bar_and_ends_with_the_elapsed_time(tmp_path):
    done = subprocess.run(_synth_command(tmp_path / "piped"), capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr
    assert BAR not in done.stderr and "\r" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith("atzoo synth finished in ")


def _run_on_a_terminal(command: list[str]) -> tuple[int, str]:
    """Run with stderr on a pseudo-terminal; returns the exit status and what the terminal showed."""
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))   # a real terminal has a size
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=slave, stdin=subprocess.DEVNULL)
    os.close(slave)
    shown = bytearray()
    while True:
        try:
            chunk = os.read(master, 4096)
        except OSError:
            break
        if not chunk:
            break
        shown += chunk
    os.close(master)
    return process.wait(timeout=600), shown.decode("utf-8", "replace")


def test_a_terminal_gets_the_bar(tmp_path):
    status, shown = _run_on_a_terminal(_synth_command(tmp_path / "tty"))
    assert status == 0, shown
    assert BAR in shown and "synth" in shown
    assert "atzoo synth finished in " in shown


def test_quiet_hides_the_bar_even_on_a_terminal(tmp_path):
    status, shown = _run_on_a_terminal([*_synth_command(tmp_path / "quiet"), "--quiet"])
    assert status == 0, shown
    assert BAR not in shown and "atzoo synth finished in " in shown


@pytest.mark.slow
def test_embed_prints_its_elapsed_time_on_stderr_only(tiny_synth_root, tmp_path):
    import json

    from atzoo.cli.main import cli
    from atzoo.zoo import demo_package_path

    person = sorted(p for p in tiny_synth_root.iterdir() if p.is_dir())[0]
    out = tmp_path / "f.npz"
    result = CliRunner().invoke(cli, ["embed", str(demo_package_path()), str(person), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "atzoo embed finished in " in result.stderr and "finished in" not in result.stdout
    assert BAR not in result.stderr
    json.dumps(result.stdout)


@pytest.mark.slow
def test_train_and_evaluate_print_their_elapsed_time_on_stderr(tiny_synth_root, tmp_path):
    from atzoo.cli.main import cli

    run = tmp_path / "run"
    trained = CliRunner().invoke(cli, ["train", "baseline", "--data", str(tiny_synth_root), "--out", str(run),
                                       "--set", "epochs=1", "--set", "image_size=[32,16]", "--set", "num_workers=0",
                                       "--set", "num_persons=4"])
    assert trained.exit_code == 0, trained.output
    assert "atzoo train finished in " in trained.stderr and "finished in" not in trained.stdout
    evaluated = CliRunner().invoke(cli, ["evaluate", str(run), "--json"])
    assert evaluated.exit_code == 0, evaluated.output
    assert "atzoo evaluate finished in " in evaluated.stderr and "finished in" not in evaluated.stdout
    assert BAR not in trained.stderr + evaluated.stderr
