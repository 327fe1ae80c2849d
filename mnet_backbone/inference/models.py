"""The MODEL argument of ``mnet predict`` / ``mnet deploy``: from its words to a model that runs.

Accepted kinds (:func:`model_kind`):

* an mmdet config of this package + its checkpoint (``configs/ssdlite320_mnet_shapes.py
  epoch_30.pth``): the detector, loaded by the mmdet face
  (:func:`mnet_backbone.mmdet_plugin.deploy.load_detector`), run by mmdet's own inference;
* an mmpretrain config + checkpoint (``configs/mnet_cls_shapes.py epoch_20.pth``): a classifier,
  run by mmpretrain's ``ImageClassificationInferencer`` (the config's test pipeline);
* ``torchvision:BUILDER`` + a state dict (builder arguments in ``model_kwargs``): a detector
  (SSD, SSDLite, Faster R-CNN) or a classifier (``torchvision:mobilenet_v1``; its checkpoint may
  also be a weights entry name such as ``keras_1.0_224``);
* a deployed folder (``deploy.json``, from ``mnet deploy``) or file: ``.onnx``, ``.pte``
  (ExecuTorch), ``.tflite`` (LiteRT), run by
  :class:`~mnet_backbone.deploy.DeployedDetector` on ONNX Runtime / OpenVINO / the mobile
  runtimes; an ``.onnx`` classifier from ``tools/export_onnx.py`` gives top-k labels.

Every checkpoint goes through the package's one fit check
(:func:`mnet_backbone.state_dicts.load_fitting_checkpoint`): a misfit is an error naming the
keys and the likely cause, never a model with random weights. :func:`open_predictor` wraps any
kind in a :class:`Predictor`: one RGB image in, one :class:`Prediction` out.
"""
from __future__ import annotations

import importlib.util
import os
from dataclasses import dataclass
from typing import Callable, List, Optional, Sequence

import numpy as np
import torch
from torch import nn

from ..deploy import backends
from ..deploy.detector_runtime import MANIFEST, DeployedDetector
from ..deploy.mobile import SUFFIXES
from ..state_dicts import load_fitting_checkpoint
from ..weights import ENTRIES

__all__ = ["Prediction", "Predictor", "TrainedModel", "ModelArgumentError", "model_kind",
           "load_trained", "open_predictor", "KINDS"]

KINDS = ("an mmdet or mmpretrain config (.py) followed by its checkpoint, torchvision:BUILDER "
         "followed by a state dict, a deployed folder (with deploy.json), or a deployed .onnx, "
         ".pte or .tflite file")
_EXTRAS = {"mmdet": "pip install 'mnet-backbone[mmdet]' (tools/install.sh)",
           "mmpretrain": "pip install 'mnet-backbone[cls]' (tools/install.sh)",
           "torchvision": "pip install 'mnet-backbone[torchvision]'"}
DEPLOYED_SUFFIXES = (".onnx",) + tuple(SUFFIXES.values())
CLASSIFIER_CROP = 0.875  # the package's weights' evaluation crop (resize to size / crop)
CLASSIFIER_MEAN_STD = (0.5, 0.5, 0.5)  # the package's weights' normalisation of [0, 1] RGB


class ModelArgumentError(ValueError):
    """A MODEL (with its checkpoint) that is none of the accepted kinds, or lacks a part."""


@dataclass
class Prediction:
    """One image's result: ``classes`` index the predictor's class names (from 0); ``boxes``
    are x1 y1 x2 y2 in the image's pixels (None for a classifier), best score first for a
    classifier."""

    scores: np.ndarray
    classes: np.ndarray
    boxes: Optional[np.ndarray] = None

    def _take(self, keep) -> "Prediction":
        return Prediction(self.scores[keep], self.classes[keep],
                          None if self.boxes is None else self.boxes[keep])

    def above(self, score_thr: float) -> "Prediction":
        return self._take(self.scores >= score_thr)

    def top(self, k: int) -> "Prediction":
        return self._take(np.argsort(-self.scores, kind="stable")[:k])


@dataclass
class TrainedModel:
    """A PyTorch model built from a config or builder with a checkpoint's weights.

    ``predict``: the face's own inference on a list of H x W x 3 uint8 RGB arrays; for a
    detector a list of dict(boxes, scores, labels) (labels counted from ``label_offset``,
    torchvision's 1: 0 is its background), for a classifier a list of class probabilities."""

    model: nn.Module
    face: str                       # mmdet, mmpretrain or torchvision
    task: str                       # detection or classification
    predict: Callable[[List[np.ndarray]], list]
    class_names: Optional[List[str]] = None
    label_offset: int = 0
    config: object = None           # the mmengine Config (OpenMMLab faces)


def _require(package: str) -> None:
    if importlib.util.find_spec(package) is None:
        raise ModelArgumentError(f"this MODEL needs {package}, which is not installed: "
                                 f"{_EXTRAS[package]}")


def model_kind(model: str) -> str:
    """``config``, ``torchvision``, ``deployed`` (folder or file); a
    :class:`ModelArgumentError` naming the accepted kinds otherwise."""
    if model.startswith("torchvision:"):
        return "torchvision"
    if model.endswith(".py"):
        if not os.path.isfile(model):
            raise ModelArgumentError(f"config {model!r} does not exist; pass a config file of "
                                     f"this package (configs/*.py) or of your work_dir")
        return "config"
    if os.path.isdir(model):
        if not os.path.isfile(os.path.join(model, MANIFEST)):
            raise ModelArgumentError(f"folder {model!r} is not a deployed model (it has no "
                                     f"{MANIFEST}); deploy one with: mnet deploy CONFIG "
                                     f"CHECKPOINT --output {model}")
        return "deployed"
    if os.path.isfile(model) and model.lower().endswith(DEPLOYED_SUFFIXES):
        return "deployed"
    what = "does not exist" if not os.path.exists(model) else "is none of the accepted kinds"
    raise ModelArgumentError(f"MODEL {model!r} {what}; pass {KINDS}")


# --- PyTorch models: config or builder + checkpoint ----------------------------------------------

def _config_scope(config: str, cfg_options: Optional[dict]):
    _require("mmengine")
    from mmengine.config import Config

    cfg = Config.fromfile(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    return cfg.get("default_scope", "mmdet"), cfg


def _load_mmdet(config: str, checkpoint: str, cfg_options: Optional[dict],
                device: str) -> TrainedModel:
    _require("mmdet")
    from ..mmdet_plugin.deploy import load_detector, pytorch_predict

    model, cfg = load_detector(config, checkpoint, cfg_options)
    model.to(device)
    names = list(model.dataset_meta.get("classes", ())) or None
    return TrainedModel(model, "mmdet", "detection", pytorch_predict(model), names, 0, cfg)


def _mmpretrain_names(checkpoint, model) -> Optional[List[str]]:
    meta = (checkpoint.get("meta") or {}) if isinstance(checkpoint, dict) else {}
    classes = (meta.get("dataset_meta") or {}).get("classes") or \
        getattr(model, "_dataset_meta", {}).get("classes")
    return list(classes) if classes else None


def _load_mmpretrain(cfg, checkpoint: str, device: str) -> TrainedModel:
    _require("mmpretrain")
    from mmengine.registry import DefaultScope
    from mmengine.runner.checkpoint import _load_checkpoint
    from mmpretrain.apis import ImageClassificationInferencer, get_model

    model = get_model(cfg)
    ckpt = load_fitting_checkpoint(model, checkpoint,
                                   lambda path: _load_checkpoint(path, map_location="cpu"))
    # The test pipeline's transforms are mmpretrain's, whatever scope an earlier mmdet model
    # (or Runner) left current in this process.
    with DefaultScope.overwrite_default_scope("mmpretrain"):
        inferencer = ImageClassificationInferencer(model, device=device)

    def predict(images: List[np.ndarray]) -> List[np.ndarray]:
        bgr = [np.ascontiguousarray(im[..., ::-1]) for im in images]
        with torch.no_grad():  # the inferencer's steps without its __call__'s progress bar
            samples = [sample for data in inferencer.preprocess(bgr, batch_size=len(bgr))
                       for sample in inferencer.forward(data)]
        return [s.pred_score.detach().cpu().numpy() for s in samples]

    return TrainedModel(model, "mmpretrain", "classification", predict,
                        _mmpretrain_names(ckpt, model), 0, cfg)


def _is_tv_detector(model: nn.Module) -> bool:
    from torchvision.models.detection.fcos import FCOS
    from torchvision.models.detection.generalized_rcnn import GeneralizedRCNN
    from torchvision.models.detection.retinanet import RetinaNet
    from torchvision.models.detection.ssd import SSD
    return isinstance(model, (SSD, GeneralizedRCNN, RetinaNet, FCOS))


def _classifier_transform(size: int, mean=CLASSIFIER_MEAN_STD, std=CLASSIFIER_MEAN_STD,
                          crop: float = CLASSIFIER_CROP):
    """torchvision's ImageClassification preset (resize the shorter side to size / crop,
    centre crop, normalise), the transform of the package's weights."""
    from ..tv_models import _compat
    return _compat.load().ImageClassification(crop_size=size, resize_size=int(size / crop),
                                              mean=tuple(mean), std=tuple(std))


def _classify(model: Callable, transform, device: str):
    def predict(images: List[np.ndarray]) -> List[np.ndarray]:
        batch = torch.stack([transform(torch.from_numpy(np.array(im))
                                       .permute(2, 0, 1)) for im in images]).to(device)
        with torch.no_grad():
            logits = torch.as_tensor(model(batch))
        return list(logits.float().softmax(1).cpu().numpy())
    return predict


def _detect(model: nn.Module, device: str):
    """The model's own forward (its transform and post-processing), as
    :func:`mnet_backbone.tv_models.deploy.pytorch_predict`, on ``device``."""
    def predict(images: List[np.ndarray]) -> List[dict]:
        tensors = [torch.from_numpy(np.array(im)).permute(2, 0, 1).float()
                   .div(255).to(device) for im in images]
        with torch.no_grad():
            return [{k: v.cpu() for k, v in r.items()} for r in model(tensors)]
    return predict


def _tv_entry_classifier(builder: str, entry: str, kwargs: dict, device: str) -> TrainedModel:
    """``torchvision:mobilenet_v1`` with a weights entry: its transform and class names."""
    from torchvision.models import get_model
    from ..tv_models import MobileNet_V1_Weights

    weights = MobileNet_V1_Weights.from_entry(entry)
    model = get_model(builder, weights=weights, **kwargs).eval().to(device)
    return TrainedModel(model, "torchvision", "classification",
                        _classify(model, weights.transforms(), device),
                        list(weights.meta["categories"]))


def _load_torchvision(model_arg: str, checkpoint: str, kwargs: dict, class_names, input_size,
                      device: str) -> TrainedModel:
    _require("torchvision")
    from ..tv_models.deploy import load_tv_detector

    builder = model_arg.split(":", 1)[1]
    if builder == "mobilenet_v1" and checkpoint in ENTRIES and not os.path.exists(checkpoint):
        return _tv_entry_classifier(builder, checkpoint, kwargs, device)
    # The torchvision face's loader: the builder, then the one fit check (any builder).
    model = load_tv_detector(builder, checkpoint, **kwargs).to(device)
    names = list(class_names) if class_names else None
    if _is_tv_detector(model):
        return TrainedModel(model, "torchvision", "detection", _detect(model, device), names, 1)
    if names is None and getattr(model, "num_classes", None) == 1000:
        from ..tv_models import _compat
        names = list(_compat.load()._IMAGENET_CATEGORIES)
    transform = _classifier_transform(input_size or 224)
    return TrainedModel(model, "torchvision", "classification",
                        _classify(model, transform, device), names)


def load_trained(model: str, checkpoint: Optional[str], *, model_kwargs: Optional[dict] = None,
                 cfg_options: Optional[dict] = None, class_names: Optional[Sequence[str]] = None,
                 input_size: Optional[int] = None, device: str = "cpu") -> TrainedModel:
    """The PyTorch model of a config (mmdet or mmpretrain, by its ``default_scope``) or a
    ``torchvision:BUILDER`` with ``checkpoint``'s weights, in eval mode on ``device``.

    ``model_kwargs``: the torchvision builder's arguments; ``cfg_options``: overrides of the
    config; ``class_names``: a torchvision model's (foreground) class names; ``input_size``: a
    torchvision classifier's input side (default 224)."""
    kind = model_kind(model)
    if kind == "deployed":
        raise ModelArgumentError(f"{model!r} is a deployed model, not a config or "
                                 f"torchvision:BUILDER with a checkpoint")
    if not checkpoint:
        raise ModelArgumentError(f"{model!r} needs its checkpoint: pass MODEL CHECKPOINT "
                                 f"(a .pth file)")
    entry = kind == "torchvision" and model.endswith(":mobilenet_v1") and checkpoint in ENTRIES
    if not (os.path.isfile(checkpoint) or entry):
        raise ModelArgumentError(f"checkpoint {checkpoint!r} does not exist; pass the .pth file "
                                 f"your training wrote (e.g. work_dirs/<config>/epoch_N.pth)")
    if kind == "torchvision":
        return _load_torchvision(model, checkpoint, dict(model_kwargs or {}), class_names,
                                 input_size, device)
    if model_kwargs:
        raise ModelArgumentError("--model-kwargs are a torchvision builder's arguments; change "
                                 "a config with --cfg-options KEY=VALUE")
    scope, cfg = _config_scope(model, cfg_options)
    if scope == "mmpretrain":
        return _load_mmpretrain(cfg, checkpoint, device)
    if scope != "mmdet":
        raise ModelArgumentError(f"config {model!r} is for {scope!r}; this package runs mmdet "
                                 f"and mmpretrain configs")
    return _load_mmdet(model, checkpoint, cfg_options, device)


# --- one interface over every kind ---------------------------------------------------------------

class Predictor:
    """One H x W x 3 uint8 RGB image in, one :class:`Prediction` out (all detections of a
    detector, every class of a classifier: cut them with :meth:`Prediction.above` /
    :meth:`Prediction.top`). ``backend`` says what runs the model."""

    def __init__(self, task: str, backend: str, run: Callable[[np.ndarray], Prediction],
                 class_names: Optional[Sequence[str]] = None, label_offset: int = 0):
        self.task = task
        self.backend = backend
        self.class_names = list(class_names or ())
        self.label_offset = label_offset
        # what backend="auto" measured (a deploy.backends.Choice), when it chose
        self.choice: Optional[backends.Choice] = None
        self._run = run

    def __call__(self, image: np.ndarray) -> Prediction:
        return self._run(image)

    def name_of(self, index: int) -> str:
        """The class name of a prediction's class index (``class N`` in the model's own label
        numbering when the model carries no names)."""
        index = int(index)
        if 0 <= index < len(self.class_names):
            return self.class_names[index]
        return f"class {index + self.label_offset}"


def _detections(result: dict, label_offset: int) -> Prediction:
    as_np = {k: np.asarray(v.cpu() if isinstance(v, torch.Tensor) else v)
             for k, v in result.items()}
    return Prediction(as_np["scores"].astype(np.float32),
                      as_np["labels"].astype(np.int64) - label_offset,
                      as_np["boxes"].astype(np.float32).reshape(-1, 4))


def _probabilities(scores: np.ndarray) -> Prediction:
    order = np.argsort(-scores, kind="stable")
    return Prediction(scores[order].astype(np.float32), order.astype(np.int64))


def _trained_predictor(trained: TrainedModel, device: str) -> Predictor:
    backend = f"pytorch ({trained.face}, {device})"
    if trained.task == "classification":
        return Predictor("classification", backend,
                         lambda im: _probabilities(trained.predict([im])[0]),
                         trained.class_names)
    return Predictor("detection", backend,
                     lambda im: _detections(trained.predict([im])[0], trained.label_offset),
                     trained.class_names, trained.label_offset)


def _onnx_outputs(path: str) -> List[str]:
    import onnx
    return [o.name for o in onnx.load(path, load_external_data=False).graph.output]


def _onnx_classifier(path: str, backend: str, precision: str, threads: int) -> Predictor:
    """An ``.onnx`` classifier of ``tools/export_onnx.py`` (fixed input size, logits)."""
    import onnx

    runner = backends.open_model(path, backend, precision, threads)
    dims = onnx.load(path, load_external_data=False).graph.input[0].type.tensor_type.shape.dim
    transform = _classifier_transform(dims[2].dim_value or 224)
    predict = _classify(lambda x: runner(x.numpy())[0], transform, "cpu")
    predictor = Predictor("classification", _runner_name(runner, precision),
                          lambda im: _probabilities(predict([im])[0]))
    predictor.choice = runner.choice
    return predictor


def _runner_name(runner: backends.Runner, precision: str) -> str:
    """``onnxruntime/own fp32``: the backend, its configuration and the precision."""
    if runner.backend not in backends.BACKENDS:  # a mobile runtime: one configuration
        return f"{runner.backend} {precision}"
    return f"{runner.backend}/{runner.config} {precision}"


def _deployed_predictor(path: str, backend: str, precision: str, threads: int) -> Predictor:
    if path.lower().endswith(".onnx") and "logits" in _onnx_outputs(path):
        return _onnx_classifier(path, backend, precision, threads)
    detector = DeployedDetector(path, backend=backend, precision=precision, threads=threads)
    spec = detector.spec
    predictor = Predictor("detection", _runner_name(detector.runner, precision),
                          lambda im: _detections(detector.predict([im])[0], spec.label_offset),
                          spec.class_names, spec.label_offset)
    predictor.choice = detector.runner.choice
    return predictor


def open_predictor(model: str, checkpoint: Optional[str] = None, *, backend: str = "auto",
                   precision: str = "fp32", device: str = "cpu", threads: int = 0,
                   model_kwargs: Optional[dict] = None, cfg_options: Optional[dict] = None,
                   class_names: Optional[Sequence[str]] = None,
                   input_size: Optional[int] = None) -> Predictor:
    """A :class:`Predictor` for any accepted MODEL (see the module doc).

    Deployed models run on ``backend`` (``auto``: the fastest measured, see
    :mod:`mnet_backbone.deploy.backends`) at ``precision`` on the CPU; PyTorch models on
    ``device`` (``backend`` ``auto`` or ``pytorch``)."""
    kind = model_kind(model)
    if kind != "deployed":
        if backend not in ("auto", "pytorch"):
            raise ModelArgumentError(f"--backend {backend} runs deployed models; deploy this "
                                     f"one first (mnet deploy {model} CHECKPOINT --output DIR), "
                                     f"or leave --backend out")
        if precision != "fp32":
            raise ModelArgumentError(f"--precision {precision} is for deployed models; a "
                                     f"PyTorch model runs in fp32")
        trained = load_trained(model, checkpoint, model_kwargs=model_kwargs,
                               cfg_options=cfg_options, class_names=class_names,
                               input_size=input_size, device=device)
        return _trained_predictor(trained, device)
    if checkpoint:
        raise ModelArgumentError(f"{model!r} is a deployed model, which holds its weights: "
                                 f"leave out the checkpoint {checkpoint!r}")
    if device != "cpu":
        raise ModelArgumentError(f"deployed models run on the CPU here; leave out --device "
                                 f"{device} (or predict with the PyTorch checkpoint)")
    if backend == "pytorch":
        raise ModelArgumentError("--backend pytorch runs a config or torchvision:BUILDER with "
                                 "its checkpoint; a deployed model runs on auto, onnxruntime, "
                                 "openvino, executorch or litert")
    if model_kwargs or cfg_options:
        raise ModelArgumentError("--model-kwargs / --cfg-options change a PyTorch model; a "
                                 "deployed model is fixed (deploy it again to change it)")
    predictor = _deployed_predictor(model, backend, precision, threads)
    if class_names:
        predictor.class_names = list(class_names)
    return predictor

