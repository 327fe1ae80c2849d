"""Registration in torchvision's model registry and namespaces, refusing to overwrite.

torchvision's own ``register_model`` raises a bare ``ValueError`` on a second registration, which
would also fire when this module is reloaded. Here a name that already points at *this package's*
builder (same module and qualified name: a reload or a second install) is simply refreshed, and a
name held by anything else (torchvision itself, another plugin) is refused with
:class:`ModelRegistrationError`; :func:`install` turns a refusal into a warning so the rest of the
face (and ``import mnet_backbone``) keeps working.
"""
from __future__ import annotations

import warnings
from types import ModuleType
from typing import Any, Callable, Dict, Iterable, List, MutableMapping, Optional, Tuple

from . import _compat


class ModelRegistrationError(ValueError):
    """A name is already registered with torchvision by someone else."""


def _describe(obj: Any) -> str:
    return f"{getattr(obj, '__module__', '?')}.{getattr(obj, '__qualname__', repr(obj))}"


def _same_origin(a: Any, b: Any) -> bool:
    """Same object, or the same definition (module and qualified name) loaded again."""
    if a is b:
        return True
    missing = object()
    return all(getattr(a, attr, None) == getattr(b, attr, missing)
               for attr in ("__module__", "__qualname__"))


def builtin_models() -> MutableMapping[str, Callable]:
    """torchvision's registry dict (``torchvision.models._api.BUILTIN_MODELS``)."""
    return _compat.load().BUILTIN_MODELS


def register(name: str, fn: Callable, registry: Optional[MutableMapping[str, Callable]] = None
             ) -> None:
    """Register builder ``fn`` as ``name`` for ``torchvision.models.get_model``/``list_models``.

    Raises :class:`ModelRegistrationError` when ``name`` belongs to another builder.
    """
    registry = builtin_models() if registry is None else registry
    current = registry.get(name)
    if current is not None and not _same_origin(current, fn):
        raise ModelRegistrationError(
            f"torchvision already has a model registered as {name!r} ({_describe(current)}); "
            f"mnet_backbone will not replace it. Use {_describe(fn)} directly.")
    registry[name] = fn


def unregister(name: str, fn: Callable,
               registry: Optional[MutableMapping[str, Callable]] = None) -> bool:
    """Remove ``name`` if (and only if) it is registered to ``fn`` or its reloaded twin."""
    registry = builtin_models() if registry is None else registry
    if name in registry and _same_origin(registry[name], fn):
        del registry[name]
        return True
    return False


def expose(module: ModuleType, name: str, obj: Any) -> None:
    """``module.name = obj`` unless ``module`` already has a different ``name``."""
    current = getattr(module, name, None)
    if current is not None and not _same_origin(current, obj):
        raise ModelRegistrationError(
            f"{module.__name__}.{name} already exists ({_describe(current)}); mnet_backbone "
            f"will not replace it. Use {_describe(obj)} directly.")
    setattr(module, name, obj)


def install(builders: Iterable[Callable], names: Iterable[Tuple[ModuleType, str, Any]]
            ) -> List[str]:
    """Register ``builders`` under their ``__name__`` and set the attributes in ``names``.

    Conflicts are skipped with a ``RuntimeWarning`` (the message is also returned), never raised,
    so importing the package cannot fail because some other package took a name first.
    """
    refused: List[str] = []
    for fn in builders:
        try:
            register(fn.__name__, fn)
        except ModelRegistrationError as exc:
            refused.append(str(exc))
    for module, name, obj in names:
        try:
            expose(module, name, obj)
        except ModelRegistrationError as exc:
            refused.append(str(exc))
    for message in refused:
        warnings.warn(message, RuntimeWarning, stacklevel=3)
    return refused


def registered(builders: Iterable[Callable]) -> Dict[str, bool]:
    """Which of ``builders`` torchvision's registry currently maps to this package."""
    registry = builtin_models()
    return {fn.__name__: _same_origin(registry.get(fn.__name__), fn) for fn in builders}
