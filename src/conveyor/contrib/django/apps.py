"""`conveyor.contrib.django` as a Django app: finds each installed app's `tasks` module."""

from __future__ import annotations

from django.apps import AppConfig  # type: ignore[import-untyped,import-not-found,unused-ignore]


class ConveyorConfig(AppConfig):  # type: ignore[misc,unused-ignore]
    name = "conveyor.contrib.django"
    label = "conveyor"
    verbose_name = "conveyor"

    def ready(self) -> None:
        from django.core.signals import setting_changed  # type: ignore[import-untyped,import-not-found,unused-ignore]
        from django.utils.module_loading import autodiscover_modules  # type: ignore[import-untyped,import-not-found,unused-ignore]

        from . import settings_changed

        setting_changed.connect(settings_changed, dispatch_uid="conveyor-settings")
        # Every installed app's tasks.py: conveyor tasks and django.tasks functions alike,
        # so a worker knows every task the web process can enqueue.
        autodiscover_modules("tasks")
