from django.urls import include, path

urlpatterns = [
    path("api/chat/", include("presence_django.urls")),
]
