"""Decoding: greedy, sampling and beam search for any model with the decoding protocol.

The protocol (docs/interfaces.md), implemented by ``transformer_lm``,
``transformer_seq2seq`` and ``rnn_seq2seq`` - and by any user model that has it:

- ``model.bos_id``, ``model.eos_id``, ``model.pad_id`` (ints or None; ``eos_id`` may list
  several ids, each ending a sequence; without ``eos_id`` sequences run to the budget),
- ``state = model.begin(src=None)``: encode the source once (a dict; tensors batch-first),
- ``logits, state = model.step(prefix [B, t], state, use_cache=True)``: next-token logits
  ``[B, V]`` after the whole prefix so far,
- optionally ``model.max_decode_len`` (int or None): the longest prefix ``step`` takes
  (learned positions end somewhere); it caps the default ``max_new_tokens``, and a longer
  request is refused before decoding starts.

Every function decodes a batch at once and returns ``[B, t0 + n]`` token ids: the starting
prefix (BOS, or the prompt given as ``prefix``) followed by what was generated. A sequence
stops after its EOS (which is kept); the positions after it hold ``pad_id`` (``eos_id``
when the model has no pad id). Decoding stops when every sequence has ended or after
``max_new_tokens``. The model is switched to eval mode while decoding and restored after.

Example:
    >>> model = nnblocks.build({"name": "transformer_seq2seq", "vocab_size": 50, "dim": 32,
    ...                         "heads": 2})
    >>> src = torch.randint(3, 50, (4, 9))
    >>> out = nnblocks.generate.greedy(model, src, max_new_tokens=12)
    >>> out.shape[0], out.shape[1] <= 13, bool((out[:, 0] == model.bos_id).all())
    (4, True, True)
    >>> nnblocks.generate.beam(model, src, beam_size=4, max_new_tokens=12).shape[0]
    4
"""

from __future__ import annotations

import contextlib
import math
import operator
from collections.abc import Callable, Iterator
from typing import Any

import torch
from torch import nn

from nnblocks._attribute_reads import direct_attribute_reads
from nnblocks._linear_layout import column_major_linears
from nnblocks.errors import NumericsError, ShapeError, SpecError
from nnblocks.models._direct_steps import direct_block_steps

__all__ = ["greedy", "sample", "beam", "reorder_state", "gnmt_length_penalty"]

DEFAULT_MAX_NEW_TOKENS = 128
# Relaying the linear weights costs a transposing copy of each (several steps at batch 1);
# from this many steps on, the faster steps repay it (see nnblocks/_linear_layout.py).
_RELAYOUT_FROM_STEPS = 32
_PROTOCOL = ("bos_id", "eos_id", "begin", "step")


def reorder_state(state: Any, index: torch.Tensor) -> Any:
    """Pick batch rows of a decoding state: ``t.index_select(0, index)`` for every tensor.

    Goes through dicts, lists and tuples; other values (ints, None) are kept. This is how
    beam search follows its hypotheses through the caches, so every tensor in a state must
    have the batch as its first dimension.

    Args:
        state: a decoding state (from ``model.begin`` / ``model.step``).
        index: ``[B']`` long, the rows to keep (may repeat rows).

    Returns:
        A state of the same structure with ``B'`` rows.
    """
    if isinstance(state, torch.Tensor):
        return state.index_select(0, index)
    if isinstance(state, dict):
        return {k: reorder_state(v, index) for k, v in state.items()}
    if isinstance(state, list):
        return [reorder_state(v, index) for v in state]
    if isinstance(state, tuple):
        return tuple(reorder_state(v, index) for v in state)
    return state


def gnmt_length_penalty(length: torch.Tensor, alpha: float) -> torch.Tensor:
    """GNMT's length penalty ``((5 + |Y|) / 6) ** alpha`` (Wu et al. 2016, eq. 14).

    A hypothesis is scored ``log P(Y | X) / length_penalty(|Y|)``: with ``alpha = 0``
    scores are raw log-probabilities (favouring short outputs), larger ``alpha`` favours
    longer ones.
    """
    return ((5.0 + length.to(torch.float32)) / 6.0) ** alpha


def _outside(t: torch.Tensor) -> torch.Tensor:
    """A copy made outside inference mode: an ordinary tensor that autograd may use later
    (as embedding indices while training on generated tokens, say)."""
    return t.clone(memory_format=torch.contiguous_format)


def _check_protocol(model: Any) -> None:
    missing = [name for name in _PROTOCOL if not hasattr(model, name)]
    if missing:
        raise SpecError(
            f"{type(model).__name__} cannot be decoded: expected the decoding protocol "
            "(bos_id, eos_id, pad_id, begin(src=None), step(prefix, state, use_cache=True)). "
            f"Received a model without {', '.join(missing)}",
            path="generate",
        )


def _invalid(name: str, expected: str, value: Any) -> SpecError:
    return SpecError(
        f"Received an invalid value for `{name}`: expected {expected}. Received: {name}={value!r}",
        path="generate",
    )


@contextlib.contextmanager
def _decoding(model: Any) -> Iterator[None]:
    # Dropout would make each step random and cached decoding differ from uncached.
    was_training = bool(getattr(model, "training", False))
    if isinstance(model, nn.Module):
        model.eval()
    try:
        # Not just no_grad: without autograd's bookkeeping every one of the step's many
        # small operations dispatches faster (measured 10-15% per token on the CPU);
        # children read as plain attributes (nnblocks/_attribute_reads.py); and blocks
        # stepped without the module-call machinery (nnblocks/models/_direct_steps.py).
        with torch.inference_mode(), direct_attribute_reads(model), direct_block_steps(model):
            yield
    finally:
        if isinstance(model, nn.Module):
            model.train(was_training)


def _start(
    model: Any, src: torch.Tensor | None, prefix: torch.Tensor | None, batch_size: int | None
) -> tuple[torch.Tensor, dict[str, Any]]:
    """The starting prefix ``[B, t0]`` and the state from ``model.begin``."""
    _check_protocol(model)
    state = model.begin(src)
    if prefix is not None:
        if not isinstance(prefix, torch.Tensor) or prefix.dim() != 2 or prefix.is_floating_point():
            shape = (
                tuple(prefix.shape) if isinstance(prefix, torch.Tensor) else type(prefix).__name__
            )
            raise ShapeError(
                f"generate: expected `prefix` as integer token ids [B, t]. Received: {shape}"
            )
        if prefix.shape[1] == 0:
            raise ShapeError("generate: expected a `prefix` with at least one token (BOS).")
        if src is not None and src.shape[0] != prefix.shape[0]:
            raise ShapeError(
                f"generate: expected `prefix` with the source's batch size {src.shape[0]}. "
                f"Received: prefix of shape {tuple(prefix.shape)}"
            )
        return prefix.long(), state
    if batch_size is not None and (
        isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1
    ):
        raise _invalid("batch_size", "a positive integer or None", batch_size)
    if src is not None:
        rows, device = src.shape[0], src.device
    else:
        rows = 1 if batch_size is None else batch_size
        params = model.parameters() if isinstance(model, nn.Module) else iter(())
        device = next((p.device for p in params), torch.device("cpu"))
    if batch_size is not None and batch_size != rows:
        raise _invalid("batch_size", f"the source's batch size {rows}", batch_size)
    bos = _special_id(model, "bos_id", getattr(model, "bos_id", None), fed=True)
    if bos is None:
        raise SpecError(
            f"{type(model).__name__} has no bos_id to start decoding from: pass a `prefix` "
            "(the prompt's token ids) or set the model's bos_id.",
            path="generate",
        )
    return torch.full((rows, 1), bos, dtype=torch.long, device=device), state


def _check_first_logits(logits: torch.Tensor) -> None:
    """NaN logits would decode silently wrong (argmax picks token 0) or fail deep inside
    sampling; checked at the first step, where a broken checkpoint shows."""
    if bool(logits.isnan().any()):
        raise NumericsError(
            "generate: the model's first decoding step returned NaN logits, so no token can "
            "be chosen; its weights or inputs hold NaN/Inf. `nnblocks.check.watch_numerics("
            "model)` names the first module whose output is not finite.",
            phase="generate",
        )


def _budget(model: Any, start: int, max_new_tokens: int | None) -> int:
    """The number of steps to decode, checked against the model's position limit up front
    (rather than failing in the middle of decoding)."""
    limit = getattr(model, "max_decode_len", None)
    limit = limit if isinstance(limit, int) and not isinstance(limit, bool) else None
    if max_new_tokens is None:
        max_new_tokens = DEFAULT_MAX_NEW_TOKENS
        if limit is not None:  # the whole sequence within the positions the model knows
            max_new_tokens = min(max_new_tokens, max(limit - start, 0))
    if (
        isinstance(max_new_tokens, bool)
        or not isinstance(max_new_tokens, int)
        or max_new_tokens < 0
    ):
        raise _invalid("max_new_tokens", "a non-negative integer", max_new_tokens)
    # The last new token is never fed back, so the prefixes reach start + n - 1 positions.
    if limit is not None and start + max_new_tokens - 1 > limit:
        raise SpecError(
            f"{type(model).__name__} decodes sequences of at most {limit} positions (its "
            f"position part's max_len), so a prefix of {start} tokens leaves room for at most "
            f"{max(limit - start + 1, 0)} new ones. Received: max_new_tokens={max_new_tokens}. "
            "Ask for fewer tokens, or build the model with a larger `max_len`.",
            path="generate",
        )
    return max_new_tokens


def _weight_layout(model: Any, steps: int) -> contextlib.AbstractContextManager[None]:
    if steps < _RELAYOUT_FROM_STEPS:
        return contextlib.nullcontext()
    return column_major_linears(model)


def _special_id(model: Any, name: str, value: Any, *, fed: bool = False) -> int | None:
    """``value``, the model's ``name`` (``bos_id``, ``eos_id``, ``pad_id``): None or an
    int. An id the model is ``fed`` must be within its ``vocab_size``; an ``eos_id`` outside
    it (say -1) is never produced, so the sequences run to the length asked for."""
    if value is None:
        return None
    vocab = getattr(model, "vocab_size", None)
    vocab = vocab if isinstance(vocab, int) and not isinstance(vocab, bool) else None
    ok = not isinstance(value, (bool, float, str))
    if ok:
        try:  # an int, or what stands for one (a numpy integer, a one-element id tensor)
            value = operator.index(value)
        except TypeError:
            ok = False
    if ok and fed:
        ok = value >= 0 and (vocab is None or value < vocab)
    if not ok:
        expected = "an integer token id"
        if fed:
            expected += f" in [0, vocab_size={vocab})" if vocab is not None else " >= 0"
        elif name == "eos_id":
            expected += " or a list of them"
        raise SpecError(
            f"{type(model).__name__}.{name} must be None or {expected}. Received: {name}={value!r}",
            path="generate",
        )
    return value


def _end_ids(model: Any) -> list[int]:
    """Every id that ends a sequence: ``eos_id`` is None (none: the sequences run to the
    length asked for), an int, or a list of ints (Llama 3's configs list several)."""
    value = getattr(model, "eos_id", None)
    listed = value if isinstance(value, (list, tuple)) else [value]
    ids = [_special_id(model, "eos_id", v) for v in listed]
    return [i for i in ids if i is not None]


def stop_and_fill(model: Any, device: torch.device) -> tuple[int | torch.Tensor, int]:
    """``(eos, fill)``: what ends a sequence (an int, -1 when nothing does, or a tensor of
    the ids when several do) and the id written after it (``pad_id``, else the first
    ``eos_id``, else 0). Every decoding loop reads them here (``onnx_greedy`` too)."""
    ends, pad = _end_ids(model), _special_id(model, "pad_id", getattr(model, "pad_id", None))
    fill = pad if pad is not None else ends[0] if ends else 0
    if len(ends) > 1:
        return torch.tensor(ends, device=device), fill
    return (ends[0] if ends else -1), fill


def ended(tokens: torch.Tensor, eos: int | torch.Tensor) -> torch.Tensor:
    """Whether each token ends its sequence (same shape as ``tokens``)."""
    return tokens == eos if isinstance(eos, int) else torch.isin(tokens, eos)


def _decode(
    model: Any,
    src: torch.Tensor | None,
    prefix: torch.Tensor | None,
    batch_size: int | None,
    max_new_tokens: int | None,
    use_cache: bool,
    choose: Callable[[torch.Tensor], torch.Tensor],
) -> torch.Tensor:
    """One token per step for each sequence, picked by ``choose(logits [B, V]) -> [B]``."""
    with _decoding(model):
        start, state = _start(model, src, prefix, batch_size)
        eos, fill = stop_and_fill(model, start.device)
        rows, t = start.shape
        # One buffer for every token (the prefix handed to each step is a view of it), so
        # no step copies the tokens so far.
        budget = _budget(model, t, max_new_tokens)
        tokens = start.new_full((rows, t + budget), fill)
        tokens[:, :t] = start
        done = torch.zeros(rows, dtype=torch.bool, device=start.device)
        fills = torch.full((rows,), fill, dtype=torch.long, device=start.device)
        with _weight_layout(model, budget):
            while t < tokens.shape[1]:
                logits, state = model.step(tokens[:, :t], state, use_cache=use_cache)  # [B, V]
                if t == start.shape[1]:
                    _check_first_logits(logits)
                nxt = torch.where(done, fills, choose(logits.float()))  # [B]
                tokens[:, t] = nxt
                t += 1
                done |= ended(nxt, eos)
                if bool(done.all()):
                    break
        out = tokens[:, :t]
    return _outside(out)  # [B, t0 + n]


def greedy(
    model: Any,
    src: torch.Tensor | None = None,
    *,
    prefix: torch.Tensor | None = None,
    batch_size: int | None = None,
    max_new_tokens: int | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Decode by taking the most likely token at every step.

    Args:
        model: any model with the decoding protocol.
        src: ``[B, S]`` source ids for an encoder-decoder; None for a language model.
        prefix: ``[B, t0]`` tokens to continue (BOS first); default one BOS per sequence.
        batch_size: number of sequences when there is neither ``src`` nor ``prefix``.
        max_new_tokens: most tokens to add (default 128, capped by
            ``model.max_decode_len``).
        use_cache: let the model reuse its attention caches (same tokens, faster).

    Returns:
        ``[B, t0 + n]`` token ids: the prefix, then the generated tokens (EOS kept, pad
        after it).

    Raises:
        SpecError: the model lacks the decoding protocol, or a bad argument.
        ShapeError: ``prefix`` is not integer ids ``[B, t0]``.
        NumericsError: the first step's logits hold NaN (a broken model or checkpoint).

    Example:
        >>> lm = nnblocks.build({"name": "transformer_lm", "vocab_size": 30, "dim": 16,
        ...                      "heads": 2, "layers": 1})
        >>> prompt = torch.tensor([[1, 7, 8], [1, 9, 9]])
        >>> out = nnblocks.generate.greedy(lm, prefix=prompt, max_new_tokens=5)
        >>> torch.equal(out[:, :3], prompt), out.shape[1] <= 8
        (True, True)
    """
    return _decode(
        model, src, prefix, batch_size, max_new_tokens, use_cache, lambda lg: lg.argmax(-1)
    )


def _filter_logits(logits: torch.Tensor, top_k: int | None, top_p: float | None) -> torch.Tensor:
    """Keep the ``top_k`` largest logits and the smallest set reaching probability ``top_p``."""
    if top_k is not None and top_k < logits.shape[-1]:
        kth = logits.topk(top_k, dim=-1).values[:, -1:]  # [B, 1]
        logits = logits.masked_fill(logits < kth, float("-inf"))
    if top_p is not None and top_p < 1.0:
        # Nucleus sampling (Holtzman et al. 2020): drop a token once the tokens ranked above
        # it already hold `top_p` of the probability; the most likely token always stays.
        sorted_logits, order = logits.sort(dim=-1, descending=True)  # [B, V]
        probs = sorted_logits.softmax(dim=-1)
        before = probs.cumsum(dim=-1) - probs  # probability ranked strictly above
        drop = before >= top_p
        drop[:, 0] = False
        logits = logits.masked_fill(drop.scatter(1, order, drop), float("-inf"))
    return logits


def sample(
    model: Any,
    src: torch.Tensor | None = None,
    *,
    prefix: torch.Tensor | None = None,
    batch_size: int | None = None,
    max_new_tokens: int | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    top_p: float | None = None,
    generator: torch.Generator | None = None,
    use_cache: bool = True,
) -> torch.Tensor:
    """Decode by sampling each token from the model's (filtered) distribution.

    Args:
        model: any model with the decoding protocol (as for ``greedy``).
        src: ``[B, S]`` source ids, or None for a language model (as for ``greedy``).
        prefix: ``[B, t0]`` tokens to continue (as for ``greedy``).
        batch_size: sequences when there is neither ``src`` nor ``prefix``.
        max_new_tokens: most tokens to add (as for ``greedy``).
        use_cache: let the model reuse its attention caches (as for ``greedy``).
        temperature: divides the logits (finite, >= 0); below 1 sharpens, above 1 flattens,
            0 is greedy.
        top_k: sample only among the ``k`` most likely tokens (Fan et al. 2018).
        top_p: sample only among the most likely tokens holding probability ``p``
            (nucleus sampling, Holtzman et al. 2020).
        generator: a ``torch.Generator`` for reproducible samples.

    Returns:
        ``[B, t0 + n]`` token ids (see ``greedy``).

    Raises:
        SpecError: a bad argument or a model without the decoding protocol.
        ShapeError: ``prefix`` is not integer ids ``[B, t0]``.
        NumericsError: the first step's logits hold NaN (a broken model or checkpoint).

    Example:
        >>> lm = nnblocks.build({"name": "transformer_lm", "vocab_size": 30, "dim": 16,
        ...                      "heads": 2, "layers": 1})
        >>> draw = lambda: nnblocks.generate.sample(
        ...     lm, batch_size=8, max_new_tokens=6, top_p=0.9,
        ...     generator=torch.Generator().manual_seed(0))
        >>> torch.equal(draw(), draw())
        True
    """
    if (
        isinstance(temperature, bool)
        or not isinstance(temperature, (int, float))
        or not 0 <= temperature < math.inf  # NaN fails this too
    ):
        raise _invalid("temperature", "a finite number >= 0", temperature)
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int) or top_k < 1):
        raise _invalid("top_k", "a positive integer or None", top_k)
    if top_p is not None and (
        isinstance(top_p, bool) or not isinstance(top_p, (int, float)) or not 0 < top_p <= 1
    ):
        raise _invalid("top_p", "a probability in (0, 1] or None", top_p)

    def choose(logits: torch.Tensor) -> torch.Tensor:
        if temperature == 0:
            return logits.argmax(-1)
        probs = _filter_logits(logits / temperature, top_k, top_p).softmax(dim=-1)  # [B, V]
        return torch.multinomial(probs, 1, generator=generator).squeeze(1)  # [B]

    return _decode(model, src, prefix, batch_size, max_new_tokens, use_cache, choose)


def beam(
    model: Any,
    src: torch.Tensor | None = None,
    *,
    prefix: torch.Tensor | None = None,
    batch_size: int | None = None,
    beam_size: int = 4,
    max_new_tokens: int | None = None,
    length_penalty: float = 0.6,
    use_cache: bool = True,
    return_all: bool = False,
) -> torch.Tensor | tuple[torch.Tensor, torch.Tensor]:
    """Beam search with GNMT's length penalty (Wu et al. 2016).

    Keeps ``beam_size`` hypotheses per sequence, ranked by
    ``log P(Y | X) / ((5 + |Y|) / 6) ** alpha`` where ``|Y|`` counts the generated tokens
    (EOS included). A hypothesis that has produced EOS stays in the beam with a fixed score
    and competes with the growing ones, so the search ends when all ``beam_size``
    hypotheses of every sequence have ended (or after ``max_new_tokens``). All sequences
    and beams run as one batch of ``B * beam_size`` rows; the model's state follows the
    surviving hypotheses through ``reorder_state`` (``index_select(0)``).

    Args:
        model: any model with the decoding protocol (as for ``greedy``).
        src: ``[B, S]`` source ids, or None for a language model (as for ``greedy``).
        prefix: ``[B, t0]`` tokens to continue (as for ``greedy``).
        batch_size: sequences when there is neither ``src`` nor ``prefix``.
        max_new_tokens: most tokens to add (as for ``greedy``).
        use_cache: let the model reuse its attention caches (as for ``greedy``).
        beam_size: hypotheses kept per sequence; 1 equals greedy decoding.
        length_penalty: ``alpha`` above; 0.6 is what Vaswani et al. 2017 used, 0 ranks by
            raw log-probability.
        return_all: also return every final hypothesis and its score.

    Returns:
        ``[B, t0 + n]``: the best hypothesis of each sequence (see ``greedy``); with
        ``return_all``: ``(tokens [B, beam_size, t0 + n], scores [B, beam_size])``, best
        first, scores length-normalised.

    Raises:
        SpecError: a bad argument or a model without the decoding protocol.
        ShapeError: ``prefix`` is not integer ids ``[B, t0]``.
        NumericsError: the first step's logits hold NaN (a broken model or checkpoint).

    Example:
        >>> model = nnblocks.build({"name": "transformer_seq2seq", "vocab_size": 30,
        ...                         "dim": 16, "heads": 2})
        >>> src = torch.randint(3, 30, (2, 6))
        >>> tokens, scores = nnblocks.generate.beam(
        ...     model, src, beam_size=3, max_new_tokens=8, return_all=True)
        >>> tokens.shape[:2], bool((scores[:, :-1] >= scores[:, 1:]).all())
        (torch.Size([2, 3]), True)
    """
    _check_beam_options(beam_size, length_penalty)
    with _decoding(model):
        start, state = _start(model, src, prefix, batch_size)
        search = _Beams(
            start, beam_size, float(length_penalty), *stop_and_fill(model, start.device)
        )
        state = reorder_state(state, search.expand)
        budget = _budget(model, start.shape[1], max_new_tokens)
        with _weight_layout(model, budget):
            for step in range(budget):
                logits, state = model.step(search.tokens, state, use_cache=use_cache)
                if step == 0:
                    _check_first_logits(logits)
                pick = search.advance(logits)  # logits: [n*k, V]
                state = reorder_state(state, pick)
                if bool(search.done.all()):
                    break
        tokens, final = search.ranked()
    if return_all:
        return _outside(tokens), _outside(final)
    return _outside(tokens[:, 0])


def _check_beam_options(beam_size: Any, length_penalty: Any) -> None:
    if isinstance(beam_size, bool) or not isinstance(beam_size, int) or beam_size < 1:
        raise _invalid("beam_size", "a positive integer", beam_size)
    if (
        isinstance(length_penalty, bool)
        or not isinstance(length_penalty, (int, float))
        or not 0 <= length_penalty < math.inf  # NaN fails this too
    ):
        raise _invalid("length_penalty", "a finite number >= 0", length_penalty)


class _Beams:
    """The hypotheses of a beam search: ``k`` rows per sequence in one flat batch.

    Attributes:
        tokens: ``[n*k, t]`` every hypothesis so far.
        scores: ``[n, k]`` raw log-probabilities; lengths ``[n, k]`` generated tokens
            (EOS included); done ``[n, k]`` whether a hypothesis has ended.
        expand: ``[n*k]`` the source row of each flat row (to expand the model's state).
    """

    def __init__(
        self, start: torch.Tensor, k: int, alpha: float, eos: int | torch.Tensor, fill: int
    ):
        n, device = start.shape[0], start.device
        self.n, self.k, self.alpha, self.eos, self.fill = n, k, alpha, eos, fill
        self.expand = torch.arange(n, device=device).repeat_interleave(k)  # [n*k]
        self.tokens = start[self.expand]
        # Only the first copy of each sequence is alive at first, so the first step does not
        # pick the same token k times.
        self.scores = torch.full((n, k), float("-inf"), device=device)
        self.scores[:, 0] = 0.0
        self.lengths = torch.zeros(n, k, dtype=torch.long, device=device)
        self.done = torch.zeros(n, k, dtype=torch.bool, device=device)
        self.rows = torch.arange(n, device=device)[:, None] * k  # [n, 1]
        self._ended: torch.Tensor | None = None

    def advance(self, logits: torch.Tensor) -> torch.Tensor:
        """Grow every hypothesis by one token; returns the flat rows that survive ``[n*k]``."""
        n, k = self.n, self.k
        logp = logits.float().log_softmax(dim=-1).view(n, k, -1)  # [n, k, V]
        vocab = logp.shape[-1]
        if self._ended is None or self._ended.shape[0] != vocab:
            # An ended hypothesis continues only with the fill token, at no cost.
            self._ended = torch.full((vocab,), float("-inf"), device=logp.device)
            self._ended[self.fill] = 0.0
        logp = torch.where(self.done[..., None], self._ended, logp)
        candidates = self.scores[..., None] + logp  # [n, k, V]
        grown = self.lengths + (~self.done).long()  # [n, k]
        ranked = candidates / gnmt_length_penalty(grown, self.alpha)[..., None]
        best = ranked.view(n, -1).topk(k, dim=-1).indices  # [n, k] over k*V
        source, token = best // vocab, best % vocab  # [n, k]
        self.scores = candidates.view(n, -1).gather(1, best)
        self.lengths = grown.gather(1, source)
        self.done = self.done.gather(1, source) | ended(token, self.eos)
        pick = (self.rows + source).view(-1)  # [n*k] rows of the flat batch
        self.tokens = torch.cat([self.tokens[pick], token.view(-1, 1)], dim=1)
        return pick

    def ranked(self) -> tuple[torch.Tensor, torch.Tensor]:
        """``(tokens [n, k, t], scores [n, k])``, best first, scores length-normalised."""
        n, k = self.n, self.k
        final = self.scores / gnmt_length_penalty(self.lengths, self.alpha)  # [n, k]
        final, order = final.sort(dim=-1, descending=True)
        tokens = self.tokens.view(n, k, -1)
        return tokens.gather(1, order[..., None].expand(-1, -1, tokens.shape[2])), final
