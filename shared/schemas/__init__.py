"""API models shared by the gateway, the events service and the examples."""
