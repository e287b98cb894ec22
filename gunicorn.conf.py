"""gunicorn's settings for the panel: gunicorn reads ./gunicorn.conf.py, the Dockerfile's command adds the rest.

Access log lines hold what a client sent (the query string, the referer, the user agent); a key
pasted into any of them must not reach the log (ogpanel/redaction.py).
"""

from gunicorn.glogging import Logger


class RedactingLogger(Logger):
    def atoms(self, resp, req, environ, request_time) -> dict:
        from ogpanel.redaction import redact  # imported once the app (and Django's settings) is loaded

        atoms = super().atoms(resp, req, environ, request_time)
        return {name: redact(value) if isinstance(value, str) else value for name, value in atoms.items()}


logger_class = RedactingLogger
