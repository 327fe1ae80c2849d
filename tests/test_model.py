import pytest
import torch
import torch.nn.functional as F
from torch import nn

from mnet_backbone import MobileNetV1, input_size, scale_channels
from mnet_backbone.cost import count
from mnet_backbone.model import STAGE_STRIDES, pad_same, plan_blocks

ALPHAS = (1.0, 0.75, 0.5, 0.25)


def _bn_layers(model):
    return [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]


@pytest.mark.parametrize("alpha", ALPHAS)
@pytest.mark.parametrize("rho,resolution", [(1.0, 224), (0.857, 192), (0.714, 160), (0.571, 128)])
def test_stage_shapes_and_logits(alpha, rho, resolution):
    assert input_size(rho) == resolution
    model = MobileNetV1(num_classes=10, alpha=alpha, out_indices=(0, 1, 2, 3, 4)).eval()
    x = torch.randn(2, 3, resolution, resolution)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    expected_channels = [scale_channels(c, alpha) for c in (64, 128, 256, 512, 1024)]
    assert model.out_channels == expected_channels
    assert [tuple(f.shape) for f in feats] == [
        (2, c, resolution // s, resolution // s) for c, s in zip(expected_channels, STAGE_STRIDES)]
    assert logits.shape == (2, 10)


def test_keras_channel_counts_for_released_alphas():
    # Keras MobileNet uses int(c * alpha): the released alphas must give exactly these widths.
    widths = {a: [b.out_channels for s in plan_blocks(a) for b in s] for a in ALPHAS}
    assert widths[1.0] == [32, 64, 128, 128, 256, 256, 512, 512, 512, 512, 512, 512, 1024, 1024]
    assert widths[0.25] == [8, 16, 32, 32, 64, 64, 128, 128, 128, 128, 128, 128, 256, 256]
    assert widths[0.75][-1] == 768 and widths[0.5][0] == 16
    assert scale_channels(32, 0.1) == 8  # TF-slim min_depth


@pytest.mark.parametrize("kwargs", [dict(), dict(alpha=0.5), dict(separable=False),
                                    dict(shallow=True), dict(alpha=0.3, num_classes=7)])
def test_parameter_count_equals_analytic_count(kwargs):
    model = MobileNetV1(**kwargs)
    num_classes = kwargs.pop("num_classes", 1000)
    alpha = kwargs.pop("alpha", 1.0)
    weights = sum(p.numel() for n, p in model.named_parameters()
                  if n.endswith("weight") and p.dim() > 1)  # conv + fc weights, as the paper counts
    assert weights == count(alpha, num_classes=num_classes, **kwargs).params


def test_variants_structure():
    conv = MobileNetV1(separable=False)
    assert not any(m.groups > 1 for m in conv.modules() if isinstance(m, nn.Conv2d))
    shallow = MobileNetV1(shallow=True)
    assert len(shallow.stages[3]) == 1 and len(MobileNetV1().stages[3]) == 6
    assert shallow(torch.randn(1, 3, 64, 64)).shape == (1, 1000)


def test_any_input_size_from_32px():
    model = MobileNetV1(num_classes=3).eval()
    for h, w in [(32, 32), (33, 47), (100, 61), (256, 320)]:
        assert model(torch.randn(1, 3, h, w)).shape == (1, 3)


def test_num_classes_zero_returns_pooled_features():
    model = MobileNetV1(num_classes=0, alpha=0.5).eval()
    assert model(torch.randn(1, 3, 64, 64)).shape == (1, 512)


@pytest.mark.parametrize("kwargs,match", [
    (dict(alpha=0), "alpha"), (dict(alpha=-1), "alpha"), (dict(alpha="1"), "alpha"),
    (dict(out_indices=(5,)), "out_indices"), (dict(out_indices=(-1,)), "out_indices"),
    (dict(out_indices=()), "out_indices"), (dict(frozen_stages=5), "frozen_stages"),
    (dict(frozen_stages=-2), "frozen_stages"), (dict(activation="gelu"), "activation"),
    (dict(num_classes=-1), "num_classes"), (dict(dropout=1.0), "dropout"),
    (dict(in_channels=0), "in_channels"),
])
def test_bad_arguments_raise(kwargs, match):
    with pytest.raises(ValueError, match=match):
        MobileNetV1(**kwargs)


def test_bad_inputs_raise():
    model = MobileNetV1(num_classes=2).eval()
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.randn(1, 1, 64, 64))
    with pytest.raises(ValueError, match=r"\(N, 3, H, W\)"):
        model(torch.randn(3, 64, 64))
    with pytest.raises(ValueError, match="at least 32x32"):
        model.forward_features(torch.randn(1, 3, 31, 64))
    with pytest.raises(ValueError, match="rho"):
        input_size(0)
    with pytest.raises(ValueError, match="32px"):
        input_size(0.1)


def test_frozen_stages():
    model = MobileNetV1(frozen_stages=2)
    model.train()
    for i, stage in enumerate(model.stages):
        frozen = i <= 2
        assert all(p.requires_grad is not frozen for p in stage.parameters())
        assert all(m.training is not frozen for m in _bn_layers(stage))
    assert all(p.requires_grad for p in model.fc.parameters())
    # Frozen BN statistics do not move in training mode.
    before = model.stages[0][0].bn.running_mean.clone()
    model(torch.randn(2, 3, 64, 64)).sum().backward()
    assert torch.equal(model.stages[0][0].bn.running_mean, before)
    assert model.stages[0][0].conv.weight.grad is None
    assert model.stages[3][0].pw.conv.weight.grad is not None


def test_norm_eval():
    model = MobileNetV1(norm_eval=True)
    model.train()
    assert model.training
    assert all(not bn.training for bn in _bn_layers(model))
    assert all(p.requires_grad for p in model.parameters())
    model = MobileNetV1(norm_eval=False).train()
    assert all(bn.training for bn in _bn_layers(model))


def test_gradient_checkpointing_is_equivalent():
    torch.manual_seed(0)
    plain = MobileNetV1(num_classes=5, alpha=0.25, dropout=0.0, out_indices=(2, 4))
    cp = MobileNetV1(num_classes=5, alpha=0.25, dropout=0.0, out_indices=(2, 4), with_cp=True)
    cp.load_state_dict(plain.state_dict())
    x = torch.randn(2, 3, 64, 64)
    for model in (plain, cp):
        model.train()
        model(x.clone().requires_grad_()).sum().backward()
    for (name, a), b in zip(plain.named_parameters(), cp.parameters()):
        torch.testing.assert_close(a.grad, b.grad, msg=name)
    feats = [m.forward_features(x.requires_grad_()) for m in (plain.eval(), cp.eval())]
    for a, b in zip(*feats):
        torch.testing.assert_close(a, b)


def test_tf_padding_equals_explicit_pad():
    torch.manual_seed(0)
    tf = MobileNetV1(num_classes=4, alpha=0.25, tf_padding=True).eval()
    stem = tf.stages[0][0]
    assert stem.conv.padding == (0, 0)
    x = torch.randn(1, 3, 64, 64)
    # Keras MobileNet: ZeroPadding2D(((0, 1), (0, 1))) then a 'valid' stride-2 conv.
    expected = stem.act(stem.bn(F.conv2d(F.pad(x, [0, 1, 0, 1]), stem.conv.weight, stride=2)))
    torch.testing.assert_close(stem(x), expected)
    # Odd sizes get TF SAME padding: one on each side.
    assert pad_same(torch.zeros(1, 1, 7, 8), 3, 2).shape[-2:] == (9, 9)
    # Whole network: TF padding is a different model than symmetric padding, same shapes.
    sym = MobileNetV1(num_classes=4, alpha=0.25).eval()
    sym.load_state_dict(tf.state_dict())
    with torch.no_grad():
        a, b = sym.forward_features(x)[0], tf.forward_features(x)[0]
        assert (a - b).abs().max() > 1e-2 * a.abs().max()
        assert tf(torch.randn(1, 3, 97, 64)).shape == (1, 4)


def test_activation_and_bn_options():
    model = MobileNetV1(activation="relu", bn_eps=1e-3, bn_momentum=0.01)
    assert isinstance(model.stages[0][0].act, nn.ReLU)
    bn = model.stages[4][1].pw.bn
    assert bn.eps == 1e-3 and bn.momentum == 0.01
    assert isinstance(MobileNetV1().stages[0][0].act, nn.ReLU6)


def test_torchscript_and_fx():
    model = MobileNetV1(num_classes=3, alpha=0.25, out_indices=(1, 3)).eval()
    x = torch.randn(1, 3, 64, 64)
    scripted = torch.jit.script(model)
    torch.testing.assert_close(scripted(x), model(x))
    for a, b in zip(scripted.forward_features(x), model.forward_features(x)):
        torch.testing.assert_close(a, b)
    traced = torch.fx.symbolic_trace(model)
    torch.testing.assert_close(traced(x), model(x))


def test_tf_same_padding_is_the_units_only_name_for_the_flag():
    import copy

    from mnet_backbone.model import ConvBNAct
    model = MobileNetV1(num_classes=3, alpha=0.25, tf_padding=True).eval()
    unit = model.stages[0][0]
    assert unit.tf_same_padding and not model.stages[1][0].pw.tf_same_padding
    # The pre-release alias `pad_same` (it hid the function pad_same) is gone, not forwarded.
    assert not hasattr(ConvBNAct, "pad_same") and not hasattr(unit, "pad_same")
    x = torch.randn(1, 3, 64, 64)
    ref = model(x)
    torch.testing.assert_close(torch.jit.script(model)(x), ref)
    torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), ref)
    torch.testing.assert_close(copy.deepcopy(model)(x), ref)
