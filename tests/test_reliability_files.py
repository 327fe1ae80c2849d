"""Issue 17, files: atomic writes, the weights cache under concurrent processes, and the
``*.partial`` files of killed writers.

Weights are served from a 127.0.0.1 HTTP server (as in test_weights.py, without Keras: the
served files are this package's own state dicts, source "plain"); nothing is downloaded.
"""
import functools
import http.server
import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import torch

from mnet_backbone import MobileNetV1
from mnet_backbone.files import (atomic_path, atomic_write, clean_stale_partials, describe_file,
                                 partial_name)
from mnet_backbone.weights.hub import save_checkpoint, sha256sum

from conftest import ROOT


# --- atomic_write / atomic_path ------------------------------------------------------------------

def test_atomic_write_replaces_only_on_success(tmp_path):
    target = tmp_path / "sub" / "f.json"
    with atomic_write(str(target), "w") as f:
        f.write('{"a": 1}')
        assert not target.exists()  # nothing visible until the block ends
    assert json.loads(target.read_text()) == {"a": 1}
    with pytest.raises(RuntimeError, match="boom"), atomic_write(str(target), "w") as f:
        f.write('{"a": 2, "cut')
        raise RuntimeError("boom")
    assert json.loads(target.read_text()) == {"a": 1}  # the old file, whole
    assert os.listdir(target.parent) == ["f.json"]  # no partial left behind
    with atomic_write(str(target)) as f:
        torch.save({"w": torch.ones(2)}, f)
    assert torch.equal(torch.load(target, weights_only=True)["w"], torch.ones(2))
    # permissions of a normal new file (the umask applies), not mkstemp's 0600
    umask = os.umask(0)
    os.umask(umask)
    assert target.stat().st_mode & 0o777 == 0o666 & ~umask
    with pytest.raises(ValueError, match="mode must be"), atomic_write(str(target), "a"):
        pass


def test_atomic_path_for_writers_that_take_a_name(tmp_path):
    target = tmp_path / "m.bin"
    with atomic_path(str(target)) as tmp:
        assert tmp.endswith(".partial") and os.path.dirname(tmp) == str(tmp_path)
        with open(tmp, "wb") as f:
            f.write(b"x" * 10)
    assert target.read_bytes() == b"x" * 10
    with pytest.raises(KeyboardInterrupt), atomic_path(str(target)) as tmp:
        Path(tmp).write_bytes(b"half")
        raise KeyboardInterrupt
    assert target.read_bytes() == b"x" * 10 and os.listdir(tmp_path) == ["m.bin"]


def test_concurrent_writers_never_share_a_temporary_file(tmp_path):
    target = str(tmp_path / "out.bin")
    names = {partial_name(target) for _ in range(200)}
    assert len(names) == 200
    payloads = [bytes([i]) * 200_000 for i in range(8)]

    def write(data):
        for _ in range(5):
            with atomic_write(target) as f:
                f.write(data)

    threads = [threading.Thread(target=write, args=(p,)) for p in payloads]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert Path(target).read_bytes() in payloads  # one writer's whole file, never a mix
    assert os.listdir(tmp_path) == ["out.bin"]


def test_clean_stale_partials_keeps_live_writers(tmp_path):
    old, fresh = tmp_path / "a.pth.1-ab.partial", tmp_path / "b.pth.2-cd.partial"
    other = tmp_path / "keep.pth"
    for p in (old, fresh, other):
        p.write_bytes(b"x")
    hours_ago = time.time() - 2 * 3600
    os.utime(old, (hours_ago, hours_ago))
    os.utime(other, (hours_ago, hours_ago))
    assert clean_stale_partials(str(tmp_path)) == [str(old)]
    assert sorted(os.listdir(tmp_path)) == ["b.pth.2-cd.partial", "keep.pth"]
    assert clean_stale_partials(str(tmp_path / "missing")) == []


@pytest.mark.skipif(os.name != "posix", reason="writer liveness is checked on POSIX only")
def test_clean_stale_partials_of_dead_writers_in_a_work_dir(tmp_path):
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()  # its pid now names no process (reuse within the test is not plausible)
    dead = tmp_path / f"epoch_2.pth.{gone.pid}-0a1b2c3d.partial"
    alive = tmp_path / f"epoch_3.pth.{os.getppid()}-0a1b2c3d.partial"
    unnamed = tmp_path / "other.partial"
    for p in (dead, alive, unnamed):
        p.write_bytes(b"x")
    assert clean_stale_partials(str(tmp_path)) == []  # all fresh
    assert clean_stale_partials(str(tmp_path), dead_writers=True) == [str(dead)]
    assert sorted(os.listdir(tmp_path)) == [alive.name, unnamed.name]


def test_describe_file_names_what_a_file_is(tmp_path):
    import zipfile
    cases = {"e": b"", "j": b"\xff\xd8\xff\xe0" + bytes(40), "p": b"\x89PNG\r\n\x1a\n" + bytes(9),
             "h": b"<!DOCTYPE html><html>", "l": b"version https://git-lfs.github.com/spec/v1\n",
             "r": b"\x13\x37" * 20}
    for name, data in cases.items():
        (tmp_path / name).write_bytes(data)
    torch.save({"w": torch.ones(100)}, tmp_path / "ok")
    (tmp_path / "cut").write_bytes((tmp_path / "ok").read_bytes()[:300])
    with zipfile.ZipFile(tmp_path / "z", "w") as z:
        z.writestr("a.txt", "hi")
    found = {n: describe_file(str(tmp_path / n)) for n in [*cases, "cut", "z"]}
    assert found["e"] == "empty (0 bytes)"
    assert found["j"] == "a JPEG image" and found["p"] == "a PNG image"
    assert "HTML page" in found["h"] and "git lfs pull" in found["l"]
    assert found["r"].startswith("unknown content (starts with b'\\x137")
    assert found["cut"].startswith("a truncated zip archive (300 bytes")
    assert found["z"] == "a zip archive that is not a PyTorch checkpoint (holds a.txt)"


# --- the weights cache: several processes at once -------------------------------------------------

class _Server:
    """Files of a folder on 127.0.0.1 (like test_weights' server), with a per-request delay so
    that concurrent downloads overlap, and ``/stall/<name>``: half the file, then a wait until
    the server closes (a transfer to kill mid-way)."""

    def __init__(self, root, delay=0.2):
        self.requests, self.release = [], threading.Event()
        server = self

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                pass

            def do_GET(self):
                server.requests.append(self.path)
                time.sleep(delay)
                if self.path.startswith("/stall/"):
                    data = Path(root, self.path[len("/stall/"):]).read_bytes()
                    self.send_response(200)
                    self.send_header("Content-Length", str(len(data)))
                    self.end_headers()
                    self.wfile.write(data[:len(data) // 2])
                    self.wfile.flush()
                    server.release.wait(60)
                    return
                super().do_GET()

        self.httpd = http.server.ThreadingHTTPServer(
            ("127.0.0.1", 0), functools.partial(Handler, directory=str(root)))
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("served")
    torch.manual_seed(0)
    state_dict = MobileNetV1(num_classes=10, alpha=0.25).state_dict()
    for name in ("plain", "a", "b", "c"):
        torch.save(state_dict, root / f"{name}.pth")
    server = _Server(root)
    yield server, root, state_dict
    server.close()


def _entry(name, url, sha256=None):
    return dict(name=name, url=url, source="plain", license="test", alpha=0.25, resolution=128,
                num_classes=10, top1=None, top5=None, sha256=sha256, model_kwargs={})


# Registers the entries, waits for the common start time, loads each and prints a checksum. The
# weights path needs torch only: hiding the faces' libraries keeps each process' start-up short.
_WORKER = textwrap.dedent("""
    import json, sys, time
    sys.modules.update(mmdet=None, mmpretrain=None, torchvision=None)
    from mnet_backbone.weights import ENTRIES, WeightEntry, load_state_dict
    spec = json.loads(sys.argv[1])
    for e in spec["entries"]:
        ENTRIES[e["name"]] = WeightEntry(**e)
    while time.time() < spec["start"]:
        time.sleep(0.002)
    sums = {}
    for e in spec["entries"]:
        sd = load_state_dict(e["name"], progress=False)
        sums[e["name"]] = float(sum(v.double().sum() for v in sd.values()))
    print(json.dumps(sums))
""")


def _start(spec, env):
    return subprocess.Popen([sys.executable, "-c", _WORKER, json.dumps(spec)], env=env, cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _env(torch_home):
    return dict(os.environ, TORCH_HOME=str(torch_home), OMP_NUM_THREADS="1",
                PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.mark.slow
def test_processes_share_a_damaged_cache(served, tmp_path, monkeypatch):
    """Three loaders (two processes and this one) load three entries at once from a cache
    holding a stale converted .pth, a truncated converted .pth, truncated raw downloads (with and
    without a published hash) and partial files of a killed writer and of a live one: all
    succeed with the same weights and leave one valid file per cache name (before:
    FileNotFoundError / CorruptWeightsError)."""
    server, root, state_dict = served
    from mnet_backbone.weights.hub import load_checkpoint
    entries = [_entry("t_stale", f"{server.url}/a.pth"), _entry("t_trunc", f"{server.url}/b.pth"),
               _entry("t_hashed", f"{server.url}/c.pth", sha256=sha256sum(str(root / "c.pth")))]
    raw = {e["name"]: e["name"] + "-" + e["url"].rsplit("/", 1)[1] for e in entries}
    cache = tmp_path / "home" / "hub" / "checkpoints" / "mnet_backbone"
    cache.mkdir(parents=True)
    save_checkpoint(str(cache / "t_stale.pth"), state_dict, dict(url="http://old.example/x"))
    save_checkpoint(str(cache / "t_trunc.pth"), state_dict, dict(url=entries[1]["url"]))
    (cache / "t_trunc.pth").write_bytes((cache / "t_trunc.pth").read_bytes()[:5000])
    served_bytes = {e["name"]: (root / e["url"].rsplit("/", 1)[1]).read_bytes() for e in entries}
    for e in entries[1:]:  # raw downloads cut short by an older version or a full disk
        data = served_bytes[e["name"]]
        (cache / raw[e["name"]]).write_bytes(data[:len(data) // 3])
    dead = cache / "t_stale.pth.999-dead.partial"
    live = cache / "t_stale.pth.998-live.partial"
    dead.write_bytes(b"half")
    live.write_bytes(b"half")
    hours_ago = time.time() - 2 * 3600
    os.utime(dead, (hours_ago, hours_ago))
    before = len(server.requests)

    spec = dict(entries=entries, start=time.time() + 4)
    procs = [_start(spec, _env(tmp_path / "home")) for _ in range(2)]
    from mnet_backbone.weights import ENTRIES, WeightEntry, load_state_dict
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    for e in entries:
        monkeypatch.setitem(ENTRIES, e["name"], WeightEntry(**e))
    time.sleep(max(0.0, spec["start"] - time.time()))
    mine = [load_state_dict(e["name"], progress=False) for e in entries]
    results = [p.communicate(timeout=120) for p in procs]
    for p, (_, err) in zip(procs, results):
        assert p.returncode == 0, err[-2000:]
    expected = float(sum(v.double().sum() for v in state_dict.values()))
    assert all(torch.equal(sd[k], v) for sd in mine for k, v in state_dict.items())
    for out, _ in results:
        sums = json.loads(out.strip().splitlines()[-1])
        assert sums == pytest.approx({e["name"]: expected for e in entries})
    names = sorted(os.listdir(cache))
    assert names == sorted([f"{e['name']}.pth" for e in entries] + list(raw.values())
                           + [live.name])  # the dead writer's partial is gone, the live one kept
    for e in entries:
        saved = load_checkpoint(str(cache / f"{e['name']}.pth"))
        assert saved["meta"]["url"] == e["url"]
        assert (cache / raw[e["name"]]).read_bytes() == served_bytes[e["name"]]
    assert len(server.requests) - before >= 2  # the truncated raw files were downloaded again


def test_download_killed_mid_transfer_leaves_a_partial_that_is_cleaned(served, tmp_path,
                                                                       monkeypatch):
    """kill -9 during a download leaves ``*.partial`` (no torn file under the real name); the
    next load, once it is old, removes it (before: it stayed for ever)."""
    server, _, _ = served
    cache = tmp_path / "home" / "hub" / "checkpoints" / "mnet_backbone"
    entry = _entry("t_killed", f"{server.url}/stall/plain.pth")
    proc = _start(dict(entries=[entry], start=0), _env(tmp_path / "home"))
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not (
                cache.is_dir() and any(n.endswith(".partial") for n in os.listdir(cache))):
            time.sleep(0.05)
        time.sleep(0.3)  # the first half is written
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=30)
    left = os.listdir(cache)
    assert len(left) == 1 and left[0].startswith("t_killed-plain.pth.") \
        and left[0].endswith(".partial"), left
    hours_ago = time.time() - 2 * 3600
    os.utime(cache / left[0], (hours_ago, hours_ago))
    from mnet_backbone.weights import ENTRIES, WeightEntry, load_state_dict
    ok = WeightEntry(**dict(entry, url=f"{server.url}/plain.pth"))
    monkeypatch.setitem(ENTRIES, ok.name, ok)
    monkeypatch.setenv("TORCH_HOME", str(tmp_path / "home"))
    assert load_state_dict(ok.name, progress=False).keys() == served[2].keys()
    assert sorted(os.listdir(cache)) == ["t_killed-plain.pth", "t_killed.pth"]
