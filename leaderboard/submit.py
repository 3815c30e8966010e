"""Submit a run or exported package to this leaderboard: `python leaderboard/submit.py RUN_OR_EXPORT_DIR
--weights-repo ORG/NAME@COMMIT --submitter NAME --pretraining ImageNet-1k` (same as `atzoo submit`,
with the registry defaulting to the folder this script is in)."""

from pathlib import Path

from atzoo.cli.leaderboard_commands import submit

if __name__ == "__main__":
    submit.main(prog_name="submit.py", default_map={"registry_dir": str(Path(__file__).resolve().parent)})
