"""Alert texts in the user's language: the rule explanations, readings and notification wording.

Plain Python with no Home Assistant import. Home Assistant's translation files cannot hold
alert texts (hassfest allows only its own categories), so each language has a file in
`alert_texts/` with the same keys as `en.json`. They are read once when this module is imported,
which Home Assistant does in its executor, so no file is read on the event loop.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
import json
from pathlib import Path
from typing import Any, Final, NamedTuple

DIRECTORY: Final = Path(__file__).parent / "alert_texts"
FALLBACK_LANGUAGE: Final = "en"
# The phrases every language must have, each with exactly these placeholders.
PHRASES: Final[dict[str, tuple[str, ...]]] = {
    "not_available": (),
    "yes": (),
    "no": (),
    "readings": ("readings",),
    "unusual": ("anomalies",),
    "higher": ("reading",),
    "lower": ("reading",),
    "more": ("reading",),
    "less": ("reading",),
    "title": ("title", "node"),
    "model_label": (),
    "severity": ("severity",),
    "what_to_do": (),
    "resolved": (),
    "resolved_title": ("title",),
    "resolved_status": (),
    "latest_readings": ("readings",),
    "footer_rules": ("incident",),
    "footer_combined": ("incident",),
    "footer_llm": ("incident",),
    "logbook_opened": (),
    "logbook_escalated": (),
    "logbook_explained": (),
    "logbook_acknowledged": (),
    "logbook_resolved": (),
}


class RuleText(NamedTuple):
    """What a rule means for a person at home: title, what is happening, what to do."""

    title: str
    explanation: str
    action: str


@dataclass(frozen=True, slots=True)
class AlertTexts:
    """Everything an alert says, in one language."""

    language: str
    # The language's English name, for asking a model to answer in it.
    language_name: str
    decimal_separator: str
    severity: Mapping[str, str]
    readings: Mapping[str, str]
    phrases: Mapping[str, str]
    rules: Mapping[str, RuleText]
    fallback: RuleText

    def phrase(self, key: str, **values: str) -> str:
        """Return a phrase with its placeholders filled."""
        return self.phrases[key].format_map(values)

    def number(self, value: float, digits: int) -> str:
        """Return a number with this language's decimal separator."""
        return f"{value:.{digits}f}".replace(".", self.decimal_separator)


def _rule(data: Mapping[str, Any]) -> RuleText:
    """Return one rule's texts."""
    return RuleText(str(data["title"]), str(data["explanation"]), str(data["action"]))


def parse(language: str, data: Mapping[str, Any]) -> AlertTexts:
    """Return a language's texts from its file's contents."""
    return AlertTexts(
        language=language,
        language_name=str(data["language_name"]),
        decimal_separator=str(data["decimal_separator"]),
        severity={str(key): str(value) for key, value in data["severity"].items()},
        readings={str(key): str(value) for key, value in data["readings"].items()},
        phrases={str(key): str(value) for key, value in data["phrases"].items()},
        rules={str(key): _rule(value) for key, value in data["rules"].items()},
        fallback=_rule(data["fallback"]),
    )


def load(directory: Path = DIRECTORY) -> dict[str, AlertTexts]:
    """Read every language's file."""
    return {
        path.stem: parse(path.stem, json.loads(path.read_text(encoding="utf-8")))
        for path in sorted(directory.glob("*.json"))
    }


LANGUAGES: Final = load()
ENGLISH: Final = LANGUAGES[FALLBACK_LANGUAGE]


def for_language(language: str | None) -> AlertTexts:
    """Return the texts for a Home Assistant language tag, e.g. `de` or `de-CH`; else English."""
    if not language:
        return ENGLISH
    tag = language.replace("_", "-").lower()
    if tag in LANGUAGES:
        return LANGUAGES[tag]
    return LANGUAGES.get(tag.split("-")[0], ENGLISH)
