"""Notifiers: plugins that tell people about entry health changes (email, Slack, Mattermost).

Each module here exports one `NotifierPlugin` as ``PLUGIN``; third parties
publish theirs under the ``updraft.monitoring.notifiers`` entry-point group.
`updraft.monitoring.notify` hands them the changes and keeps the outbox.
"""
