"""Start the SiamMixer tracker node.

    ros2 launch siammixer_ros tracker.launch.py image_topic:=/camera/image_raw model:=/data/siammixer_s.onnx
    ros2 launch siammixer_ros tracker.launch.py image_topic:=/camera/image_raw namespace:=uav1 \
        params_file:=$(ros2 pkg prefix siammixer_ros)/share/siammixer_ros/config/tracker_arm.yaml

Arguments:
  params_file   node parameters (default: the installed config/tracker.yaml; config/tracker_arm.yaml for a small
                ARM companion computer)
  model         SiamMixer ONNX model file (default empty: the installed models/siammixer_s.onnx)
  image_topic   camera topic remapped onto the node's `image` input; with input_type compressed (a parameter in
                params_file) the node reads <image_topic>/compressed, image_transport's naming
  namespace     namespace of the node (its topics and services move with it)
  use_sim_time  true when replaying a rosbag with --clock
  log_level     debug, info, warn, error
  lifecycle     true: start the lifecycle (managed) node siammixer_tracker_lifecycle, which waits unconfigured for
                `ros2 lifecycle set <node> configure` and `activate` (docs/node.md); false (default): the plain node
"""

import os

from ament_index_python.packages import get_package_share_directory
from launch import LaunchDescription
from launch.actions import DeclareLaunchArgument
from launch.conditions import IfCondition, UnlessCondition
from launch.substitutions import LaunchConfiguration, PythonExpression
from launch_ros.actions import Node

PACKAGE = "siammixer_ros"


def generate_launch_description() -> LaunchDescription:
    share = get_package_share_directory(PACKAGE)
    image_topic = LaunchConfiguration("image_topic")
    lifecycle = LaunchConfiguration("lifecycle")
    use_sim_time = PythonExpression(["'", LaunchConfiguration("use_sim_time"), "'.lower() in ('true', '1')"])
    # The plain node or the lifecycle one (launch argument lifecycle), with the same settings.
    node = dict(
        name="siammixer_tracker",
        namespace=LaunchConfiguration("namespace"),
        # The model comes from the launch argument (the parameter files leave model_path out).
        parameters=[LaunchConfiguration("params_file"),
                    {"model_path": LaunchConfiguration("model"), "use_sim_time": use_sim_time}],
        # The compressed input follows: the node reads <remapped image topic>/compressed (image_transport).
        remappings=[("image", image_topic)],
        arguments=["--ros-args", "--log-level", LaunchConfiguration("log_level")],
        output="screen",
        emulate_tty=True,
    )
    return LaunchDescription([
        DeclareLaunchArgument("params_file", default_value=os.path.join(share, "config", "tracker.yaml"),
                              description="Node parameter file (config/tracker.yaml or config/tracker_arm.yaml)"),
        DeclareLaunchArgument("model", default_value="",
                              description="SiamMixer ONNX model file; empty: the installed models/siammixer_s.onnx"),
        DeclareLaunchArgument("image_topic", default_value="/camera/image_raw",
                              description="Camera image topic (raw; compressed input reads <image_topic>/compressed)"),
        DeclareLaunchArgument("namespace", default_value="", description="Namespace of the node"),
        DeclareLaunchArgument("use_sim_time", default_value="false", description="Use /clock (rosbag play --clock)"),
        DeclareLaunchArgument("log_level", default_value="info", description="Logging level"),
        DeclareLaunchArgument("lifecycle", default_value="false",
                              description="true: the lifecycle node (configure, activate with ros2 lifecycle)"),
        Node(package=PACKAGE, executable="siammixer_tracker", condition=UnlessCondition(lifecycle), **node),
        Node(package=PACKAGE, executable="siammixer_tracker_lifecycle", condition=IfCondition(lifecycle), **node),
    ])
