"""Ranks movies for a user with an exported model: python bin/rank.py --export_dir=/tmp/export --user_id=42 \
--movie_ids=409,237,131,941,543

Loads the latest (or --version) SavedModel under --export_dir, scores the movies through its `serving_default`
signature and prints them best first: rank, score, movie id and title (titles from the MovieLens movies file).
Unlike the Keras-RS tutorial, which prints np.argsort's ascending order, the highest-scored movie comes first.
"""

import os
import sys

import _quiet_tensorflow  # noqa: E402  (first: TensorFlow without start-up noise)
from absl import app, flags  # noqa: E402

from tfrank import data, export  # noqa: E402

FLAGS = flags.FLAGS
flags.DEFINE_string("export_dir", None, "Export base folder holding integer version folders (TF Serving layout).")
flags.DEFINE_string("version", "latest", "Version folder to load: an integer, or 'latest' for the highest.")
flags.DEFINE_integer("user_id", None, "The user to rank the movies for.")
flags.DEFINE_list("movie_ids", None, "Comma-separated movie ids to rank, e.g. 409,237,131,941,543.")
flags.DEFINE_bool("titles", True, "Print movie titles, read from the MovieLens movies file.")
flags.DEFINE_enum(
    "dataset",
    "movielens/100k",
    [f"movielens/{variant}" for variant in data.VARIANTS],
    "MovieLens variant whose titles to print.",
)
flags.DEFINE_string(
    "movielens_path",
    os.environ.get("TFRANK_MOVIELENS_DIR"),
    "Local GroupLens files (folder or zip) for the titles; default $TFRANK_MOVIELENS_DIR, else TFDS.",
)
flags.DEFINE_string("tfds_data_dir", None, "TFDS data_dir when the titles come from TFDS.")
flags.mark_flags_as_required(["export_dir", "user_id", "movie_ids"])
flags.register_validator("movie_ids", lambda ids: bool(ids), message="--movie_ids is empty: pass e.g. 409,237,131")
flags.register_validator(
    "movie_ids",
    lambda ids: all(i.lstrip("-").isdigit() for i in ids or []),
    message="--movie_ids must be comma-separated integers, e.g. 409,237,131",
)
flags.register_validator(
    "version",
    lambda version: version == "latest" or version.isdigit(),
    message="--version must be 'latest' or an integer version folder, e.g. 3",
)


def main(argv):
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    version = None if FLAGS.version == "latest" else int(FLAGS.version)
    try:
        path = export.version_path(FLAGS.export_dir, version)
    except FileNotFoundError as error:
        sys.exit(f"rank.py: error: {'--export_dir' if version is None else '--version'}: {error}")
    ranking = export.rank_movies(path, FLAGS.user_id, [int(movie_id) for movie_id in FLAGS.movie_ids])

    titles = {}
    if FLAGS.titles:
        try:
            movies = data.load_movies(
                variant=FLAGS.dataset.split("/")[1], source=FLAGS.movielens_path, data_dir=FLAGS.tfds_data_dir
            )
        except (data.MovieLensUnavailableError, FileNotFoundError) as error:
            sys.exit(f"rank.py: error: --movielens_path: {error} Or pass --notitles.")
        titles = {int(movie["movie_id"]): movie["movie_title"].decode() for movie in movies.as_numpy_iterator()}

    print(f"Movies for user {FLAGS.user_id}, best first ({path}):")
    print(f"{'rank':>4}  {'score':>12}  {'movie_id':>8}  title")
    for rank, (movie_id, score) in enumerate(ranking, start=1):
        print(f"{rank:>4}  {score:>12.6f}  {movie_id:>8}  {titles.get(movie_id, '?' if FLAGS.titles else '')}")
    _quiet_tensorflow.exit_without_teardown()


if __name__ == "__main__":
    app.run(main)
