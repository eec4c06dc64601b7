"""The one slug rule for names that reach the file system (latentmap.io.names)."""

import pytest

from latentmap.io.names import MAX_BYTES, slug, unique_slugs


@pytest.mark.parametrize("name,expected", [
    ("fmnist-vae-a", "fmnist-vae-a"),  # the shipped names and the committed report files keep their names
    ("real train images", "real_train_images"),
    ("soft-piecewise:16", "soft-piecewise-16"),
    ("piecewise:16:soft=true", "piecewise-16-soft-true"),
    ("alpha=0.1", "alpha-0.1"),
    ("../../evil", "evil"),
    ("/etc/passwd", "etc-passwd"),
    ("a\\b", "a-b"),
    ("a\x00b", "a-b"),
    ("tab\tand\nnewline", "tab_and_newline"),
    (".hidden", "hidden"),
    ("-rf", "rf"),
    ("a..b", "a.b"),
    ("..", "unnamed"),
    ("", "unnamed"),
    ("///", "unnamed"),
    ("CON", "CON_"),
    ("nul.txt", "nul.txt_"),
    ("é clair", "é_clair"),
])
def test_slug(name, expected):
    assert slug(name) == expected


def test_slug_is_safe_for_any_name():
    for name in ["../" * 50, "\x00" * 3, " . ", "-.-", "a/../../b", "😀/..", "x" * 1000, "é" * 300]:
        s = slug(name)
        assert s and "/" not in s and "\\" not in s and "\x00" not in s and ".." not in s
        assert not s.startswith((".", "-")) and len(s.encode()) <= MAX_BYTES


def test_long_names_are_cut_and_stay_apart():
    a, b = slug("m" * 200 + "a"), slug("m" * 200 + "b")
    assert a != b and len(a.encode()) <= MAX_BYTES and a.startswith("m" * 80)
    assert slug("é" * 200).encode("utf-8").decode("utf-8")  # never a cut inside a character


def test_default_and_unique_slugs():
    assert slug("", "estimator") == "estimator"
    assert unique_slugs(["a b", "a_b", "A_B", "c"]) == {"a b": "a_b", "a_b": "a_b-2", "A_B": "A_B-3", "c": "c"}
    assert unique_slugs(["../../evil", "evil"]) == {"../../evil": "evil", "evil": "evil-2"}
