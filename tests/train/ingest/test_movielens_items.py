"""MovieLens's own item files as they ship (issue 18): ML-100K's ``u.item`` (pipe-separated,
latin-1, no header, 19 genre flags) and ML-1M's ``movies.dat`` (``MovieID::Title::Genres``,
latin-1), read into a title and multi-valued genres. The fixtures are written here, in the
files' formats; the real ``u.item`` is read when ../shared/data/ml-100k is present."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from mfrec.train.errors import DataValidationError
from mfrec.train.ingest import read_item_attributes
from mfrec.train.ingest.formats import sniff
from mfrec.train.ingest.movielens import ML100K_GENRES, movielens_kind


def u_item_line(movie_id: int, title: str, genres: tuple[str, ...]) -> str:
    flags = ["1" if genre in genres else "0" for genre in ML100K_GENRES]
    url = "http://us.imdb.com/M/title-exact?" + title.replace(" ", "%20")
    return "|".join([str(movie_id), title, "01-Jan-1995", "", url, *flags])


U_ITEM = [
    u_item_line(1, "Toy Story (1995)", ("Animation", "Children's", "Comedy")),
    u_item_line(2, "GoldenEye (1995)", ("Action", "Adventure", "Thriller")),
    u_item_line(3, "Misérables, Les (1995)", ("Drama", "Musical", "War")),
    u_item_line(4, "unknown", ("unknown",)),
    u_item_line(5, "Nothing at all (1996)", ()),
]
MOVIES_DAT = [
    "1::Toy Story (1995)::Animation|Children's|Comedy",
    "2::Jumanji (1995)::Adventure|Children's|Fantasy",
    "3::Misérables, Les (1995)::Drama|Musical|War",
    "5::Film-Noir Night::Film-Noir",
]


def write_latin1(path, lines: list[str]):
    path.write_bytes(("\n".join(lines) + "\n").encode("latin-1"))
    return path


def test_u_item_gives_titles_and_genres_from_its_flags(tmp_path):
    path = write_latin1(tmp_path / "u.item", U_ITEM)
    attributes = read_item_attributes(path, np.array(["2", "1", "3", "4", "5", "99"]))
    assert list(attributes) == ["title", "genre"]
    assert attributes["title"].tolist() == [
        "GoldenEye (1995)",
        "Toy Story (1995)",
        "Misérables, Les (1995)",  # latin-1 decoded
        "unknown",
        "Nothing at all (1996)",
        "",
    ]
    assert attributes["genre"].tolist() == [
        "Action|Adventure|Thriller",
        "Animation|Children's|Comedy",
        "Drama|Musical|War",
        "unknown",
        "",
        "",
    ]


def test_movies_dat_gives_titles_and_genres(tmp_path):
    path = write_latin1(tmp_path / "movies.dat", MOVIES_DAT)
    attributes = read_item_attributes(path, np.array(["3", "1", "5"]))
    assert attributes["title"].tolist() == [
        "Misérables, Les (1995)",
        "Toy Story (1995)",
        "Film-Noir Night",
    ]
    assert attributes["genre"].tolist() == [
        "Drama|Musical|War",
        "Animation|Children's|Comedy",
        "Film-Noir",
    ]


def test_gzip_compressed_movielens_files_are_recognised_too(tmp_path):
    path = tmp_path / "movies.dat.gz"
    path.write_bytes(gzip.compress(("\n".join(MOVIES_DAT) + "\n").encode("latin-1")))
    assert read_item_attributes(path, np.array(["2"]))["genre"].tolist() == [
        "Adventure|Children's|Fantasy"
    ]


@pytest.mark.parametrize(
    "lines",
    [
        ["1|a|b", "2|c|d"],  # pipes, but not u.item's 24 fields
        [line.replace("|0|", "|2|", 1) for line in U_ITEM],  # flags that are not 0/1
        ["1::Toy Story::Animation", "2::Jumanji::Not A Genre"],  # an unknown genre
        ["x1::Toy Story::Animation", "x2::Jumanji::Comedy"],  # non-integer ids
    ],
)
def test_other_headerless_files_are_not_mistaken_for_movielens(tmp_path, lines):
    path = write_latin1(tmp_path / "items.dat", lines)
    assert movielens_kind(sniff(path)) is None
    with pytest.raises(DataValidationError, match="has no item id column"):
        read_item_attributes(path, np.array(["1"]))


def test_a_bad_line_past_the_sample_is_named(tmp_path):
    lines = U_ITEM * 400  # past the 200 sampled lines
    lines[1500] = "6|Cut short (1996)|01-Jan-1996"
    path = write_latin1(tmp_path / "u.item", lines)
    with pytest.raises(
        DataValidationError,
        match=r"u\.item reads as MovieLens u\.item, but line 1501 has 3 fields, not 24 "
        r"'\|'-separated fields .*give the file a header row",
    ):
        read_item_attributes(path, np.array(["1"]))


@pytest.mark.ml100k
def test_the_real_u_item_as_it_ships(ml100k_dir):
    attributes = read_item_attributes(ml100k_dir / "u.item", np.array(["1", "2", "1682"]))
    assert attributes["title"][0] == "Toy Story (1995)"
    assert attributes["genre"][:2].tolist() == [
        "Animation|Children's|Comedy",
        "Action|Adventure|Thriller",
    ]
    assert all(set(g.split("|")) <= set(ML100K_GENRES) for g in attributes["genre"])
