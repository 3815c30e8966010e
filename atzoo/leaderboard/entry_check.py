"""Every problem of a submitted entry at once, in plain words with a hint: the app's Submit tab.

Schema problems name the field and the value found and say what is expected without regular
expressions; metrics written as fractions (0.93) where percentages (93.0) are meant are refused
with the percentage the submitter probably meant; a verified block is refused (only the shared
runner writes one, signed); then duplicates and broken links in the registry.
"""

from __future__ import annotations

import fnmatch
import re
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from atzoo.formats.entry import METRICS, Entry, json_type_name
from atzoo.formats.model import validation_problems
from atzoo.leaderboard.store import SUBMISSION_VERIFIED, Snapshot, registry_problems
from atzoo.protocol import SCENARIO_NAMES


@dataclass(frozen=True)
class Problem:
    field: str
    message: str
    hint: str = ""

    def __str__(self) -> str:
        return f"{self.field}: {self.message}" + (f" (hint: {self.hint})" if self.hint else "")


PERCENT_WORDS = ("a percentage from 0 to 100", "write metrics as the paper prints them: 93.0 for 93%")
FIELD_WORDS: dict[str, tuple[str, str]] = {
    "id": ("2 to 80 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit",
           "e.g. uni-at-vitb-3f2a1b0c; `atzoo submit` makes one from the method and the weights"),
    "weights.repo": ("a Hugging Face model repository written ORG/NAME", "e.g. my-lab/uniat-403k"),
    "weights.revision": ("the full 40-character commit id of the weights on the Hub, never a branch name",
                         "`atzoo push` prints the commit it created"),
    "weights.sha256": ("the 64 lowercase hex digits of the weights file's sha256",
                       "`sha256sum model.safetensors`, or let `atzoo submit` fill it in"),
    "weights.filename": ("a .safetensors file name", "atzoo never loads pickled weights"),
    "weights.num_params": ("the number of parameters, a whole number above 0", "`atzoo submit` reads it"),
    "links.*": ("a web address starting with http:// or https://", ""),
    "dataset.release": ("403k, 135k or synthetic, the releases the board ranks",
                        "403k is the current AT-USTC release; `atzoo export` records the release of the data"),
    "dataset.fingerprint": ("the 64 hex digits of the dataset fingerprint", "`atzoo export` records it"),
    "reported.*.*": PERCENT_WORDS,
    "verified": ("not part of a submission", "only the shared runner writes it, signed"),
}


def _words_for(field: str) -> tuple[str, str] | None:
    return next((words for pattern, words in FIELD_WORDS.items() if fnmatch.fnmatchcase(field, pattern)), None)


_FIELD = re.compile(r"^(?P<field>[^ ]+)(?P<rest> .*)$")


def _plain(line: str) -> Problem:
    """One formats-layer problem line in words: the field, the value found, what is expected, a hint."""
    match = _FIELD.match(line)
    field, rest = (match["field"], match["rest"]) if match else ("(entry)", line)
    words = _words_for(field)
    if words is None:
        text = rest.strip()
        return Problem(field, "is " + text[2:] if text.startswith("= ") else text)
    expected, hint = words
    if rest.startswith(" is missing"):
        return Problem(field, f"is missing; expected {expected}", hint)
    found = rest.removeprefix(" = ").split("; expected")[0].split(": ")[0]
    return Problem(field, f"is {found}; expected {expected}", hint)


def fraction_problems(data: Any) -> list[Problem]:
    """Reported metrics that are all at most 1 are fractions where percentages are expected."""
    reported = data.get("reported") if isinstance(data, dict) else None
    if not isinstance(reported, dict):
        return []
    values = [(f"reported.{name}.{metric}", reported[name][metric]) for name in SCENARIO_NAMES
              if isinstance(reported.get(name), dict) for metric in METRICS
              if isinstance(reported[name].get(metric), (int, float)) and not isinstance(reported[name][metric], bool)]
    if not values or max(value for _, value in values) > 1.0:
        return []
    return [Problem(field, f"is {value}: percentages expected, did you mean {round(100.0 * value, 2)}?",
                    "metrics are percentages (0-100) as in the paper; a runner's metrics.json holds fractions")
            for field, value in values]


def submission_problems(data: Any, snapshot: Snapshot | None = None) -> list[Problem]:
    """Every problem of a submitted entry, each in plain words with a hint."""
    if not isinstance(data, dict):
        return [Problem("(entry)", f"an entry is a JSON object {{...}}, got {json_type_name(data)}",
                        "start from `atzoo submit --dry-run`, which prints a complete entry")]
    problems = []
    if data.get("verified") is not None:
        problems.append(Problem("verified", SUBMISSION_VERIFIED.removeprefix("verified: "),
                                "remove the block; `atzoo leaderboard verify` writes it"))
    try:
        entry: Entry | None = Entry.model_validate({**data, "verified": None})
    except ValidationError as error:
        entry = None
        problems += [_plain(line) for line in validation_problems(error, Entry)]
    problems += fraction_problems(data)
    if entry is not None and snapshot is not None:
        problems += [Problem(*line.split(": ", 1)) for line in registry_problems(entry, snapshot)]
    return problems
