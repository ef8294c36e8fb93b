"""``skin-cnn serve``: a trained model as a local web page and JSON API (FastAPI).

``create_app(predictor)`` builds the application (see :mod:`skin_cnn.serve.app`); importing this
package loads neither FastAPI nor TensorFlow until it is used.
"""


def __getattr__(name):
    if name in ("create_app", "DISCLAIMER"):
        from skin_cnn.serve import app

        return getattr(app, name)
    raise AttributeError(f"module 'skin_cnn.serve' has no attribute {name!r}")


__all__ = ["DISCLAIMER", "create_app"]
