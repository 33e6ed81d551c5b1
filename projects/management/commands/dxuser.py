"""manage.py dxuser add HANDLE [--password P] [--token] [--admin]"""

from django.core.management.base import BaseCommand, CommandError

from dxweb.errors import DXError
from projects.accounts import create_user
from projects.models import ApiToken, User


class Command(BaseCommand):
    help = "Create a user; with --token, print a new API token on its own line."

    def add_arguments(self, parser):
        sub = parser.add_subparsers(dest="action", required=True)
        add = sub.add_parser("add", help="create a user")
        add.add_argument("handle")
        add.add_argument("--password")
        add.add_argument("--email", default="")
        add.add_argument("--token", action="store_true", help="print a new API token")
        add.add_argument("--admin", action="store_true", help="make the user a site administrator")
        token = sub.add_parser("token", help="issue a new API token for an existing user")
        token.add_argument("handle")

    def handle(self, *args, action, **opts):
        if action == "add":
            try:
                user = create_user(opts["handle"], opts["password"], is_staff=opts["admin"], email=opts["email"])
            except DXError as err:
                raise CommandError(err.message) from None
            self.stderr.write(f"created {user.dx_id}")
            if opts["token"]:
                self.stdout.write(ApiToken.issue(user, "created by manage.py dxuser")[1])
        else:
            user = User.objects.filter(username=opts["handle"]).first()
            if user is None:
                raise CommandError(f"no user {opts['handle']!r}")
            self.stdout.write(ApiToken.issue(user, "created by manage.py dxuser")[1])
