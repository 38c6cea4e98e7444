"""The inference stage: ``workers`` threads, each taking the next frames, pre-processing them,
running the network and (when the estimator allows a workspace per thread) decoding the maps.

A worker takes one frame, waiting for it, plus up to ``batch - 1`` more of those already waiting
(never waiting for more), numbers them in the order taken (the ordering stage restores it), and
runs the frames of one input size as one (N, 3, H, W) call (in realtime mode: one frame per source,
in turn). Batches help where the provider gains from them (GPUs); on the 2-core CPU a batch of 4 was
no faster per frame than single calls (docs/streaming.md). Each worker keeps its own network input,
batch and shrinking buffers and decoder workspace, so a long run allocates nothing per frame. A bad
frame fails alone; a failed batch is retried frame by frame.
"""

from __future__ import annotations

import inspect
import logging
import queue
import threading
import time
from typing import TYPE_CHECKING, Any

import numpy as np

from edgepose.decode import Workspace
from edgepose.stream.control import Control
from edgepose.stream.decoding import decode_maps
from edgepose.stream.frames import preprocess_image, preprocess_planes
from edgepose.stream.queues import END, Item, LastOut, get, put

if TYPE_CHECKING:
    from edgepose.estimator import Estimator

log = logging.getLogger(__name__)

__all__ = ["Inference"]


class Inference:
    """From ``q_in`` (a queue, or the realtime mailbox) to ``q_out``, for ``workers`` threads calling
    :meth:`run`. ``release``: give each frame's buffer back once it is in the network input."""

    def __init__(self, est: Estimator, q_in: Any, q_out: queue.Queue, control: Control, *, workers: int, batch: int,
                 realtime: bool, prescale: bool, release: bool) -> None:  # fmt: skip
        self.est, self.q_in, self.q_out, self.control = est, q_in, q_out, control
        #: an estimator that decodes itself (a server, several scales): (x, box) -> (people, warnings)
        self.infer_people = getattr(est, "infer_people", None)
        self.batch = batch  # 1 with infer_people (the stream sees to it)
        self.realtime, self.prescale, self.release = realtime, prescale, release
        self._seq = 0
        self._take = threading.Lock()  # taking a frame and numbering it is one step
        self._active = LastOut(workers)
        # Workers decode their own frames when the estimator takes a workspace per thread.
        try:
            self.decode_in_workers = "workspace" in inspect.signature(est.decode_maps).parameters
        except (TypeError, ValueError, AttributeError):
            self.decode_in_workers = False

    def take(self, n: int = 1) -> list[Item]:
        """The next frames for a worker (empty at the end): one, waiting for it, and up to ``n - 1``
        more of those already waiting; numbered in the order taken."""
        with self._take:
            item = get(self.q_in, give_up=self.control.capture_stuck)
            if item is END:
                if not self.realtime:
                    put(self.q_in, END)  # for the other workers
                return []
            items = [item]
            while len(items) < n:
                try:
                    more = self.q_in.get_nowait()
                except queue.Empty:
                    break
                if more is END:
                    put(self.q_in, END)
                    break
                items.append(more)
            for it in items:
                it.seq = self._seq
                self._seq += 1
            return items

    def run(self) -> None:
        """One worker's thread."""
        est, forced = self.est, self.control.forced
        xs: list[np.ndarray | None] = [None] * self.batch  # this worker's network input buffers, reused
        stacked: dict[tuple, np.ndarray] = {}  # and its batch buffers, per input shape
        bufs: dict = {}  # and its buffers for shrunk frames
        workspace = Workspace() if self.decode_in_workers else None  # and its decoder buffers
        try:
            while items := self.take(self.batch):
                ready: dict[tuple, list[tuple[Item, np.ndarray]]] = {}  # input shape -> its frames
                for i, item in enumerate(items):
                    fr = item.frame
                    item.timings["read"] = fr.read_ms
                    if forced.is_set():
                        item.drop = "interrupted"
                    elif fr.error is None:
                        try:
                            t0 = time.perf_counter()
                            if fr.planes is not None:
                                xs[i], item.box = preprocess_planes(est, fr.planes, xs[i], bufs, self.prescale)
                            else:
                                xs[i], item.box = preprocess_image(est, fr.image, xs[i], bufs, self.prescale)
                            item.timings["preprocess"] = (time.perf_counter() - t0) * 1e3
                            if self.release:
                                item.release()  # the frame is in the network input now
                            ready.setdefault(xs[i].shape, []).append((item, xs[i]))
                        except Exception as e:  # one bad frame must not end the stream
                            self._failed(item, e)
                        except BaseException as e:  # noqa: BLE001 - e.g. MemoryError: stop, but keep counting
                            self.control.fail("infer", e)
                            item.drop = "interrupted"
                for group in ready.values():  # one call per input shape
                    self.network(group, stacked, workspace)
                for item in items:
                    put(self.q_out, item)
        finally:
            self._active.done(self.q_out)

    def _failed(self, item: Item, e: BaseException) -> None:
        fr = item.frame
        log.warning("frame %d of %s failed: %s: %s", fr.index, fr.name, type(e).__name__, e)
        item.error = f"{fr.name} frame {fr.index}: {type(e).__name__}: {e}"

    def network(self, group: list[tuple[Item, np.ndarray]], stacked: dict, workspace: Workspace | None) -> None:
        """One inference call for frames of one input size (then, in the worker, their decoding)."""
        try:
            t1 = time.perf_counter()
            if self.infer_people is not None:  # the estimator decodes (a server): people, no maps
                item, x = group[0]
                item.people, item.warnings = self.infer_people(x, item.box)
            elif len(group) == 1:
                item, x = group[0]
                item.hm, item.paf = self.est.infer(x[None])
            else:
                key = (len(group),) + group[0][1].shape
                xb = stacked.get(key)
                if xb is None:
                    xb = stacked[key] = np.empty(key, np.float32)
                for i, (_, x) in enumerate(group):
                    xb[i] = x
                hm, paf = self.est.infer(xb)
                for i, (item, _) in enumerate(group):
                    item.hm, item.paf = hm[i : i + 1], paf[i : i + 1]
            ms = (time.perf_counter() - t1) * 1e3 / len(group)
            for item, _ in group:
                item.timings["inference"] = ms  # the call's time shared by its frames
        except Exception as e:  # one bad call must not end the stream
            if len(group) > 1:  # nor take the other frames of its batch with it: one call each
                log.debug("a batch of %d failed (%s: %s); running its frames one by one", len(group), type(e).__name__, e)
                for one in group:
                    self.network([one], stacked, workspace)
                return
            for item, _ in group:
                self._failed(item, e)
            return
        except BaseException as e:  # noqa: BLE001 - e.g. MemoryError: stop, but keep counting
            self.control.fail("infer", e)
            for item, _ in group:
                item.drop = "interrupted"
            return
        if workspace is not None:
            for item, _ in group:
                decode_maps(self.est, item, workspace)
