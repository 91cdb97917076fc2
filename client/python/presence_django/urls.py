"""include() under the prefix the frontends call, e.g.
path("api/chat/", include("presence_django.urls"))."""

from django.urls import path

from . import views

app_name = "presence"

urlpatterns = [
    path("heartbeat/", views.heartbeat, name="heartbeat"),
    path("mark-offline/", views.mark_offline, name="mark-offline"),
    path("online-users/", views.online_users, name="online-users"),
]
