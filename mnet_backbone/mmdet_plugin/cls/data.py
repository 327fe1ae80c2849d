"""Classification data for mmengine: an image-folder data set, its data sample and transforms.

Layouts :class:`ImageFolderDataset` reads (``data_root`` + ``data_prefix['img']``):

* class folders: ``<img>/<class>/**/*.jpg`` - ImageNet's ``train/<wnid>/*.JPEG`` (and ``val/``
  sorted into ``val/<wnid>/`` as most tools do), or any plain ``class/*.jpg`` set;
* a list file: ``ann_file`` with ``<path relative to img> <class index>`` per line - ImageNet's
  flat ``val/`` with mmpretrain's ``meta/val.txt``; the class names then come from
  ``metainfo=dict(classes=[...] or 'classes.txt')``.

Nothing is dropped quietly: files that are not images are skipped with a logged count, empty
class folders and bad list lines are errors, and an image that cannot be decoded is an error
naming the file (or, with ``bad_images='skip'`` on a training set, a logged skip with a count).
"""
import logging
import os
import os.path as osp
from collections import Counter
from typing import List, Optional, Sequence, Tuple

import mmcv
import numpy as np
import torch
from mmcv.transforms import BaseTransform, LoadImageFromFile
from mmengine.dataset import BaseDataset
from mmengine.logging import print_log
from mmengine.structures import BaseDataElement
from mmdet.registry import DATASETS, TRANSFORMS

__all__ = ['ClsDataSample', 'ImageFolderDataset', 'ClassificationDataError',
           'UnreadableImageError', 'RandomResizedCrop', 'ResizeEdge', 'PackClsInputs',
           'IMG_EXTENSIONS']

IMG_EXTENSIONS = ('.jpg', '.jpeg', '.png', '.bmp', '.ppm', '.pgm', '.tif', '.tiff', '.webp')


class ClassificationDataError(ValueError):
    """A classification data set that cannot be used as it is (the message says why)."""


class UnreadableImageError(ClassificationDataError):
    """An image file that cannot be decoded."""


class ClsDataSample(BaseDataElement):
    """One image's label (``gt_label``, a 0-d int64 tensor) and prediction (``pred_score``:
    softmax over the classes, ``pred_label``)."""

    @property
    def gt_label(self) -> torch.Tensor:
        return self._gt_label

    @gt_label.setter
    def gt_label(self, value) -> None:
        self.set_field(torch.as_tensor(value, dtype=torch.long), '_gt_label', dtype=torch.Tensor)

    @gt_label.deleter
    def gt_label(self) -> None:
        del self._gt_label

    @property
    def pred_score(self) -> torch.Tensor:
        return self._pred_score

    @pred_score.setter
    def pred_score(self, value: torch.Tensor) -> None:
        self.set_field(value, '_pred_score', dtype=torch.Tensor)

    @pred_score.deleter
    def pred_score(self) -> None:
        del self._pred_score

    @property
    def pred_label(self) -> torch.Tensor:
        return self._pred_label

    @pred_label.setter
    def pred_label(self, value) -> None:
        self.set_field(torch.as_tensor(value, dtype=torch.long), '_pred_label',
                       dtype=torch.Tensor)

    @pred_label.deleter
    def pred_label(self) -> None:
        del self._pred_label


def _summary(counter: Counter, limit: int = 5) -> str:
    return ', '.join(f'{n} x {k or "(no extension)"}' for k, n in counter.most_common(limit)) + (
        ', ...' if len(counter) > limit else '')


def _listing(items: Sequence[str], limit: int = 10) -> str:
    shown = ', '.join(repr(i) for i in items[:limit])
    return shown + (f' and {len(items) - limit} more' if len(items) > limit else '')


@DATASETS.register_module()
class ImageFolderDataset(BaseDataset):
    """Images in class folders (or listed with labels in ``ann_file``) for classification.

    Args:
        data_root: the data set's folder; ``ann_file`` and ``data_prefix['img']`` are relative
            to it.
        data_prefix: ``dict(img='train/')``: the folder with the class folders (or the images
            ``ann_file`` lists).
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
            with a running count. Evaluation sets always raise (a skipped image would change
            the metric).
        allow_empty_classes: accept class folders without images (logged); by default they are
            an error (a class that cannot be learnt or evaluated is almost always a mistake).
        **kwargs: mmengine ``BaseDataset`` arguments (``pipeline``, ``test_mode``, ...).
    """

    METAINFO = dict(classes=None)

    def __init__(self, data_root: str = '', data_prefix: dict = dict(img=''), ann_file: str = '',
                 metainfo: Optional[dict] = None, extensions: Sequence[str] = IMG_EXTENSIONS,
                 bad_images: str = 'raise', allow_empty_classes: bool = False, **kwargs):
        if bad_images not in ('raise', 'skip'):
            raise ValueError(f"bad_images must be 'raise' or 'skip', got {bad_images!r}")
        if not isinstance(data_prefix, dict) or 'img' not in data_prefix:
            raise ValueError(f"ImageFolderDataset: data_prefix must be dict(img='folder/'), got "
                             f"{data_prefix!r}")
        self.extensions = tuple(e.lower() for e in extensions)
        self.bad_images = bad_images
        self.allow_empty_classes = allow_empty_classes
        self.num_skipped_images = 0
        super().__init__(ann_file=ann_file, metainfo=metainfo, data_root=data_root,
                         data_prefix=data_prefix, **kwargs)

    # -- reading the folder ------------------------------------------------------------------

    @property
    def img_dir(self) -> str:
        return self.data_prefix['img']

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
        if not osp.isdir(self.img_dir):
            raise ClassificationDataError(
                f'image folder {self.img_dir!r} does not exist (data_root + data_prefix.img); '
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

    def get_cat_ids(self, idx: int) -> List[int]:
        return [int(self.get_data_info(idx)['gt_label'])]

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

    def _bad_image(self, path: str, exc: Optional[Exception]):
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
        return None


# --- transforms ------------------------------------------------------------------------------

def _size_pair(size) -> Tuple[int, int]:
    """(height, width) from an int or a (width, height) pair (mmcv's order)."""
    if isinstance(size, int):
        return size, size
    width, height = size
    return int(height), int(width)


@TRANSFORMS.register_module()
class RandomResizedCrop(BaseTransform):
    """Inception-style crop: a random part of the image (area fraction in ``crop_ratio_range``,
    aspect ratio log-uniform in ``aspect_ratio_range``) resized to ``scale``.

    Inception's training uses areas from 8% (torchvision) or 5% (TF-slim) of the image; the
    MobileNet paper trains with less distortion, "limiting the size of small crops", which is a
    larger lower end of ``crop_ratio_range``. If no crop fits in ``max_attempts`` tries, the
    largest centred crop of an allowed aspect ratio is taken (as torchvision does).

    Args:
        scale: output size, an int or (width, height).
        crop_ratio_range: (min, max) fraction of the image area.
        aspect_ratio_range: (min, max) width / height of the crop.
        max_attempts: random tries before the centred fallback.
        interpolation: mmcv interpolation ('bilinear', 'bicubic', ...).
    """

    def __init__(self, scale, crop_ratio_range: Tuple[float, float] = (0.25, 1.0),
                 aspect_ratio_range: Tuple[float, float] = (3. / 4., 4. / 3.),
                 max_attempts: int = 10, interpolation: str = 'bilinear'):
        lo, hi = crop_ratio_range
        if not 0 < lo <= hi <= 1:
            raise ValueError(f'crop_ratio_range must satisfy 0 < min <= max <= 1, got '
                             f'{crop_ratio_range!r}')
        if not 0 < aspect_ratio_range[0] <= aspect_ratio_range[1]:
            raise ValueError(f'aspect_ratio_range must be 0 < min <= max, got '
                             f'{aspect_ratio_range!r}')
        self.scale = _size_pair(scale)
        self.crop_ratio_range = (float(lo), float(hi))
        self.aspect_ratio_range = tuple(float(a) for a in aspect_ratio_range)
        self.max_attempts = max_attempts
        self.interpolation = interpolation

    def crop_box(self, height: int, width: int) -> Tuple[int, int, int, int]:
        """(top, left, crop height, crop width) for an image of ``height`` x ``width``."""
        area = height * width
        log_lo, log_hi = np.log(self.aspect_ratio_range[0]), np.log(self.aspect_ratio_range[1])
        for _ in range(self.max_attempts):
            target = area * np.random.uniform(*self.crop_ratio_range)
            aspect = float(np.exp(np.random.uniform(log_lo, log_hi)))
            w = int(round(np.sqrt(target * aspect)))
            h = int(round(np.sqrt(target / aspect)))
            if 0 < w <= width and 0 < h <= height:
                top = np.random.randint(0, height - h + 1)
                left = np.random.randint(0, width - w + 1)
                return int(top), int(left), h, w
        ratio = width / height
        if ratio < self.aspect_ratio_range[0]:
            w, h = width, int(round(width / self.aspect_ratio_range[0]))
        elif ratio > self.aspect_ratio_range[1]:
            h, w = height, int(round(height * self.aspect_ratio_range[1]))
        else:
            h, w = height, width
        return (height - h) // 2, (width - w) // 2, h, w

    def transform(self, results: dict) -> dict:
        img = results['img']
        top, left, h, w = self.crop_box(*img.shape[:2])
        img = img[top:top + h, left:left + w]
        img = mmcv.imresize(img, (self.scale[1], self.scale[0]),
                            interpolation=self.interpolation)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['crop_box'] = (left, top, left + w, top + h)
        return results

    def __repr__(self) -> str:
        return (f'{type(self).__name__}(scale={self.scale}, crop_ratio_range='
                f'{self.crop_ratio_range}, aspect_ratio_range={self.aspect_ratio_range})')


@TRANSFORMS.register_module()
class ResizeEdge(BaseTransform):
    """Resize keeping the aspect ratio so that the shorter (``edge='short'``) or longer side is
    ``scale`` px; for evaluation, ``scale = crop / crop_pct`` (224 / 0.875 = 256)."""

    def __init__(self, scale: int, edge: str = 'short', interpolation: str = 'bilinear'):
        if edge not in ('short', 'long'):
            raise ValueError(f"edge must be 'short' or 'long', got {edge!r}")
        self.scale = int(scale)
        self.edge = edge
        self.interpolation = interpolation

    def transform(self, results: dict) -> dict:
        img = results['img']
        h, w = img.shape[:2]
        side = min(h, w) if self.edge == 'short' else max(h, w)
        factor = self.scale / side
        size = (max(1, int(round(w * factor))), max(1, int(round(h * factor))))
        img = mmcv.imresize(img, size, interpolation=self.interpolation)
        results['img'] = img
        results['img_shape'] = img.shape[:2]
        results['scale_factor'] = (size[0] / w, size[1] / h)
        return results

    def __repr__(self) -> str:
        return f'{type(self).__name__}(scale={self.scale}, edge={self.edge!r})'


@TRANSFORMS.register_module()
class PackClsInputs(BaseTransform):
    """``inputs`` (a CHW uint8 tensor, the loader's channel order) and a :class:`ClsDataSample`
    with ``gt_label`` (when the sample has one) and the listed meta keys."""

    def __init__(self, meta_keys: Sequence[str] = ('sample_idx', 'img_path', 'ori_shape',
                                                  'img_shape', 'flip', 'flip_direction')):
        self.meta_keys = tuple(meta_keys)

    def transform(self, results: dict) -> dict:
        img = results['img']
        if img.ndim == 2:
            img = img[..., None]
        inputs = torch.from_numpy(np.ascontiguousarray(img.transpose(2, 0, 1)))
        sample = ClsDataSample(metainfo={k: results[k] for k in self.meta_keys if k in results})
        if 'gt_label' in results:
            sample.gt_label = results['gt_label']
        return dict(inputs=inputs, data_samples=sample)
