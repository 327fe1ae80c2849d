"""Classification data: mmpretrain's ``CustomDataset`` with the checks a class-folder set needs.

mmpretrain's ``CustomDataset`` reads ``<prefix>/<class>/**/*.jpg`` or a ``<path> <label>`` list
file, but takes hidden folders (``.ipynb_checkpoints``) as classes or class images, only warns
about a class folder without images, matches ``metainfo`` classes to folders by count alone
(names given in another order label the images wrongly), does not check list files, and stops
on the first image that cannot be decoded with an assertion. :class:`ImageFolderDataset` takes
the same arguments and layouts and adds, for local folders:

* class folders: hidden folders and files that are not images are skipped with a logged count;
  ``metainfo=dict(classes=[...])`` picks and orders classes by name (a listed class without a
  folder is an error, unlisted folders are logged); a class folder without images is an error
  (``allow_empty_classes=True`` accepts it); a folder of images without class folders says to
  sort them or use ``ann_file``;
* list files (``ann_file``, e.g. ImageNet's flat ``val/`` with ``meta/val.txt``): a bad line, a
  class index out of range or a listed file that does not exist is an error naming it;
* an image that cannot be decoded stops the run with its path; ``bad_images='skip'`` on a
  training set draws another image instead and logs each skip with a running count.

Storage backends other than local files (``s3://...``) are read by ``CustomDataset`` itself.
"""
import logging
import os
import os.path as osp
from collections import Counter
from typing import List, Optional, Sequence

from mmcv.transforms import LoadImageFromFile
from mmengine.logging import print_log
from mmpretrain.datasets import CustomDataset

from .. import images

__all__ = [
    'IMG_EXTENSIONS',
    'ClassificationDataError',
    'ImageFolderDataset',
    'UnreadableImageError',
]

IMG_EXTENSIONS = images.IMAGE_EXTENSIONS  # the package's one list, under mmpretrain's name


class ClassificationDataError(ValueError):
    """A classification data set that cannot be used as it is (the message says why)."""


class UnreadableImageError(ClassificationDataError, images.UnreadableImageError):
    """An image file that cannot be decoded (also caught as the package's
    :class:`mnet_backbone.images.UnreadableImageError`, an ``OSError``)."""


def _summary(counter: Counter, limit: int = 5) -> str:
    return ', '.join(f'{n} x {k or "(no extension)"}' for k, n in counter.most_common(limit)) + (
        ', ...' if len(counter) > limit else '')


def _listing(items: Sequence[str], limit: int = 10) -> str:
    shown = ', '.join(repr(i) for i in items[:limit])
    return shown + (f' and {len(items) - limit} more' if len(items) > limit else '')


class ImageFolderDataset(CustomDataset):
    """mmpretrain's ``CustomDataset`` with checked class folders, list files and images.

    Args:
        data_root: the data set's folder; ``ann_file`` and ``data_prefix`` are relative to it.
        data_prefix: the folder with the class folders (or the images ``ann_file`` lists), e.g.
            ``'train'``.
        ann_file: optional list file, one ``<relative path> <class index>`` per line
            (mmpretrain's ``meta/{train,val}.txt``); needs ``metainfo=dict(classes=...)``.
        metainfo: ``dict(classes=[...])`` or ``dict(classes='path/classes.txt')``. With class
            folders it picks and orders the classes (each must have a folder; folders not
            listed are skipped, with a log line); without it every folder is a class, in sorted
            order (ImageNet: the sorted wnids, the order of the released weights).
        extensions: file endings that count as images (case-insensitive); other files are
            skipped and counted in the log.
        bad_images: ``'raise'`` (default): an image that cannot be decoded stops the run with
            its path; ``'skip'``: a training set draws another image instead and logs each skip
            with a running count. Evaluation sets (``test_mode=True``) always raise (a skipped
            image would change the metric).
        allow_empty_classes: accept class folders without images (logged); by default they are
            an error (a class that cannot be learnt or evaluated is almost always a mistake).
        **kwargs: ``CustomDataset`` arguments (``pipeline``, ``test_mode``, ``with_label``, ...).
    """

    METAINFO = dict(classes=None)

    def __init__(self, data_root: str = '', data_prefix='', ann_file: str = '',
                 metainfo: Optional[dict] = None, extensions: Sequence[str] = IMG_EXTENSIONS,
                 bad_images: str = 'raise', allow_empty_classes: bool = False, **kwargs):
        if bad_images not in ('raise', 'skip'):
            raise ValueError(f"bad_images must be 'raise' or 'skip', got {bad_images!r}")
        self.bad_images = bad_images
        self.allow_empty_classes = allow_empty_classes
        self.num_skipped_images = 0
        super().__init__(data_root=data_root, data_prefix=data_prefix, ann_file=ann_file,
                         metainfo=metainfo, extensions=extensions, **kwargs)

    # -- reading the folder ------------------------------------------------------------------

    @property
    def img_dir(self) -> str:
        return self.img_prefix

    def _given_classes(self) -> Optional[List[str]]:
        classes = self._metainfo.get('classes')
        if classes is None:
            return None
        if isinstance(classes, str):
            raise ClassificationDataError(
                f'metainfo classes {classes!r} is neither a list of class names nor an '
                f'existing file with one name per line')
        classes = [str(c) for c in classes]
        duplicates = sorted(c for c, n in Counter(classes).items() if n > 1)
        if duplicates:
            raise ClassificationDataError(f'metainfo classes name {_listing(duplicates)} more '
                                          f'than once')
        return classes

    def _is_image(self, name: str) -> bool:
        return name.lower().endswith(self.extensions)

    def _scan(self, folder: str, others: Counter) -> List[str]:
        """Image files under ``folder`` (recursive, sorted); other files and hidden folders
        (``.ipynb_checkpoints``, ...) are counted in ``others``."""
        found = []
        for root, dirs, files in os.walk(folder, followlinks=True):
            others['(hidden folder)'] += sum(d.startswith('.') for d in dirs)
            dirs[:] = sorted(d for d in dirs if not d.startswith('.'))
            for name in sorted(files):
                if self._is_image(name):
                    found.append(osp.join(root, name))
                else:
                    others[osp.splitext(name)[1].lower() or name] += 1
        return found

    def load_data_list(self) -> List[dict]:
        if '://' in self.img_dir or not self.with_label:
            return super().load_data_list()
        if not osp.isdir(self.img_dir):
            raise ClassificationDataError(
                f'image folder {self.img_dir!r} does not exist (data_root + data_prefix); '
                f'expected class folders {self.img_dir}/<class>/*.jpg')
        if self.ann_file:
            data_list = self._load_list_file()
        else:
            data_list = self._load_class_folders()
        if not data_list:
            raise ClassificationDataError(f'no images found in {self.img_dir!r}')
        return data_list

    def _load_class_folders(self) -> List[dict]:
        entries = sorted(os.listdir(self.img_dir))
        folders = [e for e in entries if osp.isdir(osp.join(self.img_dir, e))]
        hidden = [f for f in folders if f.startswith('.')]
        folders = [f for f in folders if not f.startswith('.')]
        loose = [e for e in entries if e not in folders and e not in hidden]
        if not folders:
            images = [e for e in loose if self._is_image(e)]
            hint = (f' It holds {len(images)} images but no class folders: sort them into '
                    f'<class>/ folders, or list them with their labels in ann_file (e.g. '
                    f"ImageNet's flat val/: ann_file='meta/val.txt' + metainfo classes)"
                    if images else '')
            raise ClassificationDataError(
                f'no class folders in {self.img_dir!r} (expected <class>/*.jpg).{hint}')
        classes = self._given_classes()
        if classes is None:
            classes = folders
        else:
            missing = [c for c in classes if c not in folders]
            if missing:
                raise ClassificationDataError(
                    f'{len(missing)} of the {len(classes)} classes in metainfo have no folder in '
                    f'{self.img_dir!r}: {_listing(missing)}')
            unused = [f for f in folders if f not in classes]
            if unused:
                print_log(f'ImageFolderDataset: skipped {len(unused)} folders of {self.img_dir} '
                          f'that are not among the {len(classes)} metainfo classes: '
                          f'{_listing(unused)}', logger='current', level=logging.WARNING)
        if hidden or loose:
            print_log(f'ImageFolderDataset: ignored {len(hidden)} hidden folders and '
                      f'{len(loose)} files directly in {self.img_dir} (images belong in class '
                      f'folders)', logger='current', level=logging.WARNING)
        others: Counter = Counter()
        data_list, empty = [], []
        for label, name in enumerate(classes):
            paths = self._scan(osp.join(self.img_dir, name), others)
            if not paths:
                empty.append(name)
            data_list += [dict(img_path=p, gt_label=label) for p in paths]
        if empty:
            message = (f'{len(empty)} of the {len(classes)} class folders in {self.img_dir!r} '
                       f'hold no images ({", ".join(self.extensions)}): {_listing(empty)}')
            if not self.allow_empty_classes:
                raise ClassificationDataError(
                    message + '; add images, remove the folders, or pass '
                    'allow_empty_classes=True')
            print_log(f'ImageFolderDataset: {message}', logger='current',
                      level=logging.WARNING)
        others = +others  # drop zero counts
        if others:
            print_log(f'ImageFolderDataset: skipped {sum(others.values())} files that are not '
                      f'images or hidden folders in the class folders of {self.img_dir} '
                      f'({_summary(others)})', logger='current', level=logging.WARNING)
        self._metainfo['classes'] = tuple(classes)
        print_log(f'ImageFolderDataset: {len(data_list)} images of {len(classes)} classes in '
                  f'{self.img_dir}', logger='current')
        return data_list

    def _load_list_file(self) -> List[dict]:
        if not osp.isfile(self.ann_file):
            raise ClassificationDataError(f'ann_file {self.ann_file!r} does not exist')
        classes = self._given_classes()
        if classes is None:
            raise ClassificationDataError(
                f'ann_file {self.ann_file!r} gives class indices; name the classes with '
                f"metainfo=dict(classes=[...]) or metainfo=dict(classes='path/classes.txt')")
        data_list, missing, others = [], [], Counter()
        with open(self.ann_file) as f:
            for number, line in enumerate(f, start=1):
                if not line.strip() or line.lstrip().startswith('#'):
                    continue
                parts = line.rsplit(maxsplit=1)
                try:
                    path, label = parts[0].strip(), int(parts[1])
                except (IndexError, ValueError):
                    raise ClassificationDataError(
                        f'{self.ann_file}, line {number}: expected "<path> <class index>", got '
                        f'{line.strip()!r}') from None
                if not 0 <= label < len(classes):
                    raise ClassificationDataError(
                        f'{self.ann_file}, line {number}: class index {label} is outside '
                        f'0..{len(classes) - 1} ({len(classes)} metainfo classes)')
                if not self._is_image(path):
                    others[osp.splitext(path)[1].lower()] += 1
                    continue
                full = osp.join(self.img_dir, path)
                if not osp.isfile(full):
                    missing.append(path)
                data_list.append(dict(img_path=full, gt_label=label))
        if missing:
            raise ClassificationDataError(
                f'{len(missing)} files listed in {self.ann_file} are not in {self.img_dir!r}: '
                f'{_listing(missing)}')
        if others:
            print_log(f'ImageFolderDataset: skipped {sum(others.values())} entries of '
                      f'{self.ann_file} that are not images ({_summary(others)})',
                      logger='current', level=logging.WARNING)
        counts = Counter(d['gt_label'] for d in data_list)
        empty = [c for i, c in enumerate(classes) if not counts[i]]
        if empty and not self.allow_empty_classes:
            raise ClassificationDataError(
                f'{len(empty)} of the {len(classes)} classes have no image in {self.ann_file}: '
                f'{_listing(empty)}; pass allow_empty_classes=True if that is intended')
        self._metainfo['classes'] = tuple(classes)
        print_log(f'ImageFolderDataset: {len(data_list)} images of {len(classes)} classes '
                  f'listed in {self.ann_file}', logger='current')
        return data_list

    # -- reading an image ------------------------------------------------------------------

    def prepare_data(self, idx: int):
        """The pipeline on one sample; a failure to decode the image names the file."""
        data = self.get_data_info(idx)
        path = data.get('img_path')
        for transform in self.pipeline.transforms:
            is_loader = isinstance(transform, LoadImageFromFile)
            try:
                data = transform(data)
            except Exception as exc:
                if not is_loader:
                    raise
                return self._bad_image(path, exc)
            if data is None:
                return self._bad_image(path, None) if is_loader else None
        return data

    def _bad_image(self, path: str, exc: Optional[Exception]) -> None:
        """Raise, or (``bad_images='skip'``, training) log the skip and return None, on which
        mmengine's ``BaseDataset.__getitem__`` draws another sample."""
        reason = f'{type(exc).__name__}: {exc}' if exc is not None else 'the loader returned None'
        if self.bad_images == 'raise' or self.test_mode:
            fix = ('delete or replace it' if self.test_mode else
                   "delete or replace it, or set bad_images='skip' on the training data set to "
                   "skip such files (each skip is logged)")
            raise UnreadableImageError(f'cannot read image {path!r} ({reason}); {fix}') from exc
        self.num_skipped_images += 1
        print_log(f'ImageFolderDataset: skipped unreadable image {path} ({reason}); '
                  f'{self.num_skipped_images} skipped so far in this process',
                  logger='current', level=logging.WARNING)
