"""Where a notification leaves: the delivery engine (delivery.py: claim, send, settle around
the ledgers), the channels (email, push, SMS), rendering and message building.

No Temporal import here: activities/notifications.py wraps the engine in activities with
their own retry policies; the ledgers live in deallens/db/notifications.py and
deallens/db/digests.py, their claim rule in deallens/db/claims.py.
"""
