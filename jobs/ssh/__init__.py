"""SSH into running jobs: the gateway and its client, and the browser terminal's consumer.

The only code that touches asyncssh objects.
"""
