"""Honest quality comparison: trained configurations against baselines, on the same test lists, two protocols.

For each seed (default 42..46) the ratings are split 70/15/15 by :func:`tfrank.data.split` with that seed, as
``bin/train.py`` splits them, and two protocols are scored on the test ratings:

- ``lists``: the tutorial's protocol, one list of 5 test movies per user (``sample_lists(list_size=5,
  num_lists_per_user=1, seed=seed + 2)``: the test lists of ``bin/train.py``), nDCG@5;
- ``full``: each user's whole test list (every test rating of the user, users with at least 2 of them,
  ``sample_lists(list_size=None)``), nDCG@10.

Rows:

- configurations: named sets of :class:`tfrank.training.TrainConfig` overrides (``--config=NAME=field:value,...``;
  ``--config=default=`` is ``bin/train.py``'s defaults). Each is trained by ``tfrank.training.run`` with that seed,
  exported, and its SavedModel scores the lists; on the ``lists`` protocol the bench checks that its nDCG@5 equals
  the one the training run reported, so both read the same test lists.
- baselines, fit on the seed's training ratings only (hyperparameters picked on the validation ratings' RMSE):
  random scores; ``movie mean`` (each movie's mean training rating, not shrunk: the popularity prior every row is
  compared with); ``movie mean, shrunk`` (towards the global mean, pseudo-ratings from ``--shrinkages``); ``movie
  mean + genre affinity`` (the user's shrunk mean residual on the movie's genres, :class:`tfrank.baselines.
  GenreAffinity`); ``biased MF (ALS)`` (dims and L2 from ``--mf_dims`` x ``--mf_l2``); ``biased MF + genre
  affinity``. Genre rows need movie genres: MovieLens and ``--dataset=synthetic-1m`` have them (the synthetic
  genres are drawn at random, so they carry no signal there), ``--dataset=synthetic`` does not.

Statistics, per row and protocol: the mean over seeds of the test metric with its 95% Student-t interval (over
seeds), and the paired difference to the ``movie mean`` prior on the same lists with a 95% percentile bootstrap
interval: each of ``--bootstrap_samples`` resamples draws, within every seed, that seed's lists with replacement
(a bootstrap stratified by seed over the per-list differences) and averages the seeds' mean differences. That
interval covers the finite test lists for these trained models; the t-interval covers the spread over seeds.

Output: the table on stdout (one row per configuration and baseline, per protocol its mean with the CI over
seeds and its difference to the prior with the bootstrap CI, then the hyperparameters each seed picked);
``--json`` writes every number, per seed too; ``--chart`` a PNG of the same (matplotlib, the ``[bench]`` extra).

``--dataset=synthetic-1m`` writes ml-1m-shaped synthetic ratings (6,040 users, 3,706 movies, 1,000,209 ratings,
:mod:`tfrank.data.synthetic`) as ml-25m-format files into a temporary folder and trains on them as
``movielens/25m``: the ml-1m protocol when the ml-1m files are absent.

    python bench/quality.py --movielens_path=../shared/data/ml-100k --config=tutorial=model:tutorial
    python bench/quality.py --losses=pairwise_hinge,softmax --seeds=42,43 --json=/tmp/quality.json
    python bench/quality.py --dataset=synthetic-1m --seeds=42,43,44 --chart=/tmp/quality.png
"""

import argparse
import dataclasses
import json
import math
import os
import sys
import tempfile
import typing

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402
import tensorflow as tf  # noqa: E402

from tfrank import baselines, training  # noqa: E402
from tfrank import data as tfrank_data  # noqa: E402
from tfrank.ops import PADDING_ID, PADDING_LABEL  # noqa: E402

PRIOR = "movie mean"
PROTOCOLS = {"lists": ("5-item lists", "ndcg@5", 5), "full": ("whole test lists", "ndcg@10", 10)}
SYNTHETIC_1M = "synthetic-1m"
# ml-1m's size: users, rated movies, ratings (every user has at least 20).
_ML_1M_SHAPE = (6040, 3706, 1_000_209)
# Fields that the bench sets itself: the data, the seed and where outputs go.
_BENCH_FIELDS = ("dataset", "movielens_path", "tfds_data_dir", "seed", "model_dir", "export_dir", "verbose",
                 "metrics", "overwrite")
_FULL_LIST_MIN_ITEMS = 2  # a one-item list ranks the same under every model
_ALL_ROWS = 1 << 30


# -- Configurations ------------------------------------------------------------------------------------------------


def _convert(field: str, value: str, field_type: typing.Any) -> typing.Any:
    """``value`` as ``field_type`` (a TrainConfig annotation); ``none`` is None for Optional fields."""
    args = typing.get_args(field_type)
    if type(None) in args:
        if value.lower() == "none":
            return None
        field_type = next(arg for arg in args if arg is not type(None))
    if typing.get_origin(field_type) is tuple:
        return tuple(value.split("+"))
    if field_type is bool:
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(f"{field}:{value}: {field} is a boolean; write true or false")
        return value.lower() in ("true", "1")
    try:
        return field_type(value)
    except (TypeError, ValueError):
        raise ValueError(f"{field}:{value}: {field} takes a {getattr(field_type, '__name__', field_type)}") from None


def parse_config(text: str) -> tuple[str, dict]:
    """``NAME=field:value,field:value`` -> ``(NAME, {field: value})`` with TrainConfig's field types.

    A tuple field takes ``+``-joined values (``loss:softmax``); ``none`` sets an Optional field to None.
    """
    name, equals, body = text.partition("=")
    if not equals or not name:
        raise ValueError(f"--config={text}: write NAME=field:value,... (e.g. tutorial=loss:pairwise_hinge; "
                         "default= for bin/train.py's defaults)")
    hints = typing.get_type_hints(training.TrainConfig)
    overrides = {}
    for item in filter(None, body.split(",")):
        field, colon, value = item.partition(":")
        if not colon:
            raise ValueError(f"--config={text}: {item!r} is not field:value")
        if field not in hints:
            raise ValueError(f"--config={text}: TrainConfig has no field {field!r} in this tfrank; fields: "
                             f"{', '.join(sorted(hints))}")
        if field in _BENCH_FIELDS:
            raise ValueError(f"--config={text}: {field} is set by the bench for every row (use --dataset, "
                             "--movielens_path, --seeds); drop it from the configuration")
        overrides[field] = _convert(field, value, hints[field])
    if len(overrides.get("loss", ("one",))) != 1:
        raise ValueError(f"--config={text}: name one loss per configuration (one model per row)")
    return name, overrides


def default_configs() -> list[str]:
    """``default=`` (bin/train.py's defaults), and the tutorial model when TrainConfig can name a model."""
    configs = ["default="]
    if "model" in {field.name for field in dataclasses.fields(training.TrainConfig)}:
        configs.insert(0, "tutorial=model:tutorial,loss:pairwise_hinge")
    return configs


def configurations(args: argparse.Namespace) -> dict[str, dict]:
    texts = list(args.config or [])
    texts += [f"{loss}=loss:{loss}" for loss in (args.losses.split(",") if args.losses else [])]
    configs = {}
    for text in texts or default_configs():
        name, overrides = parse_config(text)
        if name in configs or name in _baseline_names():
            raise ValueError(f"--config={text}: the name {name!r} is taken; give each row its own name")
        for field in ("learning_rate", "ema_momentum"):
            if getattr(args, field) is not None:
                overrides.setdefault(field, getattr(args, field))
        configs[name] = overrides
    return configs


def _baseline_names() -> list[str]:
    return ["random scores", PRIOR, "movie mean, shrunk", "movie mean + genre affinity", "biased MF (ALS)",
            "biased MF + genre affinity"]


# -- Data ----------------------------------------------------------------------------------------------------------


@dataclasses.dataclass
class SeedData:
    """One seed's split (training and validation ratings as numpy columns) and its test lists per protocol."""

    train: tuple[np.ndarray, np.ndarray, np.ndarray]
    validation: tuple[np.ndarray, np.ndarray, np.ndarray]
    lists: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]]  # protocol -> user_id [n], movie_id, labels [n, L]


def _columns(ratings: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    parts = {"user_id": [], "movie_id": [], "user_rating": []}
    for batch in ratings:
        for key, values in parts.items():
            values.append(np.reshape(batch[key].numpy(), [-1]))
    return tuple(np.concatenate(values) for values in parts.values())


def _dense_lists(lists: tf.data.Dataset) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One batch of every list as numpy: user ids, movie ids padded with PADDING_ID, labels with PADDING_LABEL."""
    batches = list(lists)
    if not batches:
        raise ValueError("no test lists: no user has enough test ratings; check the ratings source")
    ((features, labels),) = batches
    movie_ids = features["movie_id"]
    if isinstance(movie_ids, tf.RaggedTensor):
        movie_ids, labels = movie_ids.to_tensor(PADDING_ID), labels.to_tensor(PADDING_LABEL)
    return features["user_id"].numpy(), movie_ids.numpy(), labels.numpy()


def load_seed_data(config: training.TrainConfig) -> SeedData:
    """``config``'s split and test lists, built as ``tfrank.training.prepare_data`` builds them."""
    train, validation, test = tfrank_data.split(training.load_config_ratings(config), seed=config.seed)
    lists = {
        "lists": tfrank_data.sample_lists(test, list_size=config.list_size,
                                          num_lists_per_user=config.eval_lists_per_user,
                                          min_list_size=config.list_size, seed=config.seed + 2, batch_size=_ALL_ROWS),
        "full": tfrank_data.sample_lists(test, list_size=None, min_list_size=_FULL_LIST_MIN_ITEMS,
                                         seed=config.seed + 2, batch_size=_ALL_ROWS),
    }  # fmt: skip
    return SeedData(_columns(train), _columns(validation), {name: _dense_lists(ds) for name, ds in lists.items()})


def load_genres(config: training.TrainConfig) -> tuple[np.ndarray, np.ndarray] | None:
    """``(movie_ids, multi-hot genres)`` of ``config``'s movies; None for data without movies (``synthetic``)."""
    if config.dataset == training.SYNTHETIC:
        return None
    movies = tfrank_data.load_movies(config.variant, source=config.movielens_path, data_dir=config.tfds_data_dir)
    movie_ids, genres = [], []
    for movie in movies:
        movie_ids.append(int(movie["movie_id"]))
        genres.append([name.decode() for name in movie["movie_genres"].numpy()])
    return baselines.multi_hot_genres(movie_ids, genres, tfrank_data.GENRES)


# -- Scoring -------------------------------------------------------------------------------------------------------


def per_list(lists: tuple[np.ndarray, np.ndarray, np.ndarray], scores: np.ndarray,
             topn: int) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    _, movie_ids, labels = lists
    scores = np.where(movie_ids == PADDING_ID, -1e9, scores)
    return baselines.per_list_ndcg(labels, scores, topn)


def baseline_rows(seed: int, data: SeedData, genres: tuple[np.ndarray, np.ndarray] | None,
                  args: argparse.Namespace) -> tuple[dict, dict]:  # fmt: skip
    """``({row: {protocol: (values, weights)}}, {row: picked hyperparameters})`` of every baseline."""
    train, validation = data.train, data.validation
    models, picked = {}, {}
    models[PRIOR] = baselines.MovieMean().fit(*train)
    shrinkages = [{"shrinkage": float(s)} for s in args.shrinkages.split(",")]
    models["movie mean, shrunk"], picked["movie mean, shrunk"], _ = baselines.fit_best(
        baselines.MovieMean, shrinkages, train, validation)
    mf_grid = [{"dim": int(dim), "l2": float(l2), "seed": seed}
               for dim in args.mf_dims.split(",") for l2 in args.mf_l2.split(",")]
    mf, picked["biased MF (ALS)"], _ = baselines.fit_best(baselines.BiasedMF, mf_grid, train, validation)
    models["biased MF (ALS)"] = mf
    if genres is not None:
        for name, base in (("movie mean + genre affinity", models[PRIOR]), ("biased MF + genre affinity", mf)):
            models[name], picked[name], _ = baselines.fit_best(
                lambda shrinkage, base=base: baselines.GenreAffinity(base, *genres, shrinkage, refit_base=False),
                shrinkages, train, validation)
    rows = {}
    rng = np.random.default_rng(seed)
    for protocol, lists in data.lists.items():
        topn = PROTOCOLS[protocol][2]
        user_ids, movie_ids, _ = lists
        rows.setdefault("random scores", {})[protocol] = per_list(lists, rng.random(movie_ids.shape), topn)
        for name, model in models.items():
            rows.setdefault(name, {})[protocol] = per_list(lists, model.predict(user_ids[:, None], movie_ids), topn)
    return rows, picked


def _saved_model_scores(saved_model: typing.Any, user_ids: np.ndarray, movie_ids: np.ndarray) -> np.ndarray:
    score = saved_model.signatures["serving_default"]
    parts = [score(user_id=tf.constant(user_ids[i:i + 1024], tf.int64),
                   movie_id=tf.constant(movie_ids[i:i + 1024], tf.int64))["scores"].numpy()
             for i in range(0, len(user_ids), 1024)]
    return np.concatenate(parts)


def config_row(name: str, overrides: dict, base: training.TrainConfig, data: SeedData, export_root: str) -> dict:
    """Trains ``name``'s configuration for ``base.seed``, exports it, and scores every protocol's lists."""
    config = dataclasses.replace(base, **overrides, verbose=0, metrics=("ndcg@5",),
                                 export_dir=os.path.join(export_root, f"{len(os.listdir(export_root))}"))
    ((loss, result),) = training.run(config).items()
    saved_model = tf.saved_model.load(result["export_path"])
    row = {}
    for protocol, lists in data.lists.items():
        scores = _saved_model_scores(saved_model, lists[0], lists[1])
        row[protocol] = per_list(lists, scores, PROTOCOLS[protocol][2])
    same_lists = config.list_size == base.list_size and config.eval_lists_per_user == base.eval_lists_per_user
    values, weights = row["lists"]
    scored, reported = float(np.sum(values * weights) / np.sum(weights)), result["test"]["ndcg@5"]
    if same_lists and abs(scored - reported) > 1e-4:
        raise RuntimeError(f"{name} (seed {base.seed}): its SavedModel scores test nDCG@5 {scored:.5f} on the "
                           f"bench's lists, its training run reported {reported:.5f}: bench/quality.py no longer "
                           "builds the test lists of tfrank.training.prepare_data; make them agree")
    return row


# -- Statistics and output -----------------------------------------------------------------------------------------


def summarise(per_seed: dict[str, list[dict]], num_resamples: int) -> dict:
    """Per row and protocol: per-seed metric, mean with t-interval, paired difference to the prior with its CI."""
    summary = {}
    for name, seeds in per_seed.items():
        summary[name] = {}
        for protocol in PROTOCOLS:
            if any(protocol not in seed for seed in seeds):
                continue
            values = [float(np.sum(v * w) / np.sum(w)) for v, w in (seed[protocol] for seed in seeds)]
            mean, low, high = baselines.t_interval(values)
            differences, weights = [], []
            for seed, prior in zip(seeds, per_seed[PRIOR]):
                (v, w), (prior_v, prior_w) = seed[protocol], prior[protocol]
                if not np.array_equal(w, prior_w):
                    raise RuntimeError(f"{name}: its {protocol} lists weigh differently from the prior's; the rows "
                                       "must score the same lists")
                differences.append(v - prior_v)
                weights.append(w)
            difference = baselines.paired_bootstrap(differences, weights, num_resamples=num_resamples)
            summary[name][protocol] = {
                "per_seed": values, "mean": mean, "ci": [low, high], "difference": difference[0],
                "difference_ci": list(difference[1:]), "lists_per_seed": [int(np.sum(w > 0)) for w in weights]}
    return summary


def _cell(mean: float, low: float, high: float, signed: bool = False) -> str:
    number = "{:+.4f}" if signed else "{:.4f}"
    if math.isnan(low):
        return number.format(mean)
    return f"{number.format(mean)} [{number.format(low)}, {number.format(high)}]"


def print_table(summary: dict, args: argparse.Namespace, picked: list[dict], configs: dict) -> None:
    name_width = max(len(name) for name in summary) + 2
    header = f"{'':<{name_width}}"
    subheader = f"{'row':<{name_width}}"
    for title, metric, _ in PROTOCOLS.values():
        header += f"{f'{title}: test {metric}':<62}"
        subheader += f"{'mean [95% CI, seeds]':<29}{'minus prior [95% CI, bootstrap]':<33}"
    print(header.rstrip())
    print(subheader.rstrip())
    for name, protocols in summary.items():
        line = f"{name:<{name_width}}"
        for protocol in PROTOCOLS:
            if protocol not in protocols:
                line += f"{'n/a':<62}"
                continue
            stats = protocols[protocol]
            difference = "prior" if name == PRIOR else _cell(stats["difference"], *stats["difference_ci"], True)
            line += f"{_cell(stats['mean'], *stats['ci']):<29}{difference:<33}"
        print(line.rstrip())
    lists = {protocol: summary[PRIOR][protocol]["lists_per_seed"] for protocol in PROTOCOLS}
    print(f"dataset {args.dataset}; seeds {args.seeds}; test lists per seed: "
          + "; ".join(f"{protocol} {lists[protocol]}" for protocol in PROTOCOLS))
    print("prior: each movie's mean training rating (not shrunk); baselines fit on the training ratings only, "
          "hyperparameters by validation RMSE")
    for name, overrides in configs.items():
        changes = ", ".join(f"{k}={','.join(v) if isinstance(v, tuple) else v}" for k, v in overrides.items())
        print(f"config {name}: bin/train.py's defaults" + (f" with {changes}" if changes else ""))
    for name in picked[0]:
        print(f"{name} picked: " + "; ".join(
            f"seed {seed} " + " ".join(f"{k}={v:.4g}" if isinstance(v, float) else f"{k}={v}"
                                       for k, v in p[name].items() if k != "seed")
            for seed, p in zip(args.seed_list, picked)))


def write_chart(summary: dict, path: str, title: str) -> None:
    """Per protocol (a row of panels): each row's metric with its 95% t-interval over seeds, and its paired
    difference to the prior with the bootstrap interval. Random scores are left out: far below, they would squeeze
    the scale (the table has them)."""
    import matplotlib  # noqa: PLC0415  (only when a chart is asked for: it is in the [bench] extra)

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # noqa: PLC0415
    import matplotlib.ticker  # noqa: PLC0415

    names = [name for name in summary if name != "random scores"]
    figure, axes = plt.subplots(len(PROTOCOLS), 2, figsize=(12, len(PROTOCOLS) * (0.4 * len(names) + 1.4)),
                                sharey=True, squeeze=False)
    for (mean_axis, difference_axis), (protocol, (label, metric, _)) in zip(axes, PROTOCOLS.items()):
        shown = [name for name in names if protocol in summary[name]]
        positions = [names.index(name) for name in shown]
        for axis, key, bounds_key, reference, what in (
                (mean_axis, "mean", "ci", summary[PRIOR][protocol]["mean"], "95% CI over seeds"),
                (difference_axis, "difference", "difference_ci", 0.0, "minus prior, 95% bootstrap CI")):
            values = np.array([summary[name][protocol][key] for name in shown])
            bounds = np.array([summary[name][protocol][bounds_key] for name in shown], dtype=float)
            errors = np.nan_to_num(np.abs(bounds.T - values))
            axis.errorbar(values, positions, xerr=errors, fmt="o", capsize=3)
            axis.axvline(reference, linestyle="--", color="grey")
            axis.set_yticks(range(len(names)), names)
            axis.set_xlabel(f"{label}: test {metric}, {what}")
            axis.grid(axis="x", alpha=0.3)
            axis.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(6))
        mean_axis.invert_yaxis()
    figure.suptitle(f"{title} (dashed: the {PRIOR} prior)")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


# -- Main ----------------------------------------------------------------------------------------------------------


def base_config(args: argparse.Namespace, folder: str) -> training.TrainConfig:
    """The data part of every row's config: dataset, source and the evaluation lists (bin/train.py's)."""
    if args.dataset == SYNTHETIC_1M:
        num_users, num_movies, num_ratings = _ML_1M_SHAPE
        tfrank_data.synthetic.write_movielens_csv(folder, num_users, num_movies, num_ratings, seed=0)
        return training.TrainConfig(dataset="movielens/25m", movielens_path=folder)
    if args.dataset == training.SYNTHETIC:
        return training.TrainConfig(dataset=training.SYNTHETIC)
    return training.TrainConfig(dataset=args.dataset, movielens_path=args.movielens_path or "tfds")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", action="append",
                        help="NAME=field:value,... (TrainConfig fields; repeat for more rows). Default: default= "
                             "(bin/train.py's defaults), and tutorial=model:tutorial,loss:pairwise_hinge when "
                             "TrainConfig has a model field")
    parser.add_argument("--losses", default=None, help="shorthand: one configuration per loss, named after it")
    parser.add_argument("--learning_rate", type=float, default=None, help="for every configuration that sets none")
    parser.add_argument("--ema_momentum", type=float, default=None, help="for every configuration that sets none")
    parser.add_argument("--dataset", default="movielens/100k",
                        help=f"{', '.join(training.DATASETS)} or {SYNTHETIC_1M} (ml-1m-shaped synthetic files)")
    parser.add_argument("--movielens_path", default=os.environ.get("TFRANK_MOVIELENS_DIR"),
                        help="GroupLens files; default $TFRANK_MOVIELENS_DIR, else TFDS")
    parser.add_argument("--seeds", default="42,43,44,45,46")
    parser.add_argument("--shrinkages", default="2,5,10,20",
                        help="pseudo-ratings tried for the shrunk movie mean and the genre affinities")
    parser.add_argument("--mf_dims", default="10,20,40", help="biased MF factor counts tried")
    parser.add_argument("--mf_l2", default="10,15,20", help="biased MF L2 penalties tried")
    parser.add_argument("--bootstrap_samples", type=int, default=10_000)
    parser.add_argument("--json", default=None, help="write every number (per seed too) to this JSON file")
    parser.add_argument("--chart", default=None, help="write a PNG chart here (needs matplotlib: pip install "
                        "-e \".[bench]\")")
    args = parser.parse_args(argv)
    try:
        args.seed_list = [int(seed) for seed in args.seeds.split(",")]
        configs = configurations(args)
    except ValueError as error:
        parser.error(str(error))
    per_seed = {name: [] for name in configs}
    picked = []
    with tempfile.TemporaryDirectory(prefix="tfrank-quality-") as folder:
        data_folder, export_root = os.path.join(folder, "data"), os.path.join(folder, "export")
        os.makedirs(export_root)
        base = base_config(args, data_folder)
        genres = load_genres(base)
        for seed in args.seed_list:
            base = dataclasses.replace(base, seed=seed)
            data = load_seed_data(base)
            rows, seed_picked = baseline_rows(seed, data, genres, args)
            picked.append(seed_picked)
            for name, overrides in configs.items():
                per_seed[name].append(config_row(name, overrides, base, data, export_root))
            for name in _baseline_names():
                if name in rows:
                    per_seed.setdefault(name, []).append(rows[name])
            done = {name: seeds[-1] for name, seeds in per_seed.items()}
            print(f"seed {seed}: " + "; ".join(
                f"{name} " + " ".join(f"{np.sum(v * w) / np.sum(w):.4f}" for v, w in row.values())
                for name, row in done.items()), file=sys.stderr, flush=True)
    train_configs = {name: dataclasses.asdict(dataclasses.replace(base, **overrides, export_dir=None))
                     for name, overrides in configs.items()}  # the last seed's; the seed is the only difference
    summary = summarise(per_seed, args.bootstrap_samples)
    print_table(summary, args, picked, configs)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"dataset": args.dataset, "seeds": args.seed_list, "prior": PRIOR,
                       "protocols": {name: {"lists": title, "metric": metric} for name, (title, metric, _)
                                     in PROTOCOLS.items()},
                       "configs": configs, "train_configs": train_configs, "picked": picked, "rows": summary},
                      f, indent=2)
    if args.chart:
        write_chart(summary, args.chart, f"{args.dataset}, seeds {args.seeds}")


if __name__ == "__main__":
    main()
