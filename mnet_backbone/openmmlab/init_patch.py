"""Rewrite the arguments of another library's ``__init__`` before it runs, and undo it.

Both faces use it the same way (mmdet's detectors, mmpretrain's ``ImageClassifier``): the
faces decide the version gate and what to rewrite; this module owns the wrapping and its undo.
"""
import functools
import inspect
from typing import Callable, Dict

__all__ = ['InitPatch']


class InitPatch:
    """``install(cls, rewrite)`` wraps ``cls.__init__`` so that ``rewrite(arguments)`` may edit
    its bound arguments (a dict, parameter name -> value) first; ``undo()`` restores every
    original ``__init__``."""

    def __init__(self) -> None:
        self._originals: Dict[type, Callable] = {}

    @property
    def active(self) -> bool:
        return bool(self._originals)

    def installed(self, cls: type) -> bool:
        return cls in self._originals

    def install(self, cls: type, rewrite: Callable[[dict], None]) -> None:
        if cls in self._originals:
            return
        original = cls.__init__
        signature = inspect.signature(original)

        @functools.wraps(original)
        def __init__(self, *args, **kwargs):
            bound = signature.bind(self, *args, **kwargs)
            rewrite(bound.arguments)
            original(*bound.args, **bound.kwargs)

        __init__.__mnet_original__ = original
        self._originals[cls] = original
        cls.__init__ = __init__

    def undo(self) -> None:
        for cls, original in list(self._originals.items()):
            cls.__init__ = original
            del self._originals[cls]
