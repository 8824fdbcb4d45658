"""The Django admin for hooks: listed without secrets, enable/disable and retry actions."""

import pytest

from campaigns import hooks
from campaigns.models import Hook, HookDelivery

pytestmark = pytest.mark.django_db


@pytest.fixture
def staff_client(alice, client):
    alice.is_staff = alice.is_superuser = True
    alice.save()
    client.force_login(alice)
    return client


def test_hook_admin_lists_hooks_without_their_secret(staff_client, alice):
    hook = hooks.subscribe(event="message.sent", target="http://127.0.0.1:9/x", owner=alice)

    listing = staff_client.get("/admin/campaigns/hook/")
    change = staff_client.get(f"/admin/campaigns/hook/{hook.pk}/change/")

    assert listing.status_code == 200 and "http://127.0.0.1:9/x" in listing.content.decode()
    assert hook.secret not in listing.content.decode() + change.content.decode()


def test_hook_admin_disable_and_enable_actions(staff_client, alice):
    hook = hooks.subscribe(event="message.sent", target="http://127.0.0.1:9/x", owner=alice)

    staff_client.post("/admin/campaigns/hook/", {"action": "disable_hooks", "_selected_action": [hook.pk]})
    hook.refresh_from_db()
    assert (hook.is_active, hook.disabled_reason) == (False, "Disabled by alice in the admin.")
    staff_client.post("/admin/campaigns/hook/", {"action": "enable_hooks", "_selected_action": [hook.pk]})
    hook.refresh_from_db()
    assert hook.is_active


def test_delivery_admin_retries_failed_deliveries(staff_client, alice):
    hook = hooks.subscribe(event="message.sent", target="http://127.0.0.1:9/x", owner=alice)
    hooks.emit("message.sent", {"n": 1})
    HookDelivery.objects.update(status=HookDelivery.FAILED)
    delivery = HookDelivery.objects.get()

    listing = staff_client.get("/admin/campaigns/hookdelivery/")
    staff_client.post("/admin/campaigns/hookdelivery/", {"action": "retry_deliveries",
                                                         "_selected_action": [delivery.pk]})

    assert listing.status_code == 200
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert Hook.objects.get() == hook
