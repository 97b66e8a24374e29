"""The public API: ``__all__`` is what ``zmqmon`` exports, and its three lists agree."""

from __future__ import annotations

import ast
from pathlib import Path

import zmqmon

INIT = Path(zmqmon.__file__)


def test_every_name_in_all_resolves_and_nothing_public_is_left_out() -> None:
    for name in zmqmon.__all__:
        assert getattr(zmqmon, name) is not None, name  # lazy ones import on first use
    assert sorted(zmqmon.__all__) == zmqmon.__all__
    assert dir(zmqmon) == sorted(zmqmon.__all__)


def test_lazy_names_agree_with_the_type_checking_imports_and_all() -> None:
    tree = ast.parse(INIT.read_text())
    checking: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            for imp in node.body:
                assert isinstance(imp, ast.ImportFrom)
                checking |= {alias.name for alias in imp.names}
    lazy = set(zmqmon._LAZY)
    assert lazy == checking, "each lazy name is imported for type checkers, and only those"
    assert lazy <= set(zmqmon.__all__)
