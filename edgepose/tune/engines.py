"""The bench engine a tuning candidate runs in: edgepose's pipeline with scales, flip and workers.

``workers`` > 1 runs that many frames at once on one estimator (as ``edgepose run --workers`` does:
one session called from several threads); a step then reads ``workers`` frames one after the other
(as the stream's capture thread does) and infers them together, and each sample is one frame's
share of the step's wall time (``total``) and CPU time (``cpu``), so that 1000 / mean ``total`` is
the throughput in frames per second; ``latency`` is one frame's own time from read to people.

Engines run inside :mod:`edgepose.bench.worker` processes (``module="edgepose.tune.engines"``).
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

from edgepose.bench.engines import MS, Engine, FrameLoop, Pipeline, now, set_cv_threads

__all__ = ["TunePipeline", "ENGINES"]


class TunePipeline(Pipeline):
    """Spec: model, device, threads, size, scales, flip, workers, source, frames (limit)."""

    kind = "tune"

    def __init__(self, spec: dict) -> None:
        Engine.__init__(self, spec)
        from edgepose.runner import PoseEstimator

        threads = spec.get("threads")
        self.workers = max(1, int(spec.get("workers") or 1))
        set_cv_threads(1 if (threads or 1) * self.workers >= _cores() else threads)
        t0 = now()
        self.est = PoseEstimator(spec["model"], device=spec.get("device") or "cpu", threads=threads,
                                 size=spec.get("size"), scales=spec.get("scales"), flip=spec.get("flip"))  # fmt: skip
        self.info = {"create_ms": (now() - t0) * MS, "providers": list(self.est.providers),
                     "variant": self.est.meta.variant, "threads": self.est.threads,
                     "input_budget": list(self.est.budget), "scales": list(self.est.plan.scales),
                     "flip": self.est.plan.flip, "workers": self.workers}  # fmt: skip
        self.frames = FrameLoop(spec["source"], spec.get("frames"))
        self.pool = ThreadPoolExecutor(self.workers) if self.workers > 1 else None

    def _one(self, image, t_read: float) -> tuple[dict[str, float], float]:
        res = self.est.predict(image)
        t = {k: v for k, v in res.timings.items() if k != "read"}
        return t, (now() - t_read) * MS

    def step(self) -> dict[str, float]:
        c0, t0 = time.process_time(), now()
        if self.pool is None:
            f = self.frames.next()
            t1 = now()
            t, _ = self._one(f.image, t0)
            t["read"] = (t1 - t0) * MS
            t["total"] = t["latency"] = (now() - t0) * MS
            t["cpu"] = (time.process_time() - c0) * MS
            return t
        futures, reads = [], []
        for _ in range(self.workers):
            tr = now()
            f = self.frames.next()
            reads.append((now() - tr) * MS)
            futures.append(self.pool.submit(self._one, f.image, tr))
        done = [fu.result() for fu in futures]
        n = self.workers
        t = {k: sum(d[0].get(k, 0.0) for d in done) / n for k in ("preprocess", "inference", "decode")}
        t["read"] = sum(reads) / n
        t["latency"] = sum(d[1] for d in done) / n
        t["total"] = (now() - t0) * MS / n
        t["cpu"] = (time.process_time() - c0) * MS / n
        return t


def _cores() -> int:
    from edgepose.bench.machine import usable_cores

    return usable_cores()


ENGINES: dict[str, type[Engine]] = {"tune": TunePipeline}
