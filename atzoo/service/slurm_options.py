"""What a Slurm job asks for (partition, nodes, GPUs, time, ...), checked before anything is submitted,
and the lab defaults a runner directory keeps in its `settings.json`."""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any

from atzoo.errors import ServiceError
from atzoo.io import read_json, write_json_atomic
from atzoo.service.runnerdir import RunnerDir

SETTINGS_FILE = "settings.json"
SETTINGS_FORMAT = "atzoo-runner-settings-1"
# --slurm-arg keys that atzoo sets itself, and those that have an option of their own
RESERVED_ARGS = {"output": "", "error": "", "array": "", "signal": "", "open-mode": "", "job-name": "",
                 "comment": "", "wrap": "", "parsable": "", "test-only": "", "ntasks": "--tasks-per-node",
                 "requeue": "", "no-requeue": "", "export": ""}
DEDICATED_ARGS = {"partition": "--partition", "p": "--partition", "nodes": "--nodes", "N": "--nodes",
                  "ntasks-per-node": "--tasks-per-node", "gpus-per-node": "--gpus-per-node",
                  "cpus-per-task": "--cpus-per-task", "c": "--cpus-per-task", "mem": "--mem", "time": "--time",
                  "t": "--time", "account": "--account", "A": "--account", "qos": "--qos", "q": "--qos",
                  "constraint": "--constraint", "C": "--constraint"}
ARG_KEY = re.compile(r"^[A-Za-z][A-Za-z0-9_-]*$")
MEMORY = re.compile(r"^[0-9]+(\.[0-9]+)?[KMGT]?B?$", re.IGNORECASE)
TIME = re.compile(r"^(?:(?P<days>[0-9]+)-)?(?P<a>[0-9]+)(?::(?P<b>[0-9]+))?(?::(?P<c>[0-9]+))?$")


def time_seconds(text: str) -> int:
    """A Slurm time limit in seconds: `M`, `M:S`, `H:M:S`, `D-H`, `D-H:M` or `D-H:M:S`."""
    match = TIME.match(text.strip())
    if not match:
        raise ServiceError(f"--time {text!r} is not a Slurm time: expected MINUTES, MINUTES:SECONDS, "
                           f"HOURS:MINUTES:SECONDS, DAYS-HOURS, DAYS-HOURS:MINUTES or DAYS-HOURS:MINUTES:SECONDS")
    days, parts = match["days"], [int(part) for part in (match["a"], match["b"], match["c"]) if part is not None]
    if days is not None:
        hours, minutes, seconds = (parts + [0, 0])[:3]
        total = int(days) * 86400 + hours * 3600 + minutes * 60 + seconds
    elif len(parts) == 3:
        total = parts[0] * 3600 + parts[1] * 60 + parts[2]
    else:
        total = parts[0] * 60 + (parts[1] if len(parts) == 2 else 0)
    if total <= 0:
        raise ServiceError(f"--time {text!r} is not a positive time limit")
    return total


@dataclass(frozen=True)
class SlurmOptions:
    """What a Slurm job asks for. `None` leaves the choice to the runner directory's defaults, then to
    Slurm. `args`: any other sbatch option, as (KEY, VALUE) pairs (`--slurm-arg KEY=VALUE`)."""

    partition: str | None = None
    nodes: int | None = None
    tasks_per_node: int | None = None
    gpus_per_node: int | None = None
    cpus_per_task: int | None = None
    mem: str | None = None
    time: str | None = None
    account: str | None = None
    qos: str | None = None
    constraint: str | None = None
    args: tuple[tuple[str, str], ...] = ()

    def __post_init__(self) -> None:
        for name in ("nodes", "tasks_per_node", "gpus_per_node", "cpus_per_task"):
            value = getattr(self, name)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
                raise ServiceError(f"--{name.replace('_', '-')} must be a whole number of at least 1, got {value!r}")
        for name in ("partition", "mem", "time", "account", "qos", "constraint"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, str) or not value.strip() or "\n" in value):
                raise ServiceError(f"--{name} must be a non-empty one-line text, got {value!r}")
        if self.mem is not None and not MEMORY.match(self.mem):
            raise ServiceError(f"--mem {self.mem!r} is not a Slurm memory size: expected a number with an optional "
                               f"unit K, M, G or T (e.g. 16G, 4000M)")
        if self.time is not None:
            time_seconds(self.time)
        for key, value in self.args:
            _check_arg(key, value)

    def over(self, defaults: SlurmOptions) -> SlurmOptions:
        """These options, each unset one taken from `defaults` (extra args merged, these winning)."""
        merged = {f.name: getattr(self, f.name) if getattr(self, f.name) is not None else getattr(defaults, f.name)
                  for f in fields(self) if f.name != "args"}
        args = dict(defaults.args)
        args.update(dict(self.args))
        return SlurmOptions(**merged, args=tuple(args.items()))

    @property
    def tasks(self) -> int:
        """Tasks per node: one per GPU, else `--tasks-per-node`, else 1."""
        return self.tasks_per_node or self.gpus_per_node or 1

    def to_json(self) -> dict[str, Any]:
        data = {key: value for key, value in asdict(self).items() if value is not None and key != "args"}
        if self.args:
            data["args"] = dict(self.args)
        return data

    @classmethod
    def from_json(cls, data: Any, source: str) -> SlurmOptions:
        if not isinstance(data, dict):
            raise ServiceError(f"{source}: expected an object of Slurm options, found {type(data).__name__}")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ServiceError(f"{source}: unknown Slurm option(s) {', '.join(unknown)}; expected some of "
                               f"{', '.join(sorted(known))}")
        args = data.get("args", {})
        if not isinstance(args, dict) or not all(isinstance(v, str) for v in args.values()):
            raise ServiceError(f"{source}: 'args' must be an object of sbatch option names to text values")
        try:
            return cls(**{**{k: v for k, v in data.items() if k != "args"}, "args": tuple(args.items())})
        except ServiceError as error:
            raise ServiceError(f"{source}: {error}") from None


def _check_arg(key: str, value: str) -> None:
    if not ARG_KEY.match(key):
        raise ServiceError(f"--slurm-arg {key}={value}: {key!r} is not an sbatch option name (letters, digits, -)")
    name = key.replace("_", "-")
    if name in RESERVED_ARGS:
        hint = RESERVED_ARGS[name]
        raise ServiceError(f"--slurm-arg {key}: atzoo sets --{name} itself" + (f"; use {hint}" if hint else ""))
    if name in DEDICATED_ARGS:
        raise ServiceError(f"--slurm-arg {key}: use {DEDICATED_ARGS[name]} instead")
    if "\n" in value:
        raise ServiceError(f"--slurm-arg {key}: the value must be one line")


def parse_slurm_args(pairs: list[str] | tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """`["mail-type=END", "exclusive"]` -> `(("mail-type", "END"), ("exclusive", ""))`; a key alone is a flag."""
    parsed: dict[str, str] = {}
    for pair in pairs:
        key, _, value = pair.partition("=")
        _check_arg(key.strip(), value)
        parsed[key.strip().replace("_", "-")] = value
    return tuple(parsed.items())


# -- lab defaults: the runner directory's settings ------------------------------------------------


def settings_path(runner: RunnerDir) -> Path:
    return runner.path / SETTINGS_FILE


def read_defaults(runner: RunnerDir) -> SlurmOptions:
    """The runner directory's Slurm defaults (`settings.json`, key `slurm`), or none."""
    path = settings_path(runner)
    if not path.exists():
        return SlurmOptions()
    try:
        data = read_json(path)
    except (OSError, ValueError) as error:
        raise ServiceError(f"{path} cannot be read as JSON ({error}); fix or remove it") from None
    if not isinstance(data, dict) or data.get("format") != SETTINGS_FORMAT:
        found = data.get("format") if isinstance(data, dict) else type(data).__name__
        raise ServiceError(f"{path} has format {found!r}; expected {SETTINGS_FORMAT!r}")
    return SlurmOptions.from_json(data.get("slurm", {}), f"{path} field 'slurm'")


def write_defaults(runner: RunnerDir, options: SlurmOptions, *, merge: bool = True) -> SlurmOptions:
    """Set the runner directory's Slurm defaults (merged into the present ones unless `merge` is off)."""
    combined = options.over(read_defaults(runner)) if merge else options
    write_json_atomic(settings_path(runner), {"format": SETTINGS_FORMAT, "slurm": combined.to_json()})
    return combined
