"""The leaderboard: entries (schema), their registry on disk, submission, verification, the app.

Logic lives here so it is tested; the repository's ``leaderboard/`` folder holds the entries, the
exported JSON Schema and thin entry points.
"""

from atzoo.formats.entry import (SCHEMA_VERSION, Entry, entry_json_schema, entry_problems, parse_entry,
                                      parse_entry_text)
from atzoo.leaderboard.store import (Snapshot, check_entry_data, default_leaderboard_dir, load_snapshot,
                                     read_entry, update_entry, write_entry)

__all__ = ["SCHEMA_VERSION", "Entry", "Snapshot", "check_entry_data", "default_leaderboard_dir", "entry_json_schema",
           "entry_problems", "load_snapshot", "parse_entry", "parse_entry_text", "read_entry", "update_entry",
           "write_entry"]
