"""Bag of Tricks (Luo et al. 2019) for atzoo: methods `bot` and `bot-center`."""

__version__ = "0.1.0"
