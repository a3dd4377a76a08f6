"""A small Dockerfile reader for the image tests: instructions with their line continuations
joined, grouped by build stage, so a test can ask what a target ends up with (its own
instructions and those of the stages it is built FROM)."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path


@dataclass(frozen=True)
class Instruction:
    keyword: str  # upper case: FROM, RUN, COPY, ...
    args: str  # the rest of the instruction, continuations joined with spaces


@dataclass
class Stage:
    name: str
    base: str  # the FROM argument: an image or an earlier stage's name
    instructions: list[Instruction] = field(default_factory=list)


@dataclass
class Dockerfile:
    preamble: list[Instruction]  # what comes before the first FROM (global ARGs)
    stages: dict[str, Stage]

    def chain(self, name: str) -> list[Stage]:
        """``name`` and the stages it is built from, the furthest ancestor first."""
        stages = []
        while name in self.stages:
            stages.insert(0, self.stages[name])
            name = self.stages[name].base
        return stages

    def effective(self, name: str, keyword: str) -> list[Instruction]:
        """Every ``keyword`` instruction that applies to target ``name``, in build order."""
        return [i for s in self.chain(name) for i in s.instructions if i.keyword == keyword]


def _logical_lines(text: str) -> list[str]:
    lines: list[str] = []
    pending = ""
    for raw in text.splitlines():
        stripped = raw.strip()
        if stripped.startswith("#") or not stripped:
            continue  # comments and blank lines may sit inside a continued instruction
        if stripped.endswith("\\"):
            pending += stripped[:-1].strip() + " "
            continue
        lines.append(pending + stripped)
        pending = ""
    if pending:
        lines.append(pending.strip())
    return lines


def parse(path: Path) -> Dockerfile:
    preamble: list[Instruction] = []
    stages: dict[str, Stage] = {}
    current: Stage | None = None
    for line in _logical_lines(path.read_text()):
        keyword, _, args = line.partition(" ")
        instruction = Instruction(keyword.upper(), args.strip())
        if instruction.keyword == "FROM":
            match = re.fullmatch(r"(?:--\S+\s+)*(\S+)(?:\s+AS\s+(\S+))?", args.strip(), re.I)
            assert match, f"unreadable FROM: {line}"
            name = match.group(2) or f"stage-{len(stages)}"
            current = stages[name] = Stage(name=name, base=match.group(1))
        elif current is None:
            preamble.append(instruction)
        else:
            current.instructions.append(instruction)
    return Dockerfile(preamble=preamble, stages=stages)
