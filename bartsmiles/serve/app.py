"""The web application of ``bartsmiles serve``: the page, the JSON API and its OpenAPI description (FastAPI).

Routes (``/docs`` shows them, ``/openapi.json`` describes them):

* ``GET /`` -- the page (:mod:`bartsmiles.serve` ``page.html``): paste SMILES or upload a CSV,
  see the predictions, each molecule drawn with its atom attributions and its substructure
  table, switch the task, download the results as CSV.  ``/?smiles=CCO&task=1`` fills the form
  and submits it.
* ``GET /info`` -- the model: tasks, task type, attribution method, interval level, limits.
* ``POST /predict`` -- ``{"smiles": [...], "errors": "reject" | "report"}`` -> one row per SMILES.
* ``POST /predict/table`` -- a CSV upload (multipart ``file``, ``smiles_column``) -> the CSV of
  ``bartsmiles predict`` with the interval columns (``?format=json``: rows as ``/predict``).
* ``POST /attribute`` -- ``{"smiles": "...", "target": 0 | "task name"}`` -> atom scores, an SVG
  drawing with a colour bar, the ranked substructure table.

Bad input is HTTP 422 with the reason in ``detail`` (an invalid or too long SMILES names its
index, too many molecules names the limit, an unknown task lists the tasks); a request body over
``max_request_bytes`` is HTTP 413 before anything reads it.  This module needs the ``serve``
extra (FastAPI, uvicorn, python-multipart): the command line imports it lazily.
"""
from __future__ import annotations

import json
import logging
from importlib import resources
from typing import Optional, Union

import uvicorn
from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, JSONResponse, Response
from pydantic import BaseModel, Field

from bartsmiles._version import __version__
from bartsmiles.errors import BartSmilesError
from bartsmiles.serve.config import ServeConfig
from bartsmiles.serve.service import ERROR_MODES, ModelService

__all__ = ["build_app", "serve", "BodyLimit"]

logger = logging.getLogger(__name__)


class PredictRequest(BaseModel):
    smiles: list[str] = Field(..., description="the SMILES to predict, in order (at most the server's --max-molecules)")
    errors: str = Field("reject", description="'reject': an invalid or too long SMILES refuses the request (HTTP "
                        "422 naming its index); 'report': its row carries the reason and null predictions",
                        json_schema_extra={"enum": list(ERROR_MODES)})


class AttributeRequest(BaseModel):
    smiles: str = Field(..., description="one SMILES")
    target: Union[int, str] = Field(0, description="the output to explain: its index or its task name")


class BodyLimit:
    """ASGI middleware: a request body over ``max_bytes`` is answered with HTTP 413 before the app reads it.

    The declared ``Content-Length`` is checked first; a body sent in chunks is counted as it
    arrives and held (at most ``max_bytes``) until it is whole, then handed to the app.
    """

    def __init__(self, app, max_bytes: int):
        self.app = app
        self.max_bytes = int(max_bytes)

    async def _refuse(self, send, size: str) -> None:
        body = json.dumps({"detail": f"request body of {size} bytes is over the server's limit of "
                                     f"{self.max_bytes} bytes (--max-request-bytes)"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope.get("headers") or ()).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            await self._refuse(send, declared.decode())
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            chunk = message.get("body", b"")
            size += len(chunk)
            if size > self.max_bytes:
                await self._refuse(send, f"more than {self.max_bytes}")
                return
            chunks.append(chunk)
            more = message.get("more_body", False)
        whole = {"type": "http.request", "body": b"".join(chunks), "more_body": False}
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return whole
            return await receive()

        await self.app(scope, replay, send)


def _page() -> str:
    return resources.files("bartsmiles.serve").joinpath("page.html").read_text(encoding="utf-8")


def build_app(service: ModelService, max_request_bytes: int = 2_000_000):
    """The FastAPI application answering for ``service`` (the routes are in the module docstring)."""
    app = FastAPI(title="bartsmiles serve", version=__version__,
                  description=f"Predictions and atom attributions of the model {service.checkpoint}. "
                              f"At most {service.max_molecules} molecules and {max_request_bytes} bytes per request.")
    app.add_middleware(BodyLimit, max_bytes=max_request_bytes)
    page = _page()

    @app.exception_handler(BartSmilesError)
    async def _bad_input(request: Request, exc: BartSmilesError):
        return JSONResponse(status_code=422, content={"detail": " ".join(str(exc).split())})

    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def index() -> str:
        return page

    @app.get("/info", summary="the model and the server's limits")
    def info() -> dict:
        return service.info()

    @app.post("/predict", summary="predictions (with conformal intervals when the model has them)")
    def predict(request: PredictRequest) -> dict:
        return service.predict(request.smiles, errors=request.errors)

    @app.post("/predict/table", summary="predictions of an uploaded CSV, as CSV (or JSON rows)",
              responses={200: {"content": {"text/csv": {}}}})
    async def predict_table(file: UploadFile = File(..., description="a CSV with a SMILES column"),
                            smiles_column: str = Form("smiles", description="the SMILES column"),
                            fmt: str = Query("csv", alias="format", pattern="^(csv|json)$",
                                             description="csv: the table to download; json: rows as /predict")):
        name = file.filename or "upload.csv"
        frame = service.read_upload(await file.read(), name)
        if fmt == "json":
            if smiles_column not in frame.columns:
                service.predict_frame(frame, smiles_column, filename=name)  # raises, naming the columns
            return service.predict(frame[smiles_column].tolist(), errors="report")
        out = service.predict_frame(frame, smiles_column, filename=name)
        stem = name.rsplit(".", 1)[0] or "predictions"
        return Response(out.to_csv(index=False), media_type="text/csv",
                        headers={"content-disposition": f'attachment; filename="{stem}_predictions.csv"'})

    @app.post("/attribute", summary="atom attributions of one molecule: SVG drawing and substructure table")
    def attribute(request: AttributeRequest) -> dict:
        return service.attribute(request.smiles, target=request.target)

    return app


def serve(cfg: ServeConfig, service: Optional[ModelService] = None) -> None:
    """Load the model once and answer on ``cfg.host:cfg.port`` until interrupted."""
    cfg.check()
    service = service or ModelService(cfg.model, alpha=cfg.alpha, max_molecules=cfg.max_molecules,
                                      batch_size=cfg.batch_size)
    app = build_app(service, max_request_bytes=cfg.max_request_bytes)
    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        logger.warning("listening on %s: anyone who can reach port %d can use this model", cfg.host, cfg.port)
    print(f"bartsmiles serve: {service.checkpoint} on http://{cfg.host}:{cfg.port}/ (API: /docs); Ctrl-C stops",
          flush=True)
    uvicorn.run(app, host=cfg.host, port=int(cfg.port), log_level="warning")
