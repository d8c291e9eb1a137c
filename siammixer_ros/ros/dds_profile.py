"""The project's Fast DDS profile (config/fastdds_localhost.xml) and the environment variables that select it.

Fast DDS 3.x (ROS 2 Kilted and later) reads ``FASTDDS_DEFAULT_PROFILES_FILE``; Fast DDS 2.x (Jazzy, Humble) reads
only ``FASTRTPS_DEFAULT_PROFILES_FILE``. With just one of them set, the other distribution silently runs on Fast
DDS's defaults: a 512 KiB shared-memory segment, so 640x480 bgr8 frames go over fragmented UDP and most are lost
(8-11 of 100 arrived on Jazzy). Everything here therefore sets both, to the same file. No rclpy import.
"""

from __future__ import annotations

from collections.abc import MutableMapping
from pathlib import Path

PROFILE_PATH = Path(__file__).resolve().parents[2] / "config" / "fastdds_localhost.xml"
PROFILE_VARIABLES = ("FASTDDS_DEFAULT_PROFILES_FILE", "FASTRTPS_DEFAULT_PROFILES_FILE")


def profile_environment(profile: Path = PROFILE_PATH) -> dict[str, str]:
    """Both profile variables pointing at ``profile`` (to put into a child process's environment)."""
    return dict.fromkeys(PROFILE_VARIABLES, str(profile))


def set_profile_defaults(env: MutableMapping[str, str], profile: Path = PROFILE_PATH) -> None:
    """Make both variables name one profile, keeping a user's choice: a profile named in either variable is used
    for both; with neither set, ``profile`` (when it exists; an installed package may not ship config/)."""
    chosen = next((env[name] for name in PROFILE_VARIABLES if env.get(name)), None)
    if chosen is None and profile.is_file():
        chosen = str(profile)
    if chosen is not None:
        for name in PROFILE_VARIABLES:
            if not env.get(name):
                env[name] = chosen
