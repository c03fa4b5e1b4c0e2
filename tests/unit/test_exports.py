"""The public surface is what sluice.__all__ lists (STYLE.md section 3)."""

import sluice


def test_all_is_sorted_and_importable() -> None:
    """Every name in __all__ exists; classes read as sluice.<Name>."""
    assert sluice.__all__ == sorted(sluice.__all__, key=str.lower) or sluice.__all__ == sorted(sluice.__all__)
    for name in sluice.__all__:
        obj = getattr(sluice, name)
        if isinstance(obj, type):
            assert obj.__module__ == "sluice", name
    assert repr(sluice.Client).startswith("<class 'sluice.Client'")
