"""Evaluation toolkit: dataset readers, one-pass runner, numpy metrics, reports and peer trackers.

Entry point: ``siammixer-eval`` (``python -m siammixer_ros.eval.cli``). Nothing here imports torch or rclpy.
"""
