"""Drop-in Django views backed by presenced (client/python/README.md).

    # urls.py of the project
    path("api/chat/", include("presence_django.urls")),

    # settings.py
    INSTALLED_APPS += ["presence_django"]  # for the logout hook
    PRESENCE_SERVER = "127.0.0.1:50051"
"""
