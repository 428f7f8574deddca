"""Seconds and peak memory per order, by operation and photo size, and the keyed path's local share.

(1) Local path (no key): each operation on a real photo (the coffee cup of tests/photos.py, resized) at 0.3, 1 and 4 MP,
each in a fresh process (so its peak RSS is that operation's alone, the U²-Net and OCR models included): spec,
finish, write, contract check — what a render worker does for one attempt, minus the quality check.
(2) Keyed path: for each operation the model has a part in, the stand-in's answer time (real google-genai SDK,
loopback) beside the local finishing that follows it; the ratio says how much of an attempt is ours.
"""

from __future__ import annotations

import io
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench.common import header, parser

OPERATIONS = ("enhance", "resize", "fix_old_photo", "remove_bg", "layered", "vectorize")
SIZES_MP = (0.3, 1.0, 4.0)


def _photo(mp: float, into: Path) -> Path:
    """The coffee photo resampled to about `mp` megapixels (its 3:2 shape kept), as a JPEG."""
    from PIL import Image

    from tests import photos

    img = photos.PRODUCT.open().convert("RGB")
    scale = (mp * 1e6 / (img.width * img.height)) ** 0.5
    img = img.resize((round(img.width * scale), round(img.height * scale)), Image.Resampling.LANCZOS)
    path = into / f"coffee-{mp:g}mp.jpg"
    img.save(path, "JPEG", quality=92)
    return path


def one(operation: str, mp: float) -> dict[str, float]:
    """Run one local render in this process: seconds and this process's peak RSS (MB)."""
    from core.render_spec import render_spec
    from imaging import contract, pipeline
    from protocol.image import Operation, RenderRequest

    with tempfile.TemporaryDirectory(prefix="bench-op-") as tmp:
        src = _photo(mp, Path(tmp))
        request = RenderRequest(job_id="b", customer_id="b", render_id="b-r1", source_path=str(src),
                                operation=Operation(operation))
        started = time.perf_counter()
        photo = pipeline.load_photo(src)
        spec = render_spec(request, pipeline.measure(photo), keyed=False)
        made = pipeline.write(spec, pipeline.finish(spec, photo, None, ()), Path(tmp) / "out", "b-r1-1")
        contract.check(made.path, spec)
        took = time.perf_counter() - started
    return {"seconds": took, "peak_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}


def local_table(operations: tuple[str, ...], sizes: tuple[float, ...]) -> None:
    """Each operation × size in a child process; one line each."""
    print("local path: seconds (peak RSS of the process, models included)")
    for operation in operations:
        cells = []
        for mp in sizes:
            out = subprocess.run([sys.executable, "-m", "bench.operations", "--one", operation, str(mp)],
                                 capture_output=True, text=True, timeout=600, check=True)
            got = json.loads(out.stdout.strip().splitlines()[-1])
            cells.append(f"{mp:g} MP {got['seconds']:.2f} s ({got['peak_mb']:.0f} MB)")
        print(f"  {operation:14s} " + " | ".join(cells), flush=True)


def keyed(mp: float, operations: tuple[str, ...] | None = None) -> None:
    """The stand-in's answer time beside the local finishing, per model operation, at `mp` megapixels."""
    from PIL import Image

    from core.render_prompt import render_prompt
    from core.render_spec import MODEL_OPERATIONS, render_spec
    from imaging import contract, pipeline
    from integrations.gemini import GeminiClient
    from protocol.image import Operation, RenderRequest
    from standins.fake_gemini import FakeGemini

    print(f"keyed path at {mp:g} MP: the stand-in's answer (loopback, real SDK) beside our local finishing")
    with tempfile.TemporaryDirectory(prefix="bench-keyed-") as tmp, FakeGemini() as fake, \
            GeminiClient("bench", fake.base_url, "gemini-image", "gemini-text", 60) as client:
        src = _photo(mp, Path(tmp))
        for operation in operations or sorted(MODEL_OPERATIONS):
            request = RenderRequest(job_id="b", customer_id="b", render_id="b-r1", source_path=str(src),
                                    operation=Operation(operation))
            started = time.perf_counter()
            photo = pipeline.load_photo(src)
            spec = render_spec(request, pipeline.measure(photo), keyed=True)
            given, mime = pipeline.model_input(spec, photo)
            prepared = time.perf_counter()
            image, _ = client.render(given, mime, render_prompt(spec.operation, spec.model_ratio or "1:1", False,
                                                                (), ()), spec.model_ratio or "1:1")
            answered = time.perf_counter()
            with Image.open(io.BytesIO(image)) as opened:
                opened.load()
                made = pipeline.write(spec, pipeline.finish(spec, photo, opened, ()), Path(tmp) / "out", operation)
            contract.check(made.path, spec)
            ours = (prepared - started) + (time.perf_counter() - answered)
            model = answered - prepared
            print(f"  {operation:14s} stand-in {model:.2f} s, local before+after {ours:.2f} s: "
                  f"ratio local/stand-in {ours / model:.2f}", flush=True)


def main() -> None:
    """Run both measurements (or, with --one, a single local render for the parent to read)."""
    p = parser(__doc__ or "")
    p.add_argument("--one", nargs=2, metavar=("OPERATION", "MP"),
                   help="run one local render and print its figures as JSON (each cell of the table)")
    args = p.parse_args()
    if args.one:
        print(json.dumps(one(args.one[0], float(args.one[1]))))
        return
    header("bench/operations.py")
    if args.quick:  # proves the script runs: the heaviest local operation (U²-Net, OCR, inpaint), one keyed
        local_table(("layered",), (0.3,))
        keyed(0.3, ("enhance",))
    else:
        local_table(OPERATIONS, SIZES_MP)
        keyed(1.0)


if __name__ == "__main__":
    main()
