"""Serve this leaderboard's app: `python leaderboard/app.py [--host H] [--port P] [--share] [--runner-dir DIR]
[--model LABEL=PATH]` (same as `atzoo leaderboard serve`, with the registry being the folder this script is in)."""

from pathlib import Path

from atzoo.cli.leaderboard_commands import serve

if __name__ == "__main__":
    serve.main(prog_name="app.py", default_map={"registry_dir": str(Path(__file__).resolve().parent)})
