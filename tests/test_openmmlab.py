"""What the mmdet and mmpretrain faces share (mnet_backbone.openmmlab): it needs no mmdet, it
registers all or nothing, and its __init__ patches undo."""
import subprocess
import sys
import textwrap

import pytest

from conftest import ROOT, has

pytestmark = pytest.mark.skipif(not (has('mmengine') and has('mmcv')),
                                reason='needs mmengine and mmcv')


@pytest.mark.slow
def test_the_classification_face_loads_without_mmdet():
    if not has('mmpretrain'):
        pytest.skip('needs mmpretrain')
    script = textwrap.dedent('''
        import importlib.abc, importlib.util, sys

        class NoMmdet(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name == 'mmdet' or name.startswith('mmdet.'):
                    raise ModuleNotFoundError(f"No module named {name!r}", name=name)

        sys.meta_path.insert(0, NoMmdet())
        find_spec = importlib.util.find_spec
        importlib.util.find_spec = lambda name, *a: (
            None if name == 'mmdet' or name.startswith('mmdet.') else find_spec(name, *a))

        import torch
        import mnet_backbone
        from mmpretrain.registry import MODELS
        from mnet_backbone import mmpretrain_plugin
        model = MODELS.build(dict(
            type='ImageClassifier', backbone=dict(type='MobileNetV1', alpha=0.25),
            neck=dict(type='GlobalAveragePooling'),
            head=dict(type='LinearClsHead', num_classes=3, in_channels=1024)))
        assert model.head.fc.in_features == 256, model.head.fc.in_features
        assert model(torch.zeros(1, 3, 64, 64), mode='tensor').shape == (1, 3)
        assert 'mnet_backbone.mmdet_plugin' not in sys.modules
        assert not [m for m in sys.modules if m == 'mmdet' or m.startswith('mmdet.')]
        print('ok')
    ''')
    out = subprocess.run([sys.executable, '-c', script], cwd=ROOT, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith('ok')


def test_a_taken_name_registers_nothing_in_any_registry():
    import torch
    from mmengine.registry import Registry
    from mnet_backbone.openmmlab import CheckedRunner, RegistryConflictError, register

    runners = Registry('runner', scope='mnet_conflict_test_runner')
    models = Registry('model', scope='mnet_conflict_test_model')

    @models.register_module(name='SSDHeadPatched')
    class Theirs(torch.nn.Module):
        pass

    class SSDHeadPatched(torch.nn.Module):
        pass

    with pytest.raises(RegistryConflictError, match=r"mmdet already has model registry: "
                       r"'SSDHeadPatched' is .*Theirs\. Nothing was registered.*tested: 3\.3\.0"):
        register(((runners, CheckedRunner), (models, SSDHeadPatched)), 'mmdet', tested='3.3.0')
    assert 'CheckedRunner' not in runners.module_dict
    assert models.get('SSDHeadPatched') is Theirs


def test_a_registry_conflict_warns_and_leaves_the_core_usable(monkeypatch):
    import importlib

    import mnet_backbone
    from mnet_backbone.openmmlab import RegistryConflictError

    def conflict(name, *args):
        raise RegistryConflictError("mnet_backbone: mmdet already has model registry: "
                                    "'MobileNetV1' is someone.Else. Nothing was registered")

    monkeypatch.setattr(importlib, 'import_module', conflict)
    with pytest.warns(RuntimeWarning, match="could not be loaded.*Nothing was registered") as rec:
        mnet_backbone._load_face('mmdet', 'mmdet_plugin')
    assert 'install.sh' not in str(rec[0].message)  # the conflict says its own fix


def test_init_patch_rewrites_arguments_and_undoes():
    from mnet_backbone.openmmlab.init_patch import InitPatch

    class Detector:
        def __init__(self, backbone, neck=None):
            self.backbone, self.neck = backbone, neck

    original = Detector.__init__
    patch = InitPatch()

    def rewrite(arguments):
        arguments['neck'] = f"neck for {arguments['backbone']}"

    patch.install(Detector, rewrite)
    patch.install(Detector, rewrite)  # idempotent: wrapped once
    assert patch.active and patch.installed(Detector)
    assert Detector('mnet').neck == 'neck for mnet'
    assert Detector.__init__.__mnet_original__ is original
    patch.undo()
    assert Detector.__init__ is original and not patch.active
    assert Detector('mnet').neck is None


@pytest.fixture
def served_weights(tmp_path, monkeypatch):
    from test_weights import _plain_checkpoint, serve
    monkeypatch.setenv('TORCH_HOME', str(tmp_path / 'torch_home'))
    root = tmp_path / 'served'
    root.mkdir()
    state = _plain_checkpoint(root / 'mnet.pth', tf_padding=True, bn_eps=1e-3)
    with serve(root) as (base, requests):
        yield f'{base}/mnet.pth', root / 'mnet.pth', state, requests


def test_mnet_scheme_resolves_files_and_urls_once(served_weights):
    from mnet_backbone.openmmlab.pretrained import resolve_mnet
    from mnet_backbone.weights import UnknownEntryError
    url, path, state, requests = served_weights
    for spec in (f'mnet://{url}', f'mnet://{path}'):
        backbone, model_kwargs, what = resolve_mnet(spec)
        assert model_kwargs == {'tf_padding': True, 'bn_eps': 1e-3}
        assert not any(k.startswith('fc.') for k in backbone)
        assert all(k.startswith('fc.') or k in backbone for k in state)
        assert resolve_mnet(spec)[0] is backbone  # converted once
    assert requests == ['/mnet.pth']
    with pytest.raises(UnknownEntryError, match=r"'mnet://nope\.pth': weights 'nope\.pth' are "
                                                r"neither a registered entry"):
        resolve_mnet('mnet://nope.pth')
