"""The Keras-RS tutorial "rank movies with pairwise losses", run on local GroupLens files, as a baseline.

Faithful to the tutorial's steps (Python-loop list building with np.random.choice, the two-tower model, Adagrad,
model.fit, nDCG@5 on the test lists); only the source differs: u.data/u.item instead of tfds.load, parsed into
the same tf.data elements TFDS gives. Prints one JSON line with timings, throughput and test nDCG@5.

    KERAS_BACKEND=tensorflow python bench/tutorial_keras_rs.py --movielens_path=../shared/data/ml-100k --loss=hinge
"""

import argparse
import collections
import json
import os
import time

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import keras  # noqa: E402
import keras_rs  # noqa: E402
import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402
from keras import ops  # noqa: E402

NUM_LISTS_PER_USER, TEST_LISTS_PER_USER, LIST_SIZE = 50, 1, 5
EMBEDDING_DIM, BATCH_SIZE, EPOCHS, LEARNING_RATE = 32, 1024, 5, 0.1


def tfds_shaped_ratings(path: str) -> tf.data.Dataset:
    """u.data as the elements of tfds "movielens/100k-ratings": string ids, float rating."""
    columns = np.loadtxt(os.path.join(path, "u.data"), dtype=np.int64)
    return tf.data.Dataset.from_tensor_slices({
        "user_id": columns[:, 0].astype(str).astype(bytes),
        "movie_id": columns[:, 1].astype(str).astype(bytes),
        "user_rating": columns[:, 2].astype(np.float32),
    })


def sequences_per_user(ratings, min_examples_per_list):
    sequences = collections.defaultdict(list)
    for sample in ratings:  # The tutorial's per-example Python loop.
        sequences[int(sample["user_id"].numpy())].append(
            {"movie_id": int(sample["movie_id"].numpy()), "user_rating": float(sample["user_rating"].numpy())})
    return {user: seq for user, seq in sequences.items() if len(seq) >= min_examples_per_list}


def examples(sequences, num_list_per_user):
    inputs, labels = {"user_id": [], "movie_id": []}, []
    for user_id, user_list in sequences.items():
        for _ in range(num_list_per_user):
            indices = np.random.choice(range(len(user_list)), size=LIST_SIZE, replace=False)
            sampled = [user_list[i] for i in indices]
            inputs["user_id"].append(user_id)
            inputs["movie_id"].append(tf.convert_to_tensor([f["movie_id"] for f in sampled]))
            labels.append(tf.convert_to_tensor([f["user_rating"] for f in sampled]))
    return inputs, labels


class RankingModel(keras.Model):
    def __init__(self, num_users, num_candidates, embedding_dimension=32, **kwargs):
        super().__init__(**kwargs)
        self.user_embedding = keras.layers.Embedding(num_users, embedding_dimension)
        self.candidate_embedding = keras.layers.Embedding(num_candidates, embedding_dimension)
        self.ratings = keras.Sequential([keras.layers.Dense(256, activation="relu"),
                                         keras.layers.Dense(64, activation="relu"), keras.layers.Dense(1)])

    def call(self, inputs):
        user_embeddings = self.user_embedding(inputs["user_id"])
        candidate_embeddings = self.candidate_embedding(inputs["movie_id"])
        repeated = ops.repeat(ops.expand_dims(user_embeddings, axis=1), repeats=ops.shape(inputs["movie_id"])[-1],
                              axis=1)
        return ops.squeeze(self.ratings(ops.concatenate([repeated, candidate_embeddings], axis=-1)), axis=-1)


class _EpochTimer(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.seconds = []

    def on_epoch_begin(self, epoch, logs=None):
        self._start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        self.seconds.append(time.perf_counter() - self._start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--movielens_path", default=os.environ.get("TFRANK_MOVIELENS_DIR"))
    parser.add_argument("--loss", choices=("hinge", "mse"), default="hinge")
    args = parser.parse_args()
    start = time.perf_counter()
    ratings = tfds_shaped_ratings(args.movielens_path).map(lambda x: {
        "user_id": tf.strings.to_number(x["user_id"], out_type=tf.int32),
        "movie_id": tf.strings.to_number(x["movie_id"], out_type=tf.int32),
        "user_rating": (x["user_rating"] - 1.0) / 4.0})
    shuffled = ratings.shuffle(100_000, seed=42, reshuffle_each_iteration=False)
    train = shuffled.take(70_000)
    val = shuffled.skip(70_000).take(15_000)
    test = shuffled.skip(85_000).take(15_000)
    lists_start = time.perf_counter()
    train_ds = tf.data.Dataset.from_tensor_slices(examples(sequences_per_user(train, LIST_SIZE), NUM_LISTS_PER_USER))
    val_ds = tf.data.Dataset.from_tensor_slices(examples(sequences_per_user(val, 5), TEST_LISTS_PER_USER))
    test_ds = tf.data.Dataset.from_tensor_slices(examples(sequences_per_user(test, 5), TEST_LISTS_PER_USER))
    lists_seconds = time.perf_counter() - lists_start
    num_train_lists = int(train_ds.cardinality())
    train_ds, val_ds, test_ds = (ds.batch(BATCH_SIZE).cache() for ds in (train_ds, val_ds, test_ds))

    model = RankingModel(944, 1683, EMBEDDING_DIM)
    loss = keras_rs.losses.PairwiseHingeLoss() if args.loss == "hinge" else keras.losses.MeanSquaredError()
    model.compile(loss=loss, metrics=[keras_rs.metrics.NDCG(k=LIST_SIZE, name="ndcg")],
                  optimizer=keras.optimizers.Adagrad(learning_rate=LEARNING_RATE))
    timer = _EpochTimer()
    model.fit(train_ds, validation_data=val_ds, epochs=EPOCHS, verbose=0, callbacks=[timer])
    ndcg = model.evaluate(test_ds, return_dict=True, verbose=0)["ndcg"]
    # Epoch 1 includes tracing; the median epoch is the steady-state throughput (validation included, as in fit).
    print(json.dumps({"total_seconds": time.perf_counter() - start, "list_building_seconds": lists_seconds,
                      "train_lists_per_second": num_train_lists / float(np.median(timer.seconds)),
                      "test_ndcg@5": ndcg}))


if __name__ == "__main__":
    main()
