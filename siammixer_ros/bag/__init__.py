"""Rosbag tools: make a bag from a sequence, read it back, evaluate offline or by live replay.

Everything that only reads or writes bags uses ``rosbags`` (pure Python, no ROS install needed);
only :mod:`player`, :mod:`recorder` and :mod:`live_eval` import rclpy.
"""
