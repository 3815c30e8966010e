"""`atzoo submit` and `atzoo leaderboard check|list|verify|moderate|schema|serve`."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING
from pathlib import Path

import click

from atzoo.cli.output import console, user_errors
from atzoo.leaderboard.submit_options import REGISTRY_HELP, submit_parameters
from atzoo.formats.entry import RELEASES

if TYPE_CHECKING:
    from atzoo.formats.verifiers import VerifiersFile
    from atzoo.leaderboard.store import Snapshot


def registry_option(function):
    option = click.option("--dir", "registry_dir", type=click.Path(path_type=Path), default=None, help=REGISTRY_HELP)
    return option(function)


def _registry(registry_dir: Path | None) -> Path:
    from atzoo.leaderboard.store import default_leaderboard_dir

    return registry_dir or default_leaderboard_dir()


def _entry_file(registry_dir: Path | None, entry: str) -> Path:
    """ENTRY as a file path when one exists, else an id in the registry (checked: no paths)."""
    from atzoo.leaderboard.store import registered_entry_path

    path = Path(entry)
    return path if path.is_file() else registered_entry_path(_registry(registry_dir), entry)


@click.command(params=submit_parameters())
def submit(source: Path, weights_ref: str | None, push_to: str | None, sha256: str | None, submitter: str,
           pretraining: str,
           entry_id: str | None, name: str | None, task_family: str, paper: str | None, code: str | None,
           extra_training_data: tuple[str, ...], re_ranking: bool, tta: tuple[str, ...], query_expansion: bool,
           notes: str, dataset_release: str | None, cross_results: Path | None, dry_run: bool,
           registry_dir: Path | None) -> None:
    """Check a run directory or an exported package and write its leaderboard entry."""
    from atzoo.leaderboard.store import load_snapshot, write_entry
    from atzoo.leaderboard.submit import next_step, prepare_submission

    from atzoo.leaderboard.submit import weights_source_problem

    problem = weights_source_problem(weights_ref, push_to)
    if problem:
        raise click.UsageError(problem)
    root = _registry(registry_dir)
    with user_errors():
        submission = prepare_submission(
            source, weights_ref=weights_ref, push_to=push_to, push_now=not dry_run, sha256=sha256,
            submitter=submitter, pretraining=pretraining,
            entry_id=entry_id, name=name, task_family=task_family, paper=paper, code=code,
            extra_training_data=extra_training_data, re_ranking=re_ranking, tta=tta,
            query_expansion=query_expansion, notes=notes, dataset_release=dataset_release,
            snapshot=load_snapshot(root), cross_results=cross_results or _run_cross_results(source))
        for note in submission.notes:
            click.echo(f"Note: {note}", err=True)
        if dry_run:
            click.echo(json.dumps(submission.entry.to_json(), indent=2))
            click.echo("Dry run: every check passed; nothing was written.", err=True)
            return
        path = write_entry(root, submission.entry)
    click.echo(next_step(path, submission.entry.dataset.release))


def _run_cross_results(source: Path) -> Path | None:
    from atzoo.formats.cross_metrics import CROSS_METRICS

    candidate = source / CROSS_METRICS
    return candidate if candidate.is_file() else None


@click.group()
def leaderboard() -> None:
    """The leaderboard registry: check, list, verify, moderate entries; export the schema; serve the app."""


@leaderboard.command("check")
@click.argument("entry_files", nargs=-1, required=True, type=click.Path(path_type=Path))
@registry_option
@click.pass_context
def check(ctx: click.Context, entry_files: tuple[Path, ...], registry_dir: Path | None) -> None:
    """List every problem of ENTRY_FILES (schema, verified-block signature, duplicates in the registry); exit 2
    when any."""
    from atzoo.errors import LeaderboardError
    from atzoo.formats.verifiers import VERIFIERS, read_verifiers_file
    from atzoo.leaderboard.store import load_snapshot

    root = _registry(registry_dir)
    with user_errors():
        listing = read_verifiers_file(root / VERIFIERS)
    snapshot = None
    try:
        snapshot = load_snapshot(root)
    except LeaderboardError as error:
        click.echo(f"Note: duplicates not checked: {error}", err=True)
    failed = 0
    for path in entry_files:
        problems = _file_problems(path, snapshot, listing)
        if problems:
            failed += 1
            click.echo(f"{path}: {len(problems)} problem(s)")
            for problem in problems:
                click.echo(f"  - {problem}")
        else:
            click.echo(f"{path}: ok")
    if failed:
        click.echo(f"{failed} of {len(entry_files)} file(s) have problems", err=True)
        ctx.exit(2)


def _file_problems(path: Path, snapshot: Snapshot | None, listing: VerifiersFile) -> list[str]:
    from atzoo.errors import LeaderboardError
    from atzoo.io import read_json_checked
    from atzoo.formats.entry import Entry, entry_problems
    from atzoo.leaderboard.signing import signature_problem
    from atzoo.leaderboard.store import entry_path, registry_problems

    if not path.is_file():
        return ["no such file"]
    try:
        data = read_json_checked(path, LeaderboardError)
    except LeaderboardError as error:
        return [str(error)]
    problems = entry_problems(data)
    if problems:
        return problems
    entry = Entry.model_validate(data)
    refused = signature_problem(entry, listing)
    problems = [refused] if refused else []
    if snapshot is None:
        return problems
    registered = entry_path(snapshot.root, entry.id)
    in_registry = path.resolve().parent == registered.parent
    if in_registry and path.resolve() != registered:
        problems.append(f"the file name must be the entry id ({entry.id}.json)")
    return problems + registry_problems(entry, snapshot, replacing=path.resolve() == registered)


@leaderboard.command("list")
@click.option("--release", type=click.Choice(RELEASES), default="403k", show_default=True,
              help="The dataset release shown: releases are never ranked together.")
@click.option("--metric", type=click.Choice(("rank1", "mAP", "mINP")), default="rank1", show_default=True)
@click.option("--all", "show_all", is_flag=True, help="Also show flagged, withdrawn and test-time-trick entries.")
@click.option("--json", "as_json", is_flag=True, help="Print the rows as JSON.")
@registry_option
def list_entries(release: str, metric: str, show_all: bool, as_json: bool, registry_dir: Path | None) -> None:
    """One release's entries in trust tiers (verified, reported, submitted; mismatch and failed unranked
    below), best Any-Time first inside each tier; the same order as the app and its CSV."""
    from atzoo.leaderboard.store import load_snapshot
    from atzoo.leaderboard.table import Filters, build_table

    with user_errors():
        snapshot = load_snapshot(_registry(registry_dir))
        filters = Filters(release=release, show_flagged=show_all, include_tricks=show_all,
                          include_withdrawn=show_all)
        table = build_table(snapshot, metric, filters)
    for name, problems in snapshot.problems.items():
        click.echo(f"Warning: {name} was skipped: {'; '.join(problems)}", err=True)
    if as_json:
        click.echo(json.dumps(table.rows, indent=2))
        return
    from rich.table import Table

    from atzoo.protocol import ANY_TIME

    title = f"atzoo leaderboard, release {release}, {metric} (%): {len(table.rows)} entries"
    view = Table(title=title, caption=table.hidden_message or None, show_header=True)
    for column in ("Rank", "ID", "Method", "Status", ANY_TIME, "Flags"):
        view.add_column(column, overflow="fold")
    for row in table.rows:
        score = "-" if row[ANY_TIME] is None else f"{row[ANY_TIME]:.2f}"
        view.add_row("-" if row["Rank"] is None else str(row["Rank"]), row["ID"], row["Method"], row["Status"],
                     score, row["Flags"])
    console().print(view)


@leaderboard.command("keygen")
@click.option("--name", required=True, help="The verifier's name, as it will appear in verified blocks.")
@click.option("--key", "key_path", type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="Where to write the private key (default: ~/.config/atzoo/keys/NAME.pem, or $ATZOO_KEY_DIR).")
@registry_option
def keygen(name: str, key_path: Path | None, registry_dir: Path | None) -> None:
    """Create a verifier's Ed25519 key pair: the private key (mode 0600) outside the repository, the public
    key added to the registry's verifiers.json."""
    from atzoo.leaderboard.signing import keygen as make_key, verifiers_path

    root = _registry(registry_dir)
    with user_errors():
        path, item = make_key(root, name, key_path)
    click.echo(f"Private key written to {path} (mode 0600): keep it secret, never commit it.")
    click.echo(f"Public key of {item.name} added to {verifiers_path(root)}: commit that file.")


@leaderboard.command("verify")
@click.argument("entry", metavar="ENTRY_ID_OR_FILE")
@click.option("--data", "data_root", required=True, type=click.Path(path_type=Path),
              help="Local dataset root of the entry's release (the synthetic root for synthetic entries).")
@click.option("--tolerance", type=float, default=None, help="Accepted |reported - measured|, percentage points "
                                                            "(default 0.5).")
@click.option("--device", help="cpu or cuda (default: cuda when available).")
@click.option("--no-progress", is_flag=True, help="Hide the progress bar.")
@click.option("--verifier", envvar="ATZOO_VERIFIER", default="", show_envvar=True,
              help="The verifier (listed in the registry's verifiers.json) whose key signs the verified block.")
@click.option("--key", "key_path", envvar="ATZOO_VERIFIER_KEY", show_envvar=True,
              type=click.Path(dir_okay=False, path_type=Path), default=None,
              help="The verifier's private key (default: ~/.config/atzoo/keys/VERIFIER.pem).")
@click.option("--cross", "cross", multiple=True, metavar="NAME=ROOT",
              help="Also re-measure the entry's cross-dataset figures on this local public dataset (repeatable).")
@registry_option
def verify(entry: str, data_root: Path, tolerance: float | None, device: str | None, no_progress: bool,
           verifier: str, key_path: Path | None, cross: tuple[str, ...], registry_dir: Path | None) -> None:
    """Fetch the entry's exact weights, re-evaluate them on the local dataset, write the signed verified block."""
    from atzoo.leaderboard.signing import default_key_path, load_signer, private_key_warning
    from atzoo.leaderboard.verify import DEFAULT_TOLERANCE, verify_entry
    from atzoo.runner.cross_evaluation import parse_cross_spec

    from atzoo.cli.output import elapsed

    with elapsed("atzoo leaderboard verify"), user_errors():
        cross_specs = [parse_cross_spec(spec) for spec in cross]
        path = _entry_file(registry_dir, entry)
        signer = load_signer(verifier, key_path)
        warning = private_key_warning(key_path or default_key_path(signer.name))
        if warning:
            click.echo(f"Warning: {warning}", err=True)
        registry_root = registry_dir if registry_dir is not None or path.parent.name != "entries" else path.parent.parent
        result = verify_entry(path, data_root, signer=signer, registry_dir=_registry(registry_root),
                              tolerance=DEFAULT_TOLERANCE if tolerance is None else tolerance, device=device,
                              progress=not no_progress, cross=cross_specs)
    verified = result.verified
    assert verified is not None, "verify_entry always writes a verified block"
    difference = "-" if verified.max_difference is None else f"{verified.max_difference:.2f}"
    click.echo(f"{result.id}: {verified.status} (max difference {difference} points, tolerance "
               f"{verified.tolerance}) - {verified.message}")
    click.echo(f"Signed by {verified.verifier}; written to {path}")


@leaderboard.command("moderate")
@click.argument("entry_id")
@click.option("--flag", "flag_reason", metavar="REASON", help="Flag the entry, with the reason shown beside it.")
@click.option("--unflag", is_flag=True, help="Remove the flag.")
@click.option("--withdraw", is_flag=True, help="Withdraw the entry (kept on disk, hidden by default).")
@click.option("--superseded-by", metavar="ID", help="Mark the entry as replaced by entry ID.")
@registry_option
def moderate(entry_id: str, flag_reason: str | None, unflag: bool, withdraw: bool, superseded_by: str | None,
             registry_dir: Path | None) -> None:
    """Flag, unflag, withdraw or supersede one entry (exactly one action)."""
    from atzoo.leaderboard import moderation

    actions = [a for a in (flag_reason is not None, unflag, withdraw, superseded_by is not None) if a]
    if len(actions) != 1:
        raise click.UsageError("choose exactly one of --flag REASON, --unflag, --withdraw, --superseded-by ID")
    root = _registry(registry_dir)
    with user_errors():
        if flag_reason is not None:
            entry = moderation.flag(root, entry_id, flag_reason)
        elif unflag:
            entry = moderation.unflag(root, entry_id)
        elif withdraw:
            entry = moderation.withdraw(root, entry_id)
        else:
            assert superseded_by is not None, "exactly one action was chosen above"
            entry = moderation.supersede(root, entry_id, superseded_by)
    click.echo(f"{entry.id}: {json.dumps(entry.moderation.model_dump())}")


@leaderboard.command("schema")
@click.option("--out", type=click.Path(dir_okay=False, allow_dash=True, path_type=Path),
              help="Write only the entry schema there ('-' for stdout); default: every schema file into the "
                   "registry's schema/ folder.")
@registry_option
def schema(out: Path | None, registry_dir: Path | None) -> None:
    """Export the registry's JSON Schemas (draft 2020-12): entries, verifiers."""
    from atzoo.io import write_text_atomic
    from atzoo.formats.entry import SCHEMA_FILE
    from atzoo.leaderboard.schemas import registry_schemas
    from atzoo.leaderboard.store import SCHEMA_DIR

    schemas = {name: json.dumps(content, indent=2) + "\n" for name, content in registry_schemas().items()}
    if out is not None and str(out) == "-":
        click.echo(schemas[SCHEMA_FILE], nl=False)
        return
    if out is not None and not out.parent.is_dir():
        raise click.BadParameter(f"{out.parent} is not an existing folder", param_hint="'--out'")
    targets = {out: schemas[SCHEMA_FILE]} if out is not None else {
        _registry(registry_dir) / SCHEMA_DIR / name: text for name, text in schemas.items()}
    for target, text in targets.items():
        write_text_atomic(target, text)
        click.echo(f"JSON Schema written to {target}")


@leaderboard.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True)
@click.option("--port", type=click.IntRange(1, 65535), default=None,
              help="Port (default: Gradio's, 7860 or the next free one).")
@click.option("--share", is_flag=True, help="Also open a public Gradio share link.")
@click.option("--runner-dir", type=click.Path(path_type=Path), default=None,
              help="Show this runner directory's verification queue (see `atzoo runner`).")
@click.option("--model", "models", multiple=True, metavar="LABEL=PATH",
              help="Offer a model package or run directory on the Demo tab (repeatable).")
@click.option("--local-paths/--no-local-paths", default=None,
              help="Let Demo visitors load models by server path (default: only on 127.0.0.1 without --share).")
@registry_option
def serve(host: str, port: int | None, share: bool, runner_dir: Path | None, models: tuple[str, ...],
          local_paths: bool | None, registry_dir: Path | None) -> None:
    """Start the leaderboard app (Gradio) on the registry."""
    from atzoo.app.app import serve as serve_app

    with user_errors():
        demo_models = dict(_label_and_path(item) for item in models)
        serve_app(_registry(registry_dir), host=host, port=port, share=share, runner_dir=runner_dir,
                  demo_models=demo_models, allow_local_paths=local_paths)


def _label_and_path(item: str) -> tuple[str, str]:
    from atzoo.errors import AtzooError

    label, sep, path = item.partition("=")
    if not sep or not label.strip() or not path.strip():
        raise AtzooError(f"--model {item!r}: expected LABEL=PATH (a model package or run directory)")
    if not Path(path).exists():
        raise AtzooError(f"--model {item!r}: {path} does not exist")
    return label.strip(), path.strip()
