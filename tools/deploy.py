r"""Deploy a trained SSD / SSDLite detector end to end (image -> boxes, scores, labels, NMS in
the graph) on the fastest CPU runtime, and check it against PyTorch: the same command as
``mnet deploy`` (``python tools/deploy.py --help``, docs/command_line.md).

    python tools/deploy.py configs/ssdlite320_mnet_shapes.py work_dirs/main_job/epoch_30.pth \
        --output deployed/ [--backend {auto,onnxruntime,openvino,executorch,litert}] \
        [--precision {fp32,bf16,int8}] [--calib-dir data/shapes/train2017] [--val]
    python tools/deploy.py torchvision:ssdlite320_mobilenet_v1 model.pth --output deployed/ \
        --model-kwargs '{"num_classes": 6, "alpha": 0.25}' \
        [--val --val-ann ann.json --val-img-dir images/]
"""
import sys

from mnet_backbone.cli.deploy import main

if __name__ == "__main__":
    sys.exit(main())
