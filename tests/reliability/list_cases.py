"""Print the Markdown table of reliability cases for docs/reliability.md, from the tests themselves:

    .venv/bin/python tests/reliability/list_cases.py >> docs/reliability.md   (then move it under the heading)
"""

from __future__ import annotations

import subprocess
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SUITES = ("tests/reliability/test_bad_inputs.py", "tests/reliability/test_run_folder.py",
          "tests/reliability/test_verify_security.py", "tests/test_bundle_parity.py")


def bad_input_table() -> None:
    """The bad-input cases with the words their one error line must contain; each runs fresh and as a rerun."""
    sys.path[:0] = [str(ROOT / "tests"), str(ROOT / "tests" / "reliability")]
    from test_bad_inputs import CASES

    print("Every case: exit 2, one line on stderr, no traceback; run fresh (no run folder left) and as a rerun into a "
          "finished run folder (left byte for byte as it was).\n")
    print("| bad input | the error line names |\n|---|---|")
    for name, (needles, _) in CASES.items():
        print(f"| `{name}` | {', '.join(f'`{n}`' for n in needles)} |")
    print()


def main() -> None:
    bad_input_table()
    done = subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *SUITES],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    by_test: dict[tuple[str, str], list[str]] = defaultdict(list)
    for line in done.stdout.splitlines():
        if "::" not in line:
            continue
        path, test = line.split("::", 1)
        name, _, params = test.partition("[")
        by_test[(path, name)].append(params.rstrip("]"))
    total = sum(len(v) for v in by_test.values())
    print(f"{total} cases in {len(by_test)} tests.\n")
    print("| suite | test | cases |\n|---|---|---|")
    for (path, name), params in by_test.items():
        if name == "test_bad_input_is_refused_before_any_work":
            print(f"| `{Path(path).name}` | `{name}` | {len(params)}: the table above, fresh and rerun |")
            continue
        cases = ", ".join(f"`{p}`" for p in params if p) or "1"
        print(f"| `{Path(path).name}` | `{name}` | {cases} |")


if __name__ == "__main__":
    main()
