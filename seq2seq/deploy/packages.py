"""The optional packages of deployment (the ``deploy`` extra): ``seq2seq export`` needs onnx and
onnxruntime, ``seq2seq serve`` starlette and uvicorn. Without one, the command stops with one
line that says what to install."""

from seq2seq.errors import require_packages

INSTALL = "pip install 'seq2seq[deploy]'"
EXPORT = ("onnx", "onnxruntime")  # seq2seq export (and its check: onnxruntime)
SERVE = ("starlette", "uvicorn")  # seq2seq serve


def require(what: str, modules):
    """Import ``modules`` (returns the last), or stop with one line: ``what`` needs the first
    that is missing, and :data:`INSTALL`."""
    return require_packages(what, modules, INSTALL)
