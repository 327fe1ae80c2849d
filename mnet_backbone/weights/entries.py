"""The registry of ImageNet-1K weights this package can download and convert.

Every number below is copied from the source that publishes it; where a source publishes none the
field is ``None``:

* Keras applications (``keras.src.applications.mobilenet``): the file names
  ``mobilenet_<1_0|7_5|5_0|2_5>_<res>_tf.h5`` under ``BASE_WEIGHT_PATH``; Keras downloads them
  without a hash, so ``sha256`` is ``None``. Keras documents (module docstring, keras.io) the
  paper's ImageNet accuracy for the four widths at 224 (Table 6) and for alpha 1.0 at the four
  resolutions (Table 7), quoted from :mod:`mnet_backbone.published`; the other nine files have
  no published accuracy (``top1=None``). No
  top-5 is published with them. The keras-applications README also lists Keras' own measurement
  of the four 224 files, quoted in their ``docs``. Keras' ``preprocess_input`` (mode "tf") maps
  pixels to [-1, 1], i.e. mean = std = 0.5 on [0, 1] inputs; the evaluation crop fraction is
  TF-slim's (``central_fraction=0.875``), whose checkpoints these files were translated from.
* timm (``timm/models/efficientnet.py``, ``default_cfgs``): ``mobilenetv1_100.ra4_e3600_r224_in1k``
  and ``mobilenetv1_125.ra4_e3600_r224_in1k`` on the Hugging Face hub (``hf_hub_id='timm/'``,
  ``model.safetensors``), mean = std = ``IMAGENET_INCEPTION_MEAN/STD`` (0.5), crop_pct 0.875 and
  0.9 at 224. Accuracy at 224 from timm's README (July 26 and Aug 21, 2024 release notes).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Optional, Tuple

from ..published import paper_top1
from .hub import UnknownEntryError

__all__ = ["WeightEntry", "ENTRIES", "get_entry", "register", "KERAS_MODEL_KWARGS",
           "TIMM_MODEL_KWARGS"]

# Model settings each source's weights were trained with (arguments of the core MobileNetV1).
KERAS_MODEL_KWARGS = {"tf_padding": True, "bn_eps": 1e-3, "activation": "relu6"}
TIMM_MODEL_KWARGS = {"tf_padding": False, "bn_eps": 1e-5, "activation": "relu6"}


@dataclass(frozen=True)
class WeightEntry:
    """One downloadable set of weights and everything needed to use it."""

    name: str              # e.g. "keras_1.0_224", "timm_1.0_224_ra4"
    url: str
    source: str            # "keras" | "timm" | "tf_graph" | ...: which converter reads the file
    license: str
    alpha: float
    resolution: int        # training / evaluation input size
    num_classes: int
    top1: Optional[float]  # published ImageNet-1K top-1 (%) at `resolution`, None if unpublished
    top5: Optional[float]  # published top-5 (%), None if unpublished
    sha256: Optional[str]  # None where the source publishes no hash
    model_kwargs: dict = field(hash=False, compare=False)  # MobileNetV1 settings the weights need
    mean: Tuple[float, float, float] = (0.5, 0.5, 0.5)  # normalisation of [0, 1] RGB input
    std: Tuple[float, float, float] = (0.5, 0.5, 0.5)
    crop_pct: float = 0.875  # eval: resize to resolution / crop_pct, then center crop
    file_size_mb: Optional[float] = None
    recipe: str = ""       # URL describing the training
    docs: str = ""

    @property
    def filename(self) -> str:
        """The downloaded file's name in the cache (entry name + the URL's file name)."""
        return f"{self.name}-{self.url.rstrip('/').rsplit('/', 1)[-1]}"


ENTRIES: Dict[str, WeightEntry] = {}


def register(entry: WeightEntry) -> WeightEntry:
    """Add an entry (e.g. a private mirror) to :data:`ENTRIES`."""
    if entry.source not in ("keras", "timm", "plain", "sequential", "tf_graph"):
        raise ValueError(f"WeightEntry {entry.name!r}: unknown source {entry.source!r}")
    ENTRIES[entry.name] = entry
    return entry


def get_entry(name) -> WeightEntry:
    """The entry called ``name`` (an entry passes through); ValueError lists the valid names."""
    if isinstance(name, WeightEntry):
        return name
    if isinstance(name, str) and name in ENTRIES:
        return ENTRIES[name]
    raise UnknownEntryError(f"unknown weights {name!r}; valid names: {', '.join(ENTRIES)}")


# --- Keras applications: Google's original MobileNetV1 weights (the paper's 16 models) ----------

KERAS_BASE_URL = "https://storage.googleapis.com/tensorflow/keras-applications/mobilenet/"
_KERAS_ALPHA_TEXT = {1.0: "1_0", 0.75: "7_5", 0.5: "5_0", 0.25: "2_5"}
# keras-applications README: Keras' own single-crop top-1 / top-5 error of the 224 files.
_KERAS_MEASURED_ERR = {1.0: (29.576, 10.496), 0.75: (31.588, 11.758), 0.5: (35.708, 14.376),
                       0.25: (48.418, 24.208)}


def _keras_docs(alpha: float, resolution: int) -> str:
    text = (f"Google's MobileNetV1 {alpha} at {resolution}px, translated by Keras from the "
            f"TF-slim checkpoints (ReLU6, BN eps 1e-3, TF 'SAME' padding).")
    if paper_top1(alpha, resolution)[0] is None:
        text += " Keras and the paper publish no ImageNet accuracy for this file."
    if resolution == 224:
        top1_err, top5_err = _KERAS_MEASURED_ERR[alpha]
        text += (f" Keras measured {100 - top1_err:.3f} top-1 / {100 - top5_err:.3f} top-5 with "
                 f"this file (keras-applications README).")
    return text


for _alpha, _text in _KERAS_ALPHA_TEXT.items():
    for _res in (224, 192, 160, 128):
        register(WeightEntry(
            name=f"keras_{_alpha}_{_res}",
            url=f"{KERAS_BASE_URL}mobilenet_{_text}_{_res}_tf.h5",
            source="keras", license="Apache-2.0", alpha=_alpha, resolution=_res,
            num_classes=1000, top1=paper_top1(_alpha, _res)[0], top5=None, sha256=None,
            model_kwargs=dict(KERAS_MODEL_KWARGS), mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
            crop_pct=0.875, file_size_mb=None,
            recipe="https://github.com/tensorflow/models/blob/master/research/slim/nets/"
                   "mobilenet_v1.md",
            docs=_keras_docs(_alpha, _res)))

# --- timm: MobileNetV1 retrained with the MobileNetV4 "ra4" recipe --------------------------------

_TIMM_RECIPE = "https://huggingface.co/blog/rwightman/mobilenet-baselines"
register(WeightEntry(
    name="timm_1.0_224_ra4",
    url="https://huggingface.co/timm/mobilenetv1_100.ra4_e3600_r224_in1k/resolve/main/"
        "model.safetensors",
    source="timm", license="Apache-2.0", alpha=1.0, resolution=224, num_classes=1000,
    top1=75.382, top5=92.312, sha256=None, model_kwargs=dict(TIMM_MODEL_KWARGS),
    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=0.875, file_size_mb=None,
    recipe=_TIMM_RECIPE,
    docs="timm's mobilenetv1_100.ra4_e3600_r224_in1k, trained on ImageNet-1k by Ross Wightman "
         "with hyper-parameters inspired by MobileNetV4-small ('ra4'); timm also reports 76.094 "
         "top-1 / 93.004 top-5 when tested at 256px (crop 0.95)."))
register(WeightEntry(
    name="timm_1.25_224_ra4",
    url="https://huggingface.co/timm/mobilenetv1_125.ra4_e3600_r224_in1k/resolve/main/"
        "model.safetensors",
    source="timm", license="Apache-2.0", alpha=1.25, resolution=224, num_classes=1000,
    top1=76.924, top5=93.234, sha256=None, model_kwargs=dict(TIMM_MODEL_KWARGS),
    mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5), crop_pct=0.9, file_size_mb=None,
    recipe=_TIMM_RECIPE,
    docs="timm's mobilenetv1_125.ra4_e3600_r224_in1k (width 1.25), same recipe; timm also "
         "reports 77.600 top-1 / 93.804 top-5 when tested at 256px (crop 1.0)."))

del _alpha, _text, _res
