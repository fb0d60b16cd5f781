"""The bartsmiles fairseq plugin, imported as :mod:`bartsmiles.tasks` and nothing else.

Importing it registers with fairseq:

* architectures ``bartsmiles_tiny``, ``bartsmiles_small``, ``bartsmiles_base``,
  ``bartsmiles_large`` (:mod:`.architectures`);
* the task and criterion ``smiles_denoising`` (:mod:`.denoising`, :mod:`.denoising_criterion`);
* the task and criterion ``smiles_property`` (:mod:`.property`, :mod:`.property_criterion`):
  fine-tuning for property prediction straight from a CSV.

Use it from the command line with ``fairseq-train ... --user-dir $(bartsmiles user-dir)``; that
folder (``tasks/user_dir/bartsmiles_plugin``) is a shim that imports this module, so fairseq's
registries are filled exactly once even when the API and ``fairseq_cli`` run in one process.
"""
import os as _os

if __name__ != "bartsmiles.tasks":  # pragma: no cover - reached only via --user-dir <repo>/tasks
    # fairseq imported this folder under its bare name ("tasks"): hand over to the one true module
    import importlib as _importlib
    import sys as _sys

    _sys.modules[__name__] = _importlib.import_module("bartsmiles.tasks")
else:
    import logging as _logging

    # Importing fairseq's model zoo configures logging globally (wav2vec2_classification sets the
    # root logger to DEBUG, the speech tasks call basicConfig). Undo that, so a library import
    # does not flood the user's console with matplotlib/PIL debug lines.
    _root = _logging.getLogger()
    _root_state = (_root.level, list(_root.handlers))
    # fairseq's text-to-speech task announces a missing tensorboardX at INFO on import; it is not
    # needed here, and the line would be the first thing every command printed
    _logging.getLogger("fairseq.tasks.text_to_speech").setLevel(_logging.WARNING)

    from . import _compat

    _compat.apply()

    from . import architectures, denoising, denoising_criterion, property, property_criterion, seq2seq  # noqa: F401,E402  (registration side effects)

    _root.setLevel(_root_state[0])
    for _handler in [h for h in _root.handlers if h not in _root_state[1]]:
        _root.removeHandler(_handler)

    #: The folder to pass to fairseq's ``--user-dir``.
    USER_DIR = _os.path.join(_os.path.dirname(_os.path.abspath(__file__)), "user_dir", "bartsmiles_plugin")
