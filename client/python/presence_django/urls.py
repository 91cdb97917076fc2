"""include() under the prefix the frontends call, e.g.
path("api/chat/", include("presence_django.urls")).

Each endpoint answers with and without its trailing slash: the chat product
calls both, and APPEND_SLASH cannot redirect a POST (Django raises a
RuntimeError, a 500). Any other path under the prefix is a JSON 404, so
Django tries the project's own routes under the same prefix only if they
come before this include.
"""

from django.urls import path, re_path

from . import views

app_name = "presence"

_ENDPOINTS = (
    ("heartbeat", views.heartbeat),
    ("mark-offline", views.mark_offline),
    ("online-users", views.online_users),
    ("status", views.set_status),
    ("presence", views.presence),
)

urlpatterns = [
    # reverse("presence:heartbeat") gives the slashed form.
    *(path(f"{name}/", view, name=name) for name, view in _ENDPOINTS),
    *(path(name, view) for name, view in _ENDPOINTS),
    re_path(r"^(?P<path>.*)$", views.not_found, name="not-found"),
]
