"""The strict JSON reader/writer and the typed-model base every file format builds on."""

from __future__ import annotations

import os
from typing import Annotated, Any, Literal

import pytest
from pydantic import Field

from atzoo.errors import AtzooError, FormatError
from atzoo.formats import (FormatModel, parse_json, parse_model, read_json, read_model, write_json,
                           write_model)
from atzoo.io import read_json_checked, write_json_atomic

Side = Annotated[int, Field(strict=True, ge=16, le=1024)]


class Sample(FormatModel):
    FORMAT_NAME = "sample config"
    FORMAT_VERSION = 2
    MIGRATIONS = {1: lambda data: {**{k: v for k, v in data.items() if k != "size"},
                                   "input_size": data["size"], "format_version": 2}}

    format_version: Literal[2] = 2
    input_size: tuple[Side, Side]
    num_persons: int = Field(strict=True, ge=1, le=100_000)
    kind: Literal["vit", "cnn"] = "cnn"
    lr: float = Field(default=0.01, strict=True, gt=0, le=10)


def write(tmp_path, text: str | bytes, name: str = "config.json"):
    path = tmp_path / name
    path.write_bytes(text.encode() if isinstance(text, str) else text)
    return path


def error_of(call, *args: Any) -> FormatError:
    with pytest.raises(FormatError) as caught:
        call(*args)
    return caught.value


def test_format_error_is_a_user_error():
    assert issubclass(FormatError, AtzooError)


@pytest.mark.parametrize("text, words", [
    ('{"origin": "a", "origin": "b"}', "'origin' appears twice"),
    ('{"a": {"b": 1, "b": 1}}', "'b' appears twice"),
    ('{"x": NaN}', "NaN"),
    ('{"x": -Infinity}', "-Infinity"),
    ('{"x": 1e999}', "1e999"),
    ('{"x": 1', "not valid JSON"),
    ('{"x": 1} {"y": 2}', "extra data"),
    ("[" * 65 + "]" * 65, "nested too deeply"),
    ("[" * 200_000 + "]" * 200_000, "nested too deeply"),
])
def test_strict_reader_refuses_what_json_forbids(tmp_path, text, words):
    path = write(tmp_path, text)
    error = error_of(read_json, path)
    assert words in str(error) and str(path) in str(error)


def test_reader_accepts_plain_json_and_depth_up_to_the_bound(tmp_path):
    assert read_json(write(tmp_path, '{"a": [1, 2.5, "x", null, true]}')) == {"a": [1, 2.5, "x", None, True]}
    assert read_json(write(tmp_path, "[" * 64 + "]" * 64)) == parse_json("[" * 64 + "]" * 64, "text")


def test_reader_refuses_non_utf8_and_oversized_files_naming_them(tmp_path):
    assert "not UTF-8" in str(error_of(read_json, write(tmp_path, b'{"name": "\xff"}')))
    big = write(tmp_path, '{"pad": "' + "x" * 2000 + '"}')
    error = error_of(lambda: read_json(big, max_bytes=1000))
    assert "larger than 1000 bytes" in str(error) and str(big) in str(error)


def test_missing_file_and_folder_are_format_errors(tmp_path):
    assert "does not exist" in str(error_of(read_json, tmp_path / "nope.json"))
    assert "is a folder" in str(error_of(read_json, tmp_path))


def test_writer_refuses_non_finite_numbers_naming_the_field_and_leaves_nothing(tmp_path):
    path = tmp_path / "out.json"
    error = error_of(write_json, path, {"metrics": {"DT-ST": [0.5, float("nan")]}})
    assert "metrics.DT-ST.1" in str(error)
    assert list(tmp_path.iterdir()) == []


def test_writer_is_atomic_and_keeps_the_old_file_when_interrupted(tmp_path, monkeypatch):
    path = tmp_path / "out.json"
    write_json(path, {"a": 1})

    def broken_replace(*_args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(OSError):
        write_json(path, {"a": 2})
    assert read_json(path) == {"a": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.json"]


def test_model_errors_name_file_field_value_and_expected_range(tmp_path):
    path = write(tmp_path, '{"format_version": 2, "input_size": [100000, 100000], "num_persons": "five", '
                           '"kind": "rnn", "lr": true, "extra": 1}')
    error = error_of(read_model, path, Sample)
    message = str(error)
    assert str(path) in message
    assert "input_size.0 = 100000 (a number); expected an integer from 16 to 1024" in message
    assert 'num_persons = "five" (a string); expected an integer from 1 to 100000' in message
    assert 'kind = "rnn" (a string); expected one of "vit", "cnn"' in message
    assert "lr = true (a boolean); expected a number above 0 and at most 10" in message
    assert "extra is not a field of this format" in message
    assert len(error.problems) == 6 and error.file == str(path)


def test_absurd_numbers_and_missing_fields_are_named(tmp_path):
    message = str(error_of(read_model, write(tmp_path, '{"format_version": 2, "input_size": [256, 128], '
                                                       '"num_persons": 1e30}'), Sample))
    assert "num_persons = 1e+30" in message and "from 1 to 100000" in message
    message = str(error_of(read_model, write(tmp_path, '{"format_version": 2}'), Sample))
    assert "input_size is missing; expected an array of 2 items" in message


def test_versions_older_are_migrated_newer_and_unknown_refused(tmp_path):
    old = read_model(write(tmp_path, '{"format_version": 1, "size": [256, 128], "num_persons": 5}'), Sample)
    assert old.input_size == (256, 128) and old.format_version == 2
    newer = str(error_of(read_model, write(tmp_path, '{"format_version": 3}'), Sample))
    assert "written by a newer atzoo" in newer and "version 2" in newer
    missing = str(error_of(read_model, write(tmp_path, '{"input_size": [256, 128], "num_persons": 5}'), Sample))
    assert "format_version is missing; expected 2" in missing
    assert "no longer read; expected version 2" in str(error_of(read_model, write(tmp_path, '{"format_version": 0}'),
                                                                 Sample))
    wrong_type = write(tmp_path, '{"format_version": "2"}')
    assert "is not a sample config format version; expected 2" in str(error_of(read_model, wrong_type, Sample))


def test_a_model_round_trips_through_write_and_read(tmp_path):
    sample = Sample(input_size=(256, 128), num_persons=12, kind="vit")
    write_model(tmp_path / "s.json", sample)
    assert read_model(tmp_path / "s.json", Sample) == sample
    assert parse_model('{"format_version": 2, "input_size": [32, 16], "num_persons": 1}', Sample, "upload").lr == 0.01


def test_top_level_must_be_an_object(tmp_path):
    assert "expected a JSON object" in str(error_of(read_model, write(tmp_path, "[1, 2]"), Sample))


def test_io_helpers_delegate_to_the_strict_reader(tmp_path):
    path = write(tmp_path, '{"a": 1, "a": 2}')
    with pytest.raises(ValueError, match="appears twice"):
        read_json_checked(path, ValueError)
    with pytest.raises(FormatError):
        write_json_atomic(tmp_path / "x.json", {"x": float("inf")})


def test_entry_text_is_read_strictly():
    from atzoo.errors import LeaderboardError
    from atzoo.formats.entry import parse_entry_text

    with pytest.raises(LeaderboardError, match="'origin' appears twice"):
        parse_entry_text('{"origin": "paper", "origin": "submission"}', "pasted entry")
