"""`{{ text|qr_data_uri }}`: a QR code of `text` as an SVG data: URI, drawn on the server with segno.

For the 2FA enrolment page: the authenticator app scans it instead of the key being typed. An
<img> with a data: URI (the CSP allows data: images), so no script draws it and nothing leaves
the panel.
"""

import segno
from django import template

register = template.Library()


@register.filter
def qr_data_uri(text: str) -> str:
    return segno.make(text, error="m").svg_data_uri(scale=4, border=4, dark="#000", light="#fff")
