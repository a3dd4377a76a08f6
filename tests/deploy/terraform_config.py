"""Terraform under deploy/terraform, parsed by python-hcl2's `hcl2tojson` in a subprocess
(python-hcl2 lives in .tools/venv, apart from checkov's fork of the same module name), and
looked up by module, block type and name."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tests.deploy.conftest import DEPLOY, TOOLS, run

TERRAFORM = DEPLOY / "terraform"
# By path: conftest's tool() looks in .tools/checkov first, whose bc-python-hcl2 fork ships a
# different `hcl2tojson` (without these options).
HCL2TOJSON = TOOLS / "venv" / "bin" / "hcl2tojson"
_VAR_REF = re.compile(r"^\$\{var\.([a-z0-9_]+)\}$")


def parse(files: list[Path]) -> dict[Path, dict[str, Any]]:
    """Each file's blocks as JSON; string values keep HCL expressions as ``${...}``."""
    assert HCL2TOJSON.exists(), "python-hcl2 is not installed: run `bash scripts/deploy-tools.sh`"
    result = run(
        str(HCL2TOJSON),
        "-q",
        "--ndjson",
        "--strip-string-quotes",
        "--no-explicit-blocks",
        *map(str, files),
    )
    parsed = {}
    for line in result.stdout.splitlines():
        document = json.loads(line)
        parsed[Path(document.pop("__file__")).resolve()] = document
    return parsed


def one(block: Any) -> dict[str, Any]:
    """A nested block written once (hcl2 gives a list of one)."""
    if isinstance(block, list):
        assert len(block) == 1, block
        return block[0]
    return block


@dataclass(frozen=True)
class Config:
    """All parsed files, grouped by the directory (Terraform module) they belong to."""

    files: dict[Path, dict[str, Any]]

    def modules(self) -> set[Path]:
        return {path.parent for path in self.files}

    def blocks(self, kind: str, module: Path | None = None) -> Iterator[tuple[Path, dict]]:
        """(module directory, {name: body}) for each top-level block of ``kind``."""
        for path, document in sorted(self.files.items()):
            if module is None or path.parent == module:
                for block in document.get(kind, []):
                    yield path.parent, block

    def variables(self, module: Path | None = None) -> Iterator[tuple[Path, str, dict]]:
        for directory, block in self.blocks("variable", module):
            for name, body in block.items():
                yield directory, name, body

    def variable(self, module: Path, name: str) -> dict[str, Any]:
        found = [body for _, n, body in self.variables(module) if n == name]
        assert found, f"{module.name} declares no variable {name}"
        return found[0]

    def labelled(self, kind: str, type_: str, name: str, module: Path) -> dict[str, Any]:
        """The body of ``resource``/``data`` block ``type_.name`` in ``module``."""
        for _, block in self.blocks(kind, module):
            if name in block.get(type_, {}):
                return block[type_][name]
        raise AssertionError(f"{module.name} has no {kind} {type_}.{name}")

    def resource(self, module: Path, type_: str, name: str) -> dict[str, Any]:
        return self.labelled("resource", type_, name, module)

    def resolved_number(self, module: Path, value: Any) -> float:
        """A literal number, or the default of the ``var.x`` it references."""
        match = _VAR_REF.match(str(value))
        if match:
            value = self.variable(module, match.group(1))["default"]
        return float(value)
