"""RMSprop as TensorFlow computes it, the optimizer the MobileNet paper trained with.

The paper: "MobileNet models were trained in TensorFlow using RMSprop with asynchronous gradient
descent similar to Inception V3", i.e. ``tf.train.RMSPropOptimizer`` with decay 0.9, momentum
0.9 and epsilon 1.0 (Inception V3; TF-slim's ``train_image_classifier.py`` defaults). TF's update
differs from ``torch.optim.RMSprop`` in three ways, and with epsilon 1.0 they matter::

    TF (this class)                                  torch.optim.RMSprop
    ms  <- 1 at the start                            v <- 0 at the start
    ms  <- a * ms + (1 - a) * g^2                    v <- a * v + (1 - a) * g^2
    mom <- m * mom + lr * g / sqrt(ms + eps)         b <- m * b + g / (sqrt(v) + eps)
    w   <- w - mom                                   w <- w - lr * b

eps sits inside the square root in TF and outside in torch, so no torch eps reproduces TF's. The
closest is torch ``eps' = sqrt(eps)``: both divide by ``sqrt(eps)`` when ``ms << eps`` and by
``sqrt(ms)`` when ``ms >> eps``; in between torch's steps are smaller, by up to
1 - 1/sqrt(2) = 29 % at ``ms = eps``. TF's accumulator starts at 1, which keeps the first steps
small; torch's starts at 0, so with a small eps its first step is about ``lr / sqrt(1 - a)``
(3 * lr for a = 0.9) per weight, whatever the gradient's size. TF multiplies the learning rate
into the momentum, so a learning-rate change takes effect gradually. Weight decay is TF's L2 loss
``wd/2 * |w|^2``, i.e. ``wd * w`` added to the gradient (as torch's ``weight_decay``).

Plain torch (no registry import): :mod:`mnet_backbone.mmpretrain_plugin` registers it in
mmpretrain's ``OPTIMIZERS``, where mmengine's optimizer wrapper constructor finds it under the
configs' ``default_scope='mmpretrain'``.
"""
from typing import Callable, Optional

import torch
from torch.optim import Optimizer

__all__ = ['RMSpropTF']


class RMSpropTF(Optimizer):
    """``tf.train.RMSPropOptimizer`` (TF 1.x, not centered) for PyTorch.

    Args:
        params: parameters or parameter groups.
        lr: learning rate.
        alpha: TF's ``decay`` (the name torch's RMSprop uses): smoothing of the mean square.
        eps: TF's ``epsilon``, added to the mean square *inside* the square root.
        momentum: TF's ``momentum``.
        weight_decay: L2 penalty (``wd * w`` added to the gradient).
    """

    def __init__(self, params, lr: float = 0.045, alpha: float = 0.9, eps: float = 1.0,
                 momentum: float = 0.9, weight_decay: float = 0.0):
        if not lr >= 0.0:
            raise ValueError(f'RMSpropTF: lr must be >= 0, got {lr!r}')
        if not 0.0 <= alpha < 1.0:
            raise ValueError(f'RMSpropTF: alpha (TF decay) must be in [0, 1), got {alpha!r}')
        if not eps > 0.0:
            raise ValueError(f'RMSpropTF: eps must be > 0, got {eps!r}')
        if not 0.0 <= momentum < 1.0:
            raise ValueError(f'RMSpropTF: momentum must be in [0, 1), got {momentum!r}')
        if not weight_decay >= 0.0:
            raise ValueError(f'RMSpropTF: weight_decay must be >= 0, got {weight_decay!r}')
        super().__init__(params, dict(lr=lr, alpha=alpha, eps=eps, momentum=momentum,
                                      weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Optional[Callable] = None):
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            lr, alpha, eps = group['lr'], group['alpha'], group['eps']
            momentum, weight_decay = group['momentum'], group['weight_decay']
            for p in group['params']:
                if p.grad is None:
                    continue
                if p.grad.is_sparse:
                    raise RuntimeError('RMSpropTF does not support sparse gradients')
                grad = p.grad
                if weight_decay:
                    grad = grad.add(p, alpha=weight_decay)
                state = self.state[p]
                if not state:
                    state['step'] = torch.zeros((), dtype=torch.float32)
                    state['square_avg'] = torch.ones_like(p, memory_format=torch.preserve_format)
                    if momentum > 0:
                        state['momentum_buffer'] = torch.zeros_like(
                            p, memory_format=torch.preserve_format)
                state['step'] += 1
                square_avg = state['square_avg']
                square_avg.mul_(alpha).addcmul_(grad, grad, value=1.0 - alpha)
                denom = square_avg.add(eps).sqrt_()
                if momentum > 0:
                    buf = state.setdefault('momentum_buffer', torch.zeros_like(p))
                    buf.mul_(momentum).addcdiv_(grad, denom, value=lr)
                    p.sub_(buf)
                else:
                    p.addcdiv_(grad, denom, value=-lr)
        return loss
