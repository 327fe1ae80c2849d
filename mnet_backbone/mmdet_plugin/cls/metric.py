"""Top-k classification accuracy for mmengine's evaluator."""
from typing import List, Optional, Sequence, Union

import numpy as np
import torch
from mmengine.evaluator import BaseMetric
from mmdet.registry import METRICS

__all__ = ['Accuracy', 'true_class_rank']


def true_class_rank(scores: torch.Tensor, label: int) -> int:
    """How many other classes score at least as high as the true one (0: it is the top-1).

    Ties count against the true class, so a model that scores every class the same is right
    for no k below the number of classes (not for every k, as optimistic tie-breaking would
    say).
    """
    true = scores[label]
    return int((scores > true).sum() + (scores == true).sum() - 1)


@METRICS.register_module()
class Accuracy(BaseMetric):
    """Top-k accuracy in percent: ``accuracy/top1``, ``accuracy/top5`` (mmpretrain's names).

    A sample is right at k when fewer than k classes score at least as high as its label (ties
    count as wrong, see :func:`true_class_rank`). For k >= the number of classes every sample is
    right, so such a top-k is 100 by definition.

    Args:
        topk: the k's to report.
        prefix: key prefix (``accuracy/``).
        collect_device: 'cpu' or 'gpu', where distributed results are gathered.
    """

    default_prefix: Optional[str] = 'accuracy'

    def __init__(self, topk: Union[int, Sequence[int]] = (1, 5), collect_device: str = 'cpu',
                 prefix: Optional[str] = None):
        super().__init__(collect_device=collect_device, prefix=prefix)
        topk = (topk,) if isinstance(topk, int) else tuple(topk)
        if not topk or any(not isinstance(k, int) or k < 1 for k in topk):
            raise ValueError(f'Accuracy: topk must be ints >= 1, got {topk!r}')
        self.topk = topk

    def process(self, data_batch, data_samples: Sequence[dict]) -> None:
        for sample in data_samples:
            if 'gt_label' not in sample:
                raise ValueError('Accuracy: a sample has no gt_label; the evaluation set needs '
                                 'labels (class folders or an ann_file with labels)')
            scores = torch.as_tensor(sample['pred_score']).flatten()
            label = int(sample['gt_label'])
            if not 0 <= label < len(scores):
                raise ValueError(f'Accuracy: label {label} is outside the model\'s '
                                 f'{len(scores)} classes (model.head.num_classes)')
            self.results.append(true_class_rank(scores, label))

    def compute_metrics(self, results: List[int]) -> dict:
        ranks = np.asarray(results)
        return {f'top{k}': float(100.0 * np.mean(ranks < k)) for k in self.topk}
