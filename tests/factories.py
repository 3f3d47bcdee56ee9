"""factory_boy factories for registry data."""

from __future__ import annotations

import factory
from django.contrib.auth import get_user_model

from registry import services
from registry.models import Resource, ResourceVersion

PASSWORD = "correct horse battery staple"


class UserFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = get_user_model()
        skip_postgeneration_save = True

    username = factory.Sequence(lambda n: f"user{n}")
    email = factory.LazyAttribute(lambda o: f"{o.username}@example.com")
    password = factory.PostGenerationMethodCall("set_password", PASSWORD)

    @factory.post_generation
    def _save(obj, create, extracted, **kwargs):
        if create:
            obj.save()


class ResourceFactory(factory.django.DjangoModelFactory):
    class Meta:
        model = Resource
        skip_postgeneration_save = True

    owner = factory.SubFactory(UserFactory)
    name = factory.Sequence(lambda n: f"thing{n}")
    type = "resource"
    config = factory.LazyFunction(lambda: {"x": 1})
    visibility = "private"

    @factory.post_generation
    def first_version(obj, create, extracted, **kwargs):
        if create:
            ResourceVersion.objects.create(
                resource=obj, number=obj.version, type=obj.type, config=obj.config, author=obj.owner
            )


def make_token(user, scope="write", days=30):
    """A real token for ``user``, created through the service; returns the plain string."""
    _, plain = services.token_create(user=user, name="test", scope=scope, expires_in_days=days)
    return plain
