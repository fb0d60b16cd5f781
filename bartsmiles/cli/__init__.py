"""The ``bartsmiles`` command line: :mod:`.parser` builds the options (from the config dataclasses
through :mod:`.options`), :mod:`.commands` turns each command into one API call, :mod:`.main` is the
entry point and turns failures into one line."""
