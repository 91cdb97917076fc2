from django.http import HttpResponse
from django.urls import include, path
from django.views.decorators.csrf import ensure_csrf_cookie
from rest_framework_simplejwt.views import TokenObtainPairView


@ensure_csrf_cookie
def page(request):
    """Stands for the site's pages, which give a browser its CSRF cookie."""
    return HttpResponse("page")


urlpatterns = [
    path("api/chat/", include("presence_django.urls")),
    path("api/token/", TokenObtainPairView.as_view()),
    path("page/", page),
]
