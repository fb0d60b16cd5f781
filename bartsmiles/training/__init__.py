"""Training through fairseq's own trainer: the shared optimizer, schedule and runtime config
(:mod:`.config`), the runner (:mod:`.runner`), pretraining, fine-tuning (with resume), the
hyperparameter grid and seq2seq, plus the per-epoch progress bar."""
# First of all: the plugin registers our architectures and tasks, and imports fairseq in a way that
# keeps fairseq's model zoo from reconfiguring the root logger (see bartsmiles.tasks).
import bartsmiles.tasks  # noqa: E402,F401
