"""The mmdet side of detector deployment (``tools/deploy.py``).

A config + checkpoint as an eval-mode model (every key and shape of the checkpoint must fit:
mmengine alone would only log a mismatch and deploy random weights), the config's val set,
and mmdet's own PyTorch predictions (``mmdet.apis.inference_detector``, the config's test
pipeline) in the exported graph's conventions, to compare against.
"""
from typing import Callable, List, Optional, Sequence, Tuple

import numpy as np
import torch
from mmengine.config import Config

import mnet_backbone  # noqa: F401  (registers the model and the checkpoint fix)
from ..deploy.detector_pipeline import ValSet
from ..state_dicts import load_fitting_checkpoint

__all__ = ["load_detector", "val_set", "pytorch_predict"]


def load_detector(config: str, checkpoint: str,
                  cfg_options: Optional[dict] = None) -> Tuple[torch.nn.Module, Config]:
    """The detector of ``config`` with ``checkpoint``'s weights, in eval mode on the CPU."""
    import os

    from mmengine.runner.checkpoint import _load_checkpoint
    from mmdet.apis import init_detector

    if not os.path.isfile(checkpoint):
        raise FileNotFoundError(f"checkpoint {checkpoint!r} does not exist")
    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    import warnings
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # init_detector warns that it got no checkpoint
        model = init_detector(cfg, checkpoint=None, device="cpu")
    ckpt = load_fitting_checkpoint(model, checkpoint,
                                   lambda path: _load_checkpoint(path, map_location="cpu"))
    meta = (ckpt.get("meta") or {}).get("dataset_meta") if isinstance(ckpt, dict) else None
    classes = (meta or {}).get("classes") or _config_classes(cfg)
    model.dataset_meta = dict(classes=tuple(classes)) if classes else model.dataset_meta
    return model, cfg


def _config_classes(cfg: Config) -> Optional[Sequence[str]]:
    dataset = cfg.get("val_dataloader", {}).get("dataset", {})
    return (dataset.get("metainfo") or {}).get("classes")


def _load_rgb(path: str) -> np.ndarray:
    import mmcv

    image = mmcv.imread(path, channel_order="rgb")
    if image is None:
        raise ValueError(f"image {path!r} cannot be read")
    return image


def val_set(cfg: Config, limit: Optional[int] = None) -> ValSet:
    """The config's val set (COCO format), images decoded as mmdet's pipeline decodes them."""
    import os.path as osp

    dataset = cfg.val_dataloader.dataset
    root = dataset.get("data_root") or ""
    ann = osp.join(root, dataset.ann_file)
    img_dir = osp.join(root, (dataset.get("data_prefix") or {}).get("img", ""))
    return ValSet.from_coco(ann, img_dir, load=_load_rgb, limit=limit)


def pytorch_predict(model: torch.nn.Module) -> Callable[[List[np.ndarray]], List[dict]]:
    """mmdet's own inference (the config's test pipeline) on RGB arrays, as plain dicts."""
    from mmdet.apis import inference_detector

    def predict(images: List[np.ndarray]) -> List[dict]:
        with torch.no_grad():
            samples = inference_detector(model, [np.ascontiguousarray(im[..., ::-1])
                                                 for im in images])
        return [dict(boxes=s.pred_instances.bboxes, scores=s.pred_instances.scores,
                     labels=s.pred_instances.labels) for s in samples]

    return predict
