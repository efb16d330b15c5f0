"""Slow attention checks, run only when asked (``slow=True``, ``--slow``).

``torch.compile`` and ``torch.export`` each take seconds, and the speed and memory comparison
against the built-in ``mha`` runs several sequence lengths.
"""

from __future__ import annotations

import time

import torch
from torch import nn

from nnblocks.check.contracts.base import Context, check, expect_close, fail, first, skip, warn

__all__ = ["CHECKS", "activation_bytes", "time_steps"]

LENGTHS = (64, 256, 1024)


def _eager(ctx: Context) -> tuple[nn.Module, torch.Tensor, torch.Tensor, torch.Tensor]:
    """A fresh part, its input x [B, T, D] and mask [B, T] (row 0 padded), and its eager output."""
    module = ctx.fresh()
    x = ctx.randn(ctx.B, ctx.T, ctx.D)
    mask = torch.ones(ctx.B, ctx.T, dtype=torch.bool, device=ctx.device)
    mask[0, -2:] = False
    with torch.no_grad():
        eager = first(module(x, mask=mask, causal=True))
    return module, x, mask, eager


@check("torch_compile", slow=True)
def torch_compile(ctx: Context) -> str:
    """torch.compile(part) gives the eager outputs and gradients."""
    module, x, mask, eager = _eager(ctx)
    torch._dynamo.reset()  # a clean cache: a previous part's graph must not be reused
    compiled = torch.compile(module)
    xg = x.clone().requires_grad_(True)
    out = first(compiled(xg, mask=mask, causal=True))
    expect_close(out.detach(), eager, 1e-4, "compiled output differs from eager")
    out.sum().backward()
    if xg.grad is None or not bool(torch.isfinite(xg.grad).all()):
        fail("the compiled part gives no finite gradient for x")
    return "compiled forward matches eager; backward runs"


@check("torch_export", slow=True)
def torch_export(ctx: Context) -> str:
    """torch.export captures the part with a mask and causal=True; the program matches eager."""
    module, x, mask, eager = _eager(ctx)
    program = torch.export.export(module, (x,), {"mask": mask, "causal": True})
    with torch.no_grad():
        out = first(program.module()(x, mask=mask, causal=True))
    expect_close(out, eager, 1e-5, "the exported program's output differs from eager")
    return f"exported ({len(program.graph.nodes)} graph nodes); output matches eager"


def activation_bytes(module: nn.Module, x: torch.Tensor, **kwargs: object) -> int:
    """Bytes of tensors saved for backward by one forward (unique storages): training memory.

    Device-independent, so CPU runs measure memory too; on CUDA the kit reports the
    allocator's peak instead.
    """
    seen: dict[int, int] = {}

    def pack(t: torch.Tensor) -> torch.Tensor:
        storage = t.untyped_storage()
        seen[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        first(module(x, **kwargs)).sum()
    return sum(seen.values())


def _peak_bytes(module: nn.Module, x: torch.Tensor, mask: torch.Tensor) -> int:
    if x.device.type != "cuda":
        return activation_bytes(module, x, mask=mask, causal=True)
    torch.cuda.synchronize(x.device)
    torch.cuda.reset_peak_memory_stats(x.device)
    base = torch.cuda.memory_allocated(x.device)
    first(module(x, mask=mask, causal=True)).sum().backward()
    torch.cuda.synchronize(x.device)
    return torch.cuda.max_memory_allocated(x.device) - base


def time_steps(
    modules: list[nn.Module], x: torch.Tensor, mask: torch.Tensor, repeats: int = 5
) -> list[float]:
    """Best seconds of one forward + backward for each module, timed in alternation.

    Alternating the modules and keeping the best of several runs makes the ratio robust to
    other work on the machine, which slows whichever run it lands on.
    """

    def step(module: nn.Module) -> float:
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        start = time.perf_counter()
        module.zero_grad(set_to_none=True)
        first(module(x, mask=mask, causal=True)).sum().backward()
        if x.device.type == "cuda":
            torch.cuda.synchronize(x.device)
        return time.perf_counter() - start

    for module in modules:
        step(module)  # warm-up: lazy initialisation, kernel selection
    best = [float("inf")] * len(modules)
    for _ in range(repeats):
        for i, module in enumerate(modules):
            best[i] = min(best[i], step(module))
    return best


@check("speed_memory_vs_mha", slow=True)
def speed_memory_vs_mha(ctx: Context) -> str:
    """Forward+backward time and training memory against the built-in `mha`, several lengths."""
    from nnblocks import registry

    if "mha" not in registry.list_parts("attention"):
        skip("the built-in `mha` is not registered")
    reference = registry.build("mha", "attention", dim=ctx.D, heads=ctx.H).to(ctx.device)
    module = ctx.fresh(train=True)
    reference.train()
    rows, worst = [], 0.0
    for length in LENGTHS:
        x = ctx.randn(ctx.B, length, ctx.D, dtype=torch.float32).requires_grad_(True)
        mask = torch.ones(ctx.B, length, dtype=torch.bool, device=ctx.device)
        t_part, t_ref = time_steps([module, reference], x, mask)
        m_part, m_ref = _peak_bytes(module, x, mask), _peak_bytes(reference, x, mask)
        speed, memory = t_part / t_ref, m_part / max(m_ref, 1)
        worst = max(worst, speed, memory)
        rows.append(f"T={length}: time x{speed:.2f}, memory x{memory:.2f}")
    message = "vs mha: " + "; ".join(rows)
    if worst > 3.0:
        warn(message + " (more than 3x the built-in)")
    return message


CHECKS = (torch_compile, torch_export, speed_memory_vs_mha)
