"""'Did you mean ...?' for a misspelt name in a spec (an estimator, a task type, a task)."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


def did_you_mean(word: str, choices: Iterable[str]) -> str:
    """``" (did you mean 'X'?)"`` for the closest of ``choices``, or ``""`` when none is close;
    case is ignored, so ``randomforestclassifier`` finds ``RandomForestClassifier``."""
    by_folded = {choice.casefold(): choice for choice in choices}
    close = difflib.get_close_matches(word.casefold(), list(by_folded), n=1, cutoff=0.6)
    return f" (did you mean {by_folded[close[0]]!r}?)" if close else ""
