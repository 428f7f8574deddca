"""Image jobs through the renderer pool, and photo → quote latency.

(1) Paid jobs/s with the Gemini stand-in answering every image call after a fixed latency L and
RENDER_CONCURRENCY = N, against the ideal N/L in the same run. The pool keeps one worker free for
analyses (quotes never wait behind renders), so (N-1)/L is also printed.
(2) Photo → quote latency p50/p99, one photo at a time, on the local analysis (OCR) path.
"""

from __future__ import annotations

import time

from bench.common import header, launcher, parser, percentile
from standins.fake_gemini import FakeGemini, FaultSpec
from tests.e2e.test_image_job import ASK_EMAIL, pay, send_photo, texts
from tests.harness import photo_png, wait_for

LATENCY_S = 0.5
WORKERS = 4


def throughput(jobs: int) -> None:
    """Pay `jobs` quoted jobs at once; jobs/s until the last result reached its customer."""
    with FakeGemini() as fake:
        fake.add_faults([FaultSpec(kind="slow", delay_s=LATENCY_S) for _ in range(jobs * 2)], model="image")
        shop = launcher({"GEMINI_API_KEY": "bench-key", "GEMINI_BASE_URL": fake.base_url, "DEBOUNCE_S": "0.1",
                         "RENDER_CONCURRENCY": str(WORKERS)})
        try:
            customers = [f"rb_{i}" for i in range(jobs)]
            for i, c in enumerate(customers):
                send_photo(shop, c, photo_png(seed=i, size=(320, 240)))
            for c in customers:
                wait_for(lambda c=c: any("元" in t for t in texts(shop, c)), 120, 0.1, f"{c}'s quote")
            started = time.monotonic()
            for c in customers:
                pay(shop, c)
            for c in customers:
                wait_for(lambda c=c: ASK_EMAIL in texts(shop, c), 300, 0.05, f"{c}'s result")
            took = time.monotonic() - started
        finally:
            shop.stop()
        calls = [r for r in fake.requests() if r["kind"] == "image"]
    rate, ideal, reserved = jobs / took, WORKERS / LATENCY_S, (WORKERS - 1) / LATENCY_S
    print(f"paid jobs {jobs}, N={WORKERS} workers, image call latency L={LATENCY_S}s: {took:.2f} s, "
          f"{rate:.2f} jobs/s; image calls {len(calls)}")
    print(f"ideal N/L {ideal:.2f} jobs/s: ratio {rate / ideal:.2f} (goal >= 0.9); "
          f"renders get N-1 workers: (N-1)/L {reserved:.2f} jobs/s, ratio {rate / reserved:.2f}")


def quote_latency(photos: int) -> None:
    """One photo at a time, local analysis: upload → quote delivered."""
    shop = launcher({"DEBOUNCE_S": "0"})
    try:
        times = []
        for i in range(photos):
            c = f"ql_{i}"
            png = photo_png(seed=100 + i)
            started = time.monotonic()
            send_photo(shop, c, png)
            wait_for(lambda c=c: any("元" in t for t in texts(shop, c)), 60, 0.01, f"{c}'s quote")
            times.append(time.monotonic() - started)
    finally:
        shop.stop()
    ms = [t * 1000 for t in times]
    print(f"photo -> quote ({photos} photos of 640x480, DEBOUNCE_S=0, local analysis + OCR): "
          f"p50 {percentile(ms, 50):.0f} ms, p99 {percentile(ms, 99):.0f} ms")


def main() -> None:
    """Run both measurements."""
    args = parser(__doc__ or "").parse_args()
    header("bench/render.py")
    throughput(2 if args.quick else WORKERS * 6)
    quote_latency(2 if args.quick else 30)


if __name__ == "__main__":
    main()
