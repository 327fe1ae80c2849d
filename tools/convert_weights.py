"""Convert MobileNetV1 weights (Keras .h5, timm, sequential or plain PyTorch, TF frozen graph .pb /
release .tgz) to this package's checkpoint format:
``python tools/convert_weights.py SRC DST [--from keras|timm|sequential|plain|tf_graph]``
(the same command as ``mnet convert-weights``)."""
import sys

from mnet_backbone.weights.cli import main

if __name__ == "__main__":
    sys.exit(main())
