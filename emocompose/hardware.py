"""What this machine can do for training: which device, which precision, how fast a matmul is
(the denominator of MFU), and how the C allocator should treat freed memory."""

from __future__ import annotations

import os
import time
from contextlib import contextmanager

from emocompose.errors import UsageError

PRECISIONS = ("auto", "bf16", "fp32")
DEVICES = ("auto", "cpu", "cuda")


def keep_freed_memory() -> None:
    """Ask glibc to keep freed memory instead of returning it to the OS.

    A training step allocates tensors of tens of MB; glibc hands allocations that large back to
    the OS when freed, so every step pays page faults to get them again (measured: the first
    steps ran 1.5x slower). With mmap off and trimming raised, the heap is reused.
    """
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-4, 0)  # M_MMAP_MAX: never mmap
        libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD: keep up to 1 GB of freed memory
    except (OSError, AttributeError):
        pass


def _matmul_rate(dtype_name: str, size: int, seconds: float, windows: int) -> float:
    """FLOP/s of a size x size matmul: the best of `windows` windows (each at least one product),
    since a neighbour's load can only make a window slower."""
    import torch

    dtype = torch.bfloat16 if dtype_name == "bf16" else torch.float32
    a = torch.randn(size, size, dtype=dtype)
    b = torch.randn(size, size, dtype=dtype)
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < seconds / 4:  # warm up: the first products run slower
        a @ b
    best = 0.0
    for _ in range(windows):
        n, t0 = 0, time.perf_counter()
        while n == 0 or time.perf_counter() - t0 < seconds / windows:
            a @ b
            n += 1
        best = max(best, 2 * size**3 * n / (time.perf_counter() - t0))
    return best


def matmul_peak(dtype_name: str = "bf16", seconds: float = 0.5) -> float:
    """FLOP/s of a large square matmul on this machine, the denominator of MFU (so MFU errs low)."""
    return _matmul_rate(dtype_name, 1024, seconds, 5)


def cpu_precision() -> str:
    """bf16 where this CPU multiplies bf16 natively (AMX, AVX512-BF16: training measured 1.2-1.8x
    faster), fp32 where bf16 is emulated (AVX2-only CPUs such as AMD Zen 3 and most laptops:
    matmuls measured over 100x slower, see README). Decided by timing both, not by CPU flags,
    so it holds on any CPU torch runs on."""
    # alternating rounds, best of each: a single round once took fp32 on a CPU where bf16
    # matmuls are 2.2x faster (a resumed run just after the machine booted)
    rates = {"bf16": 0.0, "fp32": 0.0}
    for _ in range(2):
        for d in rates:
            rates[d] = max(rates[d], _matmul_rate(d, 512, 0.2, 2))
    return "bf16" if rates["bf16"] > 1.2 * rates["fp32"] else "fp32"


def pick_device(name: str):
    """auto: the process's GPU when torch sees one, else the CPU."""
    import torch

    if name not in DEVICES:
        raise UsageError(f"device takes {', '.join(DEVICES)}, not {name!r}")
    if name == "cuda" and not torch.cuda.is_available():
        raise UsageError("device cuda asked for, but torch sees no CUDA GPU (a CPU build of torch?)")
    if name == "cpu" or not torch.cuda.is_available():
        return torch.device("cpu")
    return torch.device("cuda", int(os.environ.get("LOCAL_RANK", 0)))




def resolve_precision(precision: str, device, ddp: bool) -> str:
    """`auto` made concrete: bf16 on a GPU that has it, on a CPU where it is native (timed);
    under DDP every rank takes rank 0's choice, since timings differ between processes."""
    import torch

    if precision != "auto":
        return precision
    if device.type == "cpu":
        precision = cpu_precision()
    else:
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp32"
    if ddp:
        import torch.distributed as dist

        flag = torch.tensor([precision == "bf16"], dtype=torch.int64, device=device)
        dist.broadcast(flag, 0)
        precision = "bf16" if flag.item() else "fp32"
    return precision


def int8_decoding(device) -> bool:
    """Whether decoding reads its weights as int8 (`model.step.Product`): on an x86 CPU, where
    torch's int8 product is vectorised (AVX2, AVX-512). For one piece, reading the weights is
    most of a token's time and int8 reads a quarter of the bytes; for a batch it paid too
    (session 19, torch 2.13, whole decodings alternated in one process on 2 cores: 8 pieces of 20
    bars 3.0 against 5.4 s, 25 pieces 9.4 against 11.1, 40 pieces 13.3 against 15.0), and each
    row's product comes out the same whatever rows are beside it. Chosen by what the CPU is,
    not by timing, so that the same seed gives the same bytes run after run on one machine."""
    import torch

    return device.type == "cpu" and torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512")


THREADS_ENV = "EMOCOMPOSE_THREADS"


@contextmanager
def torch_threads(n: int):
    """torch's threads set to n for the block, and put back after it."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def set_decoding_threads(batch: int) -> int:
    """The CPU threads a command decoding `batch` pieces at once uses, set for this process:
    $EMOCOMPOSE_THREADS if set, else torch's own choice if $OMP_NUM_THREADS is set or for a
    batch, else one thread for a single piece. Why: a second thread makes one piece only about
    a tenth faster on an otherwise idle machine (its tokens are a chain of small operations),
    while processes that each spin up a thread per core fight over the cores: two 20-bar
    `generate` started together on 2 cores took 24 to 192 s, and 2.9 s with one thread each
    (`benchmarks/generate_speed.py`). A batch's parts decode on one thread each, in as many
    processes as this count allows (`sampling.PARTS`)."""
    import torch

    if os.environ.get(THREADS_ENV):
        try:
            n = int(os.environ[THREADS_ENV])
        except ValueError:
            raise UsageError(f"{THREADS_ENV} must be a whole number of threads, not {os.environ[THREADS_ENV]!r}") from None
        torch.set_num_threads(max(1, n))
    elif batch == 1 and not os.environ.get("OMP_NUM_THREADS"):
        torch.set_num_threads(1)
    return torch.get_num_threads()
