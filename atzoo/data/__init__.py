"""The AT-USTC data layer: reading a root into records, building the protocol's sets."""

from atzoo.data.layout import Records, parse_root
from atzoo.data.sets import TrainSet, build_train_set, protocol_sets

__all__ = ["Records", "parse_root", "TrainSet", "build_train_set", "protocol_sets"]
