"""Ranks movies for a user with an exported tfrank model and prints them best first.

  python bin/rank.py --export_dir=/tmp/tfrank/export/pairwise_hinge --user_id=42 --top_k=10
  python bin/rank.py --export_dir=/tmp/tfrank/export/pairwise_hinge --user_id=42 --movie_ids=409,237,131,941,543

--export_dir is one loss's export folder (bin/train.py writes <export_dir>/<loss>/<version>); its latest integer
version folder is loaded unless --version names one. The movies are scored through the SavedModel's serving_default
signature and printed as rank, score, movie id and title (titles from the MovieLens movies file).

Without --movie_ids: every movie seen in training that the user has not rated is ranked and the best --top_k are
printed, which is what a recommender shows. "Rated" means any rating of the user in the MovieLens ratings file read
from --movielens_path (training, validation and test ratings alike: the user has seen those movies); pass
--noexclude_rated to rank them too. With --movie_ids: those movies are ranked, each once; ids not seen in training are
scored with the model's out-of-vocabulary row and a warning on stderr names them.
"""

import os
import sys

import _cli  # noqa: E402
import _quiet_tensorflow  # noqa: E402  (first: TensorFlow without start-up noise)
import tensorflow as tf  # noqa: E402
from absl import app, flags  # noqa: E402

from tfrank import data, export  # noqa: E402
from tfrank.data._tfdata import ROWS_PER_BATCH  # noqa: E402

PROGRAM = os.path.basename(__file__)
FLAGS = flags.FLAGS
flags.DEFINE_string("export_dir", None, "One loss's export folder holding integer version folders, e.g. "
                    "/tmp/tfrank/export/pairwise_hinge. Required.")  # fmt: skip
flags.DEFINE_string("version", "latest", "Version folder to load: an integer, or 'latest' for the highest.")
flags.DEFINE_integer("user_id", None, "The user to rank movies for. Required.")
flags.DEFINE_list("movie_ids", None, "Comma-separated movie ids to rank, e.g. 409,237,131,941,543. Default: every "
                  "movie seen in training that the user has not rated.")  # fmt: skip
flags.DEFINE_integer("top_k", 10, "How many movies to print, best first. With --movie_ids, all of them unless "
                     "--top_k is given.", lower_bound=1)  # fmt: skip
flags.DEFINE_bool("exclude_rated", True, "Without --movie_ids, leave out the movies the user rated in the MovieLens "
                  "ratings file (read from --movielens_path).")  # fmt: skip
flags.DEFINE_bool("titles", True, "Print movie titles, read from the MovieLens movies file.")
flags.DEFINE_enum(
    "dataset",
    "movielens/100k",
    [f"movielens/{variant}" for variant in data.VARIANTS],
    "MovieLens variant whose titles and ratings to read.",
)
flags.DEFINE_string(
    "movielens_path",
    os.environ.get("TFRANK_MOVIELENS_DIR"),
    "Local GroupLens files (folder or zip) for titles and ratings; default $TFRANK_MOVIELENS_DIR, else TFDS.",
)
flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir when titles and ratings come from TFDS.")

_MAX_IDS_SHOWN = 10


def _warn(message: str) -> None:
    print(f"rank.py: warning: {message}", file=sys.stderr)


def _ids_text(ids: list[int]) -> str:
    shown = ", ".join(str(movie_id) for movie_id in ids[:_MAX_IDS_SHOWN])
    return shown + (f" and {len(ids) - _MAX_IDS_SHOWN} more" if len(ids) > _MAX_IDS_SHOWN else "")


def _version_folder() -> str:
    """The version folder to load, or a one-line error naming --export_dir / --version."""
    export_dir = FLAGS.export_dir
    if not os.path.isdir(export_dir):
        _cli.fail(PROGRAM, f"--export_dir={export_dir}: no such folder; pass one loss's export folder, e.g. "
                  "<export_dir>/<loss>")
    version = None if FLAGS.version == "latest" else int(FLAGS.version)
    versions = export.list_versions(export_dir)
    if not versions:
        losses = sorted(name for name in os.listdir(export_dir) if export.list_versions(os.path.join(export_dir, name)))
        hint = "export a model there"
        if losses:
            example = os.path.join(export_dir, losses[0])
            hint = f"it holds the exports of {', '.join(losses)}: pass e.g. --export_dir={example}"
        _cli.fail(PROGRAM, f"--export_dir={export_dir} holds no version folders; {hint}")
    if version is not None and version not in versions:
        _cli.fail(PROGRAM, f"--version={version}: not under --export_dir={export_dir}; its versions are {versions}")
    return export.version_path(export_dir, version)


def _movie_ids_to_rank() -> list[int] | None:
    """--movie_ids as integers, each once (a warning names repeats); None when not given."""
    if FLAGS.movie_ids is None:
        return None
    if not FLAGS.movie_ids:
        _cli.fail(PROGRAM, "--movie_ids is empty: pass ids, e.g. --movie_ids=409,237,131, or leave it out to rank "
                  "unrated movies")
    movie_ids = []
    for text in FLAGS.movie_ids:
        try:
            movie_ids.append(int(text))
        except ValueError:
            _cli.fail(PROGRAM, f"--movie_ids: {text!r} is not an integer; pass e.g. --movie_ids=409,237,131")
    negative = [movie_id for movie_id in movie_ids if movie_id < 0]
    if negative:
        _cli.fail(PROGRAM, f"--movie_ids: {_ids_text(negative)}: movie ids are >= 0 (-1 marks padding in the "
                  "model's input)")
    unique = list(dict.fromkeys(movie_ids))
    if len(unique) < len(movie_ids):
        repeated = [movie_id for movie_id in unique if movie_ids.count(movie_id) > 1]
        _warn(f"--movie_ids repeats {_ids_text(repeated)}; each movie is ranked once")
    return unique


def _rated_movies(user_id: int) -> set[int]:
    """The movies ``user_id`` rated in the MovieLens ratings file, or a one-line error naming --movielens_path."""
    try:
        ratings = data.load_ratings(
            variant=FLAGS.dataset.split("/")[1],
            source=FLAGS.movielens_path,
            data_dir=FLAGS.tfds_data_dir,
            batch_size=ROWS_PER_BATCH,
        )
        rated = set()
        for batch in ratings.as_numpy_iterator():
            rated.update(batch["movie_id"][batch["user_id"] == user_id].tolist())
    except (data.MovieLensUnavailableError, OSError, ValueError, tf.errors.OpError) as error:
        message = " ".join(str(error).split())
        _cli.fail(PROGRAM, f"--movielens_path: {message} Or pass --noexclude_rated, or --movie_ids.")
    return rated


def _titles() -> dict[int, str]:
    try:
        movies = data.load_movies(
            variant=FLAGS.dataset.split("/")[1], source=FLAGS.movielens_path, data_dir=FLAGS.tfds_data_dir
        )
        return {int(movie["movie_id"]): movie["movie_title"].decode() for movie in movies.as_numpy_iterator()}
    except (data.MovieLensUnavailableError, OSError, ValueError, tf.errors.OpError) as error:
        _cli.fail(PROGRAM, f"--movielens_path: {' '.join(str(error).split())} Or pass --notitles.")


def main(argv):
    if len(argv) > 1:
        _cli.fail(PROGRAM, f"unexpected arguments: {' '.join(argv[1:])}; flags are written --name=value")
    for name in ("export_dir", "user_id"):
        if FLAGS[name].value is None:
            _cli.fail(PROGRAM, f"--{name} is required; see --help")
    if FLAGS.version != "latest" and not FLAGS.version.isdigit():
        _cli.fail(PROGRAM, f"--version={FLAGS.version}: pass 'latest' or an integer version folder, e.g. --version=3")
    user_id = FLAGS.user_id
    if user_id < 0:
        _cli.fail(PROGRAM, f"--user_id={user_id}: user ids are >= 0")
    movie_ids = _movie_ids_to_rank()
    path = _version_folder()
    try:
        saved_model = tf.saved_model.load(path)
    except (OSError, ValueError, tf.errors.OpError) as error:
        _cli.fail(PROGRAM, f"--export_dir: {path} is not a loadable SavedModel: {' '.join(str(error).split())[:300]}")
    try:
        vocabularies = export.vocabularies(saved_model)
    except ValueError as error:
        if movie_ids is None:
            _cli.fail(PROGRAM, f"--movie_ids is needed: {path}: {error}")
        _warn(f"{path}: {error}; unknown ids cannot be named")
        vocabularies = None

    if vocabularies is not None and user_id not in set(vocabularies["user_id"].tolist()):
        _warn(f"--user_id={user_id} was not seen in training: scored with the model's out-of-vocabulary user row")
    if movie_ids is None:
        candidates = vocabularies["movie_id"].tolist()
        if FLAGS.exclude_rated:
            rated = _rated_movies(user_id)
            candidates = [movie_id for movie_id in candidates if movie_id not in rated]
        if not candidates:
            _cli.fail(PROGRAM, f"--user_id={user_id} has rated every movie seen in training; pass --noexclude_rated or "
                      "--movie_ids")
        heading = f"Top {min(FLAGS.top_k, len(candidates))} of the {len(candidates)} movies " + (
            f"user {user_id} has not rated" if FLAGS.exclude_rated else "seen in training"
        )
    else:
        if vocabularies is not None:
            unknown = sorted(set(movie_ids) - set(vocabularies["movie_id"].tolist()))
            if unknown:
                _warn(
                    f"--movie_ids {_ids_text(unknown)} not seen in training: scored with the model's "
                    "out-of-vocabulary movie row, all alike"
                )
        candidates = movie_ids
        heading = f"Movies for user {user_id}"
    top_k = FLAGS.top_k if movie_ids is None or FLAGS["top_k"].present else len(candidates)

    try:
        ranking = export.rank_movies(saved_model, user_id, candidates)[:top_k]
    except tf.errors.OpError as error:
        _cli.fail(PROGRAM, f"{path}: serving_default failed: {' '.join(error.message.split())[:300]}")
    titles = _titles() if FLAGS.titles else {}

    print(f"{heading}, best first ({path}):")
    print(f"{'rank':>4}  {'score':>12}  {'movie_id':>8}  title")
    for rank, (movie_id, score) in enumerate(ranking, start=1):
        print(f"{rank:>4}  {score:>12.6f}  {movie_id:>8}  {titles.get(movie_id, '?' if FLAGS.titles else '')}")
    _quiet_tensorflow.exit_without_teardown()


if __name__ == "__main__":
    app.run(main, flags_parser=_cli.parse_flags)
