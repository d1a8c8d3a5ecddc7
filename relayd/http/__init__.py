"""HTTP listener: metrics, health and the queue control API."""
