"""Heavy libraries load on first use (issue 18, memory at rest)."""

from __future__ import annotations

import json
import subprocess
import sys

from armillary.kit.lazy_import import lazy

HEAVY = ("numpy", "polars", "sklearn", "onnxruntime", "scipy", "duckdb")


def test_a_process_that_composes_every_service_loads_no_heavy_library() -> None:
    # A worker and the scheduler import the composition root; they never predict, so none of
    # the numeric libraries may be loaded at rest (each costs tens of MB per process).
    code = (
        "import json, sys, armillary.app, armillary.cli.engine\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules\n"
        "          and type(sys.modules[m]).__name__ != '_LazyModule']\n"
        "print(json.dumps(loaded))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_the_stand_in_imports_on_first_use_and_then_is_the_module() -> None:
    code = (
        "import sys\n"
        "from armillary.kit.lazy_import import lazy\n"
        "colorsys = lazy('colorsys')\n"
        "assert 'colorsys' not in sys.modules\n"
        "assert colorsys.rgb_to_hsv(1, 0, 0) == (0.0, 1.0, 1)\n"
        "assert 'colorsys' in sys.modules\n"
        "assert 'rgb_to_hsv' in vars(colorsys)\n"
        "assert colorsys.rgb_to_hsv is sys.modules['colorsys'].rgb_to_hsv\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_an_imported_module_is_returned_as_is() -> None:
    assert lazy("json") is sys.modules["json"]


def test_threads_racing_on_first_use_all_see_the_module() -> None:
    # The serving path reads numpy from several threads; the first reads may race.
    code = (
        "import sys, threading\n"
        "from armillary.kit.lazy_import import lazy\n"
        "fractions = lazy('fractions')\n"
        "assert 'fractions' not in sys.modules\n"
        "barrier, results = threading.Barrier(8), []\n"
        "def read():\n"
        "    barrier.wait()\n"
        "    results.append(fractions.Fraction(1, 3) + fractions.Fraction(1, 6))\n"
        "threads = [threading.Thread(target=read) for _ in range(8)]\n"
        "[t.start() for t in threads]; [t.join() for t in threads]\n"
        "assert results == [fractions.Fraction(1, 2)] * 8, results\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
