# ImageNet-1k with mmpretrain's ImageNet data set: data/imagenet/train/<wnid>/*.JPEG and
# val/<wnid>/*.JPEG, or mmpretrain's layout with meta/{train,val}.txt (used when present, e.g.
# for the flat val/). Labels are the sorted wnids, the order of the released weights; names are
# mmpretrain's ImageNet categories. Other folders of your own: ImageFolderDataset (checked
# class folders, see configs/mnet_cls_shapes.py).
#
# Augmentation is lighter than Inception's, as the paper trains MobileNets: a random crop of
# 25-100 % of the image (Inception: 8 % / TF-slim 5 %; the paper says only "limiting the size of
# small crops", 25 % is this package's choice), random aspect 3/4-4/3, horizontal flip, no
# colour distortion. Evaluation: shorter side to input_size / 0.875, centre crop.
dataset_type = 'ImageNet'
data_root = 'data/imagenet/'
input_size = 224

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=input_size, crop_ratio_range=(0.25, 1.0)),
    dict(type='RandomFlip', prob=0.5, direction='horizontal'),
    dict(type='PackInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256, edge='short'),
    dict(type='CenterCrop', crop_size=input_size),
    dict(type='PackInputs'),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, split='train',
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, split='val', pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
