"""Notification delivery: a durable outbox on the hub (docs/hub.md, Notifications).

* :mod:`.model` — messages, delivery rows, the idempotency key, retries (pure);
* :mod:`.audience` — who is told of what (pure, over the routing table's contacts);
* :mod:`.outbox` — :class:`~.outbox.Outbox`: enqueue deliveries inside the writer's
  transaction of the change that causes them;
* :mod:`.service` — :class:`~.service.Notifier`: the hub task that claims due rows,
  sends them and records each outcome through the writer;
* :mod:`.channels` — email (SMTP), signed webhooks, WeCom / DingTalk / Feishu group robots,
  SMS through an HTTP gateway;
* :mod:`.settings` — ``notify:`` in hub.yaml.
"""
