"""A Runhouse-compatible API under ``/rh/``: the requests the runhouse 0.0.42
client makes to its Den, served by den's registry (see README, "Coming from
Runhouse"). Named ``rhcompat`` so that it never shadows the ``runhouse`` package."""
