"""Rewrite the ROS wheels' exported CMake files for this interpreter: they hard-code the wheel build machine's
Python and numpy include directories (/opt/python/cp311-cp311/...).

Usage: PYTHON scripts/fix_cmake_paths.py VENV   (PYTHON: the venv's interpreter, which has numpy)
Used by scripts/setup.sh and test/test_colcon_workspace.py.
"""

import pathlib
import sys
import sysconfig

import numpy

BUILD_MACHINE_PATHS = {
    "/opt/python/cp311-cp311/lib/python3.11/site-packages/numpy/_core/include": numpy.get_include(),
    "/opt/python/cp311-cp311/include/python3.11": sysconfig.get_paths()["include"],
}


def fix(venv: pathlib.Path) -> int:
    """Rewrite every share/*/cmake/*.cmake under ``venv``; returns how many files changed."""
    changed = 0
    for path in venv.glob("share/*/cmake/*.cmake"):
        text = path.read_text()
        new = text
        for old, replacement in BUILD_MACHINE_PATHS.items():
            new = new.replace(old, replacement)
        if new != text:
            path.write_text(new)
            changed += 1
    return changed


if __name__ == "__main__":
    print(f"fix_cmake_paths: {fix(pathlib.Path(sys.argv[1]))} file(s) rewritten")
