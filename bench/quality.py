"""Test nDCG@5 and MRR of every registered loss on MovieLens 100K, mean ± std over seeds, default flags otherwise.

Each seed is one `bin/train.py` run (`--loss=<all losses> --seed=S`): the same split, lists and initial weights
for every loss of that seed. Also prints the two non-learned references on the same test lists: random scores
and each movie's mean training rating.

    python bench/quality.py --movielens_path=../shared/data/ml-100k [--seeds=42,43,44] [--losses=mse,pairwise_hinge]
"""

import argparse
import os
import statistics

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfrank import data as tfrank_data  # noqa: E402
from tfrank import losses, metrics, training  # noqa: E402


def reference_scores(config: training.TrainConfig) -> dict:
    """nDCG@5 and MRR of random scores and of the movie-mean-rating prior on ``config``'s test lists."""
    ratings = tfrank_data.load_ratings(config.variant, source=config.movielens_path)
    train, _, _ = tfrank_data.split(ratings, seed=config.seed)
    movie_ids, user_ratings = [], []
    for batch in train.batch(1 << 20):
        movie_ids.append(batch["movie_id"].numpy())
        user_ratings.append(batch["user_rating"].numpy())
    movie_ids, user_ratings = np.concatenate(movie_ids), np.concatenate(user_ratings)
    table_size = int(movie_ids.max()) + 2
    counts = np.bincount(movie_ids, minlength=table_size)
    means = np.bincount(movie_ids, weights=user_ratings, minlength=table_size) / np.maximum(counts, 1)
    means[counts == 0] = user_ratings.mean()
    prepared = training.prepare_data(config)
    rng = np.random.default_rng(config.seed)
    out = {}
    for name, score in (("random scores", lambda ids: rng.random(ids.shape)),
                        ("movie mean rating", lambda ids: means[np.clip(ids, 0, table_size - 1)])):
        ndcg, mrr = metrics.get("ndcg@5"), metrics.get("mrr")
        for features, labels in prepared.test:
            scores = tf.constant(score(features["movie_id"].numpy()), tf.float32)
            ndcg.update_state(labels, scores)
            mrr.update_state(labels, scores)
        out[name] = (float(ndcg.result()), float(mrr.result()))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movielens_path", default=os.environ.get("TFRANK_MOVIELENS_DIR"))
    parser.add_argument("--seeds", default="42,43,44")
    parser.add_argument("--losses", default=",".join(losses.names()))
    parser.add_argument("--learning_rate", type=float, default=None, help="default: bin/train.py's per-loss rate")
    parser.add_argument("--ema_momentum", type=float, default=None, help="default: bin/train.py's per-loss value")
    args = parser.parse_args()
    seeds = [int(seed) for seed in args.seeds.split(",")]
    loss_names = args.losses.split(",")
    by_loss = {name: [] for name in loss_names}
    references = {}
    for seed in seeds:
        config = training.TrainConfig(loss=tuple(loss_names), metrics=("ndcg@5", "mrr"),
                                      movielens_path=args.movielens_path, seed=seed, verbose=0,
                                      learning_rate=args.learning_rate, ema_momentum=args.ema_momentum)
        for name, result in training.run(config).items():
            by_loss[name].append((result["test"]["ndcg@5"], result["test"]["mrr"]))
        for name, values in reference_scores(config).items():
            references.setdefault(name, []).append(values)
    print(f"{'loss':<28}{'test nDCG@5':>18}{'test MRR':>18}")
    for name, values in list(by_loss.items()) + list(references.items()):
        ndcg, mrr = zip(*values)
        cells = [f"{statistics.mean(v):.4f} ± {statistics.pstdev(v):.4f}" for v in (ndcg, mrr)]
        print(f"{name:<28}{cells[0]:>18}{cells[1]:>18}")
    print(f"seeds {args.seeds}; learning_rate {args.learning_rate or 'per loss'}, ema_momentum "
          f"{'per loss' if args.ema_momentum is None else args.ema_momentum}; defaults of bin/train.py otherwise")


if __name__ == "__main__":
    main()
