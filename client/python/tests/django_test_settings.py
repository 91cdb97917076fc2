"""The smallest Django project for test_django and test_product_flow, set up
the way the chat backend is: Django REST framework with SimpleJWT's Bearer
tokens first, DRF's TokenAuthentication and SessionAuthentication after; auth
and sessions in an in-memory SQLite database. Each test points
PRESENCE_SERVER at its own presenced."""

SECRET_KEY = "presence-django-tests-not-secret"
DEBUG = False
USE_TZ = True
ALLOWED_HOSTS = ["testserver"]
INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "rest_framework",
    "rest_framework.authtoken",
    "presence_django",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    # APPEND_SLASH (on by default) is why the endpoints route both forms.
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]
ROOT_URLCONF = "django_test_urls"
DATABASES = {
    "default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"},
}
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "rest_framework_simplejwt.authentication.JWTAuthentication",
        "rest_framework.authentication.TokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
}
# SimpleJWT's defaults: HS256 signed with SECRET_KEY, a user_id claim. The
# product-flow test gives presence-rest the same key.
SIMPLE_JWT = {"SIGNING_KEY": SECRET_KEY}
# Nothing listens here; setUp() overrides it.
PRESENCE_SERVER = "127.0.0.1:1"
