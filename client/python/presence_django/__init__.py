"""Django REST framework views for the chat product's presence endpoints,
backed by presenced (client/python/README.md).

    # settings.py
    INSTALLED_APPS += ["rest_framework", "presence_django"]
    PRESENCE_SERVER = "127.0.0.1:50051"

    # urls.py of the project
    path("api/chat/", include("presence_django.urls")),

The callers are authenticated by REST_FRAMEWORK's
DEFAULT_AUTHENTICATION_CLASSES (e.g. SimpleJWT), or by
PRESENCE_AUTHENTICATION_CLASSES if set.
"""
