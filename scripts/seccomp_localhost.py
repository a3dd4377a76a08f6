"""Generates the Helm chart's Localhost seccomp profile (deploy/helm/armillary/files/
worker-seccomp.json) from the worker's Docker profile (deploy/seccomp/worker.json), the one
source of truth for both (ADR 0027, ADR 0034).

Docker resolves its profile's `includes`/`excludes` (capabilities, architectures, kernel) when
it starts a container; a kubelet's Localhost profile is the OCI form, without them. This
resolves them as the worker pod runs: no capabilities (drop ALL), the x86 and Arm
architectures, a kernel of at least 4.8, and keeps each remaining rule in order.

    python3 scripts/seccomp_localhost.py           # rewrite the chart's file
    python3 scripts/seccomp_localhost.py --check   # exit 1 if it differs (a deploy test)
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SOURCE = ROOT / "deploy" / "seccomp" / "worker.json"
TARGET = ROOT / "deploy" / "helm" / "armillary" / "files" / "worker-seccomp.json"
# Docker's architecture names of the nodes the chart supports, and their seccomp names.
ARCHES = {"amd64": "SCMP_ARCH_X86_64", "x86": "SCMP_ARCH_X86", "x32": "SCMP_ARCH_X32",
          "arm64": "SCMP_ARCH_AARCH64", "arm": "SCMP_ARCH_ARM"}  # fmt: skip
CAPABILITIES: frozenset[str] = frozenset()  # the worker drops ALL
KERNEL = (4, 8)


def _applies(rule: dict[str, Any]) -> bool:
    includes, excludes = rule.get("includes", {}), rule.get("excludes", {})
    if "arches" in includes and not set(includes["arches"]) & ARCHES.keys():
        return False
    if "caps" in includes and not set(includes["caps"]) <= CAPABILITIES:
        return False
    if "minKernel" in includes:
        wanted = tuple(int(part) for part in includes["minKernel"].split("."))
        if wanted > KERNEL:
            return False
    if "arches" in excludes and ARCHES.keys() <= set(excludes["arches"]):
        return False
    return not ("caps" in excludes and set(excludes["caps"]) & CAPABILITIES)


def localhost_profile(docker: dict[str, Any]) -> dict[str, Any]:
    """The OCI profile a kubelet loads, for ``docker``, a Docker seccomp profile."""
    unconditional: set[str] = set()
    rules: list[dict[str, Any]] = []
    for rule in docker["syscalls"]:
        if not _applies(rule):
            continue
        kept = {k: v for k, v in rule.items() if k not in {"includes", "excludes", "comment"}}
        if set(kept) == {"names", "action"} and kept["action"] == "SCMP_ACT_ALLOW":
            unconditional.update(kept["names"])
        else:
            rules.append(kept)
    return {
        "defaultAction": docker["defaultAction"],
        "defaultErrnoRet": docker.get("defaultErrnoRet", 1),
        "architectures": list(ARCHES.values()),
        "syscalls": [{"names": sorted(unconditional), "action": "SCMP_ACT_ALLOW"}, *rules],
    }


def render() -> str:
    return json.dumps(localhost_profile(json.loads(SOURCE.read_text())), indent=2) + "\n"


def main() -> int:
    text = render()
    if sys.argv[1:] == ["--check"]:
        if TARGET.read_text() != text:
            print(f"{TARGET.relative_to(ROOT)} is stale: run python3 scripts/seccomp_localhost.py")
            return 1
        return 0
    TARGET.write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
