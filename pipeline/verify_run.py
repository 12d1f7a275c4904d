"""The checks of `edgesmith verify` that make libraries interpret the bundle's files (verify.py, steps 6 to 8):
AutoTokenizer and the bundle's tokenizer.json on the reference sentences, and edgesmith's runtime on its model. They
run here, in a child process fenced before any bundle file is read: a 747-byte ONNX `Loop` had run for ever, a 36 KB
tokenizer.json's regular expressions for hours, and the Rust panic of one had ended verify in a traceback (red-team 6).
Nothing of the bundle is imported here either.

Usage (verify.py starts it): python -P -m edgesmith.verify_run BUNDLE RESULT_JSON SECONDS PARENT_PID [--no-memory-limit]

The fence: at most MEMORY_LIMIT of address space (--no-memory-limit: for bundles whose GPU execution providers exist
on this machine, which reserve address space far beyond it), SECONDS of CPU time beyond the parent's wall-clock
timeout, killed with the parent (PR_SET_PDEATHSIG: a verify that is itself stopped had left an endless child running
as an orphan), and output files (stderr, which verify keeps in a file) capped at OUTPUT_LIMIT. Writes RESULT_JSON
atomically: {"passed": [lines]}, {"error": "one line"} (the bundle failed) or {"setup": "one line"} (the fence could
not be set up on this machine: not the bundle's fault); exit status 0, 2 or 3."""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
from pathlib import Path

MEMORY_LIMIT = 8 * 2**30  # address space: a 1.4 GB model peaked at 4.3 GB of it (MiniLM's bundle: 0.65 GB resident)
OUTPUT_LIMIT = 8 * 2**20  # bytes of any file the child writes: ONNX Runtime prints a line per unused initializer


def fence(seconds: float, parent: int, memory: bool) -> None:
    """The limits above, set before any file of the bundle is read. Raises OSError/ValueError where this machine
    cannot set them (a lower hard limit is kept as it is)."""
    if memory:
        _lower(resource.RLIMIT_AS, MEMORY_LIMIT)
    _lower(resource.RLIMIT_CPU, int(seconds) + 10)
    _lower(resource.RLIMIT_FSIZE, OUTPUT_LIMIT)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # past OUTPUT_LIMIT a write fails instead of killing the process
    if sys.platform.startswith("linux"):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(1, signal.SIGKILL, 0, 0, 0) != 0:  # 1: PR_SET_PDEATHSIG
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent:  # the parent died before the line above: nobody waits for this process
        raise SystemExit(4)


def _lower(limit: int, value: int) -> None:
    soft, hard = resource.getrlimit(limit)
    value = value if hard == resource.RLIM_INFINITY else min(value, hard)
    resource.setrlimit(limit, (value, hard if hard != resource.RLIM_INFINITY else value))


def main(argv: list[str]) -> int:
    folder, result_file, seconds, parent = Path(argv[0]), Path(argv[1]), float(argv[2]), int(argv[3])
    try:
        fence(seconds, parent, memory="--no-memory-limit" not in argv[4:])
        from .errors import EdgesmithError
        from .verify import sandboxed_checks
    except (OSError, ValueError, ImportError) as err:
        return _write(result_file, {"setup": f"{type(err).__name__}: {err}"})
    try:
        result = {"passed": sandboxed_checks(folder)}
    except EdgesmithError as err:
        result = {"error": str(err)}
    except MemoryError:
        result = {"error": f"its tokenizer or model asked for more than {MEMORY_LIMIT / 2**30:.0f} GiB of address space on "
                           "the reference sentences (a genuine bundle needs a few GiB at most); tampered bundle, rebuild it"}
    except BaseException as err:  # noqa: BLE001  a Rust panic in `tokenizers` is pyo3's PanicException, a BaseException
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        result = {"error": f"the library reading its tokenizer or model failed ({type(err).__name__}: {first}); "
                           "tampered or broken bundle, rebuild it"}
    return _write(result_file, result)


def _write(result_file: Path, result: dict[str, object]) -> int:
    """The verdict, renamed into place: verify never reads half of one."""
    partial = result_file.with_suffix(".partial")
    partial.write_text(json.dumps(result))
    os.replace(partial, result_file)
    return 0 if "passed" in result else 3 if "setup" in result else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
