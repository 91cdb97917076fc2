from django.apps import AppConfig


class PresenceConfig(AppConfig):
    """With "presence_django" in INSTALLED_APPS, logging out (Django's
    logout()) ends that session in presenced, unless
    PRESENCE_MARK_OFFLINE_ON_LOGOUT = False. The views work without it."""

    name = "presence_django"
    verbose_name = "Presence"

    def ready(self) -> None:
        from django.contrib.auth.signals import user_logged_out
        from django.core import checks

        from . import signals
        from .checks import check_presence_server

        checks.register(check_presence_server)

        user_logged_out.connect(signals.mark_offline_on_logout,
                                dispatch_uid="presence_django.logout")
