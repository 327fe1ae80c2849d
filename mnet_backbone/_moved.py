"""Old module paths that keep working for one release, with a DeprecationWarning."""
import importlib
import warnings

__all__ = ['moved_to']


def moved_to(old: str, new: str):
    """A module ``__getattr__`` for ``old`` that forwards every name to module ``new``."""
    def __getattr__(name: str):
        if name.startswith('__'):
            raise AttributeError(name)
        warnings.warn(f'{old} moved to {new}; import {name} from there (the old path goes in the '
                      f'next release)', DeprecationWarning, stacklevel=2)
        return getattr(importlib.import_module(new), name)
    return __getattr__
