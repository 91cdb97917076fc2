"""A client built before rich presence, against today's presenced: run by
test_old_client.py in a process of its own, with only the old code on
PYTHONPATH (so nothing of today's proto or package can help it).

    old_client_probe.py stubs|package ADDRESS HEARTBEAT_ID LOOKUP_IDS
        WATCH_IDS SENTINEL

`stubs`: the gRPC stubs generated from the proto as it was (presence.v1 of
commit 495496e), used directly; `package`: presence_client as it was, on
those stubs. Either way: a heartbeat of HEARTBEAT_ID, GetPresence and
ListOnline of LOOKUP_IDS (comma-separated), then a watch of WATCH_IDS that
prints each change until SENTINEL comes online. One JSON object per line on
stdout; `{"ready": ...}` once the watch's snapshot is in. Any exception
ends it with a traceback and exit status 1: what an old client would do.
"""

import base64
import json
import sys


def emit(**fields) -> None:
    print(json.dumps(fields), flush=True)


def ids(text: str):
    return [int(part) for part in text.split(",") if part]


def with_stubs(address, beat_id, lookup_ids, watch_ids, sentinel) -> None:
    import grpc
    from presence.v1 import presence_pb2 as pb
    from presence.v1 import presence_pb2_grpc as pb_grpc

    stub = pb_grpc.PresenceServiceStub(grpc.insecure_channel(address))
    beat = stub.Heartbeat(pb.HeartbeatRequest(user_id=beat_id), timeout=10)
    emit(heartbeat={"became_online": beat.became_online})
    response = stub.GetPresence(pb.GetPresenceRequest(user_ids=lookup_ids),
                                timeout=10)
    # Status.Name() raises for a number this proto does not know.
    emit(presence=[[u.user_id, u.status, pb.Status.Name(u.status),
                    u.HasField("online_until")] for u in response.users])
    # What this client keeps of the answer, unknown fields included.
    emit(wire=base64.b64encode(response.SerializeToString()).decode())
    listed = stub.ListOnline(pb.ListOnlineRequest(user_ids=lookup_ids),
                             timeout=10)
    emit(online=list(listed.online_users))

    stream = stub.WatchPresence(pb.WatchPresenceRequest(
        user_ids=watch_ids, send_snapshot=True, max_batch=100), timeout=60)
    for message in stream:
        kind = message.WhichOneof("event")
        if kind == "snapshot":
            emit(ready=sorted(message.snapshot.online_users))
            continue
        changes = ([message.change] if kind == "change"
                   else list(message.changes.changes))
        for change in changes:
            emit(change=[change.user_id, change.status,
                         pb.Status.Name(change.status), change.reason,
                         pb.Reason.Name(change.reason)])
            if change.user_id == sentinel:
                stream.cancel()
                emit(done=True)
                return
    raise RuntimeError(f"the stream ended without a {kind!r}")


def with_package(address, beat_id, lookup_ids, watch_ids, sentinel) -> None:
    import presence_client
    from presence_client import PresenceChange, PresenceClient, Snapshot

    # Where it comes from, so the test can check it is the old one.
    emit(package=presence_client.__file__)
    with PresenceClient(address, timeout=10) as client:
        beat = client.heartbeat(beat_id, "old-tab")
        emit(heartbeat={"became_online": beat.became_online})
        lookup = client.get_presence(lookup_ids)
        emit(presence=[[u.user_id, int(u.status), u.status.name, u.online]
                       for u in lookup.users])
        emit(online=client.list_online(lookup_ids))
        with client.watch(watch_ids) as watch:
            for event in watch:
                if isinstance(event, Snapshot):
                    emit(ready=event.online_users)
                    continue
                assert isinstance(event, PresenceChange), event
                emit(change=[event.user_id, int(event.status),
                             event.status.name, int(event.reason),
                             event.reason.name])
                if event.user_id == sentinel:
                    emit(done=True)
                    return


def main() -> None:
    mode, address, beat_id, lookup_ids, watch_ids, sentinel = sys.argv[1:]
    probe = {"stubs": with_stubs, "package": with_package}[mode]
    probe(address, int(beat_id), ids(lookup_ids), ids(watch_ids),
          int(sentinel))


if __name__ == "__main__":
    main()
