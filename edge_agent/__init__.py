"""cityops edge agent: reads cameras and Modbus devices beside them, detects problems
locally and publishes only events, through a durable outbox, to the hub over MQTT."""

__version__ = "0.1.0"
