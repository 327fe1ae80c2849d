"""Export MobileNetV1 to ONNX (BN folded, dynamic batch, opset 18) and check it with ONNX Runtime;
optionally TorchScript and a statically quantized int8 ONNX file.

    python tools/export_onnx.py mnet.onnx                                  # classifier, random init
    python tools/export_onnx.py mnet.onnx --weights keras_1.0_224 --torchscript mnet.pt
    python tools/export_onnx.py backbone.onnx --features --out-indices 2 3 4 --resolution 320
    python tools/export_onnx.py mnet.onnx --weights timm_1.0_224_ra4 --int8 mnet_int8.onnx \
        --calib-dir my_images/
"""
import sys

from mnet_backbone.deploy.cli import main

if __name__ == "__main__":
    sys.exit(main())
