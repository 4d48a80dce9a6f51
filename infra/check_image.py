"""Build-time checks of the cluster image, run by ``infra/Dockerfile``; needs no GPU.

Fails the build, naming the reason, where the image would otherwise fail only later on a GPU node:
Ray not at the ``constraints.txt`` pin, torch not a CUDA 12 build, the cuDNN of torch's wheel not
version 9 or not on the loader path ctranslate2 uses, ctranslate2 older than 4.5, the project or
its job entrypoint missing.
"""

from __future__ import annotations

import importlib.metadata as metadata
import importlib.util
import os
import re
import sys
from pathlib import Path

__all__ = ["main", "problems"]

PROJECT = Path(__file__).resolve().parent.parent
# CTranslate2 >= 4.5 needs CUDA 12 and cuDNN 9; torch must bring the same cuDNN major.
CUDA_MAJOR = "12"
CUDNN_MAJOR = 9
MIN_CTRANSLATE2 = (4, 5)
CU12_TORCH_HINT = "install torch from a CUDA 12 index (https://download.pytorch.org/whl/cu12x)"


def pinned_version(package: str, constraints: Path) -> str | None:
    """The ``package==X`` pin in a constraints file, or None."""
    for line in constraints.read_text().splitlines():
        match = re.fullmatch(rf"{re.escape(package)}==(\S+)", line.split("#")[0].strip())
        if match:
            return match.group(1)
    return None


def version_tuple(version: str) -> tuple[int, ...]:
    """Leading numeric release of a version string: ``"4.8.5"`` -> ``(4, 8, 5)``."""
    return tuple(int(part) for part in re.findall(r"\d+", version.split("+")[0])[:3])


def _lib_dir(package: str) -> Path | None:
    """The ``lib`` folder of an ``nvidia.*`` pip package (a namespace package), if installed."""
    try:
        spec = importlib.util.find_spec(package)
    except ModuleNotFoundError:
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "lib"


def _cuda_problems() -> list[str]:
    import torch

    found = []
    cuda = torch.version.cuda
    if cuda is None or cuda.split(".")[0] != CUDA_MAJOR:
        found.append(
            f"torch {torch.__version__} is built for CUDA {cuda}; ctranslate2 needs CUDA "
            f"{CUDA_MAJOR} and the same cuDNN as torch: {CU12_TORCH_HINT}"
        )
    try:
        cudnn = metadata.version(f"nvidia-cudnn-cu{CUDA_MAJOR}")
    except metadata.PackageNotFoundError:
        found.append(f"nvidia-cudnn-cu{CUDA_MAJOR} (torch's cuDNN) is not installed")
    else:
        if version_tuple(cudnn)[:1] != (CUDNN_MAJOR,):
            found.append(f"torch's cuDNN is {cudnn}; ctranslate2 >= 4.5 needs cuDNN {CUDNN_MAJOR}")
    loader_path = os.environ.get("LD_LIBRARY_PATH", "").split(":")
    for package in ("nvidia.cudnn", "nvidia.cublas"):
        lib = _lib_dir(package)
        if lib is None or not lib.is_dir():
            found.append(f"{package} has no lib folder: is torch's CUDA wheel installed?")
        elif str(lib) not in loader_path:
            found.append(f"{lib} is not on LD_LIBRARY_PATH, so ctranslate2 would not find it")
    return found


def problems() -> list[str]:
    """Everything wrong with the current environment as a cluster image; empty when all is well."""
    found = []
    ray_pin = pinned_version("ray", PROJECT / "constraints.txt")
    ray_version = metadata.version("ray")
    if ray_version != ray_pin:
        found.append(f"ray {ray_version} installed, constraints.txt pins {ray_pin}")
    ctranslate2 = metadata.version("ctranslate2")
    if version_tuple(ctranslate2) < MIN_CTRANSLATE2:
        found.append(f"ctranslate2 {ctranslate2} is older than 4.5")
    found.extend(_cuda_problems())
    if importlib.util.find_spec("speech_emotion") is None:
        found.append("the speech_emotion package is not installed")
    if not (PROJECT / "jobs" / "annotate.py").is_file():
        found.append(f"{PROJECT / 'jobs' / 'annotate.py'} is missing")
    return found


def main() -> int:
    found = problems()
    for problem in found:
        print(f"check_image: {problem}", file=sys.stderr)
    if not found:
        print(f"check_image: ok ({PROJECT})")
    return 1 if found else 0


if __name__ == "__main__":
    sys.exit(main())
