"""The push channel's AWS parts: the connections table (each owner's open WebSocket connections) and API
Gateway's management API (``PostToConnection``), which answers ``GoneException`` for a connection that
has closed."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from docpipe import aws
from docpipe.adapters.dynamo.table import _fault
from docpipe.errors import Transient


class ConnectionsRepository:
    """``ConnectionsTable``: partition ``owner``, sort ``connectionId``, ``expiresAt`` (TTL); the
    ``byConnection`` index finds a connection's owner when it closes (``$disconnect`` knows only its id)."""

    def __init__(self, name: str, client: Any | None = None) -> None:
        self.name = name
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client("dynamodb")

    def for_owner(self, owner: str, now: int) -> list[str]:
        """The owner's connections that have not expired (TTL deletes an item up to days after it expires)."""
        kwargs: dict[str, Any] = {
            "TableName": self.name,
            "KeyConditionExpression": "#o = :o",
            "FilterExpression": "expiresAt > :now",
            "ExpressionAttributeNames": {"#o": "owner"},
            "ExpressionAttributeValues": {":o": {"S": owner}, ":now": {"N": str(now)}},
            "ProjectionExpression": "connectionId",
        }
        found: list[str] = []
        while True:
            try:
                r = self.client.query(**kwargs)
            except ClientError as exc:
                raise _fault(exc, "query") from exc
            found += [item["connectionId"]["S"] for item in r.get("Items", [])]
            if "LastEvaluatedKey" not in r:
                return found
            kwargs["ExclusiveStartKey"] = r["LastEvaluatedKey"]

    def add(self, owner: str, connection_id: str, now: int, ttl_seconds: int, limit: int) -> bool:
        """Record a connection; False when the owner has ``limit`` open already. Two connects at the same
        instant may both pass the count: the bound holds to within the user's concurrent connects."""
        if len(self.for_owner(owner, now)) >= limit:
            return False
        item = {
            "owner": {"S": owner},
            "connectionId": {"S": connection_id},
            "connectedAt": {"N": str(now)},
            "expiresAt": {"N": str(now + ttl_seconds)},
        }
        try:
            self.client.put_item(TableName=self.name, Item=item)
        except ClientError as exc:
            raise _fault(exc, "put_item") from exc
        return True

    def remove(self, connection_id: str) -> str | None:
        """Forget a closed connection; its owner, or None when it was not recorded."""
        try:
            r = self.client.query(
                TableName=self.name,
                IndexName="byConnection",
                KeyConditionExpression="connectionId = :c",
                ExpressionAttributeValues={":c": {"S": connection_id}},
            )
        except ClientError as exc:
            raise _fault(exc, "query") from exc
        owners = [item["owner"]["S"] for item in r.get("Items", [])]
        for owner in owners:
            self.drop(owner, connection_id)
        return owners[0] if owners else None

    def drop(self, owner: str, connection_id: str) -> None:
        try:
            self.client.delete_item(
                TableName=self.name, Key={"owner": {"S": owner}, "connectionId": {"S": connection_id}}
            )
        except ClientError as exc:
            raise _fault(exc, "delete_item") from exc


def management_endpoint(push_url: str) -> str:
    """The management API of a WebSocket API: the same host and stage over HTTPS (``wss://`` → ``https://``;
    locally ``ws://`` → ``http://``)."""
    scheme, sep, rest = push_url.partition("://")
    return {"wss": "https", "ws": "http"}.get(scheme, scheme) + sep + rest.rstrip("/")


class PushChannel:
    """``PostToConnection`` on the WebSocket API whose clients connect to ``push_url``."""

    def __init__(self, push_url: str, client: Any | None = None) -> None:
        self.endpoint = management_endpoint(push_url)
        self._client = client

    @property
    def client(self) -> Any:
        return self._client or aws.client_at("apigatewaymanagementapi", self.endpoint)

    def post(self, connection_id: str, data: str) -> bool:
        """Send one text frame; False when the connection is gone (closed, or never was)."""
        try:
            self.client.post_to_connection(ConnectionId=connection_id, Data=data.encode())
        except ClientError as exc:
            error = exc.response.get("Error", {}).get("Code")
            status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode")
            if error == "GoneException" or status == 410:
                return False
            raise Transient(f"PostToConnection failed: {error or status}") from exc
        except BotoCoreError as exc:
            raise Transient(f"PostToConnection failed: {exc}") from exc
        return True
