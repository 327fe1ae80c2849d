"""Running a trained or deployed model on images, folders, videos and cameras (``mnet predict``).

* :mod:`.models`: the MODEL argument -- an mmdet / mmpretrain config + checkpoint, a
  ``torchvision:BUILDER`` + state dict, a deployed folder or file -- as a :class:`Predictor`
  (one RGB image in, one :class:`Prediction` out); :func:`load_trained` is also what
  ``mnet deploy`` builds its model with;
* :mod:`.sources`: the SOURCE argument -- an image, a folder, a glob, a video, a camera -- as
  frames (:func:`open_source`);
* :mod:`.run`: :func:`predict_source` writes the drawn images or video (:mod:`.drawing`) and
  one COCO-results JSON, with a progress bar (:mod:`.progress`), and returns a summary.

Imports torch, numpy and Pillow; each face (mmdet, mmpretrain, torchvision), the runtimes and
OpenCV are imported when a model or source needs them.
"""
from .models import (ModelArgumentError, Prediction, Predictor, TrainedModel, load_trained,
                     model_kind, open_predictor)
from .run import PredictSummary, coco_records, predict_source
from .sources import Frame, Source, SourceError, open_source

__all__ = ["ModelArgumentError", "Prediction", "Predictor", "TrainedModel", "load_trained",
           "model_kind", "open_predictor", "PredictSummary", "coco_records", "predict_source",
           "Frame", "Source", "SourceError", "open_source"]
