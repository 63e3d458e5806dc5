"""Compile the optional C scanner, edge_personalize/_speedups.c, into the wheel.

Where no C compiler or no Python headers are at hand, the wheel is built without it and
edge_personalize.rewriter uses its pure-Python scanner, with the same output. An editable
install (`pip install -e .`) compiles it next to the source, where the checkout imports it:
install again after editing the C source.
"""

from __future__ import annotations

import shutil
import tempfile
from pathlib import Path
from typing import Any

from hatchling.builders.hooks.plugin.interface import BuildHookInterface

EXTENSION = "edge_personalize._speedups"
SOURCE = Path("edge_personalize", "_speedups.c")


class SpeedupsBuildHook(BuildHookInterface):
    PLUGIN_NAME = "custom"

    def initialize(self, version: str, build_data: dict[str, Any]) -> None:
        self._work = Path(tempfile.mkdtemp(prefix="edge-personalize-build-"))
        built = self._compile()
        if built is None:
            return
        if version == "editable":
            shutil.copyfile(built, Path(self.root, "edge_personalize", built.name))
            return
        build_data["force_include"][str(built)] = f"edge_personalize/{built.name}"
        build_data["pure_python"] = False
        build_data["infer_tag"] = True

    def finalize(self, version: str, build_data: dict[str, Any], artifact_path: str) -> None:
        shutil.rmtree(self._work, ignore_errors=True)

    def _compile(self) -> Path | None:
        try:
            from setuptools import Distribution, Extension
            from setuptools.command.build_ext import build_ext
            from setuptools.errors import BaseError, CCompilerError
        except ImportError as exc:
            self._skipped(f"setuptools is needed to compile it ({exc})")
            return None
        extension = Extension(EXTENSION, [str(Path(self.root, SOURCE))])
        command = build_ext(Distribution({"name": "edge-personalize", "ext_modules": [extension]}))
        command.build_lib = str(self._work / "lib")
        command.build_temp = str(self._work / "temp")
        try:
            command.ensure_finalized()
            command.run()
        except (BaseError, CCompilerError, OSError) as exc:
            self._skipped(str(exc))
            return None
        return Path(command.get_ext_fullpath(EXTENSION))

    def _skipped(self, reason: str) -> None:
        self.app.display_warning(
            f"{EXTENSION} was not built: {reason}. The rewriter will use its pure-Python scanner (same output, slower)."
        )
