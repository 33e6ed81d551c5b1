"""Job logs: the store and its writer, the tail that follows them, and the websocket consumers."""
