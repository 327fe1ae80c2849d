# ImageNet-1k in class folders: data/imagenet/train/<wnid>/*.JPEG and val/<wnid>/*.JPEG (val/
# sorted into wnid folders as most tools do; for the flat val/ give ann_file='meta/val.txt' with
# "<file> <index>" lines and metainfo=dict(classes='data/imagenet/meta/classes.txt')). Classes are
# the sorted wnids, the order of the released weights.
#
# Augmentation is lighter than Inception's, as the paper trains MobileNets: a random crop of
# 25-100 % of the image (Inception: 8 % / TF-slim 5 %; the paper says only "limiting the size of
# small crops", 25 % is this package's choice), random aspect 3/4-4/3, horizontal flip, no
# colour distortion. Evaluation: shorter side to input_size / 0.875, centre crop.
dataset_type = 'ImageFolderDataset'
data_root = 'data/imagenet/'
input_size = 224

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='RandomResizedCrop', scale=input_size, crop_ratio_range=(0.25, 1.0)),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PackClsInputs'),
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='ResizeEdge', scale=256),
    dict(type='CenterCrop', crop_size=input_size),
    dict(type='PackClsInputs'),
]

train_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=True),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix=dict(img='train/'),
                 pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=64,
    num_workers=8,
    persistent_workers=True,
    drop_last=False,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(type=dataset_type, data_root=data_root, data_prefix=dict(img='val/'),
                 test_mode=True, pipeline=test_pipeline))
test_dataloader = val_dataloader

val_evaluator = dict(type='Accuracy', topk=(1, 5))
test_evaluator = val_evaluator
