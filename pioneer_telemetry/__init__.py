"""pioneer-telemetry's composition root: the `pioneer-telemetry` CLI and `up`'s local stack, which wire
the rooms (collector, streams, dashboard, simulator) together on the base (pioneer_base). No room imports it."""

__version__ = "0.1.0"
