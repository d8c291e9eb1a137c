"""A ROS 2 node run as a separate process by test_ros_environment.py.

- answers every sensor_msgs/Image on <ns>/image with a vision_msgs/Detection2DArray on <ns>/detections: one
  detection whose box covers the whole image, id = the image's frame_id, class_id = "sum=<sum of the pixel bytes>"
  (so the test can tell the pixels arrived intact);
- serves siammixer_interfaces/srv/SetTarget on <ns>/set_target: accepts a box with positive size, rejects others
  with a message saying why, and numbers accepted targets 1, 2, ...
Prints READY when its endpoints exist; stops cleanly on SIGTERM.
"""

from __future__ import annotations

import argparse
import math
import sys

from rclpy.node import Node
from ros_helpers import run_until_signalled
from sensor_msgs.msg import Image
from siammixer_interfaces.srv import SetTarget
from vision_msgs.msg import Detection2D, Detection2DArray, ObjectHypothesisWithPose


def make_peer(namespace: str) -> Node:
    class Peer(Node):
        def __init__(self) -> None:
            super().__init__("ros_peer")
            self.detections = self.create_publisher(Detection2DArray, f"{namespace}/detections", 10)
            self.create_subscription(Image, f"{namespace}/image", self.on_image, 10)
            self.create_service(SetTarget, f"{namespace}/set_target", self.on_set_target)
            self.targets_set = 0

        def on_image(self, image: Image) -> None:
            detection = Detection2D()
            detection.header = image.header
            detection.id = image.header.frame_id
            detection.bbox.center.position.x = image.width / 2.0
            detection.bbox.center.position.y = image.height / 2.0
            detection.bbox.size_x = float(image.width)
            detection.bbox.size_y = float(image.height)
            hypothesis = ObjectHypothesisWithPose()
            hypothesis.hypothesis.class_id = f"sum={sum(bytes(image.data))}"
            hypothesis.hypothesis.score = 1.0
            detection.results.append(hypothesis)
            out = Detection2DArray(header=image.header, detections=[detection])
            self.detections.publish(out)

        def on_set_target(self, request: SetTarget.Request, response: SetTarget.Response) -> SetTarget.Response:
            values = (request.x, request.y, request.width, request.height)
            if not all(math.isfinite(v) for v in values):
                response.success = False
                response.message = f"box {values} has a value that is not a finite number"
            elif request.width <= 0 or request.height <= 0:
                response.success = False
                response.message = f"box {request.width:g}x{request.height:g} has zero or negative size"
            else:
                self.targets_set += 1
                response.success = True
                response.track_id = self.targets_set
                response.frame_stamp = request.stamp
                response.used_x, response.used_y = request.x, request.y
                response.used_width, response.used_height = request.width, request.height
                response.message = f"tracking '{request.label}' as track {self.targets_set}"
            return response

    return Peer()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--namespace", required=True)
    args = parser.parse_args(argv)
    return run_until_signalled(lambda: [make_peer(args.namespace)])


if __name__ == "__main__":
    sys.exit(main())
