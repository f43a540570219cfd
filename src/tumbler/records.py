"""`NamedTuple` for the client's start-up path, without importing the typing module.

`typing` costs the client about a quarter of the interpreter's own start-up, and the
knock path needs nothing from it but `NamedTuple`. Type checkers see typing's; at run
time the class statement is turned into the same `collections.namedtuple` typing would
make: the annotated names are the fields, their values the defaults, and methods,
properties and the docstring are kept (tests/unit/test_records.py).
"""

from __future__ import annotations

TYPE_CHECKING = False  # not typing's, which is the module this one keeps out
if TYPE_CHECKING:
    from typing import NamedTuple as NamedTuple
else:
    import collections

    _OWN = frozenset({"__module__", "__qualname__", "__annotations__", "__orig_bases__"})

    class _NamedTupleMeta(type):
        def __new__(mcls, name, bases, namespace):  # noqa: ANN001, ANN204 (never type-checked)
            if not bases:  # NamedTuple itself
                return super().__new__(mcls, name, bases, namespace)
            fields = list(namespace.get("__annotations__", {}))
            defaults = [namespace[field] for field in fields if field in namespace]
            if any(field not in namespace for field in fields[len(fields) - len(defaults) :]):
                raise TypeError(f"{name}: a field without a default follows one with a default")
            made = collections.namedtuple(
                name, fields, defaults=defaults, module=namespace.get("__module__")
            )
            made.__qualname__ = namespace.get("__qualname__", name)
            made.__annotations__ = dict(namespace.get("__annotations__", {}))
            for key, value in namespace.items():
                if key not in _OWN and key not in fields:
                    setattr(made, key, value)
            return made

    class NamedTuple(metaclass=_NamedTupleMeta):
        """Subclass it as typing.NamedTuple: `class Point(NamedTuple): x: int; y: int = 0`."""
