"""`tumbler.records.NamedTuple` makes what `typing.NamedTuple` makes, without typing."""

from __future__ import annotations

import subprocess
import sys
import typing

import pytest

from tumbler.records import NamedTuple


class Point(NamedTuple):
    """A point."""

    x: int
    y: int = 0
    label: str = ""

    def __repr__(self) -> str:
        return f"P({self.x}, {self.y})"

    @property
    def norm(self) -> int:
        return abs(self.x) + abs(self.y)

    def moved(self, dx: int) -> Point:
        return self._replace(x=self.x + dx)


class TypingPoint(typing.NamedTuple):
    """A point."""

    x: int
    y: int = 0
    label: str = ""


def test_behaves_as_typings_named_tuple() -> None:
    p, t = Point(1), TypingPoint(1)
    assert isinstance(p, tuple) and tuple(p) == tuple(t) == (1, 0, "")
    assert Point._fields == TypingPoint._fields == ("x", "y", "label")
    assert Point._field_defaults == TypingPoint._field_defaults == {"y": 0, "label": ""}
    assert Point(1, 2) == (1, 2, "") and hash(Point(1, 2)) == hash((1, 2, ""))
    x, y, label = Point(3, 4, "a")
    assert (x, y, label) == (3, 4, "a")
    assert Point._make([5, 6, "b"]) == Point(5, 6, "b")
    assert Point(1, 2)._asdict() == {"x": 1, "y": 2, "label": ""}
    assert Point.__doc__ == TypingPoint.__doc__ == "A point."
    assert Point.__module__ == TypingPoint.__module__
    assert Point.__qualname__ == "Point"
    assert list(Point.__annotations__) == ["x", "y", "label"]
    with pytest.raises(TypeError):
        Point()  # type: ignore[call-arg]
    with pytest.raises(AttributeError):
        Point(1).x = 2  # type: ignore[misc]


def test_keeps_methods_properties_and_repr() -> None:
    p = Point(-3, 4)
    assert repr(p) == "P(-3, 4)"
    assert p.norm == 7
    assert p.moved(1) == Point(-2, 4)


def test_a_field_without_default_after_one_with_is_refused() -> None:
    with pytest.raises(TypeError):

        class Bad(NamedTuple):
            a: int = 0
            b: int  # type: ignore[misc]


def test_importing_it_does_not_import_typing() -> None:
    code = "import sys, tumbler.records; print('typing' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
