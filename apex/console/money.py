"""Amounts in minor units (cents) shown in their currency's major unit."""

from __future__ import annotations

from apex.pipeline.attribution import _EXPONENTS


def major(amount: int, currency: str) -> float:
    """12050 usd -> 120.5; 500 jpy -> 500."""
    return amount / 10 ** _EXPONENTS.get(currency.lower(), 2)


def money(amount: int, currency: str | None) -> str:
    """ "120.50 USD" (the currency's own number of decimals); a bare number without currency."""
    if currency is None:
        return f"{amount}"
    digits = _EXPONENTS.get(currency.lower(), 2)
    return f"{amount / 10**digits:,.{digits}f} {currency.upper()}"
