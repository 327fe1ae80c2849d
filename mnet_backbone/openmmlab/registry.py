"""All-or-nothing registration into OpenMMLab registries, shared by every face."""
from typing import Iterable, Optional, Tuple

__all__ = ['RegistryConflictError', 'register', 'config_class']


class RegistryConflictError(ImportError):
    """A name the package registers is taken in a registry by another class.

    An ``ImportError``, so ``import mnet_backbone`` reports it as a face that could not load and
    the core stays usable.
    """


def _qualname(cls) -> str:
    return f'{cls.__module__}.{cls.__qualname__}'


def register(entries: Iterable[Tuple[object, type]], library: str = 'mmengine',
             tested: str = '') -> None:
    """Register every ``(registry, class)``, or none: a name another class holds is one
    :class:`RegistryConflictError` listing each conflict.

    Registries that fill lazily (mmdet's, mmpretrain's) import their modules first, so a name a
    later release adds is seen here, not as a crash inside that library's own import.
    """
    entries = tuple(entries)
    for registry, _ in entries:
        registry.import_from_location()
    taken = [f"{registry.name} registry: {cls.__name__!r} is {_qualname(other)}"
             for registry, cls in entries
             for other in [registry.module_dict.get(cls.__name__)]
             if other is not None and _qualname(other) != _qualname(cls)]
    if taken:
        raise RegistryConflictError(
            f'mnet_backbone: {library} already has ' + '; '.join(taken) + '. Nothing was '
            f'registered; use a {library} version without these names'
            + (f' (tested: {tested})' if tested else ''))
    for registry, cls in entries:
        # force: the same class again (a module reload) replaces its earlier registration.
        registry.register_module(module=cls, force=True)


def config_class(cfg, registry) -> Optional[type]:
    """The class a config dict's ``type`` names in ``registry`` (a class passes through); None
    for no config, no ``type``, or a name the registry does not know (the library reports an
    unknown type itself, when it builds)."""
    if not isinstance(cfg, dict) or 'type' not in cfg:
        return None
    if isinstance(cfg['type'], type):
        return cfg['type']
    try:
        return registry.get(cfg['type'])
    except Exception:  # noqa: BLE001 (an unknown type is the library's error to report, later)
        return None
