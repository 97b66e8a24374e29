"""A module that records that it was imported: a refused ``uses`` must not get this far."""

IMPORTED = True


def agent(ctx: object) -> str:
    return "ran"
