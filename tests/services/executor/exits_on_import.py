"""A module that ends the process when imported (as ``unittest.__main__`` or ``venv.__main__``
would): resolving an agent from it must refuse the workflow, nothing more."""

raise SystemExit("this module exits on import")
