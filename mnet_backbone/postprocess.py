"""Detector post-processing over a whole batch: per-class candidates, NMS, the best detections.

One owner for what an SSD / SSDLite detector does after its head, whoever runs it: the
torchvision face's ``SSD`` (:func:`ssd_detections`), the mmdet face's SSD head
(:func:`batched_nms_as_mmcv`), and the deployed detectors' NMS tail (on the host for
ExecuTorch / LiteRT, in the ONNX file through the same torch code: ``deploy.detector_export``).

The selection runs over the whole batch with tensor ops (one ``topk`` for every image and
class); NMS runs torchvision's kernel (``torch.ops.torchvision.nms``, shipped for CPU and CUDA in
the torch wheels, so no mmcv kernel is needed) on each group's candidates, which are already
sorted and contiguous, so a group costs one kernel call and no Python-side selection. Which
groups share one kernel call follows the reference being reproduced, because the way boxes of
several classes are kept apart changes the float results:

* by default: one call per (image, class) on the boxes as they are (ONNX
  ``NonMaxSuppression``; torchvision's ``batched_nms`` above its size limit).
* ``as_torchvision=True``: per image, what ``torchvision.ops.batched_nms`` does: up to its size
  limit (4000 box coordinates on the CPU, 100000 elsewhere) one call on boxes shifted by
  ``label * (max coordinate + 1)`` (its "coordinate trick", float rounding included), above it
  one call per class.
* :func:`batched_nms_as_mmcv`: ``mmcv.ops.batched_nms`` (the same shift by class index, one call
  below ``split_thr`` boxes, per class on the shifted boxes above it, mmcv's float32 IoU
  threshold and its kernel's order of equal scores).

So the detections are those of the loop they replace, box for box; for torchvision's loop
except where two candidates of one class score exactly the same (its ``topk`` runs over
another tensor than the batched one, and may order equal scores otherwise).

The functions used by the torchvision face are TorchScript-compatible (``torch.jit.script``
of a torchvision detector keeps working). Needs torchvision for the NMS kernel.
"""
from typing import Dict, List, Optional, Tuple

import torch
from torch import Tensor

try:
    import torchvision  # registers torch.ops.torchvision.nms (CPU and CUDA kernels)
except ImportError:  # the error is raised where NMS is needed, naming the fix
    torchvision = None

__all__ = ["nms", "shift_by_class", "top_candidates", "candidate_boxes",
           "shift_like_torchvision", "greedy_nms_padded", "nms_keep", "best_detections",
           "ssd_detections", "as_list", "batched_nms_as_mmcv"]



if torchvision is None:
    def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
        raise ImportError("detector post-processing needs torchvision's NMS kernel: pip install "
                          "mnet-backbone[torchvision]")
else:
    def nms(boxes: Tensor, scores: Tensor, iou_threshold: float) -> Tensor:
        """torchvision's greedy NMS kernel: indices of the kept boxes, best first."""
        return torch.ops.torchvision.nms(boxes, scores, iou_threshold)


def shift_by_class(boxes: Tensor, classes: Tensor) -> Tensor:
    """Boxes moved apart by class, as torchvision's and mmcv's ``batched_nms`` write it (the
    same float operations, so the same rounding): ``+ class * (max coordinate + 1)``."""
    max_coordinate = boxes.max()
    offsets = classes.to(boxes) * (max_coordinate + torch.tensor(1).to(boxes))
    return boxes + offsets[:, None]


def top_candidates(scores: Tensor, score_thresh: float,
                   k: int) -> Tuple[Tensor, Tensor, List[List[int]]]:
    """Per image and class, the ``k`` best of the scores above ``score_thresh``.

    ``scores``: B x C x N (image, class, box). Returns the candidates' scores and box indices
    (B x C x K, best first, K <= k: the most any class has) and, per image and class, how many
    of the K entries are candidates (a host list; the rest are filler)."""
    above = scores > score_thresh
    counts_t = above.sum(-1)
    counts: List[List[int]] = counts_t.tolist()
    most = 0
    for row in counts:
        for n in row:
            most = max(most, n)
    kk = min(k, most)
    masked = scores.masked_fill(~above, float("-inf"))
    top, index = masked.topk(kk, dim=-1)
    for row in counts:
        for c in range(len(row)):
            row[c] = min(row[c], kk)
    return top, index, counts


def candidate_boxes(boxes: Tensor, index: Tensor) -> Tensor:
    """The boxes (B x N x 4) of candidates ``index`` (B x C x K): B x C x K x 4."""
    b, c, k = index.shape
    flat = index.reshape(b, c * k, 1).expand(b, c * k, 4)
    return boxes.gather(1, flat).reshape(b, c, k, 4)


def _filled(counts: List[List[int]], k: int, device: torch.device) -> Tensor:
    """B x C x K: which entries of each row are candidates (the first ``counts[b][c]``)."""
    return torch.arange(k, device=device) < torch.tensor(counts, device=device).unsqueeze(-1)


def shift_like_torchvision(boxes: Tensor, counts: List[List[int]],
                           label_offset: int) -> Tensor:
    """The coordinates ``torchvision.ops.batched_nms`` runs its NMS on, per image: below its size
    limit (4000 box coordinates per call on the CPU, 100000 elsewhere: pytorch/vision#8925)
    the candidates shifted apart by label (its coordinate trick, float rounding included),
    above it the boxes as they are (one NMS per class). ``boxes``: B x C x K x 4 candidates."""
    c_n, k = boxes.shape[1], boxes.shape[2]
    if k == 0:
        return boxes
    limit = 4000 if boxes.device.type == "cpu" else 100_000
    trick: List[bool] = []
    for row in counts:
        total = 0
        for n in row:
            total += n
        trick.append(total > 0 and total * 4 <= limit)
    shifted = torch.tensor(trick, device=boxes.device)
    filled = _filled(counts, k, boxes.device).unsqueeze(-1)
    # the max over each image's candidates, as batched_nms takes it over what it is given
    max_coordinate = torch.where(filled, boxes, torch.full_like(boxes, float("-inf"))).amax(
        (1, 2, 3))
    labels = torch.arange(c_n, device=boxes.device) + label_offset
    offsets = labels.to(boxes)[None, :] * (max_coordinate[:, None] + torch.tensor(1).to(boxes))
    moved = boxes + offsets[:, :, None, None]
    return torch.where(shifted[:, None, None, None], moved, boxes)


def greedy_nms_padded(boxes: Tensor, filled: Tensor, iou_threshold: float,
                      budget: int = 1 << 24) -> Tensor:
    """Greedy NMS of many groups at once, with tensor ops only (no host round trip): ``boxes``
    G x K x 4, each group's candidates best first, ``filled`` (G x K) marks them. Returns
    G x K, the kept ones. The IoU is torchvision's CPU kernel's, operation for operation
    (float32, compared with the threshold as a double), so on the CPU the kept boxes are the
    kernel's; its CUDA kernel may round in fused multiply-adds. Groups are taken ``budget`` IoU
    entries at a time (64 MB per float32 temporary); one host sync per step of the greedy
    pass, not per group."""
    g_n, k = filled.shape[0], filled.shape[1]
    # the float32 t with (x > t) == (x > iou_threshold) for every float32 x
    t = torch.tensor(iou_threshold, dtype=torch.float32)
    if t.item() > iou_threshold:
        t = torch.nextafter(t, torch.tensor(float("-inf")))
    threshold = float(t.item())
    later = torch.ones(k, k, dtype=torch.bool, device=boxes.device).triu(1)
    step = max(1, budget // max(1, k * k))
    out: List[Tensor] = []
    for start in range(0, g_n, step):
        box = boxes[start:start + step].float()
        x1, y1, x2, y2 = box[..., 0], box[..., 1], box[..., 2], box[..., 3]
        area = (x2 - x1) * (y2 - y1)
        w = (torch.minimum(x2[:, :, None], x2[:, None, :])
             - torch.maximum(x1[:, :, None], x1[:, None, :])).clamp(min=0)
        h = (torch.minimum(y2[:, :, None], y2[:, None, :])
             - torch.maximum(y1[:, :, None], y1[:, None, :])).clamp(min=0)
        inter = w * h
        suppresses = inter / (area[:, :, None] + area[:, None, :] - inter) > threshold
        suppresses &= later  # suppresses[g, j, i]: j, kept, removes i (only those after it)
        # Greedy NMS is the one fixed point of "kept = a candidate no kept one before it
        # removes": iterated from "all kept", a box is right once those before it are, so
        # it settles within the longest chain of removals (a few steps; at most K + 1)
        filled_here = filled[start:start + step]
        kept = filled_here
        while True:
            again = filled_here & ~(suppresses & kept.unsqueeze(2)).any(1)
            if torch.equal(again, kept):
                break
            kept = again
        out.append(kept)
    if len(out) == 0:
        return torch.zeros_like(filled)
    return torch.cat(out)


def nms_keep(boxes: Tensor, scores: Tensor, counts: List[List[int]], iou_threshold: float,
             as_torchvision: bool = False, label_offset: int = 0) -> Tensor:
    """Greedy NMS of each image's candidates, class by class: which ones are kept (B x C x K).

    ``boxes`` (B x C x K x 4) and ``scores`` (B x C x K, best first) as :func:`top_candidates`
    and :func:`candidate_boxes` give them; ``counts[b][c]`` of each row are candidates. A box
    goes when its IoU with a kept box of its image and class is above ``iou_threshold``.
    ``as_torchvision``: on the coordinates ``torchvision.ops.batched_nms`` uses
    (:func:`shift_like_torchvision`; ``label_offset``: the label of class 0).

    On the CPU one kernel call per (image, class) with candidates; elsewhere (CUDA) one pass of
    :func:`greedy_nms_padded` over all of them, which needs no host round trip per group."""
    b_n, c_n, k = scores.shape
    coords = shift_like_torchvision(boxes, counts, label_offset) if as_torchvision else boxes
    if boxes.device.type != "cpu":
        filled = _filled(counts, k, boxes.device).reshape(b_n * c_n, k)
        return greedy_nms_padded(coords.reshape(b_n * c_n, k, 4), filled,
                                 iou_threshold).reshape(b_n, c_n, k)
    flat_boxes = coords.reshape(b_n * c_n, k, 4)
    flat_scores = scores.reshape(b_n * c_n, k)
    kept: List[Tensor] = []
    for b in range(b_n):
        for c in range(c_n):
            n = counts[b][c]
            if n > 0:
                g = b * c_n + c
                keep = nms(flat_boxes[g].narrow(0, 0, n), flat_scores[g].narrow(0, 0, n),
                           iou_threshold)
                kept.append(keep + g * k)
    mask = torch.zeros(b_n * c_n * k, dtype=torch.bool, device=scores.device)
    if len(kept) > 0:
        mask[torch.cat(kept)] = True
    return mask.reshape(b_n, c_n, k)


def best_detections(boxes: Tensor, scores: Tensor, index: Tensor, keep: Tensor, max_det: int,
                    label_offset: int, box_scale: Optional[Tensor] = None,
                    slots: int = -1) -> Dict[str, Tensor]:
    """Of each image's kept candidates, the ``max_det`` best of all classes, best first.

    ``boxes``: B x N x 4; ``scores``, ``index`` (box index), ``keep``: B x C x K. Returns the
    deployed graphs' outputs: ``boxes`` (B x S x 4, times ``box_scale`` if given), ``scores``,
    ``labels`` (class + ``label_offset``; -1 and zero boxes / scores in unused slots) and
    ``num_detections`` (B). S = ``slots`` if given (>= what can be filled), else ``max_det``
    or fewer when fewer candidates exist."""
    b_n, c_n, k = keep.shape
    d = min(max_det, c_n * k)
    ranked = torch.where(keep, scores, torch.full_like(scores, float("-inf")))
    top, where = ranked.reshape(b_n, c_n * k).topk(d, dim=1)
    valid = keep.reshape(b_n, c_n * k).gather(1, where)
    box_index = index.reshape(b_n, c_n * k).gather(1, where)
    chosen = boxes.gather(1, box_index.unsqueeze(-1).expand(b_n, d, 4))
    if box_scale is not None:
        chosen = chosen * box_scale
    labels = torch.div(where, k, rounding_mode="floor") + label_offset
    out_boxes = torch.where(valid.unsqueeze(-1), chosen, torch.zeros_like(chosen))
    out_scores = torch.where(valid, top, torch.zeros_like(top))
    out_labels = torch.where(valid, labels, torch.full_like(labels, -1))
    if slots > d:
        pad = slots - d
        out_boxes = torch.cat([out_boxes, out_boxes.new_zeros(b_n, pad, 4)], 1)
        out_scores = torch.cat([out_scores, out_scores.new_zeros(b_n, pad)], 1)
        out_labels = torch.cat([out_labels, out_labels.new_full((b_n, pad), -1)], 1)
    return {"boxes": out_boxes, "scores": out_scores, "labels": out_labels,
            "num_detections": valid.sum(1)}


def ssd_detections(boxes: Tensor, class_scores: Tensor, score_thresh: float, nms_thresh: float,
                   topk_candidates: int, detections_per_img: int) -> Dict[str, Tensor]:
    """torchvision's ``SSD.postprocess_detections`` for a whole batch at once.

    ``boxes``: B x N x 4, decoded and clipped; ``class_scores``: B x N x C softmax scores with
    the background in column 0. Per image and foreground class: the scores above
    ``score_thresh``, their ``topk_candidates`` best, NMS (``nms_thresh``, torchvision's
    ``batched_nms`` rule), then the ``detections_per_img`` best; labels 1..C-1. Returns the
    dense outputs of :func:`best_detections` (:func:`as_list` makes torchvision's list)."""
    foreground = class_scores[:, :, 1:].transpose(1, 2)
    top, index, counts = top_candidates(foreground, score_thresh, topk_candidates)
    keep = nms_keep(candidate_boxes(boxes, index), top, counts, nms_thresh, True, 1)
    return best_detections(boxes, top, index, keep, detections_per_img, 1)


def as_list(dense: Dict[str, Tensor]) -> List[Dict[str, Tensor]]:
    """Dense outputs as torchvision's list of per-image dicts (boxes, scores, labels)."""
    out: List[Dict[str, Tensor]] = []
    counts: List[int] = dense["num_detections"].tolist()
    for i, n in enumerate(counts):
        out.append({"boxes": dense["boxes"][i, :n], "scores": dense["scores"][i, :n],
                    "labels": dense["labels"][i, :n]})
    return out


# --- mmcv's batched_nms on torchvision's kernel ---------------------------------------------

_MMCV_NMS_KEYS = {"type", "iou_threshold", "iou_thr", "offset", "score_threshold", "max_num",
                  "split_thr", "class_agnostic"}


def _mmcv_nms(boxes: Tensor, scores: Tensor, iou_threshold: float, score_threshold: float,
              max_num: int) -> Tensor:
    """``mmcv.ops.nms``'s indices (offset 0): score filter, NMS, ``max_num`` cut."""
    where = None
    if score_threshold > 0:
        valid = scores > score_threshold
        boxes, scores = boxes[valid], scores[valid]
        where = valid.nonzero().squeeze(1)
    # mmcv's kernel visits the boxes in the order of an unstable sort, torchvision's in that
    # of a stable one: handed over in mmcv's order, equal scores are visited as mmcv does
    order = scores.sort(descending=True)[1]
    # and it compares the IoU with a float32 threshold, torchvision's with a double
    iou = float(torch.tensor(iou_threshold, dtype=torch.float32))
    keep = order[nms(boxes[order], scores[order], iou)]
    if max_num > 0:
        keep = keep[:max_num]
    return keep if where is None else where[keep]


def batched_nms_as_mmcv(boxes: Tensor, scores: Tensor, idxs: Tensor, nms_cfg: Optional[dict],
                        class_agnostic: bool = False) -> Tuple[Tensor, Tensor]:
    """``mmcv.ops.batched_nms`` (mmcv 2.1) with torchvision's NMS kernel: ``(dets, keep)``,
    dets = N x 5 (boxes and scores, best first), keep = their indices.

    ``nms_cfg``: ``type='nms'`` (the only kind here; others are mmcv's own ops),
    ``iou_threshold``, ``score_threshold``, ``max_num``, ``split_thr`` (default 10000),
    ``class_agnostic``; ``offset`` must be 0 (torchvision's boxes have no +1 pixel). None: no
    NMS, all boxes best first. Same float operations and the same order of equal scores as
    mmcv's CPU kernel, hence the same detections."""
    if nms_cfg is None:
        scores, inds = scores.sort(descending=True)
        return torch.cat([boxes[inds], scores[:, None]], -1), inds
    cfg = dict(nms_cfg)
    unknown = sorted(set(cfg) - _MMCV_NMS_KEYS)
    if unknown:
        raise ValueError(f"nms config keys {unknown} are not mmcv nms options (known: "
                         f"{sorted(_MMCV_NMS_KEYS)})")
    if cfg.pop("type", "nms") != "nms":
        raise ValueError(f"batched_nms_as_mmcv runs type='nms' only, got {nms_cfg['type']!r}; "
                         f"other kinds are mmcv's ops (mmcv.ops.batched_nms)")
    if cfg.pop("offset", 0) != 0:
        raise ValueError("nms offset=1 (boxes one pixel wider, mmdet 1.x style) is not supported "
                         "by torchvision's kernel; set offset=0 in the nms config")
    if boxes.size(-1) != 4:
        raise ValueError(f"batched_nms_as_mmcv takes x1 y1 x2 y2 boxes, got {boxes.size(-1)} "
                         f"columns (rotated boxes need mmcv's nms_rotated)")
    if "iou_threshold" not in cfg and "iou_thr" not in cfg:
        raise ValueError("the nms config needs iou_threshold")
    iou = float(cfg.pop("iou_threshold", cfg.pop("iou_thr", None)))
    score_threshold = float(cfg.pop("score_threshold", 0))
    max_num = int(cfg.pop("max_num", -1))
    split_thr = cfg.pop("split_thr", 10000)
    class_agnostic = cfg.pop("class_agnostic", class_agnostic)
    if boxes.numel() == 0:
        return boxes.new_zeros(0, 5), torch.zeros(0, dtype=torch.long, device=boxes.device)
    boxes_for_nms = boxes if class_agnostic else shift_by_class(boxes, idxs)
    if boxes_for_nms.shape[0] < split_thr:
        keep = _mmcv_nms(boxes_for_nms, scores, iou, score_threshold, max_num)
        return torch.cat([boxes[keep], scores[keep][:, None]], -1), keep
    total_mask = scores.new_zeros(scores.size(), dtype=torch.bool)
    for cls in torch.unique(idxs):
        mask = (idxs == cls).nonzero().view(-1)
        total_mask[mask[_mmcv_nms(boxes_for_nms[mask], scores[mask], iou, score_threshold,
                                  -1)]] = True
    keep = total_mask.nonzero().view(-1)
    kept_scores, inds = scores[keep].sort(descending=True)
    keep = keep[inds]
    if max_num > 0:
        keep, kept_scores = keep[:max_num], kept_scores[:max_num]
    return torch.cat([boxes[keep], kept_scores[:, None]], -1), keep
