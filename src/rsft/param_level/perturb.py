"""In-place parameter steps regenerated from a seed, undone bit for bit.

A proposal Δθ = scale·z + shift (z ~ N(0, I)) is never stored: z is regenerated from the
step's seed tensor by tensor, as MeZO does, so proposing costs no copy of the model.
Floating-point addition is not invertible (``(θ + δ) - δ`` can differ from θ in the last
bit), so an ``exact`` step also keeps, per element, the few-ulp integer difference between θ
and ``(θ + δ) - δ`` as an int8 (1 byte per tuned parameter, a quarter of an fp32 copy);
elements whose difference does not fit are kept whole. Undoing applies the same subtraction
and adds the difference back to the bit pattern: θ comes back exactly.
``restore: subtract`` skips the bookkeeping (MeZO's own choice): no memory, θ within rounding.
Large tensors are worked on in chunks of :data:`CHUNK` elements, so a step's temporaries (the
noise, the bit patterns) stay a few MB even for a 30k x 384 embedding matrix.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import torch

from rsft.seeding import torch_generator

_INT_VIEW = {8: torch.int64, 4: torch.int32, 2: torch.int16}
CHUNK = 1 << 18  # elements per piece of a large tensor (1 MB of fp32)


def _piece_noise(n: int, seed: int, index: int, c: int, like: torch.Tensor) -> torch.Tensor:
    """Piece c of tensor ``index``'s noise, from the step's seed: no two pieces share a stream."""
    gen = torch_generator(seed, "param_noise", index, c, device=like.device)
    return torch.randn(n, generator=gen, device=like.device, dtype=like.dtype)


def _spans(param: torch.Tensor) -> list[slice] | None:
    """Chunks of the flat tensor, or None: the tensor is one piece."""
    n = param.numel()
    if n <= CHUNK or not param.is_contiguous():
        return None
    return [slice(a, min(a + CHUNK, n)) for a in range(0, n, CHUNK)]


def noise(param: torch.Tensor, seed: int, index: int) -> torch.Tensor:
    """z ~ N(0, I) shaped like ``param``, the same every time it is asked for."""
    n = param.numel()
    pieces = [
        _piece_noise(min(CHUNK, n - a), seed, index, c, param)
        for c, a in enumerate(range(0, max(n, 1), CHUNK))
    ]
    return (pieces[0] if len(pieces) == 1 else torch.cat(pieces))[:n].view(param.shape)


@dataclass
class _Fix:
    small: torch.Tensor  # int8: bits(θ) - bits((θ + δ) - δ), clamped to int8
    index: torch.Tensor  # flat positions where the difference did not fit
    bits: torch.Tensor  # θ's bit patterns at those positions


class InPlaceStep:
    """θ_i ← θ_i + scale·z_i + shift_scale·shift_i for every tensor, applied and undone in place.

    ``shift`` (e.g. the gradient, for MALA) is a list of tensors like ``params`` or None.
    """

    def __init__(
        self,
        params: Sequence[torch.Tensor],
        seed: int,
        scale: float,
        shift: Sequence[torch.Tensor] | None = None,
        exact: bool = True,
        shift_scale: float = 1.0,
    ) -> None:
        self.params = list(params)
        self.seed, self.scale, self.shift, self.exact = seed, scale, shift, exact
        self.shift_scale = shift_scale
        self._fixes: list[_Fix] | None = None
        self.applied = False

    def delta(self, i: int) -> torch.Tensor:
        """Δθ of tensor i, regenerated from the seed: the pieces that apply() adds, joined."""
        ds = [d.reshape(-1) for _, d in self.pieces(i)]
        return (ds[0] if len(ds) == 1 else torch.cat(ds)).view(self.params[i].shape)

    def z(self, i: int) -> torch.Tensor:
        return noise(self.params[i], self.seed, i)

    def z_pieces(self, i: int) -> Iterator[tuple[torch.Tensor, slice | None]]:
        """(z, span) for each chunk of tensor i; span None: the tensor is one piece."""
        p = self.params[i]
        spans = _spans(p)
        if spans is None:
            yield self.z(i), None
            return
        for c, span in enumerate(spans):
            yield _piece_noise(span.stop - span.start, self.seed, i, c, p), span

    def pieces(self, i: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        """(piece of θ_i, its Δθ) for each chunk of tensor i: a view that is changed in place."""
        p = self.params[i]
        for z, span in self.z_pieces(i):
            d = z.mul_(self.scale)
            target = p if span is None else p.view(-1)[span]
            if self.shift is not None:
                g = self.shift[i] if span is None else self.shift[i].reshape(-1)[span]
                d.add_(g, alpha=self.shift_scale)
            yield target, d

    @torch.no_grad()
    def apply(self) -> None:
        if self.applied:
            raise RuntimeError("this step is already applied.")
        fixes: list[_Fix] = []
        done = [0]  # pieces stepped so far
        try:
            self._apply(fixes, done)
        except BaseException:
            # Out of memory mid-way: put back the pieces already stepped, then re-raise.
            self._fixes, self.applied = (fixes if self.exact else None), True
            self.undo(pieces=done[0])
            raise
        self._fixes = fixes if self.exact else None
        self.applied = True

    def _apply(self, fixes: list[_Fix], done: list[int]) -> None:
        for i in range(len(self.params)):
            for piece, d in self.pieces(i):
                if self.exact:
                    # Everything is computed before the piece changes, so a failure (out of
                    # memory) leaves each piece either stepped with its record, or untouched.
                    view = _INT_VIEW[piece.element_size()]
                    new = piece + d
                    back = torch.sub(new, d).view(view)  # exactly what undo() will compute
                    old = piece.detach().view(view)
                    diff = old - back  # wraps for huge differences; they fail the check below
                    small = diff.clamp(-127, 127).to(torch.int8)
                    index = ((back + small.to(view)) != old).flatten().nonzero().flatten()
                    fix = _Fix(small, index, old.flatten()[index])
                    del back, diff
                    piece.copy_(new)
                    fixes.append(fix)
                else:
                    piece.add_(d)
                done[0] += 1

    @torch.no_grad()
    def undo(self, pieces: int | None = None) -> None:
        """Restore θ: bit for bit when exact, within rounding otherwise (``pieces``: only the
        first so many, after a failed apply)."""
        if not self.applied:
            raise RuntimeError("undo() before apply().")
        k = 0
        for i in range(len(self.params)):
            for piece, d in self.pieces(i):
                if pieces is not None and k >= pieces:
                    break
                piece.sub_(d)
                k += 1
                if self._fixes is not None:
                    fix = self._fixes[k - 1]
                    bits = piece.view(_INT_VIEW[piece.element_size()])
                    bits.add_(fix.small.to(bits.dtype))
                    if fix.index.numel() == 0:
                        continue
                    if bits.dim() == 0:  # a scalar parameter (a logit scale, a gate)
                        bits.copy_(fix.bits.reshape(()))
                    else:  # index is in logical (row-major) order: any memory layout works
                        bits[torch.unravel_index(fix.index, bits.shape)] = fix.bits
        self._fixes = None
        self.applied = False

    def commit(self) -> None:
        """Keep the step: drop what undo() would have needed."""
        self._fixes = None
        self.applied = False

    def fix_bytes(self) -> int:
        """Bytes held to undo exactly (0 after commit or undo, or when not exact)."""
        if not self._fixes:
            return 0
        return sum(
            f.small.numel() + f.index.numel() * 8 + f.bits.numel() * f.bits.element_size()
            for f in self._fixes
        )
