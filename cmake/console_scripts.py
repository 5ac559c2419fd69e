# SPDX-License-Identifier: Apache-2.0
"""Print setup.py's console scripts, one `name=module:function` a line, for CMakeLists.txt.

colcon builds the package with CMake, pip with setup.py; both install the same launchers
because CMake reads the list from setup.py (without running it) through this script.
"""

import ast
import sys


def console_scripts(setup_py: str) -> list[str]:
    """The `entry_points={"console_scripts": [...]}` entries of a setup.py, normalised."""
    with open(setup_py, encoding="utf-8") as source:
        tree = ast.parse(source.read(), setup_py)
    for node in ast.walk(tree):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            entries = ast.literal_eval(node.value)["console_scripts"]
            return ["=".join(part.strip() for part in entry.split("=", 1)) for entry in entries]
    raise SystemExit(f"{setup_py}: no entry_points with console_scripts")


if __name__ == "__main__":
    print("\n".join(console_scripts(sys.argv[1])))
