"""The bundle stage's cache key holds its version, not the bytes of the code it writes into bundles: a template or
bundle-side function changed without a version bump leaves cached bundles whose code `edgesmith verify` then refuses
(found 2026-12-08: bench.py changed on 2026-12-07 at the same version, and the sst2 runs' cached bundles failed
verify). This pins those bytes to the version, so such a change fails here until the version is bumped."""

import hashlib

from edgesmith import stages  # noqa: F401  (registers the stages)
from edgesmith.bundle_code import TEMPLATE_FILES, TEMPLATES, generate
from edgesmith.registry import STAGES
from edgesmith.runtimes import RUNTIMES
from edgesmith.tasks import TASKS

# bundle stage version -> sha256 of the code it writes (templates, then each runtime's and task's generated module)
PINNED = {16: "4ec27774652d888622f8d95b497c77901dc4cfea74721c1696562ed32ca02334"}


def bundle_code_digest() -> str:
    h = hashlib.sha256()
    for name in TEMPLATE_FILES:
        h.update((TEMPLATES / name).read_bytes())
    for table in (RUNTIMES, TASKS):
        for key in sorted(table):
            h.update(generate([("m.py", table[key].bundle_functions)])["m.py"])
    return h.hexdigest()


def test_the_code_bundles_carry_changes_only_with_the_bundle_stage_version():
    version = STAGES["bundle"].version
    assert version in PINNED, f"bundle stage version {version} has no pinned code digest; add {bundle_code_digest()}"
    assert bundle_code_digest() == PINNED[version], (
        f"the code bundles carry changed ({bundle_code_digest()}) at bundle stage version {version}: bump the version "
        "in pipeline/stages/bundle.py (cached bundles would keep the old code, which verify refuses) and pin the new digest")
