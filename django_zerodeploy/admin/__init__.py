"""The deploy console in the Django admin.

deployments.py  the deploy history and a deploy's detail page (``DeploymentAdmin``)
views.py        its own pages: confirm a deploy or rollback, cancel, the progress JSON
rollouts.py     the hosts page and the rollouts
permissions.py  who may start deploys, and the read-only admin they share (records are evidence)

Django's autodiscovery imports this package: importing the modules registers their admins.
"""

from . import deployments, rollouts  # noqa: F401  (register the ModelAdmins)
