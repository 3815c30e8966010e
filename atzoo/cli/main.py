"""The `atzoo` command: a click group whose subcommands are imported only when used,
so `atzoo --help` stays fast however heavy the commands' libraries are."""

from __future__ import annotations

import errno
import importlib
import os
import sys
import traceback

import click

from atzoo.errors import AtzooError

# name -> "module:attribute" of a click command or group. One line per command.
COMMANDS = {
    "synth": "atzoo.cli.synth_command:synth",
    "data": "atzoo.cli.data_commands:data",
    "eval-features": "atzoo.cli.eval_commands:eval_features",
    "plugins": "atzoo.cli.plugin_commands:plugins",
    "list": "atzoo.cli.plugin_commands:list_items",
    "describe": "atzoo.cli.plugin_commands:describe",
    "check-plugin": "atzoo.cli.plugin_commands:check_plugin_command",
    "train": "atzoo.cli.run_commands:train",
    "evaluate": "atzoo.cli.run_commands:evaluate",
    "quickstart": "atzoo.cli.run_commands:quickstart",
    "export": "atzoo.cli.weights_commands:export",
    "push": "atzoo.cli.weights_commands:push",
    "pull": "atzoo.cli.weights_commands:pull",
    "embed": "atzoo.cli.weights_commands:embed",
    "zoo": "atzoo.cli.weights_commands:zoo",
    "submit": "atzoo.cli.leaderboard_commands:submit",
    "leaderboard": "atzoo.cli.leaderboard_commands:leaderboard",
    "runner": "atzoo.cli.service_commands:runner",
}

COMMAND_HELP = {
    "synth": "Generate a synthetic dataset in the AT-USTC layout.",
    "data": "Inspect an AT-USTC root (summary of every protocol set).",
    "eval-features": "Evaluate your own embeddings on the six scenarios.",
    "plugins": "Installed plugins, their status and what they register.",
    "list": "List registered backbones, losses or methods.",
    "describe": "Show one registered item: provider, defaults, inputs.",
    "check-plugin": "Check one plugin alone: contract, recipes, import time.",
    "train": "Train a registered method with the shared runner.",
    "evaluate": "Evaluate a run directory on the six scenarios.",
    "quickstart": "Generate synthetic data, train the baseline on CPU, evaluate.",
    "export": "Package a run's weights, config, results and model card.",
    "push": "Upload a model package to the Hugging Face Hub (guarded).",
    "pull": "Download a model package at a pinned revision, checking its sha256.",
    "embed": "Embed your own images with a model into a features file.",
    "zoo": "Pretrained weights registered by the plugins.",
    "submit": "Check a run or package and write its leaderboard entry.",
    "leaderboard": "Leaderboard registry: check, list, verify, moderate, schema, serve.",
    "runner": "The shared runner as a service: job queue, workers, status.",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        target = COMMANDS.get(name)
        if target is None:
            return None
        module_name, attribute = target.split(":")
        return getattr(importlib.import_module(module_name), attribute)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, COMMAND_HELP.get(name, "")) for name in self.list_commands(ctx)]
        with formatter.section("Commands"):
            formatter.write_dl(rows)


ENV_DEBUG = "ATZOO_DEBUG"

# errno -> what to do about it. A file-system error of one of these kinds is the user's machine
# speaking (permissions, a full or read-only disk, a wrong kind of path), not a bug in atzoo.
FILE_SYSTEM_ERRORS = {
    errno.EACCES: "permission denied: check the path's permissions or choose another path",
    errno.EPERM: "operation not permitted: check the path's permissions or choose another path",
    errno.ENOSPC: "no space left on the device: free some space or choose another location",
    errno.EDQUOT: "disk quota exceeded: free some space or choose another location",
    errno.EROFS: "the file system is read-only: choose a writable location",
    errno.EISDIR: "is a folder where a file was expected: give the path of a file",
    errno.ENOTDIR: "a part of the path is a file where a folder was expected: check the path",
    errno.ENOENT: "no such file or folder: check the path",
    errno.EEXIST: "already exists: choose another path",
    errno.ENAMETOOLONG: "the file name is too long: choose a shorter path",
    errno.ELOOP: "too many symbolic links: check the path",
    errno.EFBIG: "the file is too large for this file system: choose another location",
    errno.EMFILE: "too many open files: raise the limit (ulimit -n) and retry",
    errno.ENOTEMPTY: "the folder is not empty: choose a new or empty folder",
    errno.EIO: "input/output error: the disk or file system is failing; check it",
}


def debug_requested(argv: list[str] | None) -> bool:
    value = os.environ.get(ENV_DEBUG, "").strip().lower()
    return "--debug" in (sys.argv[1:] if argv is None else argv) or value not in ("", "0", "false", "no", "off")


def file_system_message(error: OSError) -> str | None:
    """One line naming the path and what to do, for a file-system error; None for any other OSError."""
    advice = FILE_SYSTEM_ERRORS.get(error.errno or -1)
    if advice is None:
        return None
    paths = " -> ".join(str(p) for p in (error.filename, error.filename2) if p is not None)
    if not paths:
        from atzoo.outputs import outputs_checked

        written = outputs_checked()
        paths = f"writing {written[-1]}" if written else "a file"
    return f"{paths}: {advice} ({error.strerror or error})"


@click.group(cls=LazyGroup)
@click.version_option(package_name="atzoo")
@click.option("--strict", is_flag=True,
              help="Fail (exit 2) when any installed plugin fails to load (also: ATZOO_STRICT=1).")
@click.option("--debug", is_flag=True, help=f"Show the traceback of a file-system error (also: {ENV_DEBUG}=1).")
@click.pass_context
def cli(ctx: click.Context, strict: bool, debug: bool) -> None:
    """atzoo: model zoo and leaderboard for anytime person re-identification on AT-USTC."""
    if strict:
        _set_env_for_command(ctx, "ATZOO_STRICT", "1")


def _set_env_for_command(ctx: click.Context, name: str, value: str) -> None:
    """Set an environment variable while the command runs (the registry reads it), then restore it."""
    previous = os.environ.get(name)
    os.environ[name] = value

    def restore() -> None:
        if previous is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = previous

    ctx.call_on_close(restore)


def main(argv: list[str] | None = None) -> None:
    """Entry point: user errors and file-system errors (permissions, a full or read-only disk, a wrong
    kind of path) print one clear line and exit with status 2 (`--debug` adds the traceback). A command that ends with
    ``ctx.exit(CODE)`` exits with CODE (click hands it back as the return value here)."""
    try:
        code = cli.main(args=argv, standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("Aborted.", err=True)
        sys.exit(1)
    except click.ClickException as error:
        error.show()
        sys.exit(error.exit_code)
    except AtzooError as error:
        click.echo(f"Error: {error}", err=True)
        sys.exit(2)
    except OSError as error:
        message = file_system_message(error)
        if message is None:
            raise
        if debug_requested(argv):
            traceback.print_exc()
        click.echo(f"Error: {message}", err=True)
        sys.exit(2)
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        sys.exit(code)


if __name__ == "__main__":
    main()
