"""Placeholder: the owner of this module replaces it."""
from django.http import HttpResponse


def login(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def logout(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)

