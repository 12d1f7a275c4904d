"""The checks of `edgesmith verify` that make libraries interpret the bundle's files (verify.py, steps 6 to 8):
AutoTokenizer and the bundle's tokenizer.json on the reference sentences, and edgesmith's runtime on its model. They
run here, in a child process under a memory limit that verify waits for with a time limit: a 747-byte ONNX `Loop`
had run for ever, a 36 KB tokenizer.json's regular expressions for hours, and the Rust panic of one had ended verify
in a traceback (red-team 6). Nothing of the bundle is imported here either.

Usage (verify.py starts it): python -P -m edgesmith.verify_run BUNDLE_FOLDER RESULT_JSON [--no-memory-limit]
Writes RESULT_JSON: {"passed": [lines]} or {"error": "one line"}; exit status 0 or 2. --no-memory-limit: for bundles
whose session names GPU execution providers, which reserve address space far beyond any such limit (the timeout
still holds)."""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path

MEMORY_LIMIT = 8 * 2**30  # address space: a BERT-family bundle runs in well under 1 GB (MiniLM: 0.65 GB with the libraries)


def main(argv: list[str]) -> int:
    folder, result_file = Path(argv[0]), Path(argv[1])
    if "--no-memory-limit" not in argv[2:]:
        resource.setrlimit(resource.RLIMIT_AS, (MEMORY_LIMIT, MEMORY_LIMIT))
    from .errors import EdgesmithError

    try:
        from .verify import sandboxed_checks

        result = {"passed": sandboxed_checks(folder)}
    except EdgesmithError as err:
        result = {"error": str(err)}
    except MemoryError:
        result = {"error": f"its tokenizer or model asked for more than {MEMORY_LIMIT / 2**30:.0f} GiB of memory on the "
                           "reference sentences (a genuine bundle needs well under 1 GiB); tampered bundle, rebuild it"}
    except BaseException as err:  # noqa: BLE001  a Rust panic in `tokenizers` is pyo3's PanicException, a BaseException
        first = (str(err).strip().splitlines() or [type(err).__name__])[0][:200]
        result = {"error": f"the library reading its tokenizer or model failed ({type(err).__name__}: {first}); "
                           "tampered or broken bundle, rebuild it"}
    result_file.write_text(json.dumps(result))
    return 0 if "passed" in result else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
