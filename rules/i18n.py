"""Chat messages in the team's language: gettext catalogues under `rules/locale/`, read with babel.

Message code is written in English and marks its text with `_()` / `ngettext()`; each language
has a catalogue `rules/locale/<lang>/LC_MESSAGES/messages.po` (English needs none). The flows
render every message in every language (`in_every_language`) and the event carries them all;
the automation sends the one the chat block's `language` asks for.

Updating the catalogues after changing a message (a test fails until they agree):

    uv run pybabel extract -F rules/locale/babel.cfg -o rules/locale/messages.pot --no-location \
        --omit-header --sort-output rules
    uv run pybabel update -i rules/locale/messages.pot -d rules/locale -D messages --ignore-obsolete -w 100

then translate the new entries (empty, or marked `#, fuzzy`) in each `messages.po`. Message text
lives in `rules/messages.py` and `rules/pipeline_failures.py`.
"""

from __future__ import annotations

import gettext
from collections.abc import Callable
from functools import cache
from io import BytesIO
from pathlib import Path
from typing import Literal

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

from rules.config import ConfigError

Language = Literal["en", "ko"]
LANGUAGES: tuple[Language, ...] = ("en", "ko")
LOCALE_DIR = Path(__file__).resolve().parent / "locale"
DOMAIN = "messages"


def catalogue_path(language: str) -> Path:
    return LOCALE_DIR / language / "LC_MESSAGES" / f"{DOMAIN}.po"


@cache
def translations(language: str) -> gettext.NullTranslations:
    """The catalogue of `language` (the source text itself for English)."""
    if language not in LANGUAGES:
        raise ConfigError(f"language {language!r}: use one of {', '.join(LANGUAGES)}")
    if language == "en":
        return gettext.NullTranslations()
    with catalogue_path(language).open("rb") as f:
        catalog = read_po(f, locale=language, domain=DOMAIN)
    compiled = BytesIO()
    write_mo(compiled, catalog)  # read from the .po each start: no compiled file to go stale
    compiled.seek(0)
    return gettext.GNUTranslations(compiled)


def in_every_language(render: Callable[[str], tuple[str, str]]) -> dict[str, tuple[str, str]]:
    """`render(language) -> (subject, text)` for each language, keyed by language."""
    return {language: render(language) for language in LANGUAGES}
