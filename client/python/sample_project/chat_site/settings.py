"""A minimal chat site using presence_django, authenticated as the chat
backend is: Django REST framework with SimpleJWT Bearer tokens for API
callers, and session logins (with CSRF) for its own page. Not for production
(DEBUG, a fixed SECRET_KEY)."""

import os
from pathlib import Path

BASE_DIR = Path(__file__).resolve().parent.parent

SECRET_KEY = "sample-project-not-secret"
DEBUG = True
ALLOWED_HOSTS = ["localhost", "127.0.0.1"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "presence_django",  # ends the session in presenced on logout
]
MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
ROOT_URLCONF = "chat_site.urls"
TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "DIRS": [BASE_DIR / "chat_site" / "templates"],
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
        "django.contrib.messages.context_processors.messages",
    ]},
}]
DATABASES = {
    # *.db is ignored by git.
    "default": {"ENGINE": "django.db.backends.sqlite3",
                "NAME": BASE_DIR / "sample.db"},
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
USE_TZ = True
STATIC_URL = "/static/"
LOGIN_REDIRECT_URL = "/"
LOGOUT_REDIRECT_URL = "/"

REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        # The chat product's calls: Authorization: Bearer <access token>.
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        # This site's own page, logged in at /accounts/login/.
        "rest_framework.authentication.SessionAuthentication",
    ],
}
# SimpleJWT's defaults: HS256 signed with SECRET_KEY, a user_id claim, as
# presence-rest verifies them (give it this key in --jwt_secret_file).
SIMPLE_JWT = {"SIGNING_KEY": SECRET_KEY}

# presenced to ask, and how long a request waits for it.
PRESENCE_SERVER = os.environ.get("PRESENCE_SERVER", "127.0.0.1:50051")
PRESENCE_TIMEOUT = 2.0

LOGGING = {
    "version": 1,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"presence_django": {"handlers": ["console"],
                                    "level": "INFO"}},
}
