"""The six scenarios as Uni-AT sees them: each is a (modality attribute, clothes attribute) pair.

Protocol order (also the order of the six class tokens and heads): DT-ST, DT-LT, NT-ST, NT-LT,
AD-ST, AD-LT. Modality attribute: DT ``visible``, NT ``infrared``, AD ``cross``; clothes
attribute: ST ``same``, LT ``change``. No torch here: the plugin registers its items from it.
"""

from __future__ import annotations

SCENARIOS = ("DT-ST", "DT-LT", "NT-ST", "NT-LT", "AD-ST", "AD-LT")
ATTRIBUTES = ("visible", "infrared", "cross", "same", "change")
SCENARIO_ATTRIBUTES: tuple[tuple[str, str], ...] = (
    ("visible", "same"), ("visible", "change"),
    ("infrared", "same"), ("infrared", "change"),
    ("cross", "same"), ("cross", "change"),
)
"""(modality attribute, clothes attribute) of each scenario, in protocol order."""


def allowed_paths(scenario: int) -> tuple[tuple[str, str], tuple[str, str]]:
    """The two (input expert, output expert) paths scenario ``scenario`` may take: m->c, c->m."""
    modality, clothes = SCENARIO_ATTRIBUTES[scenario]
    return (modality, clothes), (clothes, modality)
