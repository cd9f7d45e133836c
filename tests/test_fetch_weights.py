"""Tests of biaslab.evaluation.fetch_weights without network: argument parsing and the offline
path."""

from __future__ import annotations

import importlib.util
import urllib.error

import pytest

from biaslab.evaluation import fetch_weights
from biaslab.evaluation.backbones import WEIGHTS_FILES


def test_urls_match_backbone_file_names():
    for net in fetch_weights.NETS:
        if net == "fid_inception":
            continue
        url = fetch_weights.weights_url(net)
        assert url.startswith("https://download.pytorch.org/models/")
        assert url.endswith("/" + WEIGHTS_FILES[net][1])


def test_fid_inception_url_is_torch_fidelity_s():
    pytest.importorskip("torch_fidelity")
    from biaslab.evaluation.quality import FID_INCEPTION_FILE

    assert fetch_weights.weights_url("fid_inception").endswith("/" + FID_INCEPTION_FILE)


def test_offline_fails_clearly(tmp_path, monkeypatch, capsys):
    def offline(url, dest, **kw):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(fetch_weights, "_download", offline)
    rc = fetch_weights.main(["--dest", str(tmp_path / "w"), "inception"])
    assert rc == 1
    err = capsys.readouterr().err
    assert "offline" in err
    assert "inception_v3_google-0cc3c7bd.pth" in err
    assert "name resolution" in err
    assert not any((tmp_path / "w").iterdir())


def test_success_prints_config_keys(tmp_path, monkeypatch, capsys):
    fetched = []

    def fake(url, dest, **kw):
        fetched.append(url)
        path = dest / url.rsplit("/", 1)[1]
        path.write_bytes(b"weights")
        return path

    monkeypatch.setattr(fetch_weights, "_download", fake)
    dest = tmp_path / "w"
    (dest).mkdir()
    (dest / WEIGHTS_FILES["vgg"][1]).write_bytes(b"already here")
    assert fetch_weights.main(["--dest", str(dest), "alex", "vgg", "alex"]) == 0
    out = capsys.readouterr().out
    assert len(fetched) == 1 and fetched[0].endswith(WEIGHTS_FILES["alex"][1])
    assert "already present" in out
    assert f"metrics.backbone_weights: {dest / WEIGHTS_FILES['alex'][1]}" in out
    assert f"metrics.backbone_weights: {dest / WEIGHTS_FILES['vgg'][1]}" in out

    fetched.clear()
    checked = []
    monkeypatch.setattr(fetch_weights, "check_fid_inception", checked.append)
    if importlib.util.find_spec("torch_fidelity") is None:  # its URL comes from torch-fidelity
        return
    assert fetch_weights.main(["--dest", str(tmp_path / "all")]) == 0  # default: all four
    assert len(fetched) == 4 and len(checked) == 1
    assert "metrics.fid_inception_weights: " in capsys.readouterr().out


def test_argument_errors(capsys):
    with pytest.raises(SystemExit) as e:
        fetch_weights.main(["alex"])  # --dest is required
    assert e.value.code == 2
    with pytest.raises(SystemExit) as e:
        fetch_weights.main(["--dest", "x", "resnet"])
    assert e.value.code == 2
    assert "unknown NET resnet" in capsys.readouterr().err
