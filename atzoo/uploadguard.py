"""The upload guard: what may leave the machine, decided by content, not by name.

The AT-USTC licence forbids sharing any part of the dataset. Before a push (and at the end of every
export) the guard checks a package folder:

- only the four package files, each a regular file: a folder, a link, a FIFO, a device or a socket is
  refused from its `lstat`, before anything opens it (a FIFO would block a reader forever);
- nothing named like an image, an archive, an array dump or an AT-USTC file or folder;
- no image anywhere in any file: the magic numbers of JPEG, PNG, GIF, BMP, WebP, TIFF, PNM (PPM/PGM/
  PBM) and NumPy arrays are looked for in every byte;
- the text files (config.json, results.json, README.md) are UTF-8 text without control characters,
  hold no base64 or `data:` URI payload and no hex dump longer than a hash, no absolute path (paths
  are written relative or left out), and no AT-USTC file name; the JSON files are read strictly
  (duplicate keys, non-finite numbers) and their long number lists are refused (an image fits in one);
- results.json holds aggregates only: no per-query or per-image list or table;
- model.safetensors holds exactly the tensors the model's `state_dict` declares, with their shapes and
  dtypes, laid out back to back with no gap and nothing after the last one, and short plain metadata.

Every refusal names the file and the byte offset or the JSON key, and says why.
"""

from __future__ import annotations

import base64
import binascii
import math
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from atzoo.errors import FormatError, HubError, UploadBlockedError
from atzoo.formats.packageconfig import CARD, CONFIG, PACKAGE_FILES, RESULTS, WEIGHTS
from atzoo.formats.special import kind_of
from atzoo.formats.weights_header import read_weights_header

ALLOWED_FILES = PACKAGE_FILES
JSON_FILES = (CONFIG, RESULTS)
TEXT_FILES = (CONFIG, RESULTS, CARD)
TEXT_LIMIT_BYTES = {CONFIG: 1 << 20, RESULTS: 256 << 10, CARD: 256 << 10}

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm", ".pbm", ".pnm")
ARCHIVE_SUFFIXES = (".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar", ".zst", ".lz4")
ARRAY_SUFFIXES = (".npy", ".npz", ".pkl", ".pickle", ".pt", ".pth", ".bin", ".ckpt", ".h5", ".hdf5",
                  ".parquet", ".arrow", ".feather", ".mat", ".lmdb", ".mdb", ".tfrecord", ".csv", ".tsv",
                  ".jsonl")
ATUSTC_NAMES = (re.compile(r"p\d+-d\d+-c\d+", re.IGNORECASE), re.compile(r"cam\d+-f\d+-\d+", re.IGNORECASE))

# Signatures long enough that random weights do not hold them by chance (at least 6 fixed bytes).
SIGNATURES = [
    ("a JPEG image", re.compile(rb"\xff\xd8\xff[\xe0-\xef]..(?:JFIF|Exif|JFXX|ICC_|Adob)", re.DOTALL)),
    ("a JPEG image", re.compile(rb"\xff\xd8\xff\xdb\x00[\x43\x84]")),
    ("a PNG image", re.compile(rb"\x89PNG\r\n\x1a\n")),
    ("a GIF image", re.compile(rb"GIF8[79]a")),
    ("a BMP image", re.compile(rb"BM....\x00\x00\x00\x00[\x1a\x36\x46\x7a\x8a\x7a][\x00-\x04]\x00\x00", re.DOTALL)),
    ("a WebP image", re.compile(rb"RIFF....WEBPVP8", re.DOTALL)),
    ("a TIFF image", re.compile(rb"(?:II\*\x00|MM\x00\*)\x08\x00\x00\x00|II\*\x00\x08\x00\x00\x00")),
    ("a PNM (PPM/PGM/PBM) image", re.compile(rb"(?:^|[\s\x00])P[1-7][ \t\r\n]+(?:#[^\n]*\n\s*)*\d+[ \t\r\n]+\d+"
                                            rb"[ \t\r\n]+(?:\d+[ \t\r\n])?")),
    ("a NumPy array", re.compile(rb"\x93NUMPY[\x01-\x03]\x00")),
]
SCAN_CHUNK = 8 << 20
SCAN_OVERLAP = 64

BASE64_RUN = re.compile(r"[A-Za-z0-9+/_-]{100,}={0,2}")
HEX_RUN = re.compile(r"(?:[0-9a-fA-F]{2}[\s,:]?){65,}")
DATA_URI = re.compile(r"data:[\w.+/-]*(?:;[\w.+-]+=[\w.+-]+)*;base64,", re.IGNORECASE)
ABSOLUTE_PATH = re.compile(r"(?<![\w.:/~\\-])(?:~/|/)(?:[^\s\"'`<>|/\\)]+/)+[^\s\"'`<>|/\\)]*"
                           r"|(?<![\w])[A-Za-z]:\\[^\s\"'`<>|]+|\\\\[\w.-]+\\[^\s\"'`<>|]+")
CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
MAX_NUMBER_LIST = 64
MAX_RESULT_LIST = 16
MAX_RESULT_KEYS = 64
PER_ITEM_KEYS = re.compile(r"(?:^|_)(?:paths?|ranks?|per_query|per_image|images?|image_ids?|query_ids?|"
                           r"gallery_ids?|distances?|scores?|indices|files?)$", re.IGNORECASE)
MAX_METADATA_ENTRIES = 16
MAX_METADATA_CHARS = 256
SAFETENSORS_DTYPES = {"F64": 8, "F32": 4, "F16": 2, "BF16": 2, "I64": 8, "I32": 4, "I16": 2, "I8": 1, "U8": 1,
                      "BOOL": 1, "F8_E4M3": 1, "F8_E5M2": 1, "U16": 2, "U32": 4, "U64": 8}
TORCH_TO_SAFETENSORS = {"float64": "F64", "float32": "F32", "float16": "F16", "bfloat16": "BF16", "int64": "I64",
                        "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


@dataclass(frozen=True)
class Offender:
    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path} ({self.reason})"


# ---------------------------------------------------------------------------------------------
# what a folder holds


def name_offence(relative: str) -> str:
    for pattern in ATUSTC_NAMES:
        if pattern.search(relative):
            return "named like an AT-USTC file or folder"
    for suffix in (s.lower() for s in Path(relative).suffixes):
        if suffix in IMAGE_SUFFIXES:
            return "an image"
        if suffix in ARCHIVE_SUFFIXES:
            return "an archive"
        if suffix in ARRAY_SUFFIXES:
            return "an array or pickle dump"
    return ""


# ---------------------------------------------------------------------------------------------
# bytes


def signatures_in(path: Path, start: int = 0, end: int | None = None) -> Iterator[tuple[int, str]]:
    """(byte offset, what) of every image or array signature in `path` between `start` and `end`."""
    end = os.path.getsize(path) if end is None else end
    with open(path, "rb") as handle:
        position = start
        while position < end:
            handle.seek(max(start, position - SCAN_OVERLAP))
            base = handle.tell()
            block = handle.read(min(SCAN_CHUNK, end - base))
            if not block:
                return
            for what, pattern in SIGNATURES:
                for match in pattern.finditer(block):
                    offset = base + match.start()
                    if offset >= position - SCAN_OVERLAP:
                        yield offset, what
            position = base + len(block)


def first_signature(path: Path, start: int = 0, end: int | None = None) -> str:
    found = sorted(set(signatures_in(path, start, end)))
    if not found:
        return ""
    offset, what = found[0]
    return f"holds {what} at byte {offset}"


# ---------------------------------------------------------------------------------------------
# text


def _decoded_payload(run: str) -> bytes | None:
    padded = run.replace("-", "+").replace("_", "/")
    padded += "=" * (-len(padded) % 4)
    try:
        return base64.b64decode(padded, validate=True)
    except (binascii.Error, ValueError):
        return None


def _payload_what(data: bytes | None) -> str:
    if data is None:
        return ""
    for what, pattern in SIGNATURES:
        if pattern.match(data) or pattern.search(data[:64]):
            return f", which decodes to {what}"
    return ""


def string_offence(text: str) -> str:
    """Why a piece of text must not be uploaded (a payload, a path, a dataset name), or ''; offsets are
    character offsets within `text`."""
    match = CONTROL.search(text)
    if match:
        return f"a control character {match.group(0)!r} at {match.start()} (binary data in text)"
    match = DATA_URI.search(text)
    if match:
        return f"a data: URI payload at {match.start()}"
    match = HEX_RUN.search(text)
    if match:
        return f"a hex dump of {len(match.group(0))} characters at {match.start()} (longer than any hash)"
    match = BASE64_RUN.search(text)
    if match:
        return (f"a base64 payload of {len(match.group(0))} characters at {match.start()}"
                + _payload_what(_decoded_payload(match.group(0))))
    match = ABSOLUTE_PATH.search(text)
    if match:
        return (f"an absolute path {match.group(0)[:80]!r} at {match.start()}: write paths relative to the "
                f"package or leave them out")
    for pattern in ATUSTC_NAMES:
        match = pattern.search(text)
        if match:
            return f"an AT-USTC file name {match.group(0)!r} at {match.start()}"
    return ""


def _byte_offset(text: str, character: int) -> int:
    return len(text[:character].encode("utf-8"))


def text_offence(path: Path, raw: bytes) -> str:
    """A text file's first problem, with its byte offset; '' when clean."""
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as error:
        return f"not UTF-8 text: byte {error.start} is {raw[error.start:error.start + 1]!r} (binary data)"
    problem = string_offence(text)
    if not problem:
        return ""
    match = re.search(r" at (\d+)", problem)
    if match:
        character = int(match.group(1))
        problem = problem.replace(f" at {character}", f" at byte {_byte_offset(text, character)}", 1)
    return problem


# ---------------------------------------------------------------------------------------------
# JSON


def _walk(value: Any, key: str = "") -> Iterator[tuple[str, Any]]:
    yield key, value
    if isinstance(value, dict):
        for name, item in value.items():
            yield from _walk(item, f"{key}.{name}" if key else str(name))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            yield from _walk(item, f"{key}[{index}]")


def json_offence(name: str, raw: bytes) -> str:
    """A JSON file's first problem, naming the key; '' when clean."""
    from atzoo.errors import FormatError
    from atzoo.formats.jsonfile import parse_json

    try:
        data = parse_json(raw, name)
    except FormatError as error:
        return str(error)
    for key, value in _walk(data):
        where = f"key {key!r}" if key else "the top level"
        problem = _results_offence(key, value) if name == RESULTS else ""
        if problem:
            return f"{where}: {problem}"
        if isinstance(value, str) or (isinstance(value, dict) and value):
            for text in ([value] if isinstance(value, str) else [str(k) for k in value]):
                problem = string_offence(text)
                if problem:
                    return f"{where}: {problem}"
        if isinstance(value, list) and len(value) > MAX_NUMBER_LIST and all(
                isinstance(v, (int, float)) for v in value):
            return f"{where}: a list of {len(value)} numbers (enough to hold an image); configs hold settings"
    return ""


def _results_offence(key: str, value: Any) -> str:
    last = key.rsplit(".", 1)[-1].split("[")[0]
    if key and PER_ITEM_KEYS.search(last):
        return "per-query or per-image results; results.json holds aggregate metrics only"
    if isinstance(value, list) and len(value) > MAX_RESULT_LIST:
        return f"a list of {len(value)} values (per-query or per-image data); results.json holds aggregates only"
    if isinstance(value, dict) and len(value) > MAX_RESULT_KEYS:
        return f"a table of {len(value)} entries (per-query or per-image data); results.json holds aggregates only"
    if isinstance(value, float) and not math.isfinite(value):
        return "a number that is not finite"
    return ""


# ---------------------------------------------------------------------------------------------
# safetensors


def _declared(header: dict[str, Any], name: str) -> tuple[str, list[int], int, int]:
    entry = header[name]
    if not isinstance(entry, dict) or set(entry) != {"dtype", "shape", "data_offsets"}:
        raise HubError(f"{WEIGHTS}: tensor {name!r} has a malformed header entry")
    dtype, shape, offsets = entry["dtype"], entry["shape"], entry["data_offsets"]
    if dtype not in SAFETENSORS_DTYPES:
        raise HubError(f"{WEIGHTS}: tensor {name!r} has unknown dtype {dtype!r}")
    if (not isinstance(shape, list) or not all(isinstance(d, int) and d >= 0 for d in shape)
            or not isinstance(offsets, list) or len(offsets) != 2 or not all(isinstance(o, int) for o in offsets)):
        raise HubError(f"{WEIGHTS}: tensor {name!r} has a malformed shape or data_offsets")
    return dtype, shape, offsets[0], offsets[1]


def weights_offences(path: Path, expected: dict[str, tuple[tuple[int, ...], str]] | None) -> list[str]:
    """Problems of `model.safetensors`: layout (gaps, overlaps, bytes after the last tensor), metadata
    (short plain text only), tensors not in the model's `state_dict` (`expected`: name -> (shape,
    safetensors dtype)), missing ones, wrong shapes or dtypes, and image signatures in the data."""
    try:
        header, data_start = read_weights_header(path)
    except FormatError as error:
        return [str(error)]
    problems: list[str] = []
    metadata = header.pop("__metadata__", None)
    if metadata is not None:
        if not isinstance(metadata, dict) or len(metadata) > MAX_METADATA_ENTRIES:
            problems.append(f"metadata must be at most {MAX_METADATA_ENTRIES} short text entries")
        else:
            for key, value in metadata.items():
                if not isinstance(value, str) or len(value) > MAX_METADATA_CHARS:
                    problems.append(f"metadata key {key!r}: longer than {MAX_METADATA_CHARS} characters "
                                    f"(short plain metadata only)")
                elif string_offence(value) or string_offence(key):
                    problems.append(f"metadata key {key!r}: {string_offence(value) or string_offence(key)}")
    spans = []
    for name in header:
        try:
            dtype, shape, begin, end = _declared(header, name)
        except HubError as error:
            problems.append(str(error).removeprefix(f"{WEIGHTS}: "))
            continue
        size = math.prod(shape) * SAFETENSORS_DTYPES[dtype]
        if end - begin != size:
            problems.append(f"tensor {name!r}: data_offsets span {end - begin} bytes, its shape and dtype need {size}")
        spans.append((begin, end, name))
        if expected is not None:
            if name not in expected:
                problems.append(f"tensor {name!r} ({dtype} {shape}, at byte {data_start + begin}) is not in the "
                                f"model's state_dict: an extra tensor")
            elif tuple(shape) != expected[name][0] or dtype != expected[name][1]:
                problems.append(f"tensor {name!r} is {dtype} {shape}; the model declares {expected[name][1]} "
                                f"{list(expected[name][0])}")
    if expected is not None:
        missing = sorted(set(expected) - set(header))
        if missing:
            problems.append(f"the model's tensors {', '.join(missing[:5])} are missing")
    position = 0
    for begin, end, name in sorted(spans):
        if begin != position:
            what = "a gap" if begin > position else "an overlap"
            problems.append(f"{what} before tensor {name!r} at byte {data_start + min(begin, position)}")
        position = max(position, end)
    total = os.path.getsize(path)
    if data_start + position != total:
        problems.append(f"{total - data_start - position} bytes after the last tensor, from byte "
                        f"{data_start + position} (nothing may follow the tensors)")
    signature = first_signature(path)
    if signature:
        problems.append(signature)
    return problems


# ---------------------------------------------------------------------------------------------
# the folder


ExpectedTensors = Callable[[Path], "dict[str, tuple[tuple[int, ...], str]] | None"]


def scan_folder(folder: str | os.PathLike, *, model_tensors: ExpectedTensors | None = None) -> list[Offender]:
    """Every entry of `folder` that must not be uploaded, with the reason; empty when it is clean.
    `model_tensors(folder)` gives name -> (shape, safetensors dtype) of the model the package's config
    describes (`atzoo.package.package_tensors`); the weights must hold exactly those."""
    folder = Path(folder)
    offenders: list[Offender] = []
    for dirpath, dirnames, filenames in os.walk(folder, followlinks=False):
        for name in sorted(dirnames) + sorted(filenames):
            path = Path(dirpath) / name
            relative = path.relative_to(folder).as_posix()
            offence = name_offence(relative) or kind_of(os.lstat(path).st_mode) or (
                "" if relative in ALLOWED_FILES else f"not in the allow-list ({', '.join(ALLOWED_FILES)})")
            if offence:
                offenders.append(Offender(relative, offence))
                continue
            offenders += [Offender(relative, problem) for problem in _content_offences(folder, relative, model_tensors)]
    return offenders


def _content_offences(folder: Path, name: str, model_tensors: ExpectedTensors | None) -> list[str]:
    path = folder / name
    if name == WEIGHTS:
        return weights_offences(path, model_tensors(folder) if model_tensors else None)
    size = os.path.getsize(path)
    if size > TEXT_LIMIT_BYTES[name]:
        return [f"{size} bytes, more than the {TEXT_LIMIT_BYTES[name]} a {name} needs"]
    signature = first_signature(path)
    if signature:
        return [signature]
    raw = path.read_bytes()
    problem = text_offence(path, raw)
    if not problem and name in JSON_FILES:
        problem = json_offence(name, raw)
    return [problem] if problem else []


def guard(folder: str | os.PathLike, *, model_tensors: ExpectedTensors | None = None) -> None:
    """Raise `UploadBlockedError` listing every offender in `folder` (see `scan_folder`)."""
    folder = Path(folder)
    if folder.is_symlink() or not folder.is_dir():
        raise HubError(f"{folder} is not a folder; push a package made by `atzoo export`")
    offenders = scan_folder(folder, model_tensors=model_tensors)
    if offenders:
        listed = "\n  ".join(str(o) for o in offenders)
        raise UploadBlockedError(f"upload blocked: {folder} holds {len(offenders)} problem(s); nothing may leave "
                                 f"the machine but the package's weights, config, aggregate results and card "
                                 f"(the AT-USTC licence forbids sharing any part of the dataset):\n  {listed}")
    if not (folder / WEIGHTS).is_file() or not (folder / CONFIG).is_file():
        raise HubError(f"{folder} lacks {WEIGHTS} or {CONFIG}; push a package made by `atzoo export`")
