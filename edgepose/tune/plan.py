"""The candidates of a tuning run: providers x variants x sizes x threads x workers.

Example:
    >>> sizes_between((320, 272), (432, 368))
    (368, 320)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from pathlib import Path

from edgepose.bench.machine import usable_cores
from edgepose.bench.suite import PROVIDER_WORDS, VARIANTS, find_variants
from edgepose.geometry import SIZE_PRESETS
from edgepose.multiscale import ACCURATE

__all__ = ["Candidate", "plan", "default_sizes", "sizes_between", "thread_worker_pairs", "size_cost"]


@dataclass(frozen=True)
class Candidate:
    """One configuration to measure.

    Attributes:
        device: edgepose device word (``cpu``, ``cuda``, ``tensorrt``, ``openvino``).
        provider: the ONNX Runtime provider it asks for.
        variant: ``fp32``, ``fp16`` or ``int8``.
        model: the variant's file.
        size: a size preset or ``WxH``.
        threads: intra-op threads per inference.
        workers: inferences at once (``edgepose run --workers``).
    """

    device: str
    provider: str
    variant: str
    model: str
    size: str
    threads: int
    workers: int

    @property
    def id(self) -> str:
        return f"{self.device}/{self.variant}/{self.size}/t{self.threads}w{self.workers}"

    @property
    def accuracy_key(self) -> str:
        """Candidates with the same key give the same people (threads and workers change only speed)."""
        return f"{self.device}/{self.variant}/{self.size}"

    def to_dict(self) -> dict:
        return {**asdict(self), "id": self.id}


def sizes_between(a: tuple[int, int], b: tuple[int, int]) -> tuple[int, int]:
    """A budget halfway (geometric mean per side) between two budgets, rounded to 16 pixels."""
    return tuple(int(round(math.sqrt(x * y) / 16) * 16) for x, y in zip(a, b, strict=True))  # type: ignore[return-value]


def default_sizes(preferred: tuple[int, int], quick: bool = False) -> list[str]:
    """Presets and the budgets between them, cheapest first; ``accurate`` (several scales + flip) last.

    Quick mode: ``small``, the budget between small and default, and ``default``.
    """
    small, large = SIZE_PRESETS["small"], SIZE_PRESETS["large"]
    mid1, mid2 = sizes_between(small, preferred), sizes_between(preferred, large)
    wh = lambda s: f"{s[0]}x{s[1]}"  # noqa: E731
    if quick:
        return ["small", wh(mid1), "default"]
    return ["small", wh(mid1), "default", wh(mid2), "large", "accurate"]


def size_cost(size: str, preferred: tuple[int, int]) -> float:
    """Network pixels per frame of a size (all scales and flips), to order sizes by cost."""
    from edgepose.geometry import parse_size

    if size == "accurate":
        w, h = ACCURATE["budget"]
        runs = sum(s * s for s in ACCURATE["scales"]) * (2 if ACCURATE["flip"] else 1)
        return w * h * runs
    w, h = parse_size(size, preferred)
    return float(w * h)


def thread_worker_pairs(cores: int, quick: bool = False) -> list[tuple[int, int]]:
    """(threads, workers): all cores in one inference, one thread, and (streaming) two inferences
    sharing the cores; quick mode: all cores, one worker."""
    if quick:
        return [(cores, 1)]
    pairs = [(cores, 1), (1, 1)]
    if cores >= 2:
        pairs.append((max(1, cores // 2), 2))
    return list(dict.fromkeys(pairs))


def plan(model: str | Path, *, preferred: tuple[int, int], quick: bool = False, providers: list[str] | None = None,
         variants: list[str] | None = None, sizes: list[str] | None = None,
         pairs: list[tuple[int, int]] | None = None) -> tuple[list[Candidate], list[dict]]:  # fmt: skip
    """The candidates, cheapest size first, and what was skipped (``{"what", "why"}``).

    Raises:
        FileNotFoundError: no model at ``model``.
        ValueError: an unknown provider or variant was asked for.
    """
    from edgepose.providers import available

    have = available()
    skipped: list[dict] = []
    words = []
    for p, w in PROVIDER_WORDS.items():
        if p in have:
            words.append(w)
        else:
            skipped.append({"what": f"provider {w}", "why": f"{p} is not in this onnxruntime build"})
    if providers:
        unknown = [w for w in providers if w not in PROVIDER_WORDS.values()]
        if unknown:
            raise ValueError(f"unknown provider(s) {unknown}; use {', '.join(PROVIDER_WORDS.values())}")
        for w in providers:
            if w not in words:
                skipped.append({"what": f"provider {w}", "why": "asked for but not in this onnxruntime build"})
        words = [w for w in words if w in providers]
    found = find_variants(model)
    if not Path(model).is_file():
        raise FileNotFoundError(f"no model at {model}; build it with `make model` or pass --model")
    if "fp32" not in found:  # a variant file passed as --model: tune that one alone
        found = {"given": Path(model)}
    stem = Path(model).name.removesuffix(".onnx")
    for v, suffix in VARIANTS.items():
        if v not in found and "given" not in found:
            skipped.append({"what": f"variant {v}",
                            "why": f"no {stem}{suffix}.onnx beside the model (build it with `make variants` or "
                                   f"`edgepose convert variant {model} --variant {v}`)"})  # fmt: skip
    if variants:
        bad = [v for v in variants if v not in VARIANTS]
        if bad:
            raise ValueError(f"unknown variant(s) {bad}; use {', '.join(VARIANTS)}")
        found = {v: p for v, p in found.items() if v in variants}
        if not found:
            raise FileNotFoundError(f"none of the variants {variants} is beside {model}")
    sizes = sizes or default_sizes(preferred, quick)
    sizes = sorted(dict.fromkeys(sizes), key=lambda s: size_cost(s, preferred))
    pairs = pairs or thread_worker_pairs(usable_cores(), quick)
    out = []
    for size in sizes:
        for w in words:
            for v, path in found.items():
                for threads, workers in pairs:
                    if w not in ("cpu", "openvino") and (threads, workers) != pairs[0]:
                        continue  # GPU providers: the thread count only matters for the CPU fallback
                    provider = next(p for p, ww in PROVIDER_WORDS.items() if ww == w)
                    out.append(Candidate(w, provider, v, str(path), size, threads, workers))
    return out, skipped
