"""MovieLens sources: TFDS or the files GroupLens distributes, mapped to one feature schema.

Ratings (one element per rating, from :func:`load_ratings`)::

    {"user_id": int64 [], "movie_id": int64 [], "user_rating": float32 [], "timestamp": int64 []}

``user_rating`` is 1-5 in whole stars for 100k and 1m, and 0.5-5 in half stars for 20m and 25m.

Movies (one element per movie, from :func:`load_movies`)::

    {"movie_id": int64 [], "movie_title": string [] (UTF-8), "movie_genres": string [None]}

A movie id must appear once in a movies file: a repeated one stops iteration with ``tf.errors.InvalidArgumentError``
naming the file and both lines (two titles or genre lists for one id cannot both be right).

``movie_genres`` holds the genre names of the movie (a variable-length vector; batch it with ``ragged_batch``),
spelt as in :data:`GENRES`, the vocabulary TFDS uses: the 100k and 1m spelling ``Children's`` becomes
``Children`` and the 100k ``unknown`` becomes ``Unknown``, so every variant and both sources agree.

Local files are parsed inside ``tf.data``, vectorised: each file is read with ``tf.io.read_file`` and split into
lines in one op, then parsed in batches of lines with ``tf.strings`` and ``tf.io.decode_csv`` (no Python per line,
and no ``TextLineDataset``, whose per-line element cost dominates at 25M lines; the price is holding the file in
memory, about 3x its size at peak). Every line is checked by a regular expression before it is parsed; the first
malformed line stops iteration with ``tf.errors.InvalidArgumentError`` naming the file and the line number.
Latin-1 files (100k, 1m) are transcoded to UTF-8. A GroupLens zip is read by extracting the one member needed to a
temporary directory that is removed when the process exits (or, when the process was killed, by the next process
that extracts).

A source path may be the GroupLens folder, a folder holding it or its zip, the zip itself, or one of the folder's
files (``u.data``, ``ratings.csv``, ...: its folder is read). Anything else, a truncated or corrupt zip included,
raises ``ValueError`` with one line naming the file and what to do.
"""

from __future__ import annotations

import atexit
import os
import pathlib
import shutil
import socket
import tempfile
import zipfile
import zlib
from typing import Any

import tensorflow as tf

from tfrank import _processes
from tfrank.data._tfdata import ALL_ROWS, ROWS_PER_BATCH, batched_form, plain, with_batched_form

VARIANTS = ("100k", "1m", "20m", "25m")

# The genre vocabulary of the TFDS MovieLens builder; local files are normalised to these names.
GENRES = (
    "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "IMAX", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "Unknown", "War",
    "Western", "(no genres listed)",
)  # fmt: skip

# Column order of the 19 genre flags in ml-100k u.item (after normalisation).
_GENRES_100K = (
    "Unknown", "Action", "Adventure", "Animation", "Children", "Comedy", "Crime", "Documentary", "Drama", "Fantasy",
    "Film-Noir", "Horror", "Musical", "Mystery", "Romance", "Sci-Fi", "Thriller", "War", "Western",
)  # fmt: skip

_DOWNLOAD_URL = "https://files.grouplens.org/datasets/movielens/ml-{variant}.zip"
_NETWORK_CHECK_HOST = ("files.grouplens.org", 443)
_NETWORK_CHECK_TIMEOUT_S = 3.0
# decode_csv defaults: empty means required, and the dtype of each column.
_RATINGS_COLUMNS = [tf.constant([], tf.int64), tf.constant([], tf.int64), tf.constant([], tf.float32),
                    tf.constant([], tf.int64)]  # fmt: skip


class MovieLensUnavailableError(RuntimeError):
    """MovieLens is neither prepared in the TFDS data_dir nor downloadable; pass local GroupLens files instead."""


class _Layout:
    """How one variant's files are named and formatted."""

    def __init__(self, ratings: str, movies: str, header: bool, latin1: bool, users: str | None = None):
        self.ratings = ratings
        self.movies = movies
        self.header = header
        self.latin1 = latin1
        self.users = users  # None: the variant has no user file

    @property
    def files(self) -> tuple[str, ...]:
        return tuple(name for name in (self.ratings, self.movies, self.users) if name)


_LAYOUTS = {
    "100k": _Layout(ratings="u.data", movies="u.item", header=False, latin1=True, users="u.user"),
    "1m": _Layout(ratings="ratings.dat", movies="movies.dat", header=False, latin1=True, users="users.dat"),
    "20m": _Layout(ratings="ratings.csv", movies="movies.csv", header=True, latin1=False),
    "25m": _Layout(ratings="ratings.csv", movies="movies.csv", header=True, latin1=False),
}

def _int64_pattern() -> str:
    """A regular expression for the decimal integers from 0 to 2**63 - 1 (leading zeros allowed)."""
    largest = str(2**63 - 1)
    shorter = rf"\d{{1,{len(largest) - 1}}}"
    # Same length: the largest's first i digits, then a smaller digit, then any digits.
    same_length = [rf"{largest[:i]}[0-{int(digit) - 1}]\d{{{len(largest) - i - 1}}}"
                   for i, digit in enumerate(largest) if digit != "0"]  # fmt: skip
    return "0*(?:" + "|".join([shorter, *same_length, largest]) + ")"


# One regular expression per file format: a line that does not match fully is malformed.
_INT = _int64_pattern()  # ids and timestamps: a larger number would overflow int64 when parsed
_FLOAT = r"\d+(?:\.\d+)?"
_RATINGS_LINE = {
    "100k": rf"{_INT}\t{_INT}\t{_INT}\t{_INT}\r?",
    "1m": rf"{_INT}::{_INT}::{_INT}::{_INT}\r?",
    "20m": rf"{_INT},{_INT},{_FLOAT},{_INT}\r?",
    "25m": rf"{_INT},{_INT},{_FLOAT},{_INT}\r?",
}
_RATINGS_FORMAT = {
    "100k": "user_id<TAB>movie_id<TAB>rating<TAB>timestamp, all integers up to 2**63 - 1",
    "1m": "UserID::MovieID::Rating::Timestamp, all integers up to 2**63 - 1",
    "20m": "userId,movieId,rating,timestamp (integers up to 2**63 - 1; the rating may have a decimal part)",
    "25m": "userId,movieId,rating,timestamp (integers up to 2**63 - 1; the rating may have a decimal part)",
}
_CSV_MOVIE = rf'{_INT},(?:"(?:[^"]|"")*"|[^",]*),[^,"]*\r?'
_MOVIES_LINE = {
    "100k": rf"{_INT}\|[^|]*\|[^|]*\|[^|]*\|[^|]*(?:\|[01]){{19}}\r?",
    "1m": rf"{_INT}::(?:[^:]|:[^:])*::[^:]*\r?",
    "20m": _CSV_MOVIE,
    "25m": _CSV_MOVIE,
}
_MOVIES_FORMAT = {
    "100k": "movie id|title|release date|video release date|IMDb URL|19 genre flags (0 or 1), the id up to 2**63 - 1",
    "1m": "MovieID::Title::Genres, the id up to 2**63 - 1",
    "20m": 'movieId,title,genres (title quoted with "" when it has a comma), the id up to 2**63 - 1',
    "25m": 'movieId,title,genres (title quoted with "" when it has a comma), the id up to 2**63 - 1',
}
# ml-1m's users.dat gives the age as the lower bound of its bucket (1 means under 18) and the occupation as a code.
AGE_BUCKETS_1M = (1, 18, 25, 35, 45, 50, 56)
OCCUPATIONS_1M = (
    "other", "academic/educator", "artist", "clerical/admin", "college/grad student", "customer service",
    "doctor/health care", "executive/managerial", "farmer", "homemaker", "K-12 student", "lawyer", "programmer",
    "retired", "sales/marketing", "scientist", "self-employed", "technician/engineer", "tradesman/craftsman",
    "unemployed", "writer",
)  # fmt: skip
_USERS_LINE = {
    "100k": rf"{_INT}\|{_INT}\|[MF]\|[^|]+\|[^|]*\r?",
    "1m": rf"{_INT}::[MF]::(?:{'|'.join(map(str, AGE_BUCKETS_1M))})::(?:1?\d|20)::[^:]*\r?",
}
_USERS_FORMAT = {
    "100k": "user id|age|gender (M or F)|occupation|zip code, the id and age up to 2**63 - 1",
    "1m": f"UserID::Gender (M or F)::Age (one of {', '.join(map(str, AGE_BUCKETS_1M))})::Occupation (0 to 20)"
          "::Zip-code, the id up to 2**63 - 1",
}


def load_ratings(variant: str = "100k", source: str | os.PathLike | None = None, data_dir: str | None = None,
                 batch_size: int | None = None) -> tf.data.Dataset:  # fmt: skip
    """MovieLens ratings as a ``tf.data.Dataset``, one element per rating.

    Element: ``{"user_id": int64 [], "movie_id": int64 [], "user_rating": float32 [], "timestamp": int64 []}``.
    Ratings come as the source has them, in its order, repeats included: a (user, movie) pair rated more than once
    is resolved by :func:`tfrank.data.sample_lists`, which keeps its latest rating (by timestamp, a tie going to
    the later line).

    Args:
      variant: one of :data:`VARIANTS`: ``"100k"``, ``"1m"``, ``"20m"``, ``"25m"``.
      source: ``"tfds"`` to read ``movielens/<variant>-ratings`` from TFDS; a path to the GroupLens folder
        (``.../ml-100k``), to a folder holding it, or to the original zip; ``None`` to use the folder named by
        ``TFRANK_MOVIELENS_DIR`` when set, else TFDS.
      data_dir: TFDS data directory (only with TFDS).
      batch_size: None for one rating per element; an int for batches of ratings (rank-1 features, the last batch
        smaller). :func:`split` and :func:`sample_lists` accept both forms and read this dataset in batches either
        way (batches skip tf.data's per-element cost, which dominates at millions of ratings); pass an int when
        your own code maps over the ratings.

    Raises:
      ValueError: unknown variant; a source that is a file but neither a zip nor a file of the variant's folder; a
        truncated or corrupt zip.
      FileNotFoundError: a local source without the expected file.
      MovieLensUnavailableError: TFDS has not prepared the dataset and the download site is unreachable.
      tf.errors.InvalidArgumentError: when iterated, at the first malformed line (file and line number named);
        :func:`tfrank.data.split` and :func:`tfrank.data.sample_lists` iterate when called and raise it with only
        that line as the message.
    """
    _check_variant(variant)
    if batch_size is not None and batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1, or None for one rating per element")
    where = _resolve_source(source)
    if where == "tfds":
        ratings = map_tfds_ratings(_load_tfds(f"movielens/{variant}-ratings", data_dir))
        return ratings if batch_size is None else batched_form(ratings).rebatch(batch_size)
    batches = _read_ratings(_local_file(where, variant, _LAYOUTS[variant].ratings), variant)
    if batch_size is None:  # split and sample_lists read the batches, skipping the per-rating cost
        return with_batched_form(batches.unbatch(), batches)
    return batches if batch_size == ROWS_PER_BATCH else batches.rebatch(batch_size)


def load_movies(variant: str = "100k", source: str | os.PathLike | None = None, data_dir: str | None = None
                ) -> tf.data.Dataset:  # fmt: skip
    """MovieLens movies as a ``tf.data.Dataset``, one element per movie.

    Element: ``{"movie_id": int64 [], "movie_title": string [] (UTF-8), "movie_genres": string [None]}``,
    genre names spelt as in :data:`GENRES`. Arguments and errors as in :func:`load_ratings`; in addition a movie id
    that the file repeats stops iteration with ``tf.errors.InvalidArgumentError`` naming the file and both lines.
    """
    _check_variant(variant)
    where = _resolve_source(source)
    if where == "tfds":
        return map_tfds_movies(_load_tfds(f"movielens/{variant}-movies", data_dir))
    path = _local_file(where, variant, _LAYOUTS[variant].movies)
    return _read_movies(path, variant)


def map_tfds_ratings(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Maps a TFDS ``movielens/*-ratings`` dataset (string ids, genre ints, demographics) to the ratings schema."""
    columns = dataset.map(
        plain(lambda x: {k: x[k] for k in ("user_id", "movie_id", "user_rating", "timestamp")}),
        num_parallel_calls=tf.data.AUTOTUNE,
    )

    @plain
    def to_schema(x: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {
            "user_id": tf.strings.to_number(x["user_id"], tf.int64),
            "movie_id": tf.strings.to_number(x["movie_id"], tf.int64),
            "user_rating": tf.cast(x["user_rating"], tf.float32),
            "timestamp": tf.cast(x["timestamp"], tf.int64),
        }

    batches = columns.batch(ROWS_PER_BATCH).map(to_schema, num_parallel_calls=tf.data.AUTOTUNE)
    return with_batched_form(batches.unbatch(), batches)


def map_tfds_movies(dataset: tf.data.Dataset) -> tf.data.Dataset:
    """Maps a TFDS ``movielens/*-movies`` dataset (string id, genre ints) to the movies schema."""
    names = tf.constant(GENRES)

    @plain
    def to_schema(x: dict[str, tf.Tensor]) -> dict[str, tf.Tensor]:
        return {
            "movie_id": tf.strings.to_number(x["movie_id"], tf.int64),
            "movie_title": tf.convert_to_tensor(x["movie_title"], tf.string),
            "movie_genres": tf.gather(names, tf.cast(x["movie_genres"], tf.int64)),
        }

    return dataset.map(to_schema, num_parallel_calls=tf.data.AUTOTUNE)


# ----------------------------------------------------------------------------------------------------------------
# Where the data comes from.


def _check_variant(variant: str) -> None:
    if variant not in VARIANTS:
        raise ValueError(f"variant={variant!r}: must be one of {', '.join(VARIANTS)}")


def _resolve_source(source: str | os.PathLike | None) -> str | pathlib.Path:
    if source is None:
        env = os.environ.get("TFRANK_MOVIELENS_DIR")
        return pathlib.Path(env) if env else "tfds"
    if isinstance(source, str) and source == "tfds":
        return "tfds"
    return pathlib.Path(source)


def _local_file(where: pathlib.Path, variant: str, name: str) -> str:
    """The path of one GroupLens file of ``variant`` given ``where``: its folder, a parent folder, the zip, or a file
    of the folder (``u.data`` for ``u.item`` and so on: the folder is meant)."""
    folder = f"ml-{variant}"
    url = _DOWNLOAD_URL.format(variant=variant)
    if where.is_file():
        if zipfile.is_zipfile(where):
            return _extract_from_zip(where, folder, name)
        with open(where, "rb") as file:
            zip_signature = file.read(2) == b"PK"
        if zip_signature:
            raise ValueError(f"MovieLens zip {where} is truncated or corrupt (no zip directory at its end): "
                             f"download it again from {url}")  # fmt: skip
        if where.suffix.lower() == ".zip":
            raise ValueError(f"{where} is not a zip file (it does not start with the zip signature PK): download "
                             f"{url} again, or pass the ml-{variant} folder with --movielens_path")  # fmt: skip
        layout = _LAYOUTS[variant]
        if where.name in layout.files:
            where = where.parent
        else:
            raise ValueError(_not_a_source_message(where, variant))
    for candidate in (where / name, where / folder / name):
        if candidate.is_file():
            return str(candidate)
    zipped = where / f"{folder}.zip"
    if zipped.is_file():
        return _extract_from_zip(zipped, folder, name)
    what = {_LAYOUTS[variant].ratings: "ratings", _LAYOUTS[variant].users: "users"}.get(name, "movies")
    missing = "does not exist" if not where.exists() else f"has no {name}, {folder}/{name} or {folder}.zip"
    raise FileNotFoundError(
        f"MovieLens {variant} {what}: {name} not found in {where} ({where} {missing}). Download {url}, unzip it and "
        f"pass its folder with --movielens_path (or TFRANK_MOVIELENS_DIR), or use TFDS."
    )


def _not_a_source_message(path: pathlib.Path, variant: str) -> str:
    """Why ``path``, a file that is not a zip, cannot be read as MovieLens ``variant``."""
    others = [other for other, layout in _LAYOUTS.items()
              if other != variant and path.name in layout.files]  # fmt: skip
    if others:
        return (f"{path} is a file of MovieLens {' or '.join(others)}, not {variant}: pass the ml-{variant} folder "
                f"with --movielens_path, or read it as {others[-1]} (--dataset=movielens/{others[-1]})")  # fmt: skip
    layout = _LAYOUTS[variant]
    return (f"{path} is neither a MovieLens folder nor a zip: pass the ml-{variant} folder (holding "
            f"{layout.ratings}) or the original ml-{variant}.zip with --movielens_path")  # fmt: skip


_extracted: dict[tuple[str, str], str] = {}
# Extracted copies live in <temp dir>/<prefix><pid>-<random>: a run killed before its exit handler leaves its copy
# behind, and the next run that extracts removes every copy whose process is gone.
_EXTRACTED_PREFIX = "tfrank-movielens-"


def _extract_from_zip(archive: pathlib.Path, folder: str, name: str) -> str:
    """Extracts one member to a temporary folder removed at exit; tf.io.read_file needs a file on disk."""
    key = (str(archive.resolve()), name)
    if key in _extracted and os.path.isfile(_extracted[key]):
        return _extracted[key]
    url = _DOWNLOAD_URL.format(variant=folder[3:])
    _remove_orphaned_extractions()
    target = None
    try:
        with zipfile.ZipFile(archive) as zipped:
            members = [m for m in zipped.namelist() if m == name or m.endswith("/" + name)]
            preferred = [m for m in members if m == f"{folder}/{name}"]
            if not members:
                raise FileNotFoundError(
                    f"MovieLens zip {archive} has no member {folder}/{name} (it holds {zipped.namelist()[:8]}): "
                    f"use the original archive from {url}"
                )
            target = tempfile.mkdtemp(prefix=f"{_EXTRACTED_PREFIX}{os.getpid()}-")
            atexit.register(shutil.rmtree, target, ignore_errors=True)
            path = zipped.extract((preferred or members)[0], target)
    except (zipfile.BadZipFile, zlib.error, EOFError) as error:
        if target is not None:
            shutil.rmtree(target, ignore_errors=True)
        reason = " ".join(str(error).split()) or type(error).__name__
        raise ValueError(f"MovieLens zip {archive} is truncated or corrupt ({reason}): download it again from {url}"
                         ) from error  # fmt: skip
    _extracted[key] = path
    return path


def _remove_orphaned_extractions() -> None:
    """Removes the extracted copies of processes that no longer run (killed before their exit handler)."""
    for folder in pathlib.Path(tempfile.gettempdir()).glob(f"{_EXTRACTED_PREFIX}*-*"):
        pid = folder.name[len(_EXTRACTED_PREFIX):].split("-", 1)[0]
        if pid.isdigit() and folder.is_dir() and not _processes.process_alive(int(pid)):
            shutil.rmtree(folder, ignore_errors=True)


def _tfds_builder(name: str, data_dir: str | None) -> Any:
    import tensorflow_datasets as tfds

    return tfds.builder(name, data_dir=data_dir)


def _network_reachable() -> bool:
    try:
        with socket.create_connection(_NETWORK_CHECK_HOST, timeout=_NETWORK_CHECK_TIMEOUT_S):
            return True
    except OSError:
        return False


def _load_tfds(name: str, data_dir: str | None) -> tf.data.Dataset:
    """``name`` from TFDS, preparing it only when the download site answers (else fail at once, not in minutes)."""
    builder = _tfds_builder(name, data_dir)
    if not builder.is_prepared():
        if not _network_reachable():
            raise MovieLensUnavailableError(
                f"TFDS dataset {name} is not prepared in {builder.data_dir} and {_NETWORK_CHECK_HOST[0]} cannot be "
                f"reached, so it cannot be downloaded. Download the GroupLens zip on a connected machine and pass "
                f"its folder with --movielens_path (or the TFRANK_MOVIELENS_DIR environment variable)."
            )
        builder.download_and_prepare()
    return builder.as_dataset(split="train")


# ----------------------------------------------------------------------------------------------------------------
# Parsing local files in tf.data.


def _numbered_lines(path: str, header: bool, lines_per_batch: int = ROWS_PER_BATCH) -> tf.data.Dataset:
    """Batches ``(line_numbers int64 [B], lines string [B])`` of ``path``, numbered from 1 as an editor shows them.

    The file is read whole and split into lines in one op, then sliced into batches by tf.data in C++: tf.data's
    per-element cost would dominate a ``TextLineDataset`` at tens of millions of lines. The whole file and its
    lines are held in memory (BUILD.md measures it); :func:`tfrank.data.stream_ratings` reads it in blocks.
    """
    first = 1 if header else 0

    @plain
    def numbered_lines(file_path: tf.Tensor) -> tuple[tf.Tensor, tf.Tensor]:
        # The raw op gives the lines directly; tf.strings.split builds a ragged tensor around them, which makes
        # this function slower to build.
        lines = tf.raw_ops.StringSplitV2(input=tf.reshape(tf.io.read_file(file_path), [1]), sep="\n").values
        # The newline that ends the last line leaves an empty string behind; any other empty line is malformed.
        end = tf.size(lines, out_type=tf.int64) - tf.cast(lines[-1] == "", tf.int64)
        return tf.range(first, end) + 1, lines[first:end]

    return tf.data.Dataset.from_tensors(path).map(numbered_lines).rebatch(lines_per_batch)


def _assert_lines_ok(ok: tf.Tensor, numbers: tf.Tensor, lines: tf.Tensor, path: str, expected: str) -> tf.Operation:
    """Raises InvalidArgumentError naming ``path`` and the first line where ``ok`` is False."""
    first_bad = tf.argmin(tf.cast(ok, tf.int32), output_type=tf.int64)
    line_number = tf.strings.as_string(tf.gather(numbers, first_bad))
    line = tf.strings.substr(tf.gather(lines, first_bad), 0, 120)
    line = tf.strings.unicode_transcode(line, "UTF-8", "UTF-8", errors="replace")  # the message must be UTF-8
    message = tf.strings.join(
        [f"Malformed line in {path}: line ", line_number, " is ", line, f"; expected {expected}. Fix or remove it."]
    )
    return tf.debugging.Assert(tf.reduce_all(ok), [message], summarize=1)


def _assert_ids_distinct(ids: tf.Tensor, numbers: tf.Tensor, path: str, what: str = "movie") -> tf.Operation:
    """Raises InvalidArgumentError naming ``path``, the first line whose ``what`` id an earlier line has, and both."""
    order = tf.argsort(ids, stable=True)  # equal ids stay in line order
    sorted_ids = tf.gather(ids, order)
    repeats = tf.concat([[False], sorted_ids[1:] == sorted_ids[:-1]], axis=0)
    lines = tf.gather(numbers, order)
    first = tf.argmin(tf.where(repeats, lines, tf.int64.max), output_type=tf.int32)
    earlier = tf.gather(lines, tf.maximum(first - 1, 0))
    message = tf.strings.join([
        f"Repeated {what} id in {path}: line ", tf.strings.as_string(tf.gather(lines, first)), f" repeats {what} id ",
        tf.strings.as_string(tf.gather(sorted_ids, first)), " of line ", tf.strings.as_string(earlier),
        ". Remove one of the two lines.",
    ])  # fmt: skip
    return tf.debugging.Assert(tf.logical_not(tf.reduce_any(repeats)), [message], summarize=1)


def _read_ratings(path: str, variant: str) -> tf.data.Dataset:
    parse = plain(lambda numbers, lines: _parse_rating_lines(numbers, lines, path, variant))
    return _numbered_lines(path, _LAYOUTS[variant].header).map(parse, num_parallel_calls=tf.data.AUTOTUNE)


def _parse_rating_lines(numbers: tf.Tensor, lines: tf.Tensor, path: str, variant: str) -> dict[str, tf.Tensor]:
    """The rating columns of a batch of ``path``'s lines (numbered from 1); a malformed line stops with its number."""
    ok = tf.strings.regex_full_match(lines, _RATINGS_LINE[variant])
    with tf.control_dependencies([_assert_lines_ok(ok, numbers, lines, path, _RATINGS_FORMAT[variant])]):
        lines = tf.strings.strip(lines)
    if variant == "1m":
        lines = tf.strings.regex_replace(lines, "::", ",")
    user, movie, rating, timestamp = tf.io.decode_csv(
        lines, record_defaults=_RATINGS_COLUMNS, field_delim="\t" if variant == "100k" else ","
    )
    in_range = (rating >= 0.5) & (rating <= 5.0)
    check = _assert_lines_ok(in_range, numbers, lines, path, "a rating between 0.5 and 5")
    with tf.control_dependencies([check]):
        return {"user_id": user, "movie_id": movie, "user_rating": tf.identity(rating), "timestamp": timestamp}


def _normalise_genres(genres: tf.Tensor | tf.RaggedTensor) -> tf.Tensor | tf.RaggedTensor:
    def rename(names: tf.Tensor) -> tf.Tensor:
        names = tf.where(names == "Children's", "Children", names)
        return tf.where(names == "unknown", "Unknown", names)

    return tf.ragged.map_flat_values(rename, genres) if isinstance(genres, tf.RaggedTensor) else rename(genres)


def _read_movies(path: str, variant: str) -> tf.data.Dataset:
    # Unbatching leaves movie_genres as a ragged-rank-0 spec; the identity map makes it a plain [None] tensor spec.
    movies = _movie_batches(path, variant).map(plain(lambda batch: {key: batch[key] for key in _MOVIE_KEYS}))
    return movies.unbatch().map(plain(lambda movie: dict(movie)))


_MOVIE_KEYS = ("movie_id", "movie_title", "movie_genres")


def _movie_batches(path: str, variant: str) -> tf.data.Dataset:
    """One batch of every movie of ``path``: the movie schema as columns (``movie_genres`` ragged), plus
    ``line_number`` (int64, from 1 as an editor shows it) and ``release_date`` (u.item's text, empty for other
    variants) for :mod:`tfrank.data.features`."""
    layout = _LAYOUTS[variant]
    pattern = _MOVIES_LINE[variant]
    expected = _MOVIES_FORMAT[variant]
    flags_names = tf.constant(_GENRES_100K)

    @plain
    def parse(numbers: tf.Tensor, lines: tf.Tensor) -> dict[str, tf.Tensor]:
        if layout.latin1:  # transcode first: the regular expressions work on UTF-8
            lines = tf.strings.unicode_transcode(lines, "ISO-8859-1", "UTF-8")
        ok = tf.strings.regex_full_match(lines, pattern)
        with tf.control_dependencies([_assert_lines_ok(ok, numbers, lines, path, expected)]):
            lines = tf.strings.regex_replace(lines, r"\r$", "")
        if variant == "100k":
            fields = tf.reshape(tf.strings.split(lines, "|").values, [-1, 24])
            movie, title, release_date = fields[:, 0], fields[:, 1], fields[:, 2]
            is_genre = tf.equal(fields[:, 5:], "1")
            genres = tf.ragged.boolean_mask(tf.broadcast_to(flags_names, tf.shape(is_genre)), is_genre)
        elif variant == "1m":
            fields = tf.reshape(tf.strings.split(lines, "::").values, [-1, 3])
            movie, title, release_date = fields[:, 0], fields[:, 1], tf.fill(tf.shape(fields[:, 0]), "")
            genres = tf.strings.split(fields[:, 2], "|")
        else:
            movie, title, genre_field = tf.io.decode_csv(lines, record_defaults=[tf.constant([], tf.string)] * 3)
            genres = tf.strings.split(genre_field, "|")
            release_date = tf.fill(tf.shape(movie), "")
        movie_ids = tf.strings.to_number(movie, tf.int64)
        with tf.control_dependencies([_assert_ids_distinct(movie_ids, numbers, path)]):
            return {
                "movie_id": tf.identity(movie_ids),
                "movie_title": title,
                "movie_genres": _normalise_genres(genres),
                "line_number": numbers,
                "release_date": release_date,
            }

    # One batch of every line, so that a repeated movie id is found wherever it is (a movies file is small).
    return _numbered_lines(path, layout.header, ALL_ROWS).map(parse)


def _user_batches(path: str, variant: str) -> tf.data.Dataset:
    """One batch of every user of ``path`` (u.user or users.dat) as columns: ``user_id`` int64, ``age`` int64
    (1m: the bucket code), ``gender``, ``occupation`` (1m: the name of the code), ``zip`` strings, and
    ``line_number``. A malformed line or a repeated user id stops iteration naming the file and the line(s)."""
    layout = _LAYOUTS[variant]
    pattern = _USERS_LINE[variant]
    expected = _USERS_FORMAT[variant]
    occupations = tf.constant(OCCUPATIONS_1M)

    @plain
    def parse(numbers: tf.Tensor, lines: tf.Tensor) -> dict[str, tf.Tensor]:
        if layout.latin1:
            lines = tf.strings.unicode_transcode(lines, "ISO-8859-1", "UTF-8")
        ok = tf.strings.regex_full_match(lines, pattern)
        with tf.control_dependencies([_assert_lines_ok(ok, numbers, lines, path, expected)]):
            lines = tf.strings.regex_replace(lines, r"\r$", "")
        if variant == "100k":
            fields = tf.reshape(tf.strings.split(lines, "|").values, [-1, 5])
            user, age, gender, occupation, zip_code = (fields[:, i] for i in range(5))
        else:
            fields = tf.reshape(tf.strings.split(lines, "::").values, [-1, 5])
            user, gender, age, occupation, zip_code = (fields[:, i] for i in range(5))
            occupation = tf.gather(occupations, tf.strings.to_number(occupation, tf.int64))
        user_ids = tf.strings.to_number(user, tf.int64)
        with tf.control_dependencies([_assert_ids_distinct(user_ids, numbers, path, "user")]):
            return {
                "user_id": tf.identity(user_ids),
                "age": tf.strings.to_number(age, tf.int64),
                "gender": gender,
                "occupation": occupation,
                "zip": zip_code,
                "line_number": numbers,
            }

    return _numbered_lines(path, layout.header, ALL_ROWS).map(parse)
