# mmdet's COCO detection data (1333x800, flip), with the package's checked data set and metric
# (see coco_ssd.py): bad annotations counted and skipped or reported at start, an unreadable
# image skipped in training and an error in testing, mAP against the annotations served.
_base_ = 'mmdet::_base_/datasets/coco_detection.py'

train_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
val_dataloader = dict(dataset=dict(type='CheckedCocoDataset'))
test_dataloader = val_dataloader
val_evaluator = dict(type='CheckedCocoMetric')
test_evaluator = val_evaluator
