"""Placeholder: the owner of this module replaces it."""
from django.http import HttpResponse


def audit_log(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def audit_event(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def audit_export(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)

