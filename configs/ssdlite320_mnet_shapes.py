# The main job's detector: SSDLite320-MobileNetV1 trained on the generated shapes set
# (python tools/make_shapes_dataset.py), same code path as COCO.
_base_ = './ssdlite320_mnet.py'

data_root = 'data/shapes/'
metainfo = dict(classes=('circle', 'square', 'triangle', 'star', 'cross'))
model = dict(bbox_head=dict(num_classes=5))
train_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo))
val_dataloader = dict(dataset=dict(data_root=data_root, metainfo=metainfo))
test_dataloader = val_dataloader
val_evaluator = dict(ann_file=data_root + 'annotations/instances_val2017.json')
test_evaluator = val_evaluator
