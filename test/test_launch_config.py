# SPDX-License-Identifier: Apache-2.0
"""Launch helpers without `launch`, and the packaged config, preset and rviz files."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from s2m2_ros import launch_config, parameters
from s2m2_ros.launch_config import (
    CAMERA_PRESETS,
    LAUNCH_ARGUMENTS,
    build_launch_plan,
    default_params_file,
    node_parameters,
    topic_remappings,
)
from s2m2_ros.parameters import (
    NODE_PARAMETERS,
    PARAMETERS_BY_NAME,
    parse_parameter_string,
    validate_parameter,
)

REPO = Path(__file__).resolve().parents[1]
CONFIG_FILES = sorted((REPO / "config").glob("*.yaml"))
SHARE = str(REPO)  # the source tree has the share layout: config/, launch/, rviz/

EXPECTED_PARAMETERS = {
    "backend", "model", "weights", "weights_dir", "device", "precision", "compile",
    "refine_iters", "allow_negative", "input_scale", "confidence_threshold",
    "occlusion_threshold", "min_depth", "max_depth", "depth_encoding", "use_color",
    "dense_cloud", "approximate_sync", "approximate_sync_tolerance_seconds", "queue_size",
    "max_input_pixels",
    "publish_disparity", "publish_depth", "publish_confidence", "publish_occlusion",
    "publish_points", "status_period_s", "max_latency_s", "input_timeout_s",
}


def test_module_does_not_import_launch():
    code = ("import sys, s2m2_ros.launch_config; "
            "sys.exit(sorted(m for m in sys.modules if m.split('.')[0] in "
            "('launch', 'launch_ros', 'rclpy', 'yaml')) != [])")
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=60)
    assert result.returncode == 0


# ---- the parameter table ---------------------------------------------------------------

def test_parameter_table_is_the_node_parameter_list():
    assert {spec.name for spec in NODE_PARAMETERS} == EXPECTED_PARAMETERS
    assert len(NODE_PARAMETERS) == len(EXPECTED_PARAMETERS)


@pytest.mark.parametrize("spec", NODE_PARAMETERS, ids=lambda spec: spec.name)
def test_every_default_is_valid_and_described(spec):
    assert validate_parameter(spec.name, spec.default) == spec.default
    assert type(spec.default) is spec.type
    assert len(spec.description) > 15


@pytest.mark.parametrize(("name", "text", "expected"), [
    ("model", "xl", "XL"),
    ("precision", "FP16", "fp16"),
    ("depth_encoding", "16uc1", "16UC1"),
    ("device", "cuda:3", "cuda:3"),
    ("compile", "True", True),
    ("dense_cloud", "0", False),
    ("refine_iters", "16", 16),
    ("input_scale", "1", 1.0),
    ("max_depth", 12, 12.0),
    ("approximate_sync_tolerance_seconds", "1e-3", 0.001),
    ("weights", 2024, "2024"),
])
def test_validate_converts_launch_strings(name, text, expected):
    value = validate_parameter(name, text)
    assert value == expected
    assert type(value) is type(expected)


@pytest.mark.parametrize(("name", "value", "words"), [
    ("model", "XXL", "S, M, L, XL"),
    ("device", "gpu", "cuda:"),
    ("refine_iters", 17, "maximum 16"),
    ("refine_iters", 0, "minimum 1"),
    ("refine_iters", 2.5, "integer"),
    ("refine_iters", True, "integer"),
    ("input_scale", 0.05, "minimum 0.1"),
    ("confidence_threshold", 1.5, "maximum 1"),
    ("min_depth", -1.0, "minimum 0"),
    ("compile", "maybe", "true or false"),
    ("use_color", 2, "true or false"),
    ("weights", True, "string"),
    ("refine_iter", 3, "did you mean 'refine_iters'"),
    ("qos_overrides./left/image_rect.subscription.durability", "volatile", "reliability"),
    ("qos_overrides./left/image_rect.subscription.reliability", "sometimes", "best_effort"),
    ("qos_overrides.left/image_rect.subscription.reliability", "reliable", "fully qualified"),
    ("qos_overrides./left/image_rect.subscription.depth", -1, "non-negative"),
])
def test_validate_rejects_with_a_clear_reason(name, value, words):
    with pytest.raises(ValueError, match=name.split(".")[0]) as error:
        validate_parameter(name, value)
    assert words in str(error.value)


# ---- node_parameters ---------------------------------------------------------------------

def test_node_parameters_empty_sets_nothing():
    assert node_parameters() == []
    assert node_parameters(model="", weights="  ", extra="") == []


def test_node_parameters_types_the_named_arguments():
    [overrides] = node_parameters(model="l", weights="~/weights/CH256NTR3.pth", device="cuda:0",
                                  precision="bf16", compile="true", approximate_sync="False",
                                  backend="s2m2")
    assert overrides == {
        "backend": "s2m2", "model": "L",
        "weights": os.path.expanduser("~/weights/CH256NTR3.pth"), "device": "cuda:0",
        "precision": "bf16", "compile": True, "approximate_sync": False,
    }


def test_node_parameters_rejects_a_bad_model_clearly():
    with pytest.raises(ValueError) as error:
        node_parameters(model="XXL")
    assert "model" in str(error.value)
    assert "S, M, L, XL" in str(error.value)


def test_pass_through_pairs_are_typed():
    [overrides] = node_parameters(
        extra="refine_iters:=4 input_scale:=0.5 max_depth:=10 publish_points:=false "
              "weights:='/data/my weights/m.pth' use_sim_time:=true")
    assert overrides == {"refine_iters": 4, "input_scale": 0.5, "max_depth": 10.0,
                         "publish_points": False, "weights": "/data/my weights/m.pth",
                         "use_sim_time": True}
    assert type(overrides["max_depth"]) is float


def test_pass_through_yaml_mapping_flattens_qos_overrides():
    parsed = parse_parameter_string(
        "{max_depth: 8, qos_overrides: {/left/image_rect: {subscription: "
        "{reliability: BEST_EFFORT, depth: 2}}}}")
    assert parsed == {
        "max_depth": 8.0,
        "qos_overrides./left/image_rect.subscription.reliability": "best_effort",
        "qos_overrides./left/image_rect.subscription.depth": 2,
    }


@pytest.mark.parametrize(("extra", "words"), [
    ("refine_iters=4", "name:=value"),
    (":=4", "name:=value"),
    ("{refine_iters: [4]}", "integer"),
    ("[1, 2]", "name:=value"),
    ("{unclosed: ", "YAML"),
    ("max_dept:=3.0", "did you mean 'max_depth'"),
])
def test_pass_through_errors_name_the_problem(extra, words):
    with pytest.raises(ValueError) as error:
        node_parameters(extra=extra)
    assert words in str(error.value)


def test_pass_through_may_not_contradict_a_named_argument():
    with pytest.raises(ValueError, match="set it once"):
        node_parameters(model="M", extra="model:=L")
    assert node_parameters(model="m", extra="model:=M") == [{"model": "M"}]


# ---- remappings ----------------------------------------------------------------------------

def test_remappings_follow_stereo_image_proc():
    assert topic_remappings("left", "right") == [
        ("left/image_rect", "left/image_rect"),
        ("left/camera_info", "left/camera_info"),
        ("right/image_rect", "right/image_rect"),
        ("right/camera_info", "right/camera_info"),
    ]


def test_remappings_normalise_namespaces_and_image_topic():
    remaps = dict(topic_remappings("/camera/camera/infra1/", "camera//infra2",
                                   image_topic="/image_rect_raw"))
    assert remaps == {
        "left/image_rect": "/camera/camera/infra1/image_rect_raw",
        "left/camera_info": "/camera/camera/infra1/camera_info",
        "right/image_rect": "camera/infra2/image_rect_raw",
        "right/camera_info": "camera/infra2/camera_info",
    }


@pytest.mark.parametrize(("left", "right", "image", "words"), [
    ("", "right", "image_rect", "must not be empty"),
    ("left", "/", "image_rect", "must not be empty"),
    ("cam", "/cam/", "image_rect", None),
    ("stereo/cam", "stereo/cam/", "image_rect", "both"),
    ("left", "right", " ", "image_topic"),
])
def test_remappings_reject_unusable_namespaces(left, right, image, words):
    if words is None:  # relative and absolute names differ: allowed
        assert len(topic_remappings(left, right, image)) == 4
        return
    with pytest.raises(ValueError) as error:
        topic_remappings(left, right, image)
    assert words in str(error.value)


# ---- launch arguments and the launch plan -------------------------------------------------------

def test_launch_arguments_are_declared_with_descriptions():
    names = [name for name, _default, _description, _choices in LAUNCH_ARGUMENTS]
    assert len(names) == len(set(names))
    required = {"model", "weights", "device", "precision", "compile", "backend", "namespace",
                "left_namespace", "right_namespace", "params_file", "approximate_sync",
                "use_rviz", "node_parameters", "log_level", "camera"}
    assert required <= set(names)
    for name, default, description, choices in LAUNCH_ARGUMENTS:
        assert isinstance(default, str), name
        assert len(description) > 20, name
        if choices is not None:
            assert default in choices, name
            assert all(isinstance(choice, str) for choice in choices), name
    assert launch_config.launch_argument_defaults()["use_rviz"] == "false"


def test_default_params_file_is_the_packaged_one():
    path = default_params_file(SHARE)
    assert path == os.path.join(SHARE, "config", "s2m2_stereo.yaml")
    assert os.path.isfile(path)


def test_plan_with_defaults():
    plan = build_launch_plan({}, SHARE)
    assert plan.parameters == [default_params_file(SHARE)]
    assert plan.remappings == topic_remappings("left", "right", "image_rect")
    assert plan.namespace == ""
    assert plan.node_name == "s2m2_stereo"
    assert plan.ros_arguments == ["--log-level", "info"]
    assert plan.rviz_arguments is None


def test_plan_layers_files_then_overrides(tmp_path):
    mine = tmp_path / "mine.yaml"
    mine.write_text("/**:\n  ros__parameters:\n    model: L\n")
    plan = build_launch_plan({
        "camera": "realsense_d4xx", "params_file": str(mine), "namespace": "robot1",
        "model": "S", "node_parameters": "refine_iters:=2", "use_sim_time": "true",
        "log_level": "DEBUG",
    }, SHARE)
    assert plan.parameters == [
        default_params_file(SHARE),
        os.path.join(SHARE, "config", "realsense_d4xx.yaml"),
        str(mine),
        {"model": "S", "refine_iters": 2, "use_sim_time": True},
    ]
    assert dict(plan.remappings)["right/image_rect"] == "/camera/camera/infra2/image_rect_raw"
    assert plan.namespace == "robot1"
    assert plan.ros_arguments == ["--log-level", "debug"]


def test_plan_explicit_namespaces_beat_the_preset():
    plan = build_launch_plan({"camera": "zed", "left_namespace": "/zedm/zed_node/left",
                              "right_namespace": "/zedm/zed_node/right"}, SHARE)
    remaps = dict(plan.remappings)
    assert remaps["left/image_rect"] == "/zedm/zed_node/left/image_rect_color"
    assert remaps["right/camera_info"] == "/zedm/zed_node/right/camera_info"


def test_plan_rviz_gets_config_and_fixed_frame(rviz2_installed, tmp_path):
    plan = build_launch_plan({"use_rviz": "True", "camera": "realsense_d4xx"}, SHARE)
    assert plan.rviz_arguments == [
        "-d", os.path.join(SHARE, "rviz", "s2m2_stereo.rviz"),
        "-f", "camera_infra1_optical_frame"]
    mine = tmp_path / "x.rviz"
    mine.write_text("")
    plan = build_launch_plan({"use_rviz": "1", "fixed_frame": "stereo_left",
                              "rviz_config": str(mine)}, SHARE)
    assert plan.rviz_arguments == ["-d", str(mine), "-f", "stereo_left"]


def test_plan_rejects_a_missing_rviz_config(rviz2_installed, tmp_path):
    with pytest.raises(ValueError, match="rviz_config: .*nothing.rviz does not exist"):
        build_launch_plan({"use_rviz": "true", "rviz_config": str(tmp_path / "nothing.rviz")},
                          SHARE)


def test_use_rviz_without_rviz2_fails_before_anything_starts(rviz2_missing):
    with pytest.raises(ValueError) as error:
        build_launch_plan({"use_rviz": "true"}, SHARE)
    message = str(error.value)
    assert "\n" not in message
    assert "rviz2 is not installed" in message
    assert "use_rviz:=false" in message
    # Without use_rviz the same environment launches the node.
    assert build_launch_plan({"use_rviz": "false"}, SHARE).rviz_arguments is None


def test_package_executable_follows_the_ament_index(tmp_path, monkeypatch):
    from conftest import make_ament_prefix

    first = make_ament_prefix(tmp_path / "first", "tool_pkg", {"tool": "true"})
    second = make_ament_prefix(tmp_path / "second", "tool_pkg", {"tool": "true", "other": "true"})
    (first / "lib" / "tool_pkg" / "plain_file").write_text("not executable")
    monkeypatch.setenv("AMENT_PREFIX_PATH", os.pathsep.join([str(first), str(second)]))
    # The first prefix in the path that has the package wins, as in ros2 run.
    assert launch_config.package_executable("tool_pkg", "tool") == str(
        first / "lib" / "tool_pkg" / "tool")
    assert launch_config.package_executable("tool_pkg", "other") is None
    assert launch_config.package_executable("tool_pkg", "plain_file") is None
    assert launch_config.package_executable("no_such_pkg", "tool") is None
    monkeypatch.delenv("AMENT_PREFIX_PATH")
    assert launch_config.package_executable("tool_pkg", "tool") is None


@pytest.mark.parametrize(("arguments", "words"), [
    ({"camera": "kinect"}, "realsense_d4xx"),
    ({"params_file": "/nonexistent/params.yaml"}, "does not exist"),
    ({"model": "XXL"}, "S, M, L, XL"),
    ({"use_rviz": "sure"}, "use_rviz"),
    ({"log_level": "loud"}, "log_level"),
    ({"modle": "S"}, "unknown launch arguments: modle"),
])
def test_plan_rejects_bad_arguments(arguments, words):
    with pytest.raises(ValueError) as error:
        build_launch_plan(arguments, SHARE)
    assert words in str(error.value)


@pytest.mark.parametrize("camera", sorted(CAMERA_PRESETS))
def test_every_preset_file_is_packaged(camera):
    preset = CAMERA_PRESETS[camera]
    if preset.params_file:
        assert (REPO / "config" / preset.params_file).is_file()
    plan = build_launch_plan({"camera": camera}, SHARE)
    assert all(os.path.isfile(path) for path in plan.parameters if isinstance(path, str))


# ---- config/*.yaml ------------------------------------------------------------------------

def load_parameters(path: Path) -> tuple[str, dict]:
    document = yaml.safe_load(path.read_text())
    assert isinstance(document, dict) and len(document) == 1, path.name
    [(node_key, body)] = document.items()
    assert node_key in ("/**", "s2m2_stereo"), f"{path.name}: top-level key {node_key!r}"
    assert isinstance(body, dict) and list(body) == ["ros__parameters"], path.name
    return node_key, parameters._flatten(body["ros__parameters"])


def test_there_are_config_files():
    names = {path.name for path in CONFIG_FILES}
    assert {"s2m2_stereo.yaml", "realsense_d4xx.yaml", "zed.yaml",
            "usb_stereo_pair.yaml"} <= names


@pytest.mark.parametrize("path", CONFIG_FILES, ids=lambda path: path.name)
def test_config_file_has_known_parameters_in_range(path):
    _node_key, parameters = load_parameters(path)
    assert parameters, path.name
    presets = [p for p in CAMERA_PRESETS.values() if p.params_file == path.name]
    # QoS overrides are keyed by the resolved topic: it must be one the preset remaps to.
    remapped = {target for preset in presets for _source, target in topic_remappings(
        preset.left_namespace, preset.right_namespace, preset.image_topic)}
    for name, value in parameters.items():
        if name.startswith("qos_overrides."):
            assert validate_parameter(name, value) == value, name
            topic = name.split(".")[1]
            assert topic in remapped, f"{path.name}: {topic} is not an input of its preset"
            continue
        spec = PARAMETERS_BY_NAME.get(name)
        assert spec is not None, f"{path.name}: unknown parameter {name}"
        # ROS reads YAML types as they are: 1 is an integer and fails a double parameter.
        assert type(value) is spec.type, f"{path.name}: {name} must be a {spec.type.__name__}"
        assert validate_parameter(name, value) == value, name


def test_default_config_documents_every_parameter():
    path = REPO / "config" / "s2m2_stereo.yaml"
    _node_key, parameters = load_parameters(path)
    assert set(parameters) == EXPECTED_PARAMETERS
    for spec in NODE_PARAMETERS:
        assert parameters[spec.name] == spec.default, f"{spec.name}: file and table disagree"

    lines = path.read_text().splitlines()
    for spec in NODE_PARAMETERS:
        [index] = [i for i, line in enumerate(lines) if line.strip().startswith(spec.name + ":")]
        comment = []
        above = index - 1
        while above >= 0 and lines[above].strip().startswith("#"):
            comment.insert(0, lines[above].strip().lstrip("#").strip())
            above -= 1
        text = " ".join(comment)
        assert len(text) > 20, f"{spec.name} has no comment of its own"
        if spec.unit:
            assert f"[{spec.unit}" in text, f"{spec.name}: the comment gives no [{spec.unit}]"


# ---- rviz ---------------------------------------------------------------------------------------

def test_rviz_config_shows_the_outputs():
    config = yaml.safe_load((REPO / "rviz" / "s2m2_stereo.rviz").read_text())
    manager = config["Visualization Manager"]
    assert manager["Global Options"]["Fixed Frame"] == CAMERA_PRESETS["generic"].fixed_frame
    displays = manager["Displays"]
    assert all(d["Class"].startswith("rviz_default_plugins/") for d in displays)
    clouds = [d for d in displays if d["Class"] == "rviz_default_plugins/PointCloud2"]
    assert len(clouds) == 1
    assert clouds[0]["Topic"]["Value"] == "points2"
    assert clouds[0]["Color Transformer"] == "RGB8"
    images = {d["Topic"]["Value"] for d in displays
              if d["Class"] == "rviz_default_plugins/Image"}
    assert images == {"depth", "confidence", "occlusion"}
    # Relative topics: rviz2 runs in the node's namespace and resolves them there.
    assert not any(d.get("Topic", {}).get("Value", "x").startswith("/") for d in displays)
    assert config["Visualization Manager"]["Views"]["Current"]["Class"] == (
        "rviz_default_plugins/Orbit")


# ---- the files as rclpy reads them ----------------------------------------------------------

@pytest.mark.parametrize("camera", sorted(CAMERA_PRESETS))
def test_preset_files_load_into_an_rclpy_node(camera):
    """What `ros2 launch` hands the node: the files in order, the remaps, REP 2003 QoS."""
    rclpy = pytest.importorskip("rclpy", reason="rclpy is needed to load parameter files")
    from rclpy.qos import ReliabilityPolicy
    from rclpy.qos_overriding_options import QoSOverridingOptions
    from sensor_msgs.msg import Image

    plan = build_launch_plan({"camera": camera, "namespace": "robot"}, SHARE)
    files = [path for path in plan.parameters if isinstance(path, str)]
    cli_args = ["--ros-args"]
    for path in files:
        cli_args += ["--params-file", path]
    for source, target in plan.remappings:
        cli_args += ["-r", f"{source}:={target}"]
    expected: dict = {}
    for path in files:
        expected.update(load_parameters(Path(path))[1])

    context = rclpy.Context()
    rclpy.init(context=context)
    try:
        node = rclpy.create_node("s2m2_stereo", namespace=plan.namespace, context=context,
                                 cli_args=cli_args)
        for spec in NODE_PARAMETERS:
            # Raises if a file gives a value of another type than the declaration.
            value = node.declare_parameter(spec.name, spec.default).value
            assert value == expected[spec.name], spec.name
        for source, target in plan.remappings:
            subscription = node.create_subscription(
                Image, source, lambda message: None, 5,
                qos_overriding_options=QoSOverridingOptions.with_default_policies())
            assert subscription.topic_name == (target if target.startswith("/")
                                               else f"/robot/{target}")
            override = expected.get(f"qos_overrides.{subscription.topic_name}"
                                    ".subscription.reliability")
            wanted = (ReliabilityPolicy.BEST_EFFORT if override == "best_effort"
                      else ReliabilityPolicy.RELIABLE)
            assert subscription.qos_profile.reliability == wanted, target
        node.destroy_node()
    finally:
        rclpy.shutdown(context=context)
