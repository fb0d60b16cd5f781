"""The folder to give fairseq's ``--user-dir`` (``bartsmiles user-dir`` prints its path).

fairseq imports a user dir under its folder name.  This shim only imports
:mod:`bartsmiles.tasks`, so the plugin's tasks, criterions and architectures are registered once,
under that single module name, whether they are reached through ``fairseq-train --user-dir`` or
through the Python API in the same process.
"""
import bartsmiles.tasks  # noqa: F401  (registers everything)
