"""The response language rule (Korean by default; `?lang=en` or `Accept-Language: en` for English), shared by deps
and errors.

Its own module so the error mapping needs nothing from the dependency module (which imports the rate limits,
which answer with the error mapping): the http package has no import cycle.
"""

from __future__ import annotations


def choose_lang(default: str, accept_language: str | None, query_lang: str | None = None) -> str:
    """`?lang=ko|en` (a link or an EventSource cannot set headers), else the first language of an Accept-Language
    header if it is one we speak, else the configured default."""
    if query_lang in ("ko", "en"):
        return query_lang
    if accept_language:
        primary = accept_language.split(",")[0].strip().lower()
        if primary.startswith("en"):
            return "en"
        if primary.startswith("ko"):
            return "ko"
    return default
