"""Bag of Tricks (Luo et al. 2019) for atzoo: methods `bot` (with center loss) and `bot-no-center`."""

__version__ = "0.1.0"
