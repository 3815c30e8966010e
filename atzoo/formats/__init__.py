"""Every file atzoo reads or writes, as one typed, versioned model each: the bottom layer.

The base (this package's modules other than the formats themselves):

- `jsonfile`: the strict JSON reader and writer. A duplicate key, `NaN`/`Infinity`, a number too
  large for a float, nesting deeper than `MAX_DEPTH`, a file larger than its bound, or text that is
  not UTF-8 is a :class:`~atzoo.errors.FormatError` naming the file. Writes are atomic.
- `model`: :class:`FormatModel` (unknown keys and non-finite numbers refused), the format-version
  convention, `read_model`/`write_model`, and error messages that name the file, the field as a
  dotted path, the value found and what was expected (taken from the model's JSON Schema).
- `atomic`: `atomic_path`, the temporary-file-then-rename every writer uses.

Adding a format
---------------
1. Write a module here named for the file (`runconfig.py` for a run's `config.json`), with a
   `FormatModel` subclass: `FORMAT_NAME`, `FORMAT_VERSION`, a version field declared as
   ``format_version: Literal[1] = 1``, a range (``Field(ge=..., le=..., strict=True)``) for every
   number, a `Literal`/`Enum` for every closed set of values, `extra="forbid"` (inherited).
2. Give it one `read_X(path)` / `write_X(path, model)` pair built on `read_model`/`write_model`,
   and route every reader and writer of that file through them.
3. Changing the meaning of a field: raise `FORMAT_VERSION` and add ``MIGRATIONS[old] = function``
   turning old data into the next version's, or leave it out so the old version is refused with the
   version expected. Files the released atzoo already wrote must keep being read.
4. If users see the format, add the model to `atzoo.formats.schemas.PUBLISHED` and regenerate the
   committed JSON Schema files (`python -m atzoo.formats.schemas --write`); a test checks they are current.
5. Add bad-input cases (wrong types, out of range, missing and extra fields, wrong version) to the
   format's tests.

This package imports nothing from atzoo above `atzoo.errors` and `atzoo.protocol`.
"""

from atzoo.errors import FormatError
from atzoo.formats.atomic import atomic_path, permissions_from_umask, write_text_atomic
from atzoo.formats.jsonfile import MAX_BYTES, MAX_DEPTH, dump_json, dump_json_line, parse_json, read_json, write_json
from atzoo.formats.model import (FormatModel, Record, checked, json_type_name, model_data, parse_model, read_model, show_value,
                                 validate_data, write_model)

__all__ = [
    "MAX_BYTES", "MAX_DEPTH", "FormatError", "FormatModel", "Record", "atomic_path", "checked", "dump_json",
    "dump_json_line", "json_type_name", "model_data", "parse_json", "parse_model", "permissions_from_umask",
    "read_json", "read_model", "show_value", "validate_data", "write_json", "write_model", "write_text_atomic",
]
