"""A corpus kept on the host (array or memory-mapped `.npy`) that feeds row batches to the training device.

Only the rows a step needs leave the host: they are gathered into pinned memory and copied to CUDA without
blocking, optionally one step ahead in a background thread, so the GPU never holds the corpus and the
host never waits for the GPU.
"""

from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor

import numpy as np
import torch

_TORCH_DTYPES = {np.dtype(np.float32): torch.float32, np.dtype(np.float16): torch.float16}


class HostCorpus:
    """Vectors `(n, dim)` float32/float16 on the host, gathered by row to `device` as float32.

    Args:
        vectors: an array or `np.memmap`; never copied whole.
        device: where batches go; for CUDA the rows go through pinned memory with non-blocking copies (the
            caching host allocator keeps a pinned block until its copy has run, so nothing is overwritten).
        prefetch: gather the next batch in a background thread while the device works (default: on CUDA).

    `rows_gathered` counts the rows read so far: per-step work is independent of n.
    """

    def __init__(self, vectors: np.ndarray, device: torch.device, prefetch: bool | None = None) -> None:
        self.vectors, self.device = vectors, torch.device(device)
        self.pinned = self.device.type == "cuda"
        prefetch = self.pinned if prefetch is None else prefetch
        self._pool = ThreadPoolExecutor(1, thread_name_prefix="host-corpus") if prefetch else None
        self.rows_gathered = 0

    def __len__(self) -> int:
        return self.vectors.shape[0]

    def host_rows(self, rows: np.ndarray) -> torch.Tensor:
        """`vectors[rows]` `(len(rows), dim)` in the stored dtype, on the host (pinned for CUDA)."""
        self.rows_gathered += len(rows)
        if not self.pinned:
            return torch.from_numpy(np.take(self.vectors, rows, axis=0))
        dtype = _TORCH_DTYPES[self.vectors.dtype]
        out = torch.empty((len(rows), self.vectors.shape[1]), dtype=dtype, pin_memory=True)
        np.take(self.vectors, rows, axis=0, out=out.numpy(), mode="clip")  # rows are valid: skip the check
        return out

    def to_device(self, host: torch.Tensor) -> torch.Tensor:
        """A `host_rows` result on the device as float32 (non-blocking from pinned memory)."""
        return host.to(self.device, non_blocking=self.pinned).float()

    def gather(self, rows: np.ndarray) -> torch.Tensor:
        """`vectors[rows]` `(len(rows), dim)` float32 on the device."""
        return self.to_device(self.host_rows(rows))

    def submit(self, rows: np.ndarray) -> Future | None:
        """Start `host_rows(rows)` in the background; None when prefetching is off."""
        return self._pool.submit(self.host_rows, rows) if self._pool else None

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
