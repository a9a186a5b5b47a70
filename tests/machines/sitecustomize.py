"""Plays another machine in every Python process started with this folder on PYTHONPATH (the
tests' kernels and CLI runs included), for the answers no environment variable of torch gives:

- ``MIMLIB_TEST_CUDA_VISIBLE=1``: ``torch.cuda.is_available()`` says True (one device), though
  there is none, so a profile pinned to the CPU that asks CUDA anyway is caught;
- ``MIMLIB_TEST_THREADS=N``: torch computes with N threads (``OMP_NUM_THREADS`` is capped at
  the cores).

The CPU's own answers come from torch's and oneDNN's variables: ``ATEN_CPU_CAPABILITY=avx2``
(the kernels of an AVX2 CPU) and ``ONEDNN_MAX_CPU_ISA=AVX2`` (no native bf16).
"""

import os

if os.environ.get("MIMLIB_TEST_CUDA_VISIBLE") == "1":
    import torch

    torch.cuda.is_available = lambda: True
    torch.cuda.device_count = lambda: 1

if os.environ.get("MIMLIB_TEST_THREADS"):
    import torch

    torch.set_num_threads(int(os.environ["MIMLIB_TEST_THREADS"]))
