"""Placeholder: the owner of this module replaces it."""
from django.http import HttpResponse


def healthz(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)

