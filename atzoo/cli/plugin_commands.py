"""`atzoo plugins`, `atzoo list`, `atzoo describe`: what the installed plugins provide.

None of these imports torch or timm: they read the registry's item descriptions only.
"""

from __future__ import annotations

import json
from dataclasses import fields, is_dataclass
from typing import Any

import click

from atzoo.cli.output import user_errors
from atzoo.errors import AtzooError
from atzoo.registry import KIND_NOUNS, KINDS, Registry, RegisteredItem, load_registry


def _registry() -> Registry:
    with user_errors():
        return load_registry()


def _echo_json(data: Any) -> None:
    click.echo(json.dumps(data, indent=2))


def _console():
    from rich.console import Console

    return Console(soft_wrap=False)


def _callable_name(value: Any) -> str:
    module = getattr(value, "__module__", None) or "?"
    name = getattr(value, "__qualname__", None) or getattr(value, "__name__", None) or repr(value)
    return f"{module}:{name}"


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    if callable(value):
        return _callable_name(value)
    return repr(value)


def _provider(entry: RegisteredItem) -> dict[str, str]:
    return {"qualified_name": entry.qualified_name, "plugin": entry.plugin,
            "distribution": entry.distribution, "version": entry.version}


@click.command("plugins")
@click.option("--json", "as_json", is_flag=True, help="Print the plugins as JSON.")
@click.option("--verbose", "-v", is_flag=True, help="Also print the full traceback of each plugin that failed.")
def plugins(as_json: bool, verbose: bool) -> None:
    """Installed plugins: distribution, version, hooks, status and what each registers."""
    registry = _registry()
    if as_json:
        _echo_json([info.to_json() for info in registry.plugins])
        return
    _print_plugins(registry)
    for info in registry.plugins:
        if info.status == "failed":
            click.echo(f"plugin {info.name} ({info.distribution or 'no distribution'}) failed: {info.error}", err=True)
        for problem in info.problems:
            click.echo(f"problem in plugin {info.name}: {problem}", err=True)
        if verbose and info.traceback:
            click.echo(f"\n--- plugin {info.name} ({info.distribution or 'no distribution'}) failed:\n"
                       f"{info.traceback}", err=True)
    if not verbose and any(info.traceback for info in registry.plugins):
        click.echo("(`atzoo plugins --verbose` prints the full traceback of each failed plugin)", err=True)


def _print_plugins(registry: Registry) -> None:
    from rich.table import Table

    table = Table(title="atzoo plugins")
    columns = ["plugin", "distribution", "version", "status", "registers"]
    failed = any(info.error for info in registry.plugins)
    for column in columns + (["error"] if failed else []):
        table.add_column(column, overflow="fold")
    for info in registry.plugins:
        status = {"ok": "[green]ok[/]", "failed": "[red]failed[/]"}.get(info.status, info.status)
        row = [info.name, info.distribution or "-", info.version or "-", status, _counts_text(info.counts)]
        table.add_row(*row, *([info.error] if failed else []))
    _console().print(table)


def _counts_text(counts: dict[str, int]) -> str:
    return ", ".join(f"{n} {kind}" for kind, n in counts.items() if n) or "-"


@click.command("list")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("pattern", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print the entries as JSON.")
def list_items(kind: str, pattern: str | None, as_json: bool) -> None:
    """List registered KIND (backbones, losses, methods, weights), optionally matching a shell
    wildcard PATTERN such as 'resnet*'. Names are short unless two plugins share one."""
    registry = _registry()
    names = registry.names(kind, pattern)
    with user_errors():
        entries = {name: registry.get(kind, name) for name in names}
    if as_json:
        _echo_json([{"name": name, **_provider(entry), "description": entry.item.description}
                    for name, entry in entries.items()])
        return
    if not names:
        click.echo(f"no {kind}" + (f" match {pattern!r}" if pattern else " registered"), err=True)
        return
    from rich.table import Table

    table = Table(show_header=True, box=None, pad_edge=False)
    for column in ("name", "plugin", "description"):
        table.add_column(column, overflow="fold")
    for name, entry in entries.items():
        table.add_row(name, entry.plugin, entry.item.description)
    _console().print(table)


def describe_entry(entry: RegisteredItem, registry: Registry) -> dict[str, Any]:
    """Everything worth knowing about one entry, as JSON-ready data."""
    item = _jsonable(entry.item)
    data: dict[str, Any] = {"kind": entry.kind, "name": entry.name, "provider": _provider(entry), "item": item}
    if entry.kind == "methods":
        data["recipe"] = _method_recipe(entry, registry)
        data["weights"] = [e.qualified_name for e in registry.weights_for(entry.qualified_name)]
    return data


def _method_recipe(entry: RegisteredItem, registry: Registry) -> dict[str, Any]:
    from atzoo.config import build_train_config

    method = entry.item
    recipe: dict[str, Any] = {}
    try:
        backbone = registry.get("backbones", method.backbone)
        recipe["backbone"] = {**_provider(backbone), "args": _jsonable({**backbone.item.defaults, **method.backbone_args}),
                              "embed_dim": backbone.item.embed_dim, "num_outputs": backbone.item.num_outputs}
    except AtzooError as error:
        recipe["backbone"] = {"error": str(error)}
    losses = []
    for term in method.losses:
        try:
            loss = registry.get("losses", term.loss)
            losses.append({**_provider(loss), "weight": term.weight, "heads": _jsonable(term.heads),
                           "args": _jsonable({**loss.item.defaults, **term.args}),
                           "consumes": list(loss.item.consumes), "sampler": loss.item.sampler})
        except AtzooError as error:
            losses.append({"loss": term.loss, "error": str(error)})
    recipe["losses"] = losses
    try:
        recipe["train"] = build_train_config(method.train).model_dump(mode="json")
    except AtzooError as error:
        recipe["train"] = {"error": str(error)}
    recipe["problems"] = registry.method_problems(entry)
    return recipe


def _compact(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value)


def _recipe_rows(recipe: dict[str, Any]) -> list[tuple[str, str]]:
    rows = []
    backbone = recipe.get("backbone", {})
    rows.append(("backbone", backbone.get("error") or f"{backbone['qualified_name']} {_compact(backbone['args'])} "
                                                     f"-> {backbone['num_outputs']} x {backbone['embed_dim']}-d"))
    for loss in recipe.get("losses", []):
        text = loss.get("error") or (f"{loss['weight']} x {loss['qualified_name']} {_compact(loss['args'])}, "
                                     f"heads {_compact(loss['heads'])}, consumes {', '.join(loss['consumes'])}"
                                     + (f", sampler {loss['sampler']}" if loss["sampler"] else ""))
        rows.append(("loss", text))
    train = recipe.get("train", {})
    rows.append(("train", train["error"] if "error" in train
                 else " ".join(f"{key}={_compact(value)}" for key, value in train.items())))
    rows += [("problem", problem) for problem in recipe.get("problems", [])]
    return rows


def _print_description(data: dict[str, Any]) -> None:
    from rich.table import Table

    provider = data["provider"]
    noun = {"backbones": "backbone", "losses": "loss", "methods": "method"}.get(data["kind"], "weights")
    table = Table(title=f"{noun} {provider['qualified_name']}", show_header=False, box=None, pad_edge=False)
    table.add_column("key", style="bold", no_wrap=True)
    table.add_column("value", overflow="fold")
    table.add_row("provided by", f"{provider['plugin']} ({provider['distribution'] or 'no distribution'} "
                                 f"{provider['version']})".replace(" )", ")"))
    recipe = data.get("recipe")
    for key, value in data["item"].items():
        if key == "name" or value in ({}, [], "", None) or (recipe and key in ("backbone", "losses", "train")):
            continue
        table.add_row(key, _compact(value))
    for key, value in _recipe_rows(recipe) if recipe else []:
        table.add_row(key, value)
    if data.get("weights"):
        table.add_row("weights", ", ".join(data["weights"]))
    _console().print(table)


@click.command("describe")
@click.argument("kind", type=click.Choice(KINDS))
@click.argument("name")
@click.option("--format", "output_format", type=click.Choice(["text", "json", "yaml"]), default="text",
              show_default=True, help="yaml for a method writes a recipe file for `atzoo train --config`.")
@click.option("--json", "as_json", is_flag=True, help="Same as --format json.")
def describe(kind: str, name: str, output_format: str, as_json: bool) -> None:
    """Show one registered item: its provider, defaults, inputs, sampler and, for a method, the
    resolved recipe (backbone, losses and every training setting, schedule, optimizers and
    augmentation) with any problem it has."""
    registry = _registry()
    with user_errors():
        entry = registry.get(kind, name)
        if output_format == "yaml" and kind == "methods":
            click.echo(method_recipe_yaml(entry, registry), nl=False)
            return
        data = describe_entry(entry, registry)
    if as_json or output_format == "json":
        _echo_json(data)
    elif output_format == "yaml":
        import yaml

        click.echo(yaml.safe_dump(data, sort_keys=False), nl=False)
    else:
        _print_description(data)


def method_recipe_yaml(entry: RegisteredItem, registry: Registry) -> str:
    """The method's resolved recipe as a YAML recipe file (refused with every problem when invalid)."""
    import yaml

    from atzoo.runner.recipe import recipe_document, resolve_recipe

    document = recipe_document(resolve_recipe(entry.qualified_name, {}, registry))
    header = (f"# Recipe of method {entry.qualified_name} ({entry.distribution or 'no distribution'} "
              f"{entry.version}). Edit it, then: atzoo train --config THIS_FILE --data ROOT --out RUN\n")
    return header + yaml.safe_dump(document, sort_keys=False)


@click.command("check-plugin")
@click.argument("name")
@click.option("--build", is_flag=True, help="Also build each method's model and run one training step on random images.")
@click.option("--image-size", type=(int, int), default=None, metavar="H W",
              help="Image size for the checks (default: each backbone's own; 64x32 for --build).")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
def check_plugin_command(name: str, build: bool, image_size: tuple[int, int] | None, as_json: bool) -> None:
    """Check plugin NAME alone (with the built-ins, whatever else is installed): it loads, every item
    it registers conforms, every method's recipe is valid, and importing it is fast. Every problem is
    reported at once; exit status 2 when there is any."""
    from atzoo.testing import plugin_report

    report = plugin_report(name, image_size=image_size, build_methods=build)
    if as_json:
        _echo_json(report)
    else:
        _print_check_report(report)
    if report["problems"]:
        raise click.exceptions.Exit(2)


def _print_check_report(report: dict[str, Any]) -> None:
    for kind in ("backbones", "losses", "methods"):
        for summary in report[kind]:
            click.echo(f"ok       {KIND_NOUNS[kind]} {summary['name']}")
    if report["import_seconds"] is not None:
        click.echo(f"import   {report['import_seconds']:.3f} s")
    for warning in report["warnings"]:
        click.echo(f"warning  {warning}", err=True)
    for problem in report["problems"]:
        click.echo(f"problem  {problem}", err=True)
    count = len(report["problems"])
    click.echo(f"plugin {report['plugin']}: " + (f"{count} problem(s)" if count else "all checks passed"),
               err=bool(count))


