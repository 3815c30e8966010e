"""Typed, versioned file formats on pydantic models, and their error messages.

A format is a :class:`FormatModel` subclass. `read_model` reads a file strictly (see
`atzoo.formats.jsonfile`), upgrades an older format version through the model's `MIGRATIONS` (or
refuses it, naming the version expected), then validates it; every problem becomes one line of a
:class:`~atzoo.errors.FormatError`: ``FILE: FIELD.PATH = VALUE: what is wrong; expected WHAT``,
where WHAT (a type, a range, the allowed values) comes from the model's own JSON Schema, so the
message and the published schema never disagree.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from typing import Any, ClassVar, TypeVar

from pydantic import BaseModel, ConfigDict, ValidationError

from atzoo.errors import FormatError
from atzoo.formats.jsonfile import MAX_BYTES, parse_json, read_json, write_json

M = TypeVar("M", bound=BaseModel)
Migration = Callable[[dict[str, Any]], dict[str, Any]]


class Record(BaseModel):
    """A part of a file format (a nested object): unknown keys and non-finite floats refused, frozen.
    Numbers get `strict=True` in their `Field`, so that `"5"` and `true` are not read as numbers."""

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)


class FormatModel(Record):
    """A whole file format, with a version.

    Subclasses set `FORMAT_NAME` (words for messages), `FORMAT_VERSION` (the version this atzoo
    writes), and declare the version field themselves (``format_version: Literal[2] = 2``) so that it
    is written and published in the schema. A format whose files spell the version as a tagged string
    (``"format": "atzoo-run-1"``) sets `VERSION_KEY = "format"` and `VERSION_PREFIX = "atzoo-run-"`.
    A file written before the version field existed is read as version `UNVERSIONED` (None: refused).
    `MIGRATIONS[v]` turns the data of version v into the data of version v + 1, the version field
    aside (set by `upgrade`); a ValueError it raises becomes a FormatError naming the file.
    """

    FORMAT_NAME: ClassVar[str] = "file"
    FORMAT_VERSION: ClassVar[int] = 1
    VERSION_KEY: ClassVar[str] = "format_version"
    VERSION_PREFIX: ClassVar[str] = ""
    UNVERSIONED: ClassVar[int | None] = None
    MIGRATIONS: ClassVar[Mapping[int, Migration]] = {}

    @classmethod
    def version_value(cls, version: int) -> int | str:
        """How a file of format version `version` spells it."""
        return f"{cls.VERSION_PREFIX}{version}" if cls.VERSION_PREFIX else version

    @classmethod
    def version_of(cls, data: dict[str, Any]) -> Any:
        """The format version a file declares: an int, None when absent, or the raw value when unreadable."""
        if cls.VERSION_KEY not in data:
            return cls.UNVERSIONED
        value = data[cls.VERSION_KEY]
        if cls.VERSION_PREFIX and isinstance(value, str) and value.startswith(cls.VERSION_PREFIX):
            number = value[len(cls.VERSION_PREFIX):]
            return int(number) if number.isdigit() and len(number) < 6 else value
        return value if not cls.VERSION_PREFIX else str(value)

    @classmethod
    def upgrade(cls, data: dict[str, Any], source: str) -> dict[str, Any]:
        """`data` at the current format version, migrated from an older one, or a FormatError."""
        version = cls.version_of(data)
        current = cls.FORMAT_VERSION
        expected = show_value(cls.version_value(current))
        if version is None:
            raise FormatError(f"{source}: {cls.VERSION_KEY} is missing; expected {expected} "
                              f"(a {cls.FORMAT_NAME} written by atzoo)", file=source)
        if type(version) is not int:
            raise FormatError(f"{source}: {cls.VERSION_KEY} = {show_value(data.get(cls.VERSION_KEY))} is not a "
                              f"{cls.FORMAT_NAME} format version; expected {expected}", file=source)
        if version > current:
            raise FormatError(f"{source}: {cls.VERSION_KEY} = {show_value(cls.version_value(version))} was written by "
                              f"a newer atzoo; this one reads {cls.FORMAT_NAME} version {current} and older: "
                              f"upgrade atzoo", file=source)
        while version < current:
            migrate = cls.MIGRATIONS.get(version)
            if migrate is None:
                raise FormatError(f"{source}: {cls.VERSION_KEY} = {show_value(cls.version_value(version))} is no "
                                  f"longer read; expected version {expected}: write the {cls.FORMAT_NAME} again "
                                  f"with this atzoo", file=source)
            try:
                data = migrate(dict(data))
            except ValueError as error:
                raise FormatError(f"{source}: {error}", file=source) from None
            version += 1
            data[cls.VERSION_KEY] = cls.version_value(version)
        return data


def show_value(value: Any, limit: int = 60) -> str:
    """A short JSON rendering of a value for an error message."""
    try:
        text = json.dumps(value, allow_nan=True)
    except (TypeError, ValueError):
        text = repr(value)
    return text if len(text) <= limit else text[:limit - 3] + "..."


def validate_data(data: Any, model: type[M], source: str, *, upgrade: bool = True) -> M:
    """Parsed JSON as `model` (upgraded first if it is a FormatModel), or a FormatError listing
    every problem, each naming its field, the value found and what was expected."""
    if not isinstance(data, dict):
        name = getattr(model, "FORMAT_NAME", model.__name__)
        raise FormatError(f"{source}: expected a JSON object {{...}} (a {name}), got {json_type_name(data)}", file=source)
    if upgrade and issubclass(model, FormatModel):
        data = model.upgrade(data, source)
    try:
        return model.model_validate(data)
    except ValidationError as error:
        problems = tuple(validation_problems(error, model))
    head = f"{source}: " if len(problems) == 1 else f"{source} has {len(problems)} problems:\n  "
    raise FormatError(head + "\n  ".join(problems), file=source, problems=problems)


def checked(model: type[M], source: str, **fields: Any) -> M:
    """`model` built in code from `fields` (at the current version), with the same checks and error
    messages as a file: `source` says what is being built."""
    return validate_data(fields, model, source, upgrade=False)


def parse_model(text: str | bytes, model: type[M], source: str) -> M:
    """JSON text (an upload, a database row, a form field) as `model`; errors start with `source`."""
    return validate_data(parse_json(text, source), model, source)


def read_model(path: str | os.PathLike[str], model: type[M], *, max_bytes: int = MAX_BYTES) -> M:
    """A file read strictly and validated as `model`; every error names the file."""
    return validate_data(read_json(path, max_bytes=max_bytes), model, str(path))


def model_data(model: BaseModel) -> dict[str, Any]:
    """What `write_model` writes: the JSON form, with aliases."""
    return model.model_dump(mode="json", by_alias=True)


def write_model(path: str | os.PathLike[str], model: BaseModel) -> None:
    """Write `model` as JSON atomically (non-finite numbers refused, naming the field)."""
    write_json(path, model_data(model))


def json_type_name(value: Any) -> str:
    """What a parsed JSON value was written as: 'an array', 'null', 'a string', ..."""
    names = ((bool, "a boolean"), (type(None), "null"), (list, "an array"), (str, "a string"),
             ((int, float), "a number"), (dict, "an object"))
    return next((name for kind, name in names if isinstance(value, kind)), type(value).__name__)


# ---------------------------------------------------------------------------------------------
# error messages


def validation_problems(error: ValidationError, model: type[BaseModel]) -> list[str]:
    """One line per distinct field pydantic found wrong: ``field.path = value: problem; expected WHAT``."""
    schema = model.model_json_schema(by_alias=True, mode="validation")
    lines: dict[str, str] = {}
    items = error.errors()
    locations = [tuple(item["loc"]) for item in items]
    for item, loc in zip(items, locations):
        if any(len(other) > len(loc) and other[:len(loc)] == loc for other in locations):
            continue  # a container's error that only repeats one of its items' errors
        node, field_loc = schema_at(schema, loc)
        field = ".".join(str(part) for part in field_loc) or "(top level)"
        if field in lines:
            continue
        expected = describe_schema(node, schema) if node is not None else ""
        lines[field] = _problem_line(item, field, expected)
    return list(lines.values())


def _problem_line(item: Any, field: str, expected: str) -> str:
    kind = item["type"]
    if kind == "missing":
        return f"{field} is missing" + (f"; expected {expected}" if expected else "")
    if kind == "extra_forbidden":
        return f"{field} is not a field of this format (value {show_value(item['input'])})"
    if not item["loc"] and kind in ("value_error", "assertion_error"):
        return item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    found = f"{field} = {show_value(item['input'])} ({json_type_name(item['input'])})"
    if expected and kind not in ("value_error", "assertion_error"):
        return f"{found}; expected {expected}"
    return f"{found}: " + item["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")


def _resolve(node: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        node = root.get("$defs", {}).get(node["$ref"].rsplit("/", 1)[-1], {})
    return node


def _child(node: dict[str, Any], part: Any, root: dict[str, Any]) -> dict[str, Any] | None:
    node = _resolve(node, root)
    if isinstance(part, int):
        prefix = node.get("prefixItems", [])
        if part < len(prefix):
            return prefix[part]
        items = node.get("items")
        return items if isinstance(items, dict) else None
    properties = node.get("properties", {})
    if part in properties:
        return properties[part]
    extra = node.get("additionalProperties")
    if isinstance(extra, dict):
        return extra
    for option in node.get("anyOf", []):
        found = _child(option, part, root)
        if found is not None:
            return found
    return None


def schema_at(schema: dict[str, Any], loc: tuple[Any, ...]) -> tuple[dict[str, Any] | None, tuple[Any, ...]]:
    """The JSON Schema node of a pydantic error location, and the location as the file spells it
    (pydantic's union-member tags such as ``'function-after[...]'`` dropped)."""
    node: dict[str, Any] | None = schema
    kept: list[Any] = []
    for part in loc:
        child = _child(node, part, schema) if node is not None else None
        if child is None:
            if isinstance(part, str) and ("[" in part or part in _TYPE_TAGS):
                continue
            kept.append(part)
            node = None
            continue
        kept.append(part)
        node = child
    return node, tuple(kept)


_TYPE_TAGS = {"int", "float", "str", "bool", "none", "list", "dict", "tuple", "literal"}


def describe_schema(node: dict[str, Any], root: dict[str, Any]) -> str:
    """A JSON Schema node in words: 'an integer from 16 to 1024', "one of 'a', 'b'", ..."""
    node = _resolve(node, root)
    if "anyOf" in node:
        return " or ".join(dict.fromkeys(describe_schema(option, root) for option in node["anyOf"]))
    if "const" in node:
        return f"exactly {show_value(node['const'])}"
    if "enum" in node:
        return "one of " + ", ".join(show_value(value) for value in node["enum"])
    kind = node.get("type")
    if kind in ("integer", "number"):
        return ("an integer" if kind == "integer" else "a number") + _bounds(node)
    if kind == "string":
        return "a string" + (f" matching {node['pattern']}" if "pattern" in node else "") + _length(node, "Length")
    if kind == "boolean":
        return "true or false"
    if kind == "null":
        return "null"
    if kind == "array":
        if "prefixItems" in node:
            parts = ", ".join(describe_schema(item, root) for item in node["prefixItems"])
            return f"an array of {len(node['prefixItems'])} items ({parts})"
        items = node.get("items")
        inner = f" of {describe_schema(items, root)}" if isinstance(items, dict) and items else ""
        return "an array" + _length(node, "Items") + inner
    if kind == "object" or "properties" in node:
        return "an object" + (f" with {', '.join(node['properties'])}" if node.get("properties") else "")
    return node.get("description", "").split(".")[0].lower() or "a valid value"


def _bounds(node: dict[str, Any]) -> str:
    low, high = node.get("minimum"), node.get("maximum")
    above, below = node.get("exclusiveMinimum"), node.get("exclusiveMaximum")
    if low is not None and high is not None:
        return f" from {low} to {high}"
    words = []
    if low is not None:
        words.append(f"at least {low}")
    if above is not None:
        words.append(f"above {above}")
    if high is not None:
        words.append(f"at most {high}")
    if below is not None:
        words.append(f"below {below}")
    return (" " + " and ".join(words)) if words else ""


def _length(node: dict[str, Any], what: str) -> str:
    low, high = node.get(f"min{what}"), node.get(f"max{what}")
    unit = "characters" if what == "Length" else "items"
    if low is not None and high is not None:
        return f" of {low} to {high} {unit}" if low != high else f" of {low} {unit}"
    if low is not None:
        return f" of at least {low} {unit}"
    if high is not None:
        return f" of at most {high} {unit}"
    return ""
