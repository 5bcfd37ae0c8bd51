"""PEP 517 build backend: maturin, defaulting to a manylinux wheel.

`pip wheel .` and `pip install .` run maturin's backend, which on its own
tags the wheel for this machine only (`linux_x86_64`: no package index takes
it, and pip on another machine may refuse it). Unless told otherwise
(MATURIN_PEP517_ARGS, or `--config-settings maturin.build-args=...`), this
backend asks maturin for manylinux_2_28 and links with zig (the `ziglang`
package, a build requirement), which targets glibc 2.28 whatever the build
machine's glibc is. Everything else is maturin's.
"""

import os
import sys

import maturin
from maturin import *  # noqa: F401,F403 - the rest of the PEP 517 hooks

MANYLINUX_ARGS = "--zig --compatibility manylinux_2_28"


def _manylinux_by_default(config_settings):
    given = config_settings and (config_settings.get("maturin.build-args")
                                 or config_settings.get("build-args"))
    if not given and not os.environ.get("MATURIN_PEP517_ARGS"):
        os.environ["MATURIN_PEP517_ARGS"] = MANYLINUX_ARGS
    # maturin runs `python -m ziglang`; the build requirement is importable
    # by this interpreter (pip's build environment), not by any python3.
    os.environ.setdefault("CARGO_ZIGBUILD_PYTHON_PATH", sys.executable)


def build_wheel(wheel_directory, config_settings=None, metadata_directory=None):
    _manylinux_by_default(config_settings)
    return maturin.build_wheel(wheel_directory, config_settings, metadata_directory)
