"""Keypoint layouts as data: part names, limbs and the PAF channels of each limb.

A layout says how to read an OpenPose-style network's outputs. Heatmap channel ``i`` is part ``i``
(the last heatmap channel is the background); limb ``j`` joins parts ``limbs[j]`` and its PAF lives
in channels ``paf_channels[j] = (cx, cy)`` of the PAF tensor (0-based within the PAF block).

Exported models carry their layout in their metadata (see :mod:`edgepose.meta`), so the runtime
never needs this module to run a model; it is used by the converters to write that metadata, by
writers to map to COCO-17, and by tests.

Example:
    >>> from edgepose.layouts import get_layout
    >>> lay = get_layout("coco18")
    >>> lay.num_parts, lay.num_limbs, lay.paf_channel_count
    (18, 19, 38)
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["Layout", "LAYOUTS", "COCO17_NAMES", "get_layout", "layout_for_channels"]


@dataclass(frozen=True)
class Layout:
    """A skeleton: names, limbs, PAF channels and an optional mapping to COCO-17.

    Attributes:
        id: short identifier (``coco18``, ``mpi15``, ``body25``, ``coco17``).
        names: part names, in heatmap-channel order.
        limbs: pairs of part indices ``(a, b)``; the PAF points from ``a`` to ``b``.
        paf_channels: for each limb, ``(cx, cy)`` channel indices in the PAF tensor.
        to_coco17: for each COCO-17 keypoint, the index of the part here, or -1 if absent.
        render_limbs: limb indices to draw (some layouts have redundant ear-shoulder limbs).
        mirror: for each part, its left/right twin (itself when central), for layouts whose names
            do not say it (``L``/``R``/``left_``/``right_``); None: derived from the names.
    """

    id: str
    names: tuple[str, ...]
    limbs: tuple[tuple[int, int], ...]
    paf_channels: tuple[tuple[int, int], ...] = ()
    to_coco17: tuple[int, ...] | None = None
    render_limbs: tuple[int, ...] | None = field(default=None)
    mirror: tuple[int, ...] | None = None

    def __post_init__(self) -> None:
        k = len(self.names)
        if self.paf_channels and len(self.paf_channels) != len(self.limbs):
            raise ValueError(f"layout {self.id}: {len(self.limbs)} limbs but {len(self.paf_channels)} PAF pairs")
        for a, b in self.limbs:
            if not (0 <= a < k and 0 <= b < k) or a == b:
                raise ValueError(f"layout {self.id}: bad limb ({a}, {b}) for {k} parts")
        chans = [c for pair in self.paf_channels for c in pair]
        if chans and sorted(chans) != list(range(len(chans))):
            raise ValueError(f"layout {self.id}: PAF channels must be a permutation of 0..{len(chans) - 1}")
        if self.to_coco17 is not None and len(self.to_coco17) != 17:
            raise ValueError(f"layout {self.id}: to_coco17 must have 17 entries")
        if self.mirror is not None and (
            len(self.mirror) != k or any(not 0 <= m < k or self.mirror[m] != i for i, m in enumerate(self.mirror))
        ):
            raise ValueError(f"layout {self.id}: mirror must pair every part with its twin (or itself)")

    @property
    def num_parts(self) -> int:
        """Number of body parts (heatmap channels without the background)."""
        return len(self.names)

    @property
    def num_limbs(self) -> int:
        return len(self.limbs)

    @property
    def paf_channel_count(self) -> int:
        return 2 * len(self.paf_channels)

    @property
    def heatmap_channel_count(self) -> int:
        """Parts plus the background channel."""
        return len(self.names) + 1

    @property
    def total_channels(self) -> int:
        return self.heatmap_channel_count + self.paf_channel_count

    def drawn_limbs(self) -> tuple[tuple[int, int], ...]:
        """Limbs to render."""
        if self.render_limbs is None:
            return self.limbs
        return tuple(self.limbs[i] for i in self.render_limbs)

    def mirror_parts(self) -> tuple[int, ...]:
        """Part index -> the index of its mirror image (left <-> right; a central part maps to itself).

        :attr:`mirror` when the layout has one, else derived from the names: ``L``/``R`` followed by a
        capital (``LShoulder``, ``RBigToe``) or ``left_``/``right_``. Used for horizontal-flip averaging.

        Raises:
            ValueError: the layout has no left/right pairs, or a left part without its right twin.

        Example:
            >>> get_layout("coco18").mirror_parts()[:6]
            (0, 1, 5, 6, 7, 2)
        """
        if self.mirror is not None:
            if self.mirror == tuple(range(len(self.names))):
                raise ValueError(f"layout {self.id} has no left/right part pairs: horizontal flip is not possible")
            return self.mirror
        index = {n: i for i, n in enumerate(self.names)}
        out = list(range(len(self.names)))
        pairs = 0
        for i, n in enumerate(self.names):
            twin = None
            if len(n) > 1 and n[0] in "LR" and n[1].isupper():
                twin = ("R" if n[0] == "L" else "L") + n[1:]
            elif n.startswith("left_"):
                twin = "right_" + n[5:]
            elif n.startswith("right_"):
                twin = "left_" + n[6:]
            if twin is None:
                continue
            if twin not in index:
                raise ValueError(f"layout {self.id}: part {n!r} has no mirror part {twin!r}")
            out[i] = index[twin]
            pairs += 1
        if not pairs:
            raise ValueError(f"layout {self.id} has no left/right part pairs: horizontal flip is not possible")
        return tuple(out)

    def mirror_limbs(self) -> tuple[tuple[int, ...], tuple[int, ...]]:
        """For each limb, the index of its mirror limb and ``+1``/``-1`` (``-1``: the mirror limb is
        stored in the opposite direction, so its field points the other way).

        Raises:
            ValueError: no left/right pairs (see :meth:`mirror_parts`), or a limb whose mirror is not a limb.

        Example:
            >>> idx, sign = get_layout("coco18").mirror_limbs()
            >>> idx[:2], sign[:2]
            ((1, 0), (1, 1))
        """
        m = self.mirror_parts()
        where = {ab: j for j, ab in enumerate(self.limbs)}
        idx, sign = [], []
        for a, b in self.limbs:
            if (m[a], m[b]) in where:
                idx.append(where[(m[a], m[b])])
                sign.append(1)
            elif (m[b], m[a]) in where:
                idx.append(where[(m[b], m[a])])
                sign.append(-1)
            else:
                raise ValueError(f"layout {self.id}: the mirror of limb ({a}, {b}) is not a limb")
        return tuple(idx), tuple(sign)

    def to_dict(self) -> dict:
        return {
            "id": self.id,
            "names": list(self.names),
            "limbs": [list(x) for x in self.limbs],
            "paf_channels": [list(x) for x in self.paf_channels],
            "to_coco17": None if self.to_coco17 is None else list(self.to_coco17),
            "render_limbs": None if self.render_limbs is None else list(self.render_limbs),
            "mirror": None if self.mirror is None else list(self.mirror),
        }

    @classmethod
    def from_dict(cls, d: dict) -> Layout:
        return cls(
            id=str(d["id"]),
            names=tuple(str(n) for n in d["names"]),
            limbs=tuple((int(a), int(b)) for a, b in d["limbs"]),
            paf_channels=tuple((int(a), int(b)) for a, b in d.get("paf_channels") or ()),
            to_coco17=None if d.get("to_coco17") is None else tuple(int(i) for i in d["to_coco17"]),
            render_limbs=None if d.get("render_limbs") is None else tuple(int(i) for i in d["render_limbs"]),
            mirror=None if d.get("mirror") is None else tuple(int(i) for i in d["mirror"]),
        )


def _pairs(flat: list[int]) -> tuple[tuple[int, int], ...]:
    return tuple((flat[i], flat[i + 1]) for i in range(0, len(flat), 2))


COCO17_NAMES: tuple[str, ...] = (
    "nose", "left_eye", "right_eye", "left_ear", "right_ear", "left_shoulder", "right_shoulder",
    "left_elbow", "right_elbow", "left_wrist", "right_wrist", "left_hip", "right_hip",
    "left_knee", "right_knee", "left_ankle", "right_ankle",
)  # fmt: skip

# COCO-18: CMU OpenPose's COCO model and tf-pose-estimation (poseParameters.cpp, tf_pose/common.py).
COCO18 = Layout(
    id="coco18",
    names=(
        "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip",
        "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
    ),
    limbs=_pairs([1, 2, 1, 5, 2, 3, 3, 4, 5, 6, 6, 7, 1, 8, 8, 9, 9, 10, 1, 11, 11, 12, 12, 13,
                  1, 0, 0, 14, 14, 16, 0, 15, 15, 17, 2, 16, 5, 17]),
    paf_channels=_pairs([12, 13, 20, 21, 14, 15, 16, 17, 22, 23, 24, 25, 0, 1, 2, 3, 4, 5, 6, 7,
                         8, 9, 10, 11, 28, 29, 30, 31, 34, 35, 32, 33, 36, 37, 18, 19, 26, 27]),
    to_coco17=(0, 15, 14, 17, 16, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10),
    render_limbs=tuple(range(17)),
)  # fmt: skip

# MPI-15: CMU OpenPose's MPI models (15 parts + background, 14 limbs).
MPI15 = Layout(
    id="mpi15",
    names=(
        "Head", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "RHip",
        "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "Chest",
    ),
    limbs=_pairs([0, 1, 1, 2, 2, 3, 3, 4, 1, 5, 5, 6, 6, 7, 1, 14, 14, 8, 8, 9, 9, 10, 14, 11,
                  11, 12, 12, 13]),
    paf_channels=_pairs(list(range(28))),
    # MPI has no face points; COCO-17 gets shoulders, arms and legs only.
    to_coco17=(-1, -1, -1, -1, -1, 5, 2, 6, 3, 7, 4, 11, 8, 12, 9, 13, 10),
)  # fmt: skip

# BODY_25: CMU OpenPose's default model (25 parts + background, 26 limbs).
BODY25 = Layout(
    id="body25",
    names=(
        "Nose", "Neck", "RShoulder", "RElbow", "RWrist", "LShoulder", "LElbow", "LWrist", "MidHip",
        "RHip", "RKnee", "RAnkle", "LHip", "LKnee", "LAnkle", "REye", "LEye", "REar", "LEar",
        "LBigToe", "LSmallToe", "LHeel", "RBigToe", "RSmallToe", "RHeel",
    ),
    limbs=_pairs([1, 8, 1, 2, 1, 5, 2, 3, 3, 4, 5, 6, 6, 7, 8, 9, 9, 10, 10, 11, 8, 12, 12, 13,
                  13, 14, 1, 0, 0, 15, 15, 17, 0, 16, 16, 18, 2, 17, 5, 18, 14, 19, 19, 20, 14, 21,
                  11, 22, 22, 23, 11, 24]),
    paf_channels=_pairs([0, 1, 14, 15, 22, 23, 16, 17, 18, 19, 24, 25, 26, 27, 6, 7, 2, 3, 4, 5,
                         8, 9, 10, 11, 12, 13, 30, 31, 32, 33, 36, 37, 34, 35, 38, 39, 20, 21,
                         28, 29, 40, 41, 42, 43, 44, 45, 46, 47, 48, 49, 50, 51]),
    to_coco17=(0, 16, 15, 18, 17, 5, 2, 6, 3, 7, 4, 12, 9, 13, 10, 14, 11),
    render_limbs=tuple(i for i in range(26) if i not in (19, 20)),
)  # fmt: skip

# COCO-17: ground-truth order of the COCO keypoint annotations (no PAFs; for conversion and scoring).
COCO17 = Layout(
    id="coco17",
    names=COCO17_NAMES,
    limbs=_pairs([15, 13, 13, 11, 16, 14, 14, 12, 11, 12, 5, 11, 6, 12, 5, 6, 5, 7, 6, 8, 7, 9,
                  8, 10, 1, 2, 0, 1, 0, 2, 1, 3, 2, 4, 3, 5, 4, 6]),
    to_coco17=tuple(range(17)),
)  # fmt: skip

LAYOUTS: dict[str, Layout] = {lay.id: lay for lay in (COCO18, MPI15, BODY25, COCO17)}


def get_layout(layout_id: str) -> Layout:
    """Return a built-in layout by id.

    Raises:
        KeyError: with the known ids, when ``layout_id`` is unknown.
    """
    try:
        return LAYOUTS[layout_id]
    except KeyError:
        raise KeyError(f"unknown layout {layout_id!r}; known: {', '.join(LAYOUTS)}") from None


def layout_for_channels(total: int) -> Layout:
    """Infer the built-in layout whose heatmaps+PAFs add up to ``total`` output channels.

    Raises:
        ValueError: when no layout (or more than one) matches.
    """
    found = [lay for lay in LAYOUTS.values() if lay.paf_channels and lay.total_channels == total]
    if len(found) != 1:
        known = ", ".join(f"{lay.id}={lay.total_channels}" for lay in LAYOUTS.values() if lay.paf_channels)
        raise ValueError(f"cannot infer the layout from {total} output channels (known: {known})")
    return found[0]
