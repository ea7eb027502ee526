"""pcgraph.registry: name normalisation, aliases, and errors that list the choices."""

from __future__ import annotations

import pytest

from pcgraph.errors import SpecError
from pcgraph.registry import Registry, normalize_name


@pytest.mark.parametrize(
    ("raw", "normal"),
    [("Conv-Transpose2D", "conv_transpose2d"), ("  leaky relu ", "leaky_relu"), ("gelu", "gelu")],
)
def test_normalize_name(raw: str, normal: str) -> None:
    assert normalize_name(raw) == normal


@pytest.fixture
def colours() -> Registry[int]:
    reg: Registry[int] = Registry("colour")
    reg.register("red", 1, aliases=("rouge",))
    reg.register("Dark-Blue", 2)
    return reg


def test_lookup_by_name_alias_and_spelling(colours: Registry[int]) -> None:
    assert colours.get("red") == 1
    assert colours.get("ROUGE") == 1
    assert colours.get("dark blue") == 2
    assert colours.canonical("Rouge") == "red"
    assert colours.canonical("dark-blue") == "dark_blue"


def test_names_iteration_and_membership(colours: Registry[int]) -> None:
    assert colours.names() == ["dark_blue", "red"]
    assert list(colours) == ["dark_blue", "red"]
    assert "Rouge" in colours and "dark-blue" in colours
    assert "green" not in colours
    assert 3 not in colours


def test_unknown_name_lists_choices_and_suggests(colours: Registry[int]) -> None:
    with pytest.raises(SpecError) as info:
        colours.get("redd", where="node h1: ")
    assert str(info.value) == (
        "node h1: unknown colour 'redd'. Did you mean 'red'? Valid choices: dark_blue, red."
    )


def test_unknown_name_without_a_close_match(colours: Registry[int]) -> None:
    with pytest.raises(
        SpecError, match=r"^unknown colour 'zzz'\. Valid choices: dark_blue, red\.$"
    ):
        colours.get("zzz")


def test_non_string_name(colours: Registry[int]) -> None:
    with pytest.raises(SpecError, match="colour must be a string, got 3"):
        colours.get(3)  # type: ignore[arg-type]


def test_registering_a_name_twice_is_refused(colours: Registry[int]) -> None:
    with pytest.raises(ValueError, match="registered twice"):
        colours.register("RED", 3)
    with pytest.raises(ValueError, match="registered twice"):
        colours.register("rouge", 3)  # an existing alias


def test_an_alias_may_not_shadow_an_existing_name(colours: Registry[int]) -> None:
    with pytest.raises(ValueError, match="already taken"):
        colours.register("green", 3, aliases=("red",))
    with pytest.raises(ValueError, match="already taken"):
        colours.register("green", 3, aliases=("Rouge",))
    # the refused registration left nothing behind
    assert colours.names() == ["dark_blue", "red"]
    assert colours.get("red") == 1


def test_replace_puts_the_new_item_in_place_and_drops_old_aliases(colours: Registry[int]) -> None:
    colours.register("red", 7, replace=True)
    assert colours.get("red") == 7
    assert "rouge" not in colours  # the old item's alias went with it
    assert colours.unregister("red") == 7
    assert "red" not in colours


def test_an_empty_name_is_refused(colours: Registry[int]) -> None:
    with pytest.raises(SpecError, match="non-empty string name"):
        colours.register("  ", 3)
