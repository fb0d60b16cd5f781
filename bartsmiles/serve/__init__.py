"""``bartsmiles serve``: a fine-tuned model on a local web page, with a JSON API.

* :mod:`.config` -- :class:`~bartsmiles.serve.config.ServeConfig`, the command's settings (no
  optional dependency: the command line imports it);
* :mod:`.service` -- :class:`~bartsmiles.serve.service.ModelService`: the model loaded once,
  predictions with conformal intervals, attributions with SVG drawings and substructure tables;
* :mod:`.app` -- the FastAPI application (``/``, ``/info``, ``/predict``, ``/predict/table``,
  ``/attribute``, OpenAPI at ``/docs``) and :func:`~bartsmiles.serve.app.serve`; needs the
  ``serve`` extra: ``pip install "bartsmiles[serve]"``;
* ``page.html`` -- the page itself: plain HTML and JavaScript, no build step.

Nothing is imported here, so that ``import bartsmiles.serve.config`` stays light.
"""
