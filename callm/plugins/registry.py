"""One registry shape for every kind of pluggable parser (tool-call, reasoning): classes by
name, built-ins and installed entry points loaded lazily on first use, plugins imported by file
path or module name. `ToolParserManager` and `ReasoningParserManager` are its two uses, with
vLLM's method names."""

import importlib
import importlib.util
import sys
import traceback
from collections.abc import Callable
from importlib.metadata import entry_points
from pathlib import Path
from typing import ClassVar


class ParserRegistry:
    kind: ClassVar[str]  # "tool parser"
    base: ClassVar[type]  # what every registered class subclasses
    entry_point_group: ClassVar[str]  # "callm.tool_parsers"
    lazy_parsers: ClassVar[dict[str, str]]  # name -> "module:ClassName"
    _entry_points_loaded: ClassVar[bool] = False

    @classmethod
    def _classes(cls) -> dict[str, type]:
        """The loaded classes by name (each subclass keeps them under vLLM's attribute name)."""
        raise NotImplementedError

    @classmethod
    def register_lazy_module(cls, name: str, target: str) -> None:
        cls.lazy_parsers.setdefault(name, target)

    @classmethod
    def register_module(cls, name: str | list[str] | None = None, force: bool = True,
                        module: type | None = None) -> Callable | type:
        """Register a class: `@register_module("x")`, `@register_module(["x", "y"])` or
        `register_module("x", module=C)`."""
        if isinstance(name, type):  # bare @register_module
            name, module = None, name

        def register(parser_cls: type) -> type:
            if not (isinstance(parser_cls, type) and issubclass(parser_cls, cls.base)):
                raise TypeError(f"{parser_cls!r} is not a {cls.base.__name__} subclass")
            names = [name] if isinstance(name, str) else (name or [parser_cls.__name__])
            for n in names:
                if not force and n in cls._classes():
                    raise KeyError(f"{cls.kind} {n!r} is already registered")
                cls._classes()[n] = parser_cls
            return parser_cls

        return register(module) if module is not None else register

    @classmethod
    def get(cls, name: str) -> type:
        if name not in cls._classes():
            cls._load_entry_points()
            target = cls.lazy_parsers.get(name)
            if target is not None:
                module_name, _, class_name = target.partition(":")
                cls._classes()[name] = getattr(importlib.import_module(module_name), class_name)
        if name not in cls._classes():
            raise KeyError(f"unknown {cls.kind} {name!r}; known parsers: "
                           f"{', '.join(cls.list_registered())}")
        return cls._classes()[name]

    @classmethod
    def list_registered(cls) -> list[str]:
        cls._load_entry_points()
        return sorted(set(cls._classes()) | set(cls.lazy_parsers))

    @classmethod
    def import_plugin(cls, path_or_module: str | Path) -> None:
        """Import a plugin by file path or module name; its `register_module` calls run."""
        path = Path(path_or_module)
        if path.suffix == ".py" or path.exists():
            if not path.is_file():
                raise FileNotFoundError(f"{cls.kind} plugin {str(path)!r} does not exist")
            module_name = f"callm_plugin_{path.stem}"
            spec = importlib.util.spec_from_file_location(module_name, path)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            try:
                spec.loader.exec_module(module)
            except Exception as e:
                sys.modules.pop(module_name, None)
                raise ImportError(_plugin_error(cls.kind, path, e)) from e
        else:
            importlib.import_module(str(path_or_module))

    @classmethod
    def _load_entry_points(cls) -> None:
        """Parsers installed by other packages under `entry_point_group`
        (`name = "module:Class"`); they load lazily like built-ins."""
        if cls._entry_points_loaded:
            return
        cls._entry_points_loaded = True
        for ep in entry_points(group=cls.entry_point_group):
            cls.register_lazy_module(ep.name, ep.value)


def _plugin_error(kind: str, path: Path, error: Exception) -> str:
    """Name the plugin file and the line in it where importing failed."""
    line = getattr(error, "lineno", None) if isinstance(error, SyntaxError) else None
    if line is None:
        frames = [f for f in traceback.extract_tb(error.__traceback__)
                  if Path(f.filename).resolve() == path.resolve()]
        line = frames[-1].lineno if frames else None
    where = f"{path}:{line}" if line else str(path)
    return f"failed to import {kind} plugin {where}: {type(error).__name__}: {error}"
