"""Placeholder: the owner of this module replaces it."""
from django.http import HttpResponse


def credential_list(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def credential_create(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def credential_detail(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def credential_rotate(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def credential_remove(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def credential_test(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)


def subaccount_list(request, *args, **kwargs):
    return HttpResponse("not built yet", status=501)

