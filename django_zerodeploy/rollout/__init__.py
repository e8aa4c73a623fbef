"""Rolling deploys across hosts that share one database and one django-q2 broker.

hosts.py        the host registry: each cluster's heartbeat row (name, cluster, release)
remote.py       tasks run on one host through its own cluster (ping, drain, resume)
lock.py         one rollout at a time: a row in the shared database with a fresh heartbeat
coordinator.py  the rollout: preconditions, batches, rollback of switched hosts
"""
