"""The cluster: the controller's metadata log, the metadata image every broker applies, and
the soft-state view of leaders and liveness (see ``docs/decisions.md``, "Cluster")."""
