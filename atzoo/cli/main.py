"""The `atzoo` command: a click group whose subcommands are imported only when used,
so `atzoo --help` stays fast however heavy the commands' libraries are."""

from __future__ import annotations

import importlib
import os
import sys

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


@click.group(cls=LazyGroup)
@click.version_option(package_name="atzoo")
@click.option("--strict", is_flag=True,
              help="Fail (exit 2) when any installed plugin fails to load (also: ATZOO_STRICT=1).")
@click.pass_context
def cli(ctx: click.Context, strict: bool) -> None:
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
    """Entry point: user errors print one clear line and exit with status 2. A command that ends with
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
    if isinstance(code, int) and not isinstance(code, bool) and code != 0:
        sys.exit(code)


if __name__ == "__main__":
    main()
