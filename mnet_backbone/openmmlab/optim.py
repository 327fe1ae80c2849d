"""Mixed precision for ``--amp`` on machines without a GPU."""
from contextlib import contextmanager

import torch
from mmengine.optim import OptimWrapper


class CPUAmpOptimWrapper(OptimWrapper):
    """bfloat16 autocast on the CPU; mmengine's ``AmpOptimWrapper`` refuses to run without CUDA.

    bfloat16 has float32's exponent range, so no loss scaling is needed.
    """

    @contextmanager
    def optim_context(self, model):
        with super().optim_context(model), torch.autocast('cpu', dtype=torch.bfloat16):
            yield
