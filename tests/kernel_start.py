"""A kernel that dies while starting is started again, and says why (pytest plugin for nbval).

Seen once in a clean-clone CI run (``make test``, two nbval workers): the kernel for
``chapters/03_synflow.ipynb`` exited before replying to ``kernel_info``, and nbval reported all
37 of its cells as errors. nbval sends the kernel's stderr to ``os.devnull``, so the reason was
lost; 170 kernel starts in a loop afterwards (two at a time, with and without two CPU-bound
processes beside them) did not fail again.

A kernel that died while starting has run none of the notebook's cells, so starting another one
changes no result. With ``-p tests.kernel_start`` nbval's ``start_new_kernel`` keeps the
kernel's stderr in a temporary file and, when the start fails, issues a warning with the end of
that stderr (pytest's warnings summary shows it, also from xdist workers) and tries again, up to
``ATTEMPTS`` times in all; the last failure is raised as before.
"""

from __future__ import annotations

import tempfile
import warnings

import nbval.kernel

ATTEMPTS = 3
TAIL = 2000  # characters of the kernel's stderr shown in the warning

_original_start = nbval.kernel.start_new_kernel


class KernelStartWarning(UserWarning):
    """A kernel died while starting; it was started again."""


def start_new_kernel(startup_timeout=60, kernel_name="python", **kwargs):
    """nbval's ``start_new_kernel``, tried up to ``ATTEMPTS`` times, the kernel's stderr kept."""
    devnull = kwargs.pop("stderr", None)    # nbval opens os.devnull for it, and drops it
    if devnull is not None:
        devnull.close()
    for attempt in range(1, ATTEMPTS + 1):
        stderr = tempfile.TemporaryFile(mode="w+", prefix="kernel-stderr-")
        try:
            return _original_start(startup_timeout=startup_timeout, kernel_name=kernel_name,
                                   stderr=stderr, **kwargs)
        except RuntimeError as error:
            stderr.seek(0)
            said = stderr.read()[-TAIL:].strip() or "(nothing on stderr)"
            warnings.warn(f"kernel start {attempt} of {ATTEMPTS} failed: {error}; "
                          f"the kernel's stderr:\n{said}", KernelStartWarning, stacklevel=2)
            if attempt == ATTEMPTS:
                raise
        finally:
            stderr.close()        # the kernel keeps its own descriptor of the file


def pytest_configure(config):
    nbval.kernel.start_new_kernel = start_new_kernel
