"""NotifierFunction: job changes from the tables' streams, pushed to their owners' WebSocket connections."""
