from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from django.views.generic import TemplateView

urlpatterns = [
    # The endpoints the chat frontend calls.
    path("api/chat/", include("presence_django.urls")),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("", login_required(TemplateView.as_view(template_name="index.html"))),
]
