"""atzoo: model zoo and leaderboard for anytime person re-identification on AT-USTC."""

__version__ = "0.1.0"
