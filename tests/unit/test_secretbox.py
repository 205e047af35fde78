"""SecretBox: sealing with the first of several keys, opening with any, re-sealing."""

from __future__ import annotations

import pytest
from cryptography.fernet import InvalidToken

from apex.secretbox import SecretBox, generate_key

OLD, NEW = generate_key(), generate_key()


def test_one_key_seals_and_opens() -> None:
    box = SecretBox(OLD)
    assert box.open(box.seal("whsec_abc")) == "whsec_abc"


def test_the_first_key_seals_and_every_key_opens() -> None:
    old_token = SecretBox(OLD).seal("whsec_old")
    both = SecretBox(f"{NEW},{OLD}")
    assert both.open(old_token) == "whsec_old"
    new_token = both.seal("whsec_new")
    assert SecretBox(NEW).open(new_token) == "whsec_new"
    with pytest.raises(InvalidToken):
        SecretBox(OLD).open(new_token)


def test_reseal_moves_a_token_to_the_first_key() -> None:
    old_token = SecretBox(OLD).seal("whsec_old")
    both = SecretBox(f"{NEW},{OLD}")
    assert not both.sealed_by_primary(old_token)
    fresh = both.reseal(old_token)
    assert both.sealed_by_primary(fresh)
    assert SecretBox(NEW).open(fresh) == "whsec_old"
    with pytest.raises(InvalidToken):
        SecretBox(OLD).open(fresh)


def test_a_token_of_an_unknown_key_opens_with_none() -> None:
    stranger = SecretBox(generate_key()).seal("whsec_x")
    box = SecretBox(f"{NEW},{OLD}")
    assert not box.sealed_by_primary(stranger)
    with pytest.raises(InvalidToken):
        box.reseal(stranger)


def test_the_keys_never_show() -> None:
    box = SecretBox(f"{NEW},{OLD}")
    assert NEW not in repr(box) and OLD not in repr(box)
