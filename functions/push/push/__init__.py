"""PushFunction: the WebSocket API's $connect (the JWT check), $disconnect and $default (ping) routes."""
