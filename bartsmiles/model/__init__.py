"""Models on disk and in memory: resolving a path to a checkpoint (:mod:`.resolve`), safe,
self-describing checkpoints (:mod:`.checkpoint`), pretrained models and their features
(:mod:`.pretrained`), fine-tuned predictors (:mod:`.predictor`, :mod:`.prediction`),
checkpoint averaging (:mod:`.averaging`) and bfloat16 and int8 inference (:mod:`.precision`)."""
# First of all: the plugin registers our architectures and tasks, and imports fairseq in a way that
# keeps fairseq's model zoo from reconfiguring the root logger (see bartsmiles.tasks).
import bartsmiles.tasks  # noqa: E402,F401
