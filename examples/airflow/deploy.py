"""Save the pipeline's cluster and five functions in den, and let a user (or a
service account) call them: ``python deploy.py --share bob``.

Run it as the functions' owner (after ``den login``). It saves
``~/pipeline-cpu`` (a ``local`` cluster unless ``--cluster`` names one you have)
and ``~/preprocess``, ``~/split``, ``~/train``, ``~/predict``, ``~/accuracy``,
then gives each ``--share`` name read access: enough to call the functions and
use their refs, not to change them.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import pipeline

import den


def deploy(cluster: str | None = None, share: tuple[str, ...] = ()) -> list[den.Function]:
    """Save the cluster (when not given) and the functions; share them read-only."""
    if cluster is None:
        target = den.cluster(name="pipeline-cpu", provider="local")
        target.save()
        target.up_if_not(timeout=120)
    else:
        target = den.cluster(name=cluster)
    saved = [den.function(step).to(target).save() for step in pipeline.STEPS]
    for name in share:
        target.share(name, access_level="read")
        for fn in saved:
            fn.share(name)
    return saved


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cluster", help="a saved cluster to use (default: a local one)")
    parser.add_argument("--share", action="append", default=[],
                        help="a user, org or service account to give read access (repeatable)")
    args = parser.parse_args()
    for fn in deploy(args.cluster, tuple(args.share)):
        print(fn.address)


if __name__ == "__main__":
    main()
