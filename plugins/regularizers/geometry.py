"""Built-in auxiliary losses on the new embedding rows (morpheme, device, repulsion, norm).

Each loss is a scalar tensor, differentiable with respect to ``ctx.new_rows``, built from
cosines (never raw dot products) so its size does not grow with the hidden size. The morphology
is read duck-typed: ``prefixes`` and ``suffixes`` (a mapping from morpheme to example words,
or any iterable of morphemes) and ``devices`` (device -> example words). Words are matched
case-insensitively; a morpheme written with hyphens (``re-``, ``-ation``) matches without them.
"""

from __future__ import annotations

import unicodedata
import warnings
from typing import TYPE_CHECKING, Any, ClassVar, Literal

from pydantic import Field

from wake2vec import hookimpl
from wake2vec.api import Params, Regularizer, RegularizerContext
from wake2vec.errors import TrainingError, UserInputError

if TYPE_CHECKING:
    import torch


def _fold(text: str) -> str:
    """NFC and lower case: how words and morphemes are compared."""
    return unicodedata.normalize("NFC", text).lower()


def _morpheme_names(entries: Any) -> list[str]:
    if entries is None:
        return []
    names = []
    for entry in entries:  # a mapping iterates over its keys
        text = entry if isinstance(entry, str) else getattr(entry, "morpheme", None)
        if isinstance(text, str) and text.strip("-").strip():
            names.append(_fold(text.strip().strip("-")))
    return sorted(set(names))


def morpheme_groups(
    words: list[str], morphology: Any, min_root: int = 3
) -> list[tuple[str, list[int]]]:
    """Groups of word positions sharing a prefix (``startswith``) or suffix (``endswith``).

    A word joins a morpheme's group when at least ``min_root`` letters remain once the morpheme
    is removed. Only groups with two or more words are returned, as ``(label, positions)`` with
    labels like ``"prefix:re"`` and ``"suffix:ation"``.
    """
    lowered = [_fold(w) for w in words]
    groups: list[tuple[str, list[int]]] = []
    for kind in ("prefix", "suffix"):
        names = _morpheme_names(getattr(morphology, kind + "es", None))
        by_length: dict[int, dict[str, list[int]]] = {}
        for name in names:
            by_length.setdefault(len(name), {})[name] = []
        for pos, word in enumerate(lowered):
            for length, table in by_length.items():
                if len(word) - length < min_root:
                    continue
                members = table.get(word[:length] if kind == "prefix" else word[-length:])
                if members is not None:
                    members.append(pos)
        for length in sorted(by_length):
            for name, members in sorted(by_length[length].items()):
                if len(members) > 1:
                    groups.append((f"{kind}:{name}", members))
    return groups


def device_labels(words: list[str], morphology: Any) -> dict[int, int]:
    """Word position -> device index, for new words listed under a device (first device wins)."""
    devices = getattr(morphology, "devices", None) or {}
    positions: dict[str, list[int]] = {}
    for pos, word in enumerate(words):
        positions.setdefault(_fold(word), []).append(pos)
    labels: dict[int, int] = {}
    for index, name in enumerate(devices):
        for example in devices[name]:
            for pos in positions.get(_fold(str(example)), []):
                labels.setdefault(pos, index)
    return labels


def _needs_morphology(ctx: RegularizerContext, name: str) -> Any:
    if ctx.morphology is None:
        raise UserInputError(
            f"regularizer {name!r} needs morphology data: set data.morphemes (and "
            f"data.device_groups for 'device') in the recipe, or remove the regularizer"
        )
    return ctx.morphology


def _zero(ctx: RegularizerContext) -> torch.Tensor:
    return _float(ctx.new_rows).new_zeros(())


def _float(x: torch.Tensor) -> torch.Tensor:
    """``x`` in float32 unless it already is float32 or float64 (keeps the graph)."""
    import torch

    return x if x.dtype in (torch.float32, torch.float64) else x.float()


def _cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    import torch.nn.functional as F

    return F.cosine_similarity(a, b, dim=-1, eps=1e-8)


def _tensor_key(t: torch.Tensor) -> tuple[int, tuple[int, ...], int]:
    return (t.data_ptr(), tuple(t.shape), t._version)


def _mean_norm(cache: _Cached, base_rows: torch.Tensor) -> float:
    def build() -> float:
        return float(base_rows.detach().double().norm(dim=1).mean())

    return cache.get(_tensor_key(base_rows), build)


class _Cached:
    """Remembers one value per key (the word list does not change within a phase)."""

    def __init__(self) -> None:
        self._key: Any = None
        self._value: Any = None

    def get(self, key: Any, build: Any) -> Any:
        if key != self._key:
            self._key, self._value = key, build()
        return self._value


def _words_key(ctx: RegularizerContext) -> tuple[int, int, int]:
    return (len(ctx.new_words), hash(tuple(ctx.new_words)), id(ctx.morphology))


class _Sampled(Regularizer):
    """A regulariser that draws fresh samples at each step, a pure function of its seed and the
    step (no generator state to carry across a resume)."""

    def _generator(self, ctx: RegularizerContext) -> torch.Generator:
        import torch

        from wake2vec.seeding import derived_seed

        return torch.Generator().manual_seed(derived_seed(f"wake2vec-{self.name}-{self.params.seed}-{ctx.step}"))


class Morpheme(Regularizer):
    """Morpheme direction consistency: words sharing an affix move from their anchors in step."""

    name: ClassVar[str] = "morpheme"

    class Params(Params):
        anchor: Literal["initial", "root"] = "initial"  # initial row, or the root word's row
        # letters left after removing the affix (3, as in wake2vec.vocab.morphology's segmentation)
        min_root: int = Field(default=3, ge=1)
        # displacements shorter than eps x the mean base-row norm fade out (smooth at zero)
        eps: float = Field(default=1e-4, gt=0.0)

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self._groups = _Cached()
        self._scale = _Cached()

    def _pairs(self, ctx: RegularizerContext) -> tuple[Any, Any, Any, int]:
        """(group index, word position, root-word position or -1, number of groups)."""

        def build() -> tuple[Any, Any, Any, int]:
            import torch

            groups = morpheme_groups(ctx.new_words, ctx.morphology, self.params.min_root)
            index = {_fold(w): i for i, w in enumerate(ctx.new_words)}
            g_idx, w_idx, a_idx = [], [], []
            for g, (label, members) in enumerate(groups):
                affix = label.split(":", 1)[1]
                for pos in members:
                    word = _fold(ctx.new_words[pos])
                    root = word[len(affix) :] if label.startswith("prefix") else word[: -len(affix)]
                    g_idx.append(g)
                    w_idx.append(pos)
                    a_idx.append(index.get(root, -1))
            as_long = [torch.tensor(v, dtype=torch.long) for v in (g_idx, w_idx, a_idx)]
            return as_long[0], as_long[1], as_long[2], len(groups)

        return self._groups.get(_words_key(ctx), build)

    def loss(self, ctx: RegularizerContext) -> torch.Tensor:
        """1 - mean over groups of the mean pairwise cosine of the members' displacements."""
        import torch

        _needs_morphology(ctx, self.name)
        rows = _float(ctx.new_rows)
        g_idx, w_idx, anchors = self._anchors(ctx, rows)
        n_groups = int(g_idx.max()) + 1 if g_idx.numel() else 0
        counts = torch.bincount(g_idx, minlength=n_groups).to(rows.dtype)
        valid = counts > 1
        if not bool(valid.any()):
            warnings.warn(
                "regularizer 'morpheme': no affix is shared by two new words", stacklevel=2
            )
            return _zero(ctx)
        disp = rows[w_idx] - anchors
        eps = self.params.eps * _mean_norm(self._scale, ctx.base_rows)
        length_sq = torch.linalg.vecdot(disp, disp)
        inv = torch.rsqrt(length_sq + eps**2)  # u = d / sqrt(|d|^2 + eps^2): smooth at 0
        # sum over pairs i != j of u_i . u_j  =  |sum_i u_i|^2 - sum_i |u_i|^2
        sums = rows.new_zeros(n_groups, rows.shape[1]).index_add(0, g_idx, disp * inv.unsqueeze(1))
        self_dots = rows.new_zeros(n_groups).index_add(0, g_idx, length_sq * inv.square())
        pair_dots = (sums.square().sum(1) - self_dots)[valid]
        mean_cos = pair_dots / (counts[valid] * (counts[valid] - 1))
        return 1.0 - mean_cos.mean()

    def _anchors(
        self, ctx: RegularizerContext, rows: torch.Tensor
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(group index, word position, anchor row) for every group member that has an anchor."""
        import torch

        g_idx, w_idx, r_idx, _ = self._pairs(ctx)
        g_idx, w_idx, r_idx = g_idx.to(rows.device), w_idx.to(rows.device), r_idx.to(rows.device)
        initial = ctx.initial_new_rows
        if initial is not None:
            initial = _float(initial).detach().to(rows.device)
        if self.params.anchor == "initial":
            if initial is None:
                raise TrainingError(
                    "regularizer 'morpheme' with anchor 'initial' needs the new rows' initial "
                    "values, and the phase did not pass them (RegularizerContext.initial_new_rows)"
                )
            return g_idx, w_idx, initial[w_idx]
        has_root = r_idx >= 0
        if initial is None:  # without initial rows, only words whose root is a new word count
            g_idx, w_idx, r_idx = g_idx[has_root], w_idx[has_root], r_idx[has_root]
            return g_idx, w_idx, rows[r_idx]
        fallback = initial[w_idx]
        return g_idx, w_idx, torch.where(has_root.unsqueeze(1), rows[r_idx.clamp_min(0)], fallback)


class Device(_Sampled):
    """Device clustering: triplet margin loss on cosine distance by word-formation device."""

    name: ClassVar[str] = "device"

    class Params(Params):
        margin: float = Field(default=0.2, ge=0.0, le=2.0)
        triplets: int = Field(default=512, ge=1)
        seed: int = Field(default=0, ge=0)

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self._labels = _Cached()

    def _classes(self, ctx: RegularizerContext) -> tuple[Any, Any, Any]:
        """(word positions sorted by device, class start of each, class size of each)."""

        def build() -> tuple[Any, Any, Any]:
            import torch

            labels = device_labels(ctx.new_words, ctx.morphology)
            order = sorted(labels, key=lambda p: (labels[p], p))
            members = torch.tensor(order, dtype=torch.long)
            cls = torch.tensor([labels[p] for p in order], dtype=torch.long)
            _, sizes_per = torch.unique_consecutive(cls, return_counts=True)
            size = torch.repeat_interleave(sizes_per, sizes_per)
            start = torch.repeat_interleave(torch.cumsum(sizes_per, 0) - sizes_per, sizes_per)
            return members, start, size

        return self._labels.get(_words_key(ctx), build)

    def loss(self, ctx: RegularizerContext) -> torch.Tensor:
        """mean(relu(d(a, p) - d(a, n) + margin)) with d = 1 - cosine, over seeded triplets."""
        import torch

        _needs_morphology(ctx, self.name)
        members, start, size = self._classes(ctx)
        total = members.numel()
        anchors = (size > 1).nonzero().squeeze(1)
        if anchors.numel() == 0 or bool((size == total).all()):
            warnings.warn(
                "regularizer 'device': needs new words under two devices, two under one",
                stacklevel=2,
            )
            return _zero(ctx)
        gen, n = self._generator(ctx), self.params.triplets
        a = anchors[torch.randint(0, anchors.numel(), (n,), generator=gen)]
        step = 1 + (torch.rand(n, generator=gen) * (size[a] - 1)).long()  # 1 .. size - 1
        p = start[a] + (a - start[a] + step) % size[a]
        r = (torch.rand(n, generator=gen) * (total - size[a])).long()
        neg = torch.where(r < start[a], r, r + size[a])
        rows = _float(ctx.new_rows)
        xa, xp, xn = (rows[members[t].to(rows.device)] for t in (a, p, neg))
        d_pos, d_neg = 1.0 - _cosine(xa, xp), 1.0 - _cosine(xa, xn)
        return torch.relu(d_pos - d_neg + self.params.margin).mean()


class Repulsion(_Sampled):
    """Repulsion: penalise cosine above a margin between seeded random pairs of new rows."""

    name: ClassVar[str] = "repulsion"

    class Params(Params):
        margin: float = Field(default=0.5, ge=-1.0, le=1.0)
        pairs: int = Field(default=4096, ge=1)
        seed: int = Field(default=0, ge=0)

    def loss(self, ctx: RegularizerContext) -> torch.Tensor:
        """mean(relu(cos(x_i, x_j) - margin)) over pairs i != j."""
        import torch

        count = ctx.new_rows.shape[0]
        if count < 2:
            return _zero(ctx)
        gen = self._generator(ctx)
        i = torch.randint(0, count, (self.params.pairs,), generator=gen)
        j = (i + torch.randint(1, count, (self.params.pairs,), generator=gen)) % count
        rows = _float(ctx.new_rows)
        i, j = i.to(rows.device), j.to(rows.device)
        return torch.relu(_cosine(rows[i], rows[j]) - self.params.margin).mean()


class Norm(Regularizer):
    """Norm hygiene: squared hinge on new-row norms outside the base band mean ± z·std."""

    name: ClassVar[str] = "norm"

    class Params(Params):
        z: float = Field(default=2.0, ge=0.0)

    def __init__(self, params: Params | None = None):
        super().__init__(params)
        self._band = _Cached()

    def band(self, base_rows: torch.Tensor) -> tuple[float, float, float]:
        """(low, high, std) of base-row norms, recomputed only when the base rows change."""

        def build() -> tuple[float, float, float]:
            norms = base_rows.detach().double().norm(dim=1)
            mean, std = float(norms.mean()), float(norms.std()) if norms.numel() > 1 else 0.0
            return mean - self.params.z * std, mean + self.params.z * std, std

        return self._band.get(_tensor_key(base_rows), build)

    def loss(self, ctx: RegularizerContext) -> torch.Tensor:
        """mean(((relu(low - |x|) + relu(|x| - high)) / std_base)^2) over new rows."""
        import torch

        low, high, std = self.band(ctx.base_rows)
        norms = _float(ctx.new_rows).norm(dim=1)
        excess = torch.relu(low - norms) + torch.relu(norms - high)
        return (excess / max(std, 1e-12)).square().mean()


@hookimpl
def wake2vec_register_regularizers() -> list[type]:
    return [Morpheme, Device, Repulsion, Norm]
