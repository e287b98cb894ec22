from django.contrib import admin
from django.urls import path

from ogpanel.views import accounts, audit, credentials, groups, health, kill_switch, live, metrics
from ogpanel.views import policy as policy_views
from ogpanel.views import requests as request_views

urlpatterns = [
    path("", groups.dashboard, name="dashboard"),
    path("live", live.live, name="live"),
    path("groups/new/", groups.group_create, name="group_create"),
    path("groups/<int:subaccount>/<str:group_id>/", groups.group_detail, name="group_detail"),
    path("groups/<int:subaccount>/<str:group_id>/trigger/", groups.group_trigger, name="group_trigger"),
    path("groups/<int:subaccount>/<str:group_id>/reset/", groups.group_reset, name="group_reset"),
    path("groups/<int:subaccount>/<str:group_id>/delete/", groups.group_delete, name="group_delete"),
    path("groups/<int:subaccount>/<str:group_id>/limit/", groups.group_limit, name="group_limit"),
    path("kill-switch/", kill_switch.kill_switch, name="kill_switch"),
    path("kill-switch/sweeps/<int:pk>/", kill_switch.kill_switch_sweep, name="kill_switch_sweep"),
    path("kill-switch/sweeps/<int:pk>/note/", kill_switch.kill_switch_note, name="kill_switch_note"),
    path("audit/", audit.audit_log, name="audit_log"),
    path("audit/<int:seq>/", audit.audit_event, name="audit_event"),
    path("audit/export.<str:fmt>", audit.audit_export, name="audit_export"),
    path("credentials/", credentials.credential_list, name="credentials"),
    path("credentials/new/", credentials.credential_create, name="credential_create"),
    path("credentials/<int:pk>/", credentials.credential_detail, name="credential_detail"),
    path("credentials/<int:pk>/rotate/", credentials.credential_rotate, name="credential_rotate"),
    path("credentials/<int:pk>/remove/", credentials.credential_remove, name="credential_remove"),
    path("credentials/<int:pk>/test/", credentials.credential_test, name="credential_test"),
    path("subaccounts/", credentials.subaccount_list, name="subaccounts"),
    # Policy and four eyes.
    path("policy/", policy_views.policy_page, name="policy"),
    path("policy/export.json", policy_views.policy_export, name="policy_export"),
    path("policy/default/", policy_views.policy_edit, name="policy_edit_default"),
    path("policy/<int:subaccount>/", policy_views.policy_edit, name="policy_edit"),
    path("requests/", request_views.request_list, name="requests"),
    path("requests/<int:pk>/", request_views.request_detail, name="request_detail"),
    path("requests/<int:pk>/approve/", request_views.request_approve, name="request_approve"),
    path("requests/<int:pk>/reject/", request_views.request_reject, name="request_reject"),
    path("requests/<int:pk>/cancel/", request_views.request_cancel, name="request_cancel"),
    path("accounts/login/", accounts.login, name="login"),
    path("accounts/logout/", accounts.logout, name="logout"),
    path("accounts/2fa/setup/", accounts.otp_setup, name="otp_setup"),
    path("accounts/2fa/verify/", accounts.otp_verify, name="otp_verify"),
    path("accounts/reauth/", accounts.reauth, name="reauth"),
    # The admin site signs in and out through the panel's views, so throttling, 2FA and the audit cover it too.
    path("admin/login/", accounts.admin_login),
    path("admin/logout/", accounts.logout),
    path("healthz", health.healthz, name="healthz"),
    path("healthz/watcher", health.watcher, name="healthz_watcher"),
    path("metrics", metrics.metrics, name="metrics"),
    path("admin/", admin.site.urls),
]

# A failure no view handled, a database outage above all: words, never a traceback (views/errors.py).
handler500 = "ogpanel.views.errors.server_error"
