"""tf.data settings shared by the data modules: one batch size for whole-column work, and AutoGraph off."""

import tensorflow as tf

# Rows per batch wherever the data modules move ratings (or file lines) in batches: large enough that tf.data's
# per-element cost is paid rarely, small enough that a batch of parsed lines stays a few MB.
ROWS_PER_BATCH = 1 << 16

# The functions given to tf.data here have no tensor-dependent Python control flow: skipping AutoGraph's source
# conversion makes building a pipeline faster.
plain = tf.autograph.experimental.do_not_convert
