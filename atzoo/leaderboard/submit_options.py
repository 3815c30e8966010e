"""The arguments of `atzoo submit`, declared once.

The command line's `submit` command is built from them, and the runner service parses the entry
arguments of a train-then-submit job with them before queueing it (nothing runs), so a job is never
accepted with arguments its `atzoo submit` step would refuse after hours of training.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from atzoo.errors import LeaderboardError
from atzoo.formats.entry import RELEASES, TASK_FAMILIES
from atzoo.leaderboard.submit import weights_source_problem

REGISTRY_HELP = "The leaderboard registry (default: $ATZOO_LEADERBOARD_DIR, else ./leaderboard)."


def submit_parameters() -> list[click.Parameter]:
    """Fresh parameter objects for `atzoo submit RUN_OR_EXPORT_DIR [OPTIONS]`."""
    return [
        click.Argument(["source"], type=click.Path(path_type=Path), metavar="RUN_OR_EXPORT_DIR"),
        click.Option(["--weights-repo", "weights_ref"], metavar="ORG/NAME@COMMIT",
                     help="Where the weights are on the Hub, pinned to a 40-hex commit (`atzoo push` prints it)."),
        click.Option(["--push", "push_to"], metavar="ORG/NAME[@BRANCH]",
                     help="Instead of --weights-repo: once every check passes, upload the weights (guarded, as "
                          "`atzoo push`) and pin the commit that creates."),
        click.Option(["--sha256"], help="Expected sha256 of model.safetensors; refused when the local file differs."),
        click.Option(["--submitter"], required=True, help="Who submits (name, GitHub handle or e-mail)."),
        click.Option(["--pretraining"], required=True,
                     help="Pretraining of the backbone, e.g. ImageNet-1k, CLIP, none."),
        click.Option(["--id", "entry_id"],
                     help="Entry id (default: method slug + first 8 hex of the weights' sha256)."),
        click.Option(["--name"], help="Method name shown on the board (default: the registered method's name)."),
        click.Option(["--task-family"], type=click.Choice(TASK_FAMILIES), default="other", show_default=True),
        click.Option(["--paper"], help="Link to the paper (http/https)."),
        click.Option(["--code"], help="Link to the code (http/https)."),
        click.Option(["--extra-training-data"], multiple=True, metavar="NAME",
                     help="Training data beyond AT-USTC's training split. Repeatable."),
        click.Option(["--re-ranking"], is_flag=True, help="The reported numbers use re-ranking."),
        click.Option(["--tta"], multiple=True, metavar="KIND",
                     help="Test-time augmentation used, e.g. flip. Repeatable."),
        click.Option(["--query-expansion"], is_flag=True, help="The reported numbers use query expansion."),
        click.Option(["--notes"], default="", help="Anything else a reader should know about the numbers."),
        click.Option(["--dataset-release"], type=click.Choice(RELEASES),
                     help="AT-USTC release (needed for a run dir trained on AT-USTC; checked for a package)."),
        click.Option(["--cross-results"], type=click.Path(dir_okay=False, path_type=Path),
                     help="Report the cross-dataset figures of this file (written by `atzoo evaluate --cross` with "
                          "these weights; default: the run's cross_metrics.json when there is one)."),
        click.Option(["--dry-run"], is_flag=True, help="Check everything and print the entry; write nothing."),
        click.Option(["--dir", "registry_dir"], type=click.Path(path_type=Path), default=None, help=REGISTRY_HELP),
    ]


def parse_submit_args(args: list[str] | tuple[str, ...]) -> dict[str, Any]:
    """`atzoo submit ARGS` parsed as the command would parse them (without running it); a
    `LeaderboardError` says what is wrong (the message is the problem alone)."""
    command = click.Command("submit", params=submit_parameters(), add_help_option=False)
    try:
        context = command.make_context("atzoo submit", list(args), resilient_parsing=False)
    except click.ClickException as error:
        raise LeaderboardError(error.format_message()) from None
    problem = weights_source_problem(context.params["weights_ref"], context.params["push_to"])
    if problem:
        raise LeaderboardError(problem)
    return dict(context.params)
