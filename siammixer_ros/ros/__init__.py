"""The ROS 2 node (node.py, rclpy) and its ROS-free helpers: image conversion, session logic, diagnostics,
statistics, parameters, target selection, debug drawing."""
