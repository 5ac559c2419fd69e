# SPDX-License-Identifier: Apache-2.0
"""The model table, weight search order, strict checkpoint loading and s2m2-download."""

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from s2m2_ros import zoo
from s2m2_ros.model import S2M2
from s2m2_ros.zoo import (
    MODEL_CARD_URL,
    MODELS,
    CheckpointError,
    DownloadError,
    ModelSpec,
    UnknownModelError,
    WeightsNotFoundError,
    build_model,
    check_state_dict,
    download,
    download_main,
    find_weights,
    infer_architecture,
    load_state_dict,
)

SHARED = Path(__file__).resolve().parents[1].parent / "shared"
MANIFEST = SHARED / "golden" / "checkpoint_manifest.json"
GOLDEN = SHARED / "golden" / "s2m2_c32_n1_golden.pt"
needs_shared = pytest.mark.skipif(not MANIFEST.exists(), reason="shared/ golden files absent")


@pytest.fixture(scope="module")
def tiny_state_dict() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return S2M2(32, 1).state_dict()


@pytest.fixture
def tiny_checkpoint(tmp_path, tiny_state_dict) -> Path:
    path = tmp_path / "tiny.pth"
    torch.save({"state_dict": tiny_state_dict}, path)
    return path


@pytest.fixture
def isolated(monkeypatch, tmp_path):
    """No real environment, user cache or Hugging Face cache leaks into a test."""
    monkeypatch.delenv(zoo.WEIGHTS_DIR_ENV, raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    constants = pytest.importorskip("huggingface_hub.constants")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hf"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    return tmp_path


def _touch(directory: Path, name: str = "CH192NTR2.pth") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / name
    path.write_bytes(b"x")
    return path


def _hub_cache_file(cache: Path, spec: ModelSpec, content: bytes) -> Path:
    # The layout huggingface_hub documents: refs/main → snapshots/<revision>/<file>.
    repo = cache / f"models--{spec.hub_repo.replace('/', '--')}"
    (repo / "refs").mkdir(parents=True)
    (repo / "refs" / "main").write_text("0123abcd")
    snapshot = repo / "snapshots" / "0123abcd"
    snapshot.mkdir(parents=True)
    (snapshot / spec.checkpoint_file).write_bytes(content)
    return snapshot / spec.checkpoint_file


# -- the table -------------------------------------------------------------------------


@needs_shared
def test_table_matches_the_manifest():
    manifest = json.loads(MANIFEST.read_text())
    assert set(MODELS) == set(manifest) == {"S", "M", "L", "XL"}
    for name, entry in manifest.items():
        spec = MODELS[name]
        assert spec.checkpoint_file == entry["checkpoint_file"]
        assert spec.architecture == (entry["feature_channels"], entry["num_transformer"])
        assert spec.parameters == entry["parameters"]
        assert spec.hub_repo == "minimok/s2m2"


@needs_shared
@pytest.mark.parametrize("name", ["S", "M", "L", "XL"])
def test_every_published_size_fits_the_network(name):
    """Architecture inference and the strict key check on the real checkpoints' shapes."""
    entry = json.loads(MANIFEST.read_text())[name]
    shapes = {key: torch.empty(shape, device="meta") for key, shape in entry["state_dict"].items()}
    assert infer_architecture(shapes) == MODELS[name].architecture
    with torch.device("meta"):
        network = S2M2(*MODELS[name].architecture)
    check_state_dict(network, shapes)  # raises on any difference
    assert sum(value.numel() for value in shapes.values()) == MODELS[name].parameters


def test_get_spec_is_case_insensitive_and_rejects_unknown_names():
    assert zoo.get_spec("xl") is MODELS["XL"]
    with pytest.raises(UnknownModelError, match="S, M, L, XL"):
        zoo.get_spec("XXL")
    assert issubclass(UnknownModelError, CheckpointError)
    assert zoo.spec_for_architecture(256, 3) is MODELS["L"]
    assert zoo.spec_for_architecture(32, 1) is None


# -- search order ----------------------------------------------------------------------


def test_explicit_path_beats_every_directory(isolated, monkeypatch):
    explicit = _touch(isolated / "mine", "custom.pth")
    _touch(isolated / "dir")
    monkeypatch.setenv(zoo.WEIGHTS_DIR_ENV, str(isolated / "env"))
    _touch(isolated / "env")
    assert find_weights("M", weights=explicit, weights_dir=isolated / "dir") == explicit


def test_directory_argument_beats_environment(isolated, monkeypatch):
    in_dir = _touch(isolated / "dir")
    _touch(isolated / "env")
    monkeypatch.setenv(zoo.WEIGHTS_DIR_ENV, str(isolated / "env"))
    assert find_weights("M", weights_dir=isolated / "dir") == in_dir


def test_environment_beats_user_cache(isolated, monkeypatch):
    in_env = _touch(isolated / "env")
    _touch(isolated / "xdg" / "s2m2_ros")
    monkeypatch.setenv(zoo.WEIGHTS_DIR_ENV, str(isolated / "env"))
    assert find_weights("M") == in_env
    # A directory argument without the file falls through to the next place.
    assert find_weights("M", weights_dir=isolated / "empty") == in_env


def test_user_cache_respects_xdg_and_home(isolated, monkeypatch):
    in_xdg = _touch(isolated / "xdg" / "s2m2_ros")
    assert find_weights("m") == in_xdg
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(isolated / "home"))
    in_home = _touch(isolated / "home" / ".cache" / "s2m2_ros")
    assert find_weights("M") == in_home


def test_user_cache_beats_hub_cache_which_is_the_last_resort(isolated):
    in_hub = _hub_cache_file(isolated / "hf", MODELS["M"], b"x")
    assert find_weights("M") == in_hub
    in_cache = _touch(isolated / "xdg" / "s2m2_ros")
    assert find_weights("M") == in_cache


def test_not_found_lists_every_place_and_how_to_get_weights(isolated, monkeypatch):
    monkeypatch.setenv(zoo.WEIGHTS_DIR_ENV, str(isolated / "env"))
    with pytest.raises(WeightsNotFoundError) as caught:
        find_weights("L", weights_dir=isolated / "dir")
    message = str(caught.value)
    for place in (
        isolated / "dir" / "CH256NTR3.pth",
        isolated / "env" / "CH256NTR3.pth",
        isolated / "xdg" / "s2m2_ros" / "CH256NTR3.pth",
        isolated / "hf",
    ):
        assert str(place) in message
    assert "s2m2-download L" in message
    assert MODEL_CARD_URL in message
    assert "\n" not in message


def test_explicit_path_that_is_missing_or_a_directory(isolated):
    with pytest.raises(WeightsNotFoundError, match="nothing.pth"):
        find_weights(weights=isolated / "nothing.pth")
    with pytest.raises(WeightsNotFoundError, match="directory"):
        find_weights(weights=isolated)


# -- loading ---------------------------------------------------------------------------


def test_both_checkpoint_layouts_load(tmp_path, tiny_state_dict):
    wrapped, bare, parallel = tmp_path / "a.pth", tmp_path / "b.pt", tmp_path / "c.ckpt"
    torch.save({"state_dict": tiny_state_dict, "epoch": 3}, wrapped)
    torch.save(tiny_state_dict, bare)
    torch.save({f"module.{k}": v for k, v in tiny_state_dict.items()}, parallel)
    for path in (wrapped, bare, parallel):
        loaded = load_state_dict(path)
        assert loaded.keys() == tiny_state_dict.keys()
        assert all(torch.equal(loaded[k], tiny_state_dict[k]) for k in loaded)


class _NotATensor:
    pass


def _bad_checkpoints(directory: Path, good: Path) -> dict[str, tuple[Path, str]]:
    """name → (file, text the error must contain besides the file name)."""
    cases = {}
    cases["extension"] = (directory / "weights.safetensors", "extension")
    cases["extension"][0].write_bytes(good.read_bytes())
    cases["missing"] = (directory / "missing.pth", "does not exist")
    cases["directory"] = (directory / "folder.pth", "not a regular file")
    cases["directory"][0].mkdir()
    cases["empty"] = (directory / "empty.pth", "empty")
    cases["empty"][0].write_bytes(b"")
    data = good.read_bytes()
    cases["truncated"] = (directory / "truncated.pth", "corrupt")
    cases["truncated"][0].write_bytes(data[: len(data) // 2])
    cases["garbage"] = (directory / "garbage.pth", "corrupt")
    cases["garbage"][0].write_bytes(np.random.default_rng(0).bytes(4096))
    cases["list"] = (directory / "list.pth", "found a list")
    torch.save([1, 2, 3], cases["list"][0])
    cases["objects"] = (directory / "objects.pth", "Python objects")
    torch.save({"state_dict": {"a": _NotATensor()}}, cases["objects"][0])
    cases["values"] = (directory / "values.pth", "not tensors: b (int)")
    torch.save({"state_dict": {"a": torch.zeros(1), "b": 3}}, cases["values"][0])
    cases["keys"] = (directory / "keys.pth", "parameter names")
    torch.save({1: torch.zeros(1)}, cases["keys"][0])
    cases["nothing"] = (directory / "nothing.pth", "empty")
    torch.save({"state_dict": {}}, cases["nothing"][0])
    return cases


@pytest.mark.parametrize(
    "case",
    ["extension", "missing", "directory", "empty", "truncated", "garbage", "list", "objects",
     "values", "keys", "nothing"],
)  # fmt: skip
def test_every_bad_checkpoint_gives_one_clear_error_naming_the_file(
    tmp_path, tiny_checkpoint, case
):
    path, expected = _bad_checkpoints(tmp_path, tiny_checkpoint)[case]
    with pytest.raises(CheckpointError) as caught:
        load_state_dict(path)
    assert str(path) in str(caught.value)
    assert expected in str(caught.value)


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root reads anything")
def test_unreadable_checkpoint(tiny_checkpoint):
    tiny_checkpoint.chmod(0)
    with pytest.raises(CheckpointError, match="cannot be read"):
        load_state_dict(tiny_checkpoint)


def test_infer_architecture(tiny_state_dict):
    assert infer_architecture(tiny_state_dict) == (32, 1)
    torch.manual_seed(0)
    assert infer_architecture(S2M2(32, 2).state_dict()) == (32, 2)
    without_stem = {k: v for k, v in tiny_state_dict.items() if k != zoo.CHANNELS_KEY}
    with pytest.raises(CheckpointError, match="conv1_down"):
        infer_architecture(without_stem)
    without_transformer = {
        k: v for k, v in tiny_state_dict.items() if not k.startswith("transformer.")
    }
    with pytest.raises(CheckpointError, match="uformer_list"):
        infer_architecture(without_transformer)


# -- building --------------------------------------------------------------------------


def test_build_model_from_a_path(tiny_checkpoint, tiny_state_dict):
    network, path = build_model(str(tiny_checkpoint), allow_negative=True, refine_iters=2)
    assert path == tiny_checkpoint
    assert isinstance(network, S2M2) and not network.training
    assert (network.allow_negative, network.refine_iters) == (True, 2)
    loaded = network.state_dict()
    assert all(torch.equal(loaded[k], tiny_state_dict[k]) for k in tiny_state_dict)


def test_build_model_by_name_checks_the_file_holds_that_size(isolated, tiny_state_dict):
    # A C=32 network saved under the S file name is the wrong file for "S".
    path = isolated / "dir" / "CH128NTR1.pth"
    path.parent.mkdir()
    torch.save({"state_dict": tiny_state_dict}, path)
    with pytest.raises(CheckpointError, match="C=32, N=1.*model S is C=128, N=1") as caught:
        build_model("S", weights_dir=path.parent)
    assert str(path) in str(caught.value)


def test_build_model_lists_missing_unexpected_and_misshaped_keys(tmp_path, tiny_state_dict):
    broken = dict(tiny_state_dict)
    del broken["ctx_feat.0.bias"]
    del broken["refiner.gru.convz1.weight"]
    broken["extra.weight"] = torch.zeros(3)
    broken["ctx_feat.2.weight"] = torch.zeros(5, 5, 1, 1)
    path = tmp_path / "broken.pth"
    torch.save({"state_dict": broken}, path)
    with pytest.raises(CheckpointError) as caught:
        build_model(path)
    message = str(caught.value)
    assert str(path) in message
    assert "2 missing keys" in message and "ctx_feat.0.bias" in message
    assert "1 unexpected keys (extra.weight)" in message
    assert "1 shape mismatches (ctx_feat.2.weight: checkpoint [5, 5, 1, 1]" in message


def test_build_model_rejects_a_checkpoint_of_another_network(tmp_path):
    path = tmp_path / "resnet.pth"
    torch.save({"fc.weight": torch.zeros(2, 2)}, path)
    with pytest.raises(CheckpointError, match="not an S2M2 state dict") as caught:
        build_model(path)
    assert str(path) in str(caught.value)


@pytest.mark.skipif(not GOLDEN.exists(), reason="shared/ golden files absent")
def test_golden_checkpoint_builds_and_reproduces_the_reference(tmp_path):
    golden = torch.load(GOLDEN, weights_only=True)
    path = tmp_path / "golden.pth"
    torch.save(golden["checkpoint"], path)
    network, _ = build_model(path)
    assert infer_architecture(network.state_dict()) == (32, 1)
    with torch.inference_mode():
        disparity, visibility, confidence = network(golden["left"], golden["right"])
    torch.testing.assert_close(disparity, golden["disparity"], atol=1e-3, rtol=0)
    torch.testing.assert_close(visibility, golden["occlusion"], atol=2e-2, rtol=0)
    torch.testing.assert_close(confidence, golden["confidence"], atol=2e-2, rtol=0)


# -- download --------------------------------------------------------------------------


def test_download_without_huggingface_hub(monkeypatch, tmp_path, capsys):
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    assert download_main(["S", "--dest", str(tmp_path)]) == 1
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert len(error_lines) == 1
    assert error_lines[0].startswith("error:") and "pip install huggingface_hub" in error_lines[0]


def test_download_when_the_hub_is_unreachable(isolated, capsys):
    with pytest.raises(DownloadError, match="could not download CH128NTR1.pth"):
        download("S", isolated / "dest", progress=False)
    assert download_main(["s", "--dest", str(isolated / "dest"), "--quiet"]) == 1
    error_lines = capsys.readouterr().err.strip().splitlines()
    assert len(error_lines) == 1 and error_lines[0].startswith("error:")
    assert MODEL_CARD_URL in error_lines[0]
    assert not (isolated / "dest" / "CH128NTR1.pth").exists()


def test_download_places_a_verified_file_where_find_weights_looks(
    isolated, monkeypatch, tiny_checkpoint, tiny_state_dict, capsys
):
    # A tiny stand-in entry in the table, served from the (offline) hub cache.
    parameters = sum(value.numel() for value in tiny_state_dict.values())
    spec = ModelSpec("S", "CH32NTR1.pth", 32, 1, parameters)
    monkeypatch.setitem(MODELS, "S", spec)
    _hub_cache_file(isolated / "hf", spec, tiny_checkpoint.read_bytes())
    assert download_main(["S", "--quiet"]) == 0
    placed = isolated / "xdg" / "s2m2_ros" / "CH32NTR1.pth"
    assert placed.read_bytes() == tiny_checkpoint.read_bytes()
    assert str(placed) in capsys.readouterr().out
    assert find_weights("S") == placed


def test_download_rejects_a_file_that_does_not_match_the_table(
    isolated, monkeypatch, tiny_checkpoint
):
    spec = ModelSpec("S", "CH32NTR1.pth", 32, 1, parameters=123)
    monkeypatch.setitem(MODELS, "S", spec)
    _hub_cache_file(isolated / "hf", spec, tiny_checkpoint.read_bytes())
    with pytest.raises(DownloadError, match="expected C=32, N=1 with 123"):
        download("S", isolated / "dest")
    assert not (isolated / "dest" / "CH32NTR1.pth").exists()


def test_download_main_rejects_unknown_sizes(capsys):
    assert download_main(["XXL"]) == 2
    assert "invalid choice" in capsys.readouterr().err
