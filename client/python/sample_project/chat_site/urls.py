from django.contrib import admin
from django.contrib.auth.decorators import login_required
from django.urls import include, path
from django.views.generic import TemplateView
from rest_framework_simplejwt.views import (TokenObtainPairView,
                                            TokenRefreshView)

urlpatterns = [
    # The endpoints the chat frontend calls.
    path("api/chat/", include("presence_django.urls")),
    # SimpleJWT: POST {"username", "password"} for {"access", "refresh"}.
    path("api/token/", TokenObtainPairView.as_view()),
    path("api/token/refresh/", TokenRefreshView.as_view()),
    path("accounts/", include("django.contrib.auth.urls")),
    path("admin/", admin.site.urls),
    path("", login_required(TemplateView.as_view(template_name="index.html"))),
]
