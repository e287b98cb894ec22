"""Placeholder: the owner of this module replaces it."""
from django.http import HttpResponse


def dashboard(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def group_create(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def group_detail(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def group_trigger(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def group_reset(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def group_delete(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def group_limit(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def kill_switch(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)

