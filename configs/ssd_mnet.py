# SSD300 with MobileNetV1-1.0 on COCO (the paper's Table 13: 19.3 mAP, 1.2B mult-adds, 6.8M params).
_base_ = [
    '_base_/models/ssd300_mnet.py', '_base_/datasets/coco_ssd.py',
    '_base_/schedules/sgd_cosine.py', '_base_/default_runtime.py'
]
