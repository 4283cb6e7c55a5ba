"""udr.log.refs: which table, branch and tag names are accepted, and their keys."""

from __future__ import annotations

import pytest

from udr.errors import InvalidName
from udr.log.refs import MAX_NAME, branch_key, check_name, tag_key

GOOD = ["main", "orders", "a", "x" * MAX_NAME, "feature-1.2_b", "données", "a.b"]
BAD_EVERYWHERE = ["", "a/b", "/", "a\\b", "..", "a..b", "a\x00b", "a\nb", "a\x1fb", "a\x7fb", "x" * (MAX_NAME + 1),
                  " lead", "trail "]
BAD_FOR_REFS = ["a~1", "a@b", "a:b", "a^", "with space"]


@pytest.mark.parametrize("what", ["table", "branch", "tag"])
@pytest.mark.parametrize("name", GOOD)
def test_good_names_pass(name: str, what: str) -> None:
    assert check_name(name, what) == name


@pytest.mark.parametrize("what", ["table", "branch", "tag"])
@pytest.mark.parametrize("name", BAD_EVERYWHERE, ids=repr)
def test_bad_names_raise_invalid_name_saying_what_was_named(name: str, what: str) -> None:
    with pytest.raises(InvalidName, match=what):
        check_name(name, what)


@pytest.mark.parametrize("what", ["branch", "tag"])
@pytest.mark.parametrize("name", BAD_FOR_REFS)
def test_ref_syntax_characters_are_refused_in_ref_names(name: str, what: str) -> None:
    with pytest.raises(InvalidName):
        check_name(name, what)


@pytest.mark.parametrize("name", ["a@b", 'a"b'])
def test_versioned_name_characters_are_refused_in_table_names(name: str) -> None:
    with pytest.raises(InvalidName):
        check_name(name, "table")


@pytest.mark.parametrize("name", [None, 3, b"main", ["main"]], ids=repr)
def test_non_strings_are_invalid(name: object) -> None:
    with pytest.raises(InvalidName):
        check_name(name, "branch")


def test_message_names_the_limit() -> None:
    with pytest.raises(InvalidName, match=str(MAX_NAME)):
        check_name("x" * (MAX_NAME + 1), "table")


def test_branch_and_tag_keys_do_not_collide() -> None:
    assert branch_key("v1") != tag_key("v1")
    assert branch_key("v1").endswith(b"v1")
    assert tag_key("v1").endswith(b"v1")


@pytest.mark.parametrize("name", ["bad name!", "-x", ".hidden", "x.", "x.lock", "a?b", "a*b", "a[b", "a b"])
def test_ref_names_follow_git_check_ref_format(name: str) -> None:
    with pytest.raises(InvalidName):
        check_name(name, "branch")

