# SSDLite320 with MobileNetV1-0.5: only alpha changes (neck/head widths follow the backbone).
_base_ = './ssdlite320_mnet.py'
model = dict(backbone=dict(alpha=0.5))
