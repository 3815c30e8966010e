"""The six-scenario AT-USTC evaluation: metrics, the mixed test, features files and reports.

`evaluate_features` ranks in chunks (bounded memory, matrix products); `reference` holds the
plain per-query oracle it is tested against.
"""

from atzoo.evaluation.features_file import FeatureSet, load_features, save_features
from atzoo.evaluation.metrics import CMC_RANKS, METRIC_KEYS
from atzoo.evaluation.scenarios import MIXED_GROUPS, evaluate_features

__all__ = ["evaluate_features", "FeatureSet", "load_features", "save_features", "METRIC_KEYS", "CMC_RANKS",
           "MIXED_GROUPS"]
