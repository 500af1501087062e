"""Where a notification leaves: channels (email, push, SMS), rendering and message building.

No Temporal import here: activities/notifications.py wraps these in activities with their
own retry policies; the ledgers live in deallens/db/notifications.py and deallens/db/digests.py.
"""
