"""The model registry: atomic publish, validation of every way a version can be bad."""
from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from models.errors import ArtifactError, ModelError
from models.registry import (MANIFEST_FILE, Registry, RegistryError, local_path, parse_arms, validate_version)
from tests.models.bad_models import BAD_KINDS, copy_artifact, make_bad

REPO = Path(__file__).resolve().parents[2]


def test_publish_validates_checksums_and_lists(tmp_path, model_dir):
    registry = Registry(tmp_path / "reg")
    published = registry.publish(model_dir, name="sasrec", version="t1")
    assert registry.versions() == ["sasrec/t1"]
    manifest = json.loads((published.path / MANIFEST_FILE).read_text())
    assert manifest["sha256"] == published.sha256 and "model.onnx" in manifest["files"]
    # The copy serves under the name it was published as.
    assert json.loads((published.path / "config.json").read_text())["version"] == "t1"
    assert validate_version(published.path, published.sha256).version == "sasrec/t1"
    assert registry.get("sasrec", "t1").announcement() == {
        "name": "sasrec", "version": "t1", "uri": published.path.resolve().as_uri(), "sha256": published.sha256}
    with pytest.raises(RegistryError, match="immutable"):
        registry.publish(model_dir, name="sasrec", version="t1")


def test_changed_file_after_publish_is_refused(tmp_path, model_dir):
    published = Registry(tmp_path).publish(model_dir, name="sasrec", version="t2")
    with pytest.raises(ArtifactError, match="sha256 is .* the announcement says"):
        validate_version(published.path, "0" * 64)
    vocab = published.path / "vocab.json"
    vocab.write_text(vocab.read_text().replace('"oov": 1', '"oov":  1'))
    with pytest.raises(ArtifactError, match="differ from MANIFEST.json: \\['vocab.json'\\]"):
        validate_version(published.path)


@pytest.mark.parametrize("kind", BAD_KINDS)
def test_every_bad_model_is_refused_and_nothing_is_published(tmp_path, model_dir, kind):
    bad = make_bad(model_dir, tmp_path / "bad", kind)
    registry = Registry(tmp_path / "reg")
    expected = {"truncated_onnx": "cannot load", "wrong_inputs": "ONNX inputs are", "vocab_mismatch": "canary batch failed",
                "nan_weights": "not finite", "missing_vocab": "vocab.json"}[kind]
    with pytest.raises(ModelError, match=expected):
        registry.publish(bad, name="sasrec", version=f"bad-{kind}")
    assert registry.versions() == []
    assert not any((tmp_path / "reg").rglob("model.onnx"))  # the temporary copy is gone too


@pytest.mark.parametrize("crash_at", ["models.registry.validate_version", "os.rename"])
def test_a_crash_mid_publish_leaves_nothing_visible(tmp_path, model_dir, crash_at):
    """Kill the publishing process (os._exit: no cleanup handlers run) inside validation or right
    before the rename; the version must not exist, and a later publish must succeed."""
    root = tmp_path / "reg"
    module, _, attr = crash_at.rpartition(".")
    script = (f"import os, importlib, models.registry as r\n"
              f"m = importlib.import_module({module!r})\n"
              f"setattr(m, {attr!r}, lambda *a, **k: os._exit(17))\n"
              f"r.Registry({str(root)!r}).publish({model_dir!r}, name='sasrec', version='c1')\n")
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 17, proc.stderr
    registry = Registry(root)
    assert registry.versions() == []
    assert not (root / "sasrec" / "c1").exists()
    leftovers = registry.clean()
    assert leftovers and all(p.name.startswith(".tmp-c1-") for p in leftovers)
    assert registry.publish(model_dir, name="sasrec", version="c1").path == root / "sasrec" / "c1"


def test_uris_and_names(tmp_path):
    assert local_path(f"file://{tmp_path}") == tmp_path
    with pytest.raises(RegistryError, match="unsupported URI scheme 's3'"):
        local_path("s3://bucket/models")
    with pytest.raises(RegistryError, match="invalid model version"):
        Registry(tmp_path).path("sasrec", "../escape")
    assert parse_arms("a=m/v1:0.25, b=m/v2:0.75") == {"a": {"model": "m/v1", "share": 0.25},
                                                      "b": {"model": "m/v2", "share": 0.75}}
    with pytest.raises(RegistryError, match="ARM=NAME/VERSION:SHARE"):
        parse_arms("a=m/v1")


def test_cli_publish_list_validate(tmp_path, model_dir):
    root = tmp_path / "reg"

    def cli(*args: str) -> str:
        proc = subprocess.run([sys.executable, "-m", "models.registry", *args], cwd=REPO, capture_output=True,
                              text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        return proc.stdout

    announcement = json.loads(cli("publish", model_dir, "--root", str(root), "--version", "cli1"))
    assert announcement["version"] == "cli1" and len(announcement["sha256"]) == 64
    assert cli("list", "--root", str(root)).split() == [f"{announcement['name']}/cli1"]
    assert json.loads(cli("validate", str(root / announcement["name"] / "cli1")))["sha256"] == announcement["sha256"]
    bad = make_bad(model_dir, tmp_path / "bad", "nan_weights")
    proc = subprocess.run([sys.executable, "-m", "models.registry", "publish", str(bad), "--root", str(root),
                           "--version", "cli2"], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "not finite" in proc.stderr
