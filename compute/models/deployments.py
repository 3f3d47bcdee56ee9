"""What runs on a cluster's daemon for each saved function or module."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class Deployment(models.Model):
    """The last put of a saved function or module on its cluster's daemon, kept
    so that den can put it back when the daemon restarted (a stop and up, a
    crash, autostop) on the next call by anyone allowed to call it.

    ``spec`` is the daemon's put body exactly as the client sent it (the
    import pointers and code bundle hash, or the by-value pickle; a module's
    constructor arguments; the env; ``pickle_allow``), encrypted like secret
    values, since constructor arguments may hold credentials. ``object_name``
    is the name the client put it under. ``deployed_by`` had write access to
    the cluster when it was saved, and must still have it when it is put
    back: the daemon runs whatever this holds.
    """

    resource = models.OneToOneField("registry.Resource", on_delete=models.CASCADE,
                                    related_name="deployment")
    cluster = models.ForeignKey("registry.Resource", on_delete=models.CASCADE,
                                related_name="+")
    object_name = models.CharField(max_length=200)
    spec_encrypted = models.TextField()
    code = models.CharField(max_length=64, blank=True, default="")
    kind = models.CharField(max_length=16)
    restores_state = models.CharField(
        max_length=16, blank=True, default="",
        help_text="How a module instance comes back: 'init' (constructor arguments), "
                  "'value' (the pickled instance as it was put), or '' for functions.")
    deployed_by = models.ForeignKey(settings.AUTH_USER_MODEL, null=True, blank=True,
                                    on_delete=models.SET_NULL, related_name="+")
    size = models.PositiveIntegerField(default=0)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"deployment of {self.resource_id} on {self.cluster_id}"
