"""SSD head that mmdet 3.3.0 can run at val/test/inference time, on any device.

mmdet 3.3.0's ``SSDHead`` never builds ``self.loss_cls`` (it computes its loss with hard negative
mining in ``loss_by_feat``), but ``BaseDenseHead._predict_by_feat_single`` reads
``self.loss_cls``, so every prediction fails with "'SSDHead' object has no attribute 'loss_cls'"
(open-mmlab/mmdetection#11780, #11063; the fix #11524 was never merged).

Its NMS (``BaseDenseHead._bbox_post_process`` calls ``mmcv.ops.batched_nms``) runs mmcv's
compiled kernel, which an mmcv built without CUDA kernels lacks on a GPU ("nms_impl:
implementation for device cuda:0 not found"). ``SSDHeadPatched`` runs the same batched NMS on
torchvision's kernel (:func:`mnet_backbone.postprocess.batched_nms_as_mmcv`, the same detections),
so validation and ``tools/test.py`` need no mmcv kernel.
"""
from mmdet.models.dense_heads import SSDHead
from mmdet.registry import MODELS
from mmdet.structures.bbox import get_box_tensor
from mmengine.structures import InstanceData
from torch import nn

from ..postprocess import batched_nms_as_mmcv


class SSDHeadPatched(SSDHead):
    """``SSDHead`` that can predict, with an optional 1x1 box predictor.

    Args:
        predictor_kernel_size: kernel of the final class/box convolutions of the plain (not
            depthwise) head: mmdet's SSD300 uses 3; TF's SSD-MobileNet, whose size the paper
            reports (Table 13: 6.8M parameters), uses 1. The SSDLite head is always 1x1.
        *args, **kwargs: as ``SSDHead``; ``use_depthwise=True`` gives the SSDLite head.
    """

    def __init__(self, *args, predictor_kernel_size: int = 3, **kwargs):
        if predictor_kernel_size not in (1, 3):
            raise ValueError(f'SSDHeadPatched: predictor_kernel_size must be 1 or 3, got '
                             f'{predictor_kernel_size!r}')
        self.predictor_kernel_size = predictor_kernel_size
        super().__init__(*args, **kwargs)
        # What loss_by_feat computes (softmax cross-entropy over classes + background); declared
        # so the shared prediction code sees a softmax classifier.
        self.loss_cls = MODELS.build(dict(type='CrossEntropyLoss', use_sigmoid=False,
                                          reduction='none', loss_weight=1.0))

    def _bbox_post_process(self, results: InstanceData, cfg, rescale: bool = False,
                           with_nms: bool = True, img_meta=None) -> InstanceData:
        """mmdet's post-processing (rescale, min size, NMS, ``max_per_img``) with the NMS on
        torchvision's kernel; NMS kinds other than ``'nms'`` (soft-NMS...) stay mmcv's."""
        nms_cfg = cfg.get('nms')
        if nms_cfg is not None and nms_cfg.get('type', 'nms') != 'nms':
            return super()._bbox_post_process(results, cfg, rescale, with_nms, img_meta)
        results = super()._bbox_post_process(results, cfg, rescale, False, img_meta)
        if with_nms and results.bboxes.numel() > 0:
            dets, keep = batched_nms_as_mmcv(get_box_tensor(results.bboxes), results.scores,
                                             results.labels, nms_cfg)
            results = results[keep]
            results.scores = dets[:, -1]
            results = results[:cfg.max_per_img]
        return results

    def _init_layers(self) -> None:
        super()._init_layers()
        if self.predictor_kernel_size == 1 and not self.use_depthwise:
            for tower in (*self.cls_convs, *self.reg_convs):
                last = tower[-1]
                tower[-1] = nn.Conv2d(last.in_channels, last.out_channels, kernel_size=1)
